"""Cross-process locks, one per resource uid."""

from __future__ import annotations

import os
from collections.abc import Generator
from contextlib import ExitStack, contextmanager

from e3_typed_store._fs import safe_component
from e3_typed_store.errors import StoreError

__all__ = ["uid_lock"]


@contextmanager
def uid_lock(lock_dir: str, uid: str, timeout: float) -> Generator[None, None, None]:
    """Hold the lock of *uid* in *lock_dir* for the duration of the block.

    An OS-level lock (``flock``), so a process that dies releases it. The lock
    only avoids duplicate work: correctness rests on temporary files and
    atomic renames, never on the lock alone.

    :param lock_dir: the directory of lock files (created if missing)
    :param uid: the resource uid
    :param timeout: seconds to wait for another process before giving up
    :raises StoreError: the lock was not acquired in time
    """
    # Imported here: a cache hit never needs a lock.
    from filelock import FileLock, Timeout

    os.makedirs(lock_dir, exist_ok=True)
    path = os.path.join(lock_dir, safe_component(uid) + ".lock")
    with ExitStack() as stack:
        try:
            stack.enter_context(FileLock(path, timeout=timeout))
        except Timeout as exc:
            raise StoreError(
                f"another process has held the lock of {uid} for over {timeout:g} s"
                f" ({path})"
            ) from exc
        yield
