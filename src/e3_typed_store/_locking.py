"""Cross-process locks, one per resource uid."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator
from contextlib import ExitStack, contextmanager

from e3_typed_store._fs import safe_component
from e3_typed_store.errors import StoreError

__all__ = ["uid_lock"]

# Waits between two attempts at a held lock: short first (a download of a
# small resource is over in milliseconds), then at most this long.
_FIRST_WAIT = 0.002
_LONGEST_WAIT = 0.05


@contextmanager
def uid_lock(
    lock_dir: str, uid: str, timeout: float, *, portable: bool = False
) -> Generator[None, None, None]:
    """Hold the lock of *uid* in *lock_dir* for the duration of the block.

    An OS-level lock (``flock`` on POSIX, ``filelock`` elsewhere), so a
    process that dies releases it; two threads of one process exclude each
    other too. The lock only avoids duplicate work: correctness rests on
    temporary files and atomic renames, never on the lock alone.

    :param lock_dir: the directory of lock files (created if missing)
    :param uid: the resource uid
    :param timeout: seconds to wait for another process before giving up
    :param portable: use ``filelock`` on POSIX too (what Windows always
        uses; for the tests of that path)
    :raises StoreError: the lock was not acquired in time
    :raises OSError: the lock file cannot be created or locked
    """
    path = os.path.join(lock_dir, safe_component(uid) + ".lock")
    if portable or sys.platform == "win32":
        with _file_lock(path, uid, timeout):
            yield
        return
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(lock_dir, exist_ok=True)
        fd = os.open(path, flags, 0o666)
    try:
        end = time.monotonic() + timeout
        wait = _FIRST_WAIT
        while True:
            try:
                # Each open file description is its own lock: a second open
                # of the same file, even in this process, waits here.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = end - time.monotonic()
                if left <= 0:
                    raise _timed_out(uid, timeout, path) from None
                time.sleep(min(wait, left))
                wait = min(wait * 2, _LONGEST_WAIT)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _file_lock(path: str, uid: str, timeout: float) -> Generator[None, None, None]:
    """The portable lock, for systems without ``flock``."""
    from filelock import FileLock, Timeout

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with ExitStack() as stack:
        try:
            stack.enter_context(FileLock(path, timeout=timeout))
        except Timeout as exc:
            raise _timed_out(uid, timeout, path) from exc
        yield


def _timed_out(uid: str, timeout: float, path: str) -> StoreError:
    return StoreError(
        f"another process has held the lock of {uid} for over {timeout:g} s ({path})"
    )
