"""Real faults for tests: a function run in a forked child whose files may not grow.

``RLIMIT_FSIZE`` makes the kernel refuse a write past the limit with ``EFBIG``,
as a full disk refuses one with ``ENOSPC``: a real fault, with no mock,
confined to the child. POSIX only. Used by the conformance kit
(:mod:`e3_typed_store.testing`) and by this package's own tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["call_with_file_size_limit"]


def _limited(
    limit: int, action: Callable[[], object], send: Callable[[object], None]
) -> None:
    if sys.platform == "win32":  # no fork, no resource module: never called there
        raise NotImplementedError("POSIX only")
    import resource
    import signal

    # Past the limit the kernel sends SIGXFSZ, which kills by default;
    # ignored, the write fails with EFBIG instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    send(action())


def call_with_file_size_limit(
    limit: int, action: Callable[[], object], *, timeout: float = 120.0
) -> object:
    """Return ``action()`` as called in a forked child with *limit*.

    :param limit: the most bytes any file the child writes may hold
    :param action: what to call (``functools.partial`` binds arguments); what
        it returns must pickle
    :param timeout: seconds to wait for the child's answer
    :raises TimeoutError: the child did not answer in time
    :raises ChildProcessError: the child ended without answering (it raised
        or crashed); the message gives its exit code
    """
    if sys.platform == "win32":  # no fork: never called there
        raise NotImplementedError("POSIX only")
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_limited, args=(limit, action, sender.send))
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise TimeoutError(f"the child did not answer in {timeout:g} s")
        try:
            result: object = receiver.recv()
        except EOFError:
            child.join(10)
            raise ChildProcessError(
                f"the child ended without answering (exit code {child.exitcode})"
            ) from None
    finally:
        child.join(10)
        child.kill()
        child.join()
    return result
