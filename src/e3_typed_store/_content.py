"""The store's own verified copies of resources, kept under a cache directory.

Layout, under ``<cache_dir>/resources/<uid as a safe name>/``::

    payload/<file name>   a hard link to (or copy of) the verified download
    stamp.json            size, mtime, inode and device of the payload when it
                          was last verified (for the opt-in fast hit)
    digest                the algorithm (``sha256``...) of the digest that the
                          uid is, when the resource's metadata said so: what
                          ``cache verify`` checks the payload against

A copy here outlives the directory the resource was first downloaded to, as
Bazel's repository cache outlives its workspaces.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

from e3_typed_store._fs import (
    SAFE_COMPONENT_FORMS,
    is_within,
    place_in,
    raise_removals_failed,
    safe_component,
    unique_temp_name,
)
from e3_typed_store._types import ALGORITHMS, Algorithm

__all__ = ["USE_GRANULARITY", "ContentStore", "FileStamp", "KeptCopy"]

_logger = logging.getLogger("e3.store")


#: How finely :meth:`ContentStore.note_use` records uses, in seconds: a hit
#: writes to the cache at most once an hour per copy.
USE_GRANULARITY = 3600.0

_NOT_NAMES = frozenset({"", ".", ".."})

# The file naming the digest algorithm of a uid that is one.
_DIGEST_FILE = "digest"
# Written anew, never through a link planted in its place.
_DIGEST_OPEN_FLAGS: int = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
# More than any stamp file this module writes: a bigger one is not one.
_MAX_STAMP_BYTES = 64 << 10
_STAMP_OPEN_FLAGS: int = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
)


@dataclass(frozen=True)
class FileStamp:
    """What identifies a file's state without reading it."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @staticmethod
    def of(path: str) -> FileStamp:
        """Stamp the file at *path* as it is now.

        :raises OSError: the file cannot be stat'ed
        """
        return FileStamp.of_state(os.stat(path))

    @staticmethod
    def of_state(info: os.stat_result) -> FileStamp:
        """Stamp the file whose ``stat`` (or ``fstat``) is *info*."""
        return FileStamp(info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)

    def record(self, path: str) -> dict[str, object]:
        """The stamp file's content: *path* and this state of it."""
        return {
            "path": path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "inode": self.inode,
            "device": self.device,
        }


class KeptCopy(NamedTuple):
    """A copy kept by :meth:`ContentStore.keep`."""

    #: Where the copy is.
    path: str
    #: Whether it is the very file it was made from (a hard link to it).
    same_file: bool


class ContentStore:
    """Verified copies of resources, one directory per uid.

    :param cache_dir: the cache directory to keep them under
    """

    def __init__(self, cache_dir: str) -> None:
        self.root = os.path.join(cache_dir, "resources")

    def _uid_dir(self, uid: str) -> str:
        return os.path.join(self.root, safe_component(uid))

    def holds(self, path: str) -> bool:
        """Tell whether *path* is one of the copies kept here."""
        # A path of the shape keep() gives, root/<uid>/payload/<name>, needs no
        # resolving: only a writer of the cache directory could have put a
        # symbolic link on it, and such a writer can forge the stamps anyway.
        head, name = os.path.split(path)
        head, payload = os.path.split(head)
        top, uid_dir = os.path.split(head)
        if (
            top == self.root
            and payload == "payload"
            and uid_dir not in _NOT_NAMES
            and name not in _NOT_NAMES
        ):
            return True
        return is_within(path, self.root)

    def keep(self, uid: str, path: str, digest: Algorithm | None = None) -> KeptCopy:
        """Keep a copy of the file at *path* as the payload of *uid*.

        A previous payload of *uid* under another name, and its verification
        stamp, are removed: stamping the new copy is the caller's choice
        (:meth:`stamp`), and a stamp that cannot be written costs a fast hit,
        never the copy.

        :param uid: the resource uid
        :param path: the downloaded, verified file
        :param digest: the algorithm of the digest that *uid* is, when the
            resource's metadata says so (recorded for :meth:`digest_of`)
        :return: the path of the kept copy, and whether it is *path* itself
            (a hard link), so that *path*'s verification holds for it
        :raises OSError: the copy cannot be made, or the old stamp not
            removed, or ``resources`` is no directory (a symbolic link or a
            file planted there: nothing is written where it points)
        """
        self._check_root()
        uid_dir = self._uid_dir(uid)
        payload_dir = os.path.join(uid_dir, "payload")
        name = os.path.basename(path)
        kept = os.path.join(payload_dir, name)
        _no_link_in_place(uid_dir)
        _no_link_in_place(payload_dir)
        try:
            # The common case, a first copy: the link appears whole, with
            # nothing to replace and nothing else in the directory.
            os.makedirs(payload_dir)
            os.link(path, kept)
        except OSError:
            # A directory no fetch made at the copy's name would keep every
            # copy out; then the copy replaces whatever else stands there,
            # and an older copy of another name goes (a planted tree too).
            if _is_directory(kept):
                _remove_tree(kept)
            kept = place_in(path, payload_dir, name)
            for other in os.listdir(payload_dir):
                if other != name and not other.startswith("."):
                    _remove_tree(os.path.join(payload_dir, other))
            same = os.path.samefile(kept, path)
        else:
            same = True
        self.forget_stamp(uid)
        try:
            self._record_digest(uid_dir, digest)
        except OSError as exc:
            # The copy is whole and kept: without its digest file, `cache
            # verify` calls it unverifiable. A full disk or no inode left costs
            # that, never the copy.
            _logger.warning("cannot record the digest of %s: %s", uid, exc)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(uid_dir, _DIGEST_FILE))  # none stale
        return KeptCopy(kept, same)

    @staticmethod
    def _record_digest(uid_dir: str, digest: Algorithm | None) -> None:
        # Whole or not at all, and over whatever stands there (a link, a FIFO
        # whose open would block): a new file renamed into place.
        marker = os.path.join(uid_dir, _DIGEST_FILE)
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(marker).st_mode):  # one stat, no link followed
                _remove_tree(marker)
        if digest is None:
            try:
                os.unlink(marker)
            except FileNotFoundError:
                pass
            return
        temp = unique_temp_name(uid_dir, _DIGEST_FILE)
        fd = os.open(temp, _DIGEST_OPEN_FLAGS, 0o644)
        try:
            try:
                os.write(fd, digest.encode("ascii"))
            finally:
                os.close(fd)
            os.replace(temp, marker)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def digest_of(self, uid: str) -> Algorithm | None:
        """The algorithm of the digest that *uid* is, as recorded when its copy
        was kept; None when nothing says so (or nothing readable)."""
        try:
            text = _read_small_file(os.path.join(self._uid_dir(uid), _DIGEST_FILE))
        except OSError:
            return None
        for algorithm, length in ALGORITHMS.items():
            if text == algorithm.encode("ascii") and len(uid) == length:
                return algorithm
        return None

    def stamp(self, uid: str, path: str, verified: FileStamp | None = None) -> bool:
        """Record that the payload of *uid* at *path* was verified as it is now.

        :param verified: the file's state taken before it was verified: the
            stamp is written only if the file is still in that state (a write
            during the verification is no verified content)
        :return: whether the stamp was written
        :raises OSError: the stamp cannot be written (``resources`` is no
            directory, say)
        """
        self._check_root()
        now = FileStamp.of(path)
        if verified is not None and now != verified:
            return False
        uid_dir = self._uid_dir(uid)
        _no_link_in_place(uid_dir)
        os.makedirs(uid_dir, exist_ok=True)
        import json  # here: only the opt-in fast hits use stamps

        record = now.record(path)
        temp = unique_temp_name(uid_dir, "stamp.json")
        try:
            with open(temp, "w", encoding="utf-8") as stream:
                json.dump(record, stream)
            os.replace(temp, os.path.join(uid_dir, "stamp.json"))
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        return True

    def unchanged(self, uid: str, path: str) -> bool:
        """Tell whether *path* is unchanged since it was last stamped as verified.

        Any doubt -- no stamp, an unreadable one, another file -- answers False.
        """
        import json

        try:
            record: object = json.loads(
                _read_small_file(os.path.join(self._uid_dir(uid), "stamp.json"))
            )
            now = FileStamp.of(path)
        except (OSError, ValueError):
            return False
        if not isinstance(record, dict):
            return False
        return record == now.record(path)

    def remove(self, uid: str) -> None:
        """Remove the kept copy and the stamp of *uid*, if any.

        ``resources`` being no directory (a symbolic link, a file) is logged
        and nothing is removed. A tree that a fetch fills again meanwhile
        stays with what the fetch put there.

        :raises OSError: they exist but cannot be removed (the error names
            the full path)
        """
        if self._own_root():
            _remove_tree(self._uid_dir(uid))

    def clear(self, keep: frozenset[str] = frozenset()) -> None:
        """Remove every kept copy and stamp, those no entry names any more too.

        Only the directories named as a uid's are removed: anything else under
        ``resources`` stays, and so does ``resources`` when it is no directory
        (a symbolic link, a file; logged).

        :param keep: the directory names (:meth:`dir_name`) to leave alone
        :raises OSError: one exists but cannot be removed (the others are
            removed first); several, a :class:`RemovalsFailedError` naming each
        """
        failed: list[OSError] = []
        for name in self.dir_names():
            if name not in keep:
                try:
                    self.remove_dir(name)
                except OSError as exc:
                    _logger.warning("%s", exc)
                    failed.append(exc)
        raise_removals_failed(failed)

    def dir_names(self) -> list[str]:
        """The names of the directories of kept copies (links where one goes too).

        Empty when ``resources`` is no directory (a symbolic link, a file).
        """
        if not self._own_root():
            return []
        try:
            with os.scandir(self.root) as listing:
                return [
                    found.name
                    for found in listing
                    if SAFE_COMPONENT_FORMS.fullmatch(found.name)
                    and (found.is_dir(follow_symlinks=False) or found.is_symlink())
                ]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _own_root(self) -> bool:
        """Tell whether ``resources`` is missing or a directory; log it and
        answer False when something else stands there."""
        try:
            self._check_root()
        except NotADirectoryError as exc:
            _logger.warning("%s, left alone", exc)
            return False
        return True

    def _check_root(self) -> None:
        """Raise when something that is no directory stands at ``resources``:
        through a symbolic link there, the store would write and remove files
        outside the cache.

        :raises NotADirectoryError: it is a link, a file or another odd file
        """
        try:
            info = os.lstat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return  # missing (made by keep), or cache_dir itself is missing
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(
                errno.ENOTDIR,
                "not a directory of the cache (a symbolic link or a file?)",
                self.root,
            )

    @staticmethod
    def dir_name(uid: str) -> str:
        """The name of the directory that holds the kept copy of *uid*."""
        return safe_component(uid)

    def copies_in(self, name: str) -> list[str]:
        """The paths of the payloads in the directory named *name* (one, as a rule)."""
        payload_dir = os.path.join(self.root, name, "payload")
        try:
            return [
                os.path.join(payload_dir, found)
                for found in sorted(os.listdir(payload_dir))
                if not found.startswith(".")
            ]
        except OSError:
            return []

    def remove_dir(self, name: str) -> None:
        """Remove the directory named *name*, with its copy and stamp.

        :raises OSError: it exists but cannot be removed (see :meth:`remove`)
        """
        if self._own_root():
            _remove_tree(os.path.join(self.root, name))

    def note_use(self, uid: str) -> None:
        """Record that the copy of *uid* was just served, for
        :meth:`last_use`: at most once per :data:`USE_GRANULARITY` seconds,
        as the directory's mtime. Nothing is said when it cannot be (a
        read-only cache): a hit never fails for it. A time in the future (a
        clock set wrong, a file server's) is set right too.
        """
        uid_dir = self._uid_dir(uid)
        try:
            info = os.lstat(uid_dir)
            if stat.S_ISDIR(info.st_mode) and (
                abs(time.time() - info.st_mtime) > USE_GRANULARITY
            ):
                os.utime(uid_dir)
        except OSError:
            pass

    def last_use(self, uid: str) -> float | None:
        """When the copy of *uid* was last kept or served (to
        :data:`USE_GRANULARITY`), in seconds since the epoch; None when
        nothing is kept for it."""
        try:
            info = os.lstat(self._uid_dir(uid))
        except OSError:
            return None
        return info.st_mtime if stat.S_ISDIR(info.st_mode) else None

    def forget_stamp(self, uid: str) -> None:
        """Drop the verification stamp of *uid*, if any.

        :raises OSError: it cannot be removed, or ``resources`` is no directory
        """
        self._check_root()
        try:
            os.unlink(os.path.join(self._uid_dir(uid), "stamp.json"))
        except FileNotFoundError:
            pass


def _no_link_in_place(path: str) -> None:
    """Remove what stands where a directory of the store goes, if it is no
    directory: a symbolic link planted there would have the store write, and
    clean up, in a directory outside the cache. The link goes, not its target.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)


def _is_directory(path: str) -> bool:
    """Whether *path* is a directory itself (not a link to one)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove_tree(path: str) -> None:
    """Remove the directory at *path* with its content, or the link there.

    What vanishes meanwhile, and a directory that a fetch fills again
    meanwhile (``ENOTEMPTY``: it keeps a fresh copy there), are no errors.

    :raises OSError: something else cannot be removed; the error names its
        full path (the others are removed first)
    """
    import shutil

    failed: list[OSError] = []

    def note(function: object, where: str, exc: BaseException) -> None:
        if isinstance(exc, FileNotFoundError):
            return
        if function is os.rmdir and isinstance(exc, OSError):
            if exc.errno in {errno.ENOTEMPTY, errno.EEXIST}:
                _logger.debug("%s filled again meanwhile, left", where)
                return
        if not isinstance(exc, OSError):
            raise exc
        # shutil names the file relative to its directory: the full path.
        if exc.errno is None:
            failed.append(OSError(f"cannot remove {where}: {exc}"))
        else:
            failed.append(type(exc)(exc.errno, exc.strerror, where))

    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            # A link (not the directory it points to), or a file where the
            # store's directory goes.
            os.unlink(path)
        elif sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=note)
        else:
            shutil.rmtree(
                path,
                onerror=lambda function, where, info: note(function, where, info[1]),
            )
    except FileNotFoundError:
        pass
    for exc in failed[1:]:
        _logger.warning("%s", exc)
    if failed:
        raise failed[0]


def _read_small_file(path: str) -> bytes:
    """Read a regular file of this store's own: not through a link, never a
    FIFO (whose open would block) or a device, nor one too big for it.

    :raises OSError: it is none of these
    """
    fd = os.open(path, _STAMP_OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_STAMP_BYTES:
            raise OSError(f"not a stamp file: {path}")
        return os.read(fd, _MAX_STAMP_BYTES + 1)
    finally:
        os.close(fd)
