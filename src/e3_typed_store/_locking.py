"""Cross-process locks, one per resource uid."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Generator
from contextlib import ExitStack, contextmanager

from e3_typed_store._fs import raise_removals_failed, safe_component
from e3_typed_store._runtime import reset_in_forked_child
from e3_typed_store.errors import StoreError

__all__ = [
    "LOCK_DIR",
    "WAIT_LOGGER",
    "process_lock",
    "remove_idle_lock",
    "remove_idle_locks",
    "uid_lock",
]

# Waits between two attempts at a held lock: short first (a download of a
# small resource is over in milliseconds), then at most this long.
_FIRST_WAIT = 0.002
_LONGEST_WAIT = 0.05
_SUFFIX = ".lock"
# How long a wait for a lock goes on before it is logged: a fetch that waits
# for another process's download says so, once, instead of hanging silently.
_LONG_WAIT = 2.0

_logger = logging.getLogger("e3.store")
#: Where a long wait for another process's lock is said: a logger of its own,
#: so that a quiet program can still let it through.
WAIT_LOGGER = logging.getLogger("e3.store.wait")

#: The directory of a cache directory that holds the lock files.
LOCK_DIR = "locks"


@contextmanager
def uid_lock(
    lock_dir: str, uid: str, timeout: float, *, portable: bool = False
) -> Generator[None, None, None]:
    """Hold the lock of *uid* in *lock_dir* for the duration of the block.

    An OS-level lock (``flock`` on POSIX, ``filelock`` elsewhere), so a
    process that dies releases it; two threads of one process exclude each
    other too. The lock only avoids duplicate work: correctness rests on
    temporary files and atomic renames, never on the lock alone. Its file stays
    after the block; :func:`remove_idle_lock` removes it safely. A wait that
    lasts over two seconds is logged (once) on ``e3.store``.

    :param lock_dir: the directory of lock files (created if missing)
    :param uid: the resource uid
    :param timeout: seconds to wait for another process before giving up
    :param portable: use ``filelock`` on POSIX too (what Windows always
        uses; for the tests of that path)
    :raises StoreError: the lock was not acquired in time
    :raises OSError: the lock file cannot be created or locked, or
        *lock_dir* is no directory (a symbolic link or a file planted there:
        no lock file is created where it points)
    """
    _check_lock_dir(lock_dir)
    path = _lock_path(lock_dir, uid)
    if portable or sys.platform == "win32":
        with _file_lock(path, uid, timeout):
            yield
        return
    fd = _flock(path, uid, timeout)  # in _HELD
    try:
        yield
    finally:
        _release(fd)  # releases the lock


# The descriptors of the locks held by uid_lock, and the thread holding each.
# A forked child shares their open file descriptions, and so the locks: it
# closes those of the threads it does not have (see _forget_locks_of_others).
_HELD: dict[int, int] = {}


def _forget_locks_of_others() -> None:
    """In a forked child: close the lock descriptors that other threads of the
    parent held. Only closed, never unlocked: an unlock would release the
    parent's lock too. The thread that forked goes on in its block, and
    releases its own lock at the block's end."""
    me = threading.get_ident()
    for fd, holder in list(_HELD.items()):
        if holder != me:
            del _HELD[fd]
            with contextlib.suppress(OSError):
                os.close(fd)


reset_in_forked_child(_forget_locks_of_others)


def _lock_path(lock_dir: str, uid: str) -> str:
    return os.path.join(lock_dir, safe_component(uid) + _SUFFIX)


def _foreign_dir(lock_dir: str) -> bool:
    """Whether something that is no directory (a symbolic link, a file) stands
    at *lock_dir*: lock files made or removed there would be elsewhere."""
    try:
        return not stat.S_ISDIR(os.lstat(lock_dir).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False  # missing: made when a lock is taken


def _check_lock_dir(lock_dir: str) -> None:
    if _foreign_dir(lock_dir):
        raise NotADirectoryError(
            errno.ENOTDIR,
            "not a directory of the cache (a symbolic link or a file?),"
            " no lock file is made there",
            lock_dir,
        )


def _waiting(uid: str, timeout: float, by: str) -> None:
    WAIT_LOGGER.warning(
        "waiting for %s, locked by another %s (up to %g s)", uid, by, timeout
    )


def _flock(path: str, uid: str, timeout: float) -> int:
    """Open and lock the file at *path* within *timeout*; return its descriptor.

    The lock counts only if the file locked is still the one at *path*: one
    found idle may have been removed meanwhile (:func:`remove_idle_lock`),
    and whoever creates the next file at *path* would lock that one. Then the
    file at *path* is opened again.
    """
    if sys.platform == "win32":
        raise NotImplementedError("no flock on Windows: see _file_lock")
    import fcntl

    start = time.monotonic()
    end = start + timeout
    wait = _FIRST_WAIT
    told = False
    while True:
        # Not through a symbolic link planted in its place: that would lock,
        # or create, a file outside the cache (ELOOP: the caller goes on
        # unlocked, see Store._locked).
        fd = _open_creating(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW)
        # Listed while it waits too: a child forked meanwhile must not keep
        # the open file whose lock this thread is about to get.
        _HELD[fd] = threading.get_ident()
        try:
            while True:
                try:
                    # Each open file description is its own lock: a second
                    # open of the same file, even in this process, waits here.
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    now = time.monotonic()
                    left = end - now
                    if left <= 0:
                        raise _timed_out(uid, timeout, path) from None
                    if not told and now - start >= _LONG_WAIT:
                        _waiting(uid, timeout, "process")
                        told = True
                    time.sleep(min(wait, left))
                    wait = min(wait * 2, _LONGEST_WAIT)
            if _is_at(fd, path):
                return fd
            if time.monotonic() >= end:  # replaced again and again
                raise _timed_out(uid, timeout, path)
        except BaseException:
            _release(fd)
            raise
        _release(fd)


def _release(fd: int) -> None:
    """Close a lock descriptor of :func:`_flock`, unless a forked child's
    handler closed it already (its thread is not in the child)."""
    if _HELD.pop(fd, None) is not None:
        os.close(fd)


def _open_creating(path: str, flags: int) -> int:
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, 0o666)


def _is_at(fd: int, path: str) -> bool:
    """Whether the file open as *fd* is the one *path* names."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def remove_idle_lock(lock_dir: str, uid: str) -> bool:
    """Remove the lock file of *uid* unless a process holds or awaits it.

    Lock files are otherwise left in place, one per uid ever fetched. A file
    is removed only while this call holds its lock, and :func:`uid_lock`
    checks after locking that its file is still in place: a process that
    opened the file before it was removed opens the new one instead, so two
    processes never both hold the lock of a uid. Does nothing on Windows,
    where ``filelock`` removes its files itself.

    :param lock_dir: the directory of lock files
    :param uid: the resource uid
    :return: whether a file was removed
    :raises OSError: the file cannot be locked or removed (one that is
        missing, or that this user may not open, is left alone; so is a
        *lock_dir* that is no directory, and a directory where the file goes,
        with a warning)
    """
    if _foreign_dir(lock_dir):
        _logger.warning("%s is not a directory of the cache, left alone", lock_dir)
        return False
    return _remove_if_idle(_lock_path(lock_dir, uid))


def remove_idle_locks(
    lock_dir: str,
    *,
    sparing: frozenset[str] = frozenset(),
    idle_for: float = 0.0,
    now: float | None = None,
) -> int:
    """Remove every lock file of *lock_dir* that no process holds.

    Only regular files named ``*.lock`` are touched, and symbolic links of
    such names (removed; their targets are left alone); the directory itself
    stays. See :func:`remove_idle_lock`.

    :param lock_dir: the directory of lock files (missing is fine; something
        else than a directory there, a symbolic link or a file, is left alone
        with a warning)
    :param sparing: the names, less ``.lock``, of lock files to leave
    :param idle_for: leave the files changed less than this many seconds ago
    :param now: the current time (tests pass their own)
    :return: how many files were removed
    :raises OSError: a file cannot be opened or removed (the others are
        removed first); several, a
        :class:`~e3_typed_store._fs.RemovalsFailedError` naming each
    """
    if _foreign_dir(lock_dir):
        _logger.warning("%s is not a directory of the cache, left alone", lock_dir)
        return 0
    try:
        entries = list(os.scandir(lock_dir))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    failed: list[OSError] = []
    now = time.time() if now is None else now
    for entry in entries:
        # A directory where a lock file goes is left alone, and named (no
        # FIFO: opening one would block).
        if entry.name.endswith(_SUFFIX) and (
            entry.is_file(follow_symlinks=False)
            or entry.is_symlink()
            or entry.is_dir(follow_symlinks=False)
        ):
            if entry.name.removesuffix(_SUFFIX) in sparing:
                continue
            if idle_for > 0 and not _idle_since(entry, now - idle_for):
                continue
            try:
                removed += _remove_if_idle(entry.path)
            except OSError as exc:
                _logger.warning("cannot remove the lock file %s: %s", entry.path, exc)
                failed.append(exc)
    raise_removals_failed(failed)
    return removed


def _idle_since(entry: os.DirEntry[str], moment: float) -> bool:
    """Whether the lock file *entry* was last changed before *moment*."""
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False  # gone meanwhile
    return max(info.st_mtime, info.st_ctime) < moment


def _remove_if_idle(path: str) -> bool:
    if sys.platform == "win32":
        return False  # filelock removes its own files there
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (FileNotFoundError, PermissionError):
        return False  # gone, or another user's: not this call's to remove
    except IsADirectoryError:
        # No fetch made it (the lock of its uid fails, and the fetch goes on
        # unlocked); what it holds is not this call's to remove.
        _logger.warning("%s is a directory, not a lock file: left alone", path)
        return False
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        # A symbolic link where a lock file goes, which no fetch made: no
        # fetch can lock through it, so it only blocks the locking of its uid.
        # Removing it leaves its target alone.
        os.unlink(path)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # held: its holder and waiters keep it
        if not _is_at(fd, path):
            return False  # removed and made again meanwhile
        os.unlink(path)
        return True
    finally:
        os.close(fd)


@contextmanager
def _file_lock(path: str, uid: str, timeout: float) -> Generator[None, None, None]:
    """The portable lock, for systems without ``flock``."""
    from filelock import FileLock, Timeout

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with ExitStack() as stack:
        try:
            try:
                stack.enter_context(FileLock(path, timeout=min(timeout, _LONG_WAIT)))
            except Timeout:
                if timeout <= _LONG_WAIT:
                    raise
                _waiting(uid, timeout, "process")
                stack.enter_context(FileLock(path, timeout=timeout - _LONG_WAIT))
        except Timeout as exc:
            raise _timed_out(uid, timeout, path) from exc
        yield


def _timed_out(uid: str, timeout: float, path: str) -> StoreError:
    return StoreError(
        f"another process has held the lock of {uid} for over {timeout:g} s ({path})"
    )


class _ProcessLocks:
    """Locks of one process, one per (cache, uid) while some thread uses it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every lock (also in a forked child: its holders are not there)."""
        self._guard = threading.Lock()
        # The lock of each key, and how many threads hold or await it.
        self._locks: dict[tuple[int, str], tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(
        self, owner: object, uid: str, timeout: float
    ) -> Generator[None, None, None]:
        # The owner outlives the block (the caller refers to it), so its id
        # names no other object while the key is in the table.
        key = (id(owner), uid)
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            acquired = lock.acquire(timeout=min(timeout, _LONG_WAIT))
            if not acquired and timeout > _LONG_WAIT:
                _waiting(uid, timeout, "thread")
                # A wait beyond what the platform can time (math.inf, or over
                # 49 days on Windows) is a wait without a time limit.
                left = timeout - _LONG_WAIT
                acquired = lock.acquire(
                    timeout=left if left < threading.TIMEOUT_MAX else -1
                )
            if not acquired:
                raise StoreError(
                    f"another thread has held the lock of {uid} for over"
                    f" {timeout:g} s (in this process)"
                )
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


_PROCESS_LOCKS = _ProcessLocks()
reset_in_forked_child(_PROCESS_LOCKS.reset)


def process_lock(
    owner: object, uid: str, timeout: float
) -> contextlib.AbstractContextManager[None]:
    """Hold the lock of *uid* among the threads of this process that share *owner*.

    For a cache that has no directory to hold lock files (``MemoryCache``, or
    a foreign backend): threads sharing it then download a resource once.

    :param owner: what the threads share (the cache backend)
    :param uid: the resource uid
    :param timeout: seconds to wait for another thread before giving up
    :raises StoreError: the lock was not acquired in time
    """
    return _PROCESS_LOCKS.hold(owner, uid, timeout)
