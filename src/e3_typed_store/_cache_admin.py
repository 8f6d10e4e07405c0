"""Administration of a FileCache and the copies a store keeps beside it.

Listing, verifying, pruning and clearing, for the command line: an entry is a
``FileCache`` entry plus the kept payload it points to (see docs/caching.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass

from e3_typed_store._content import ContentStore
from e3_typed_store._fs import RemovalsFailedError
from e3_typed_store._hashing import file_digest
from e3_typed_store._locking import (
    LOCK_DIR,
    remove_idle_lock,
    remove_idle_locks,
    uid_lock,
)
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.errors import CacheError, StoreError

__all__ = [
    "CachedItem",
    "claimed_by_e3_core",
    "clear_cache",
    "list_items",
    "parse_age",
    "parse_size",
    "prune",
    "FileIdentity",
    "identity_of",
    "remove_item",
    "remove_item_if_unchanged",
    "verify_item",
]

_logger = logging.getLogger("e3.store")


@dataclass(frozen=True)
class CachedItem:
    """One resource of the cache, as the command line shows it."""

    uid: str
    path: str
    #: Bytes of the payload; None when it is missing.
    size: int | None
    #: When the payload was last used (seconds since the epoch): kept or
    #: served by a hit, to the hour (see :meth:`ContentStore.note_use`); for
    #: a file the cache does not keep itself, when it was written. None when
    #: missing.
    mtime: float | None
    expiry: float


def list_items(cache: FileCache) -> list[CachedItem]:
    """List the valid, unexpired entries of *cache*, least recently used first.

    :param cache: the cache to list
    :raises NotADirectoryError: ``cache_dir`` is no directory
    """
    _check_cache_dir(cache)
    content = ContentStore(cache.cache_dir)
    items: list[CachedItem] = []
    for entry in cache.iter_entries():
        path = entry.value.local_path
        size: int | None = None
        mtime: float | None = None
        with contextlib.suppress(OSError):
            info = os.lstat(path)
            # What is no regular file (a FIFO, a directory, a symbolic link,
            # which a fetch never serves) is no payload: missing, as
            # verify_item says.
            if stat.S_ISREG(info.st_mode):
                size, mtime = info.st_size, info.st_mtime
                if content.holds(path):
                    mtime = max(mtime, content.last_use(entry.uid) or mtime)
        items.append(CachedItem(entry.uid, path, size, mtime, entry.expiry))
    return sorted(items, key=lambda item: (item.mtime or 0.0, item.uid))


# Opening a payload to look at it: never blocking on a FIFO in its place, nor
# following a symbolic link there (a fetch never serves one).
_PROBE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)


def verify_item(cache: FileCache, item: CachedItem) -> str:
    """Re-hash a cached payload against its uid, when its uid is its digest.

    A uid is taken for a digest only when the resource's metadata said so as
    its copy was kept (a SHA-256 of a name looks the same and is none).

    :param cache: the cache holding the entry
    :param item: the entry to check
    :return: ``ok``, ``corrupted``, ``missing`` (no regular file there: a
        symbolic link is none either, as a fetch never serves one),
        ``unreadable`` when it is there but this user may not read it
        (another user's, say), or ``unverifiable`` when nothing says which
        digest the uid is, if any
    """
    try:
        fd = os.open(item.path, _PROBE_FLAGS)
    except PermissionError as exc:
        # There, but not this user's to read: not to be removed as missing.
        _logger.warning("cannot read %s: %s", item.path, exc)
        return "unreadable"
    except OSError:
        return "missing"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "missing"  # no regular file (a FIFO) where it goes
    finally:
        os.close(fd)
    algorithm = ContentStore(cache.cache_dir).digest_of(item.uid)
    if algorithm is None:
        return "unverifiable"
    try:
        actual = file_digest(item.path, algorithm)
    except PermissionError as exc:
        # There, but not this user's to read: not to be removed as missing.
        _logger.warning("cannot read %s: %s", item.path, exc)
        return "unreadable"
    except OSError:
        return "missing"  # gone, or no regular file (a FIFO) where it goes
    return "ok" if actual == item.uid.lower() else "corrupted"


# A file as lstat sees it: device, inode, size, mtime in nanoseconds.
FileIdentity = tuple[int, int, int, int]


def identity_of(path: str) -> FileIdentity | None:
    """What tells the file at *path* from another put there later; None when
    there is none (a symbolic link is looked at itself)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def remove_item_if_unchanged(
    cache: FileCache, item: CachedItem, seen: FileIdentity | None
) -> bool:
    """Remove *item* (:func:`remove_item`) if its entry still names its path,
    and the file there is still the one *seen* before it was checked; return
    whether it was removed.

    A fetch may keep a new copy of the resource while a long check of the old
    one runs (under another name, or the same): that copy is not the one
    found bad, and stays. The entry is looked at again, and removed, under
    the uid's lock, which a fetch holds while it records a copy; a fetch
    holding it now leaves the entry in place too.

    :raises OSError: as :func:`remove_item`
    """
    lock_dir = os.path.join(cache.cache_dir, LOCK_DIR)
    with contextlib.ExitStack() as locked:
        try:
            locked.enter_context(uid_lock(lock_dir, item.uid, 0))
        except StoreError:
            return False  # a fetch holds it: the entry is changing
        except OSError:
            pass  # no lock to be had (a file at `locks`): as a fetch goes on
        entry = cache.get(item.uid)
        if entry is None or entry.local_path != item.path:
            return False
        if identity_of(item.path) != seen:
            return False
        remove_item(cache, item.uid)
    # Its lock file goes once released (remove_item's attempt found it held).
    with contextlib.suppress(OSError):
        remove_idle_lock(lock_dir, item.uid)
    return True


def remove_item(
    cache: FileCache, uid: str, claimed: frozenset[str] | None = None
) -> None:
    """Remove the entry of *uid*, the payload the store keeps for it, and its
    lock file unless a process holds it.

    The payload stays when e3-core's ``FileCache``, sharing the directory, has
    an entry for *uid* too: that entry names the same file.

    :param cache: the cache holding the entry
    :param uid: the resource uid
    :param claimed: what :func:`claimed_by_e3_core` answers, if known
    :raises OSError: the entry, the payload or the lock file cannot be
        removed (what can be is removed first; the error names the full
        paths), or ``cache_dir`` is no directory
    """
    _check_cache_dir(cache)
    if claimed is None:
        claimed = claimed_by_e3_core(cache)
    problems: list[str] = []
    with _noted(problems):
        cache.delete(uid)
    content = ContentStore(cache.cache_dir)
    if content.dir_name(uid) not in claimed:
        with _noted(problems):
            content.remove(uid)
    with _noted(problems):
        remove_idle_lock(os.path.join(cache.cache_dir, LOCK_DIR), uid)
    _raise_if_any(problems)


def _check_cache_dir(cache: FileCache) -> None:
    """Raise when ``cache_dir`` is there but no directory (a missing one is
    an empty cache).

    :raises NotADirectoryError: it is a file
    """
    try:
        info = os.stat(cache.cache_dir)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(
            errno.ENOTDIR, "the cache directory is not a directory", cache.cache_dir
        )


@contextmanager
def _noted(problems: list[str]) -> Generator[None, None, None]:
    """Log a removal that fails in the block, add it to *problems*, go on.

    The removals of an entry that failed are added one by one, as they were
    logged: a list of them is not nested in the list of a whole cache's.
    """
    try:
        yield
    except RemovalsFailedError as exc:
        problems.extend(exc.problems)
    except (OSError, CacheError) as exc:
        _logger.warning("%s", exc)
        problems.append(str(exc))


def _raise_if_any(problems: list[str]) -> None:
    """Raise one error naming every removal that failed, if any did."""
    # A copy whose removal failed with its entry fails again when the
    # copies no entry names are removed: named once.
    problems = list(dict.fromkeys(problems))
    if problems:
        raise RemovalsFailedError(problems)


def claimed_by_e3_core(cache: FileCache) -> frozenset[str]:
    """The kept-copy directories that e3-core's entries in the same directory use.

    e3-core's ``FileCache`` keeps ``<uid>.cache`` pickles directly in
    ``cache_dir``; a store recording into it keeps its copies here as it does
    for this package's cache. Those pickles are never read (reading runs
    code): their names are their uids.

    :param cache: the cache whose directory is looked at
    """
    try:
        names = os.listdir(cache.cache_dir)
    except OSError:
        return frozenset()
    return frozenset(
        ContentStore.dir_name(name.removesuffix(_E3_CORE_SUFFIX))
        for name in names
        if name.endswith(_E3_CORE_SUFFIX) and name != _E3_CORE_SUFFIX
    )


def clear_cache(cache: FileCache) -> int:
    """Remove every entry, every kept payload and every lock file no process
    holds; return how many entries there were.

    The payloads that e3-core's entries in the same directory name stay
    (see :func:`claimed_by_e3_core`).

    What cannot be removed (another user's file, say) is logged and left;
    the rest is removed all the same, then one error names what was left.
    What is no directory where the store's directories go (a symbolic link
    or a file at ``entries``, ``resources`` or ``locks``) is left alone,
    logged, and so is what it points to.

    :param cache: the cache to clear
    :raises OSError: something could not be removed, or ``cache_dir`` is no
        directory
    """
    _check_cache_dir(cache)
    claimed = claimed_by_e3_core(cache)
    count = len(list_items(cache))
    # Three sweeps, not a removal per entry then the sweeps: what fails to
    # go is named once. The entries, and the temporary files of writes cut
    # short, go first.
    problems: list[str] = []
    with _noted(problems):
        cache.clear()
    # Every copy, those whose entry was lost, expired, unreadable or named as
    # an older version named it too: nothing would use or remove them.
    with _noted(problems):
        ContentStore(cache.cache_dir).clear(keep=claimed)
    # The locks no process holds, those of uids with no entry too.
    with _noted(problems):
        remove_idle_locks(os.path.join(cache.cache_dir, LOCK_DIR))
    _raise_if_any(problems)
    return count


def prune(
    cache: FileCache,
    max_size: int | None,
    older_than: float | None,
    now: float | None = None,
) -> list[CachedItem]:
    """Evict the entries not used for longer than *older_than*, then the least
    recently used down to *max_size* (see :attr:`CachedItem.mtime`).

    Entries whose payload is missing are evicted too, and so are the kept
    copies that no entry names any more (an entry that expired, one lost),
    and the idle lock files of uids with no entry (a fetch that failed), once
    an hour old.

    :param cache: the cache to prune
    :param max_size: the bound on the total size of the payloads, in bytes
    :param older_than: the age, in seconds, past which an entry goes
    :param now: the current time (tests pass their own)
    :return: the evicted entries
    :raises OSError: something could not be removed (the rest is, first; see
        :func:`clear_cache`), or ``cache_dir`` is no directory
    """
    now = time.time() if now is None else now
    _check_cache_dir(cache)
    claimed = claimed_by_e3_core(cache)
    evicted: list[CachedItem] = []
    kept: list[CachedItem] = []
    for item in list_items(cache):
        too_old = older_than is not None and (
            item.mtime is None or now - item.mtime > older_than
        )
        (evicted if item.size is None or too_old else kept).append(item)
    if max_size is not None:
        total = sum(item.size or 0 for item in kept)
        while kept and total > max_size:
            oldest = kept.pop(0)
            total -= oldest.size or 0
            evicted.append(oldest)
    problems: list[str] = []
    for item in evicted:
        with _noted(problems):
            remove_item(cache, item.uid, claimed)
    root = ContentStore(cache.cache_dir).root
    in_use = claimed | {
        name
        for item in kept
        # The name a uid has now, and the one its entry's path names (early builds
        # kept upper-case uids as they were).
        for name in (ContentStore.dir_name(item.uid), _top_dir(item.path, root))
    }
    orphans = _remove_orphans(cache, in_use, now, problems)
    with _noted(problems):
        # A fetch that failed leaves its lock file, and no entry to go with:
        # gone with the orphans, at their age.
        remove_idle_locks(
            os.path.join(cache.cache_dir, LOCK_DIR),
            sparing=in_use,
            idle_for=_ORPHAN_AGE,
            now=now,
        )
    _raise_if_any(problems)
    return evicted + orphans


def _top_dir(path: str, root: str) -> str:
    """The first component of *path* below *root* ('' if it is not below it)."""
    try:
        relative = os.path.relpath(path, root)
    except ValueError:  # another drive, on Windows
        return ""
    head = relative.split(os.sep, 1)[0]
    return "" if head in {os.curdir, os.pardir} else head


def _remove_orphans(
    cache: FileCache, in_use: frozenset[str], now: float, problems: list[str]
) -> list[CachedItem]:
    """Remove the kept copies that no entry names any more (an expired entry
    is dropped when read, its copy stays), once they are older than
    :data:`_ORPHAN_AGE`: younger, one may be a download kept by a store that
    has not yet written its entry.

    :param problems: where the removals that fail are added
    :return: them, as entries named after their directories, expired
    """
    content = ContentStore(cache.cache_dir)
    removed: list[CachedItem] = []
    for name in content.dir_names():
        if name in in_use:
            continue
        copies = content.copies_in(name)
        try:
            # ctime: linking a download in as the kept copy sets it, whatever
            # mtime the download kept.
            stats = [os.stat(path) for path in copies]
        except OSError:
            continue  # changing meanwhile: next time
        if any(now - max(s.st_mtime, s.st_ctime) < _ORPHAN_AGE for s in stats):
            continue
        try:
            content.remove_dir(name)
        except OSError as exc:
            _logger.warning("%s", exc)
            problems.append(str(exc))
            continue
        path = copies[0] if copies else os.path.join(content.root, name)
        size = sum(s.st_size for s in stats)
        mtime = min((s.st_mtime for s in stats), default=None)
        removed.append(CachedItem(name, path, size, mtime, 0.0))
    return removed


# e3-core's FileCache names its entries <uid>.cache.
_E3_CORE_SUFFIX = ".cache"
# How old a kept copy no entry names must be before prune removes it.
_ORPHAN_AGE = 3600.0

# A number, then a multiple of 1024 (k, m, g, t, each with an optional b, i
# or ib), or b, or nothing.
_SIZE = re.compile(
    r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])(?:ib?|b)?|b)?\s*", re.IGNORECASE
)
# More digits than any size has (and than int() converts by default).
_LONGEST_SIZE_TEXT = 64
# Past any disk: a size this large is a mistake.
_LARGEST_SIZE = 1 << 63
_AGE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """Parse a size such as ``500M``, ``1.5GiB`` or ``1024`` into bytes (units of 1024).

    :param text: the size
    :raises ValueError: it is not a size
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (try 500M, 2G, 1024)")
    if len(match.group(1)) > _LONGEST_SIZE_TEXT:
        raise ValueError(f"not a size: {text[:20]!r}... (too many digits)")
    from fractions import Fraction  # exact: no float rounds a size

    unit = (match.group(2) or "").lower()
    size = int(Fraction(match.group(1)) * 1024 ** " kmgt".index(unit or " "))
    if size > _LARGEST_SIZE:
        raise ValueError(f"not a size: {text!r} (too large)")
    return size


def parse_age(text: str) -> float:
    """Parse an age such as ``30d``, ``12h``, ``90m`` or ``3600`` into seconds.

    :param text: the age
    :raises ValueError: it is not an age
    """
    match = _AGE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an age: {text!r} (try 30d, 12h, 90m, 3600s, 2w)")
    return float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]
