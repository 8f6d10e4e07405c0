"""Run a function in a forked child whose files may not grow past a size.

``RLIMIT_FSIZE`` makes the kernel refuse a write past the limit with
``EFBIG``, as a full disk refuses one with ``ENOSPC``: a real fault, with no
mock, confined to the child. POSIX only.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection

__all__ = ["call_with_file_size_limit"]


def _limited(
    limit: int,
    function: Callable[..., object],
    args: tuple[object, ...],
    out: Connection,
) -> None:
    import resource
    import signal

    # Past the limit the kernel sends SIGXFSZ, which kills by default;
    # ignored, the write fails with EFBIG instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    out.send(function(*args))
    out.close()


def call_with_file_size_limit(
    limit: int, function: Callable[..., object], *args: object
) -> object:
    """Return ``function(*args)`` as called in a forked child with *limit*.

    :param limit: the most bytes any file the child writes may hold
    :param function: a module-level function; what it returns must pickle
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_limited, args=(limit, function, args, sender))
    child.start()
    sender.close()
    try:
        assert receiver.poll(30), "the child reported nothing"
        result: object = receiver.recv()
    finally:
        child.join(10)
        child.kill()
        child.join()
    return result
