"""A store of resources in a local or network-mounted directory.

The typical source is a mirror on NFS: the files are there already, but a
build wants its own verified copy that does not change when the mirror does.
A query names the file, by path or ``file://`` URL, and its digest, with the
digest keys of :class:`~e3_typed_store.backends.http_simple_store.HTTPSimpleStore`::

    store = FileStore({"root": "/mirror"}, cache)
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": digest})
    info = store.get_resource_metadata({"url": "file:///mirror/x.tgz", "sha": sha1})
    path = store.download_resource(info, "/tmp/dest")

The uid of a resource is its digest, as in the HTTP store, so a resource
fetched over HTTP and the same file on a mirror share a cache entry.

Paths and the root:

- with a configured ``root``, a relative path is resolved against it, and
  every path -- relative, absolute or from a URL -- must lie inside it, both
  as written (``..`` cannot climb out: :class:`InvalidQueryError` from
  ``get_resource_metadata``) and once symbolic links are resolved at download
  time (a link pointing out of the root: :class:`DownloadError`), and once
  more on the file opened, where the system says which file a descriptor is
  (Linux, macOS: a directory swapped for a link meanwhile is caught); links
  that stay inside the root are followed;
- without a root, a path must be absolute and any file the process can read
  is served.

A ``file://`` URL has an empty host or ``localhost`` (in any case), no query
and no fragment; its path is percent-decoded into the bytes of a file name,
whatever their encoding.

Copying: the file is never hard-linked. A hard link would share the mirror's
inode, so a later change on the mirror would silently change the cached copy
too (and the store keeps its own hard link of the result in the cache
directory). Instead the content is cloned with ``ioctl(FICLONE)`` when the
filesystem supports it (a copy-on-write reflink, on Btrfs, XFS...) and then
hashed, or else copied and hashed in the same pass; either way it reads the
data once. A copy leaves a hole where the source has a run of zeros (a
sparse disk image, say), as ``cp`` does, instead of writing them out. The
copy is written to a temporary file of the destination directory and renamed
into place only once its digest matches, so a failure leaves nothing in the
destination. A source that changes during the copy
gives a digest mismatch. Only regular files are served: a directory, a FIFO or
a device is a :class:`DownloadError`. A copy has the source's permission bits
less the umask, as ``cp`` gives them: a file only its owner may read is not
made readable to all in a shared cache. As with ``cp``, a copy is never
set-user-ID or set-group-ID: a mirror's setuid file fetched by root is no
setuid-root program.

The file in the destination has the source's base name when that is a safe
name, and the digest otherwise.

.. versionadded:: 0.1
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import unquote_to_bytes, urlsplit

from e3_typed_store._digest_info import DIGEST_KEYS, DigestResourceInfo, query_digest
from e3_typed_store._fs import SparseWriter, create_unnamed, publish, safe_file_name
from e3_typed_store._hashing import Algorithm
from e3_typed_store._query import required_str
from e3_typed_store._types import CachedResource, is_mapping, override
from e3_typed_store.backends.base import Store, StoreOptions
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.errors import (
    DestinationError,
    DownloadError,
    IntegrityError,
    InvalidConfigurationError,
    InvalidQueryError,
)

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

__all__ = [
    "FileStore",
    "FileStoreConfiguration",
    "FileStoreQuery",
    "FileStoreResourceInfo",
    "FileStoreSettings",
    "logger",
]

#: The logger of this driver.
logger = logging.getLogger("e3.store.filestore")

_LOCATION_KEYS = ("path", "url")
_MIN_CHUNK = 1 << 12
_MAX_CHUNK = 1 << 26
# linux/fs.h: _IOW(0x94, 9, int)
_FICLONE = 0x40049409
# What a failed FICLONE says when cloning cannot work here: fall back to a copy.
_NO_CLONE = frozenset(
    {
        errno.EOPNOTSUPP,
        errno.ENOTSUP,
        errno.EXDEV,
        errno.EINVAL,
        errno.ENOTTY,
        errno.EBADF,
        errno.EPERM,
        errno.ENOSYS,
    }
)


class FileStoreQuery(TypedDict, total=False):
    """The query of :class:`FileStore`: a file and exactly one digest.

    Exactly one of ``path`` and ``url`` is given.

    .. versionadded:: 0.1
    """

    #: The file's path: absolute, or relative to the configured root.
    path: str
    #: The file's ``file://`` URL.
    url: str
    #: Its SHA-1, hex.
    sha: str
    #: Its SHA-256, hex.
    sha256: str
    #: Its SHA-512, hex.
    sha512: str


class FileStoreConfiguration(TypedDict, total=False):
    """The configuration of :class:`FileStore`; every key is optional.

    The keys and their defaults are the fields of :class:`FileStoreSettings`,
    plus ``offline``, ``trust_unchanged_files``, ``lock_timeout`` and
    ``cache_timeout``, which set
    the store's :class:`~e3_typed_store.backends.base.StoreOptions` when no
    ``options`` are given.

    .. versionadded:: 0.1
    """

    root: str
    reflink: bool
    chunk_size: int
    # Read into the store's StoreOptions unless options= is given.
    offline: bool
    trust_unchanged_files: bool
    lock_timeout: float
    cache_timeout: int | None


@dataclass(frozen=True)
class FileStoreSettings:
    """The validated settings of :class:`FileStore`.

    :param root: the directory every served file must lie in, made absolute;
        None to serve absolute paths anywhere
    :param reflink: clone the file (``FICLONE``) when the filesystem allows
    :param chunk_size: the most bytes copied at once, from 4 KiB to 64 MiB
    :raises InvalidConfigurationError: a value is of the wrong type or out of
        range

    .. versionadded:: 0.1
    """

    root: str | None = None
    reflink: bool = True
    chunk_size: int = 1 << 20

    def __post_init__(self) -> None:
        # Also when built directly rather than from a configuration.
        _root(self.root)
        _flag("reflink", self.reflink)
        _chunk_size(self.chunk_size)

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, object] | None) -> Self:
        """Validate a configuration mapping into settings.

        :param configuration: the store configuration; None or ``{}`` for the
            defaults
        :raises InvalidConfigurationError: a key is unknown, or its value is of
            the wrong type or out of range
        """
        if configuration is None:
            return cls()
        if not is_mapping(configuration):
            raise InvalidConfigurationError(
                "store_configuration", configuration, "expected a mapping"
            )
        default = cls()
        known = {"root", "reflink", "chunk_size"} | StoreOptions.KEYS
        for key, value in configuration.items():
            if not isinstance(key, str) or key not in known:
                name = key if isinstance(key, str) else repr(key)
                raise InvalidConfigurationError(name, value, "unknown key")
        reflink = configuration.get("reflink", default.reflink)
        if not isinstance(reflink, bool):
            raise InvalidConfigurationError(
                "reflink", reflink, "expected true or false"
            )
        return cls(
            root=_root(configuration.get("root")),
            reflink=reflink,
            chunk_size=_chunk_size(configuration.get("chunk_size", default.chunk_size)),
        )


class FileStoreResourceInfo(DigestResourceInfo):
    """A file, with the digest its content must have.

    :param location: the path or URL as the query gave it, for messages
    :param path: the file's absolute, normalized path
    :param sha: its hex digest, in any case
    :param algorithm: the algorithm of *sha*
    :raises InvalidQueryError: the digest is malformed or the path not absolute

    .. versionadded:: 0.1
    """

    _logger = logger

    def __init__(
        self, location: str, path: str, sha: str, algorithm: Algorithm = "sha256"
    ) -> None:
        if not os.path.isabs(path):
            raise InvalidQueryError("path", path, "expected an absolute path")
        super().__init__(sha, algorithm)
        self._location = location
        self._path = os.path.normpath(path)

    @property
    def location(self) -> str:
        """The path or URL as the query gave it."""
        return self._location

    @property
    def path(self) -> str:
        """The file's absolute, normalized path (links not resolved)."""
        return self._path

    @property
    def file_name(self) -> str:
        """The name the resource gets in a destination directory."""
        name = os.path.basename(self._path)
        return name if _is_safe_name(name) else self._digest

    @override
    def _location_key(self) -> str:
        return self._path

    @override
    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(location={self._location!r}, "
            f"path={self._path!r}, sha={self._digest!r}, "
            f"algorithm={self._algorithm!r})"
        )


class FileStore(Store[FileStoreResourceInfo, FileStoreQuery, FileStoreConfiguration]):
    """Copy resources out of a directory, checked against their digest.

    :param store_configuration: the settings, validated into :attr:`settings`;
        None for the defaults (no root: absolute paths only)
    :param cache_backend: where copied resources are recorded; None to
        disable caching
    :param options: cache behaviour of the store base; when None, read from
        the configuration's ``offline``, ``trust_unchanged_files``,
        ``lock_timeout`` and ``cache_timeout`` keys
    :raises InvalidConfigurationError: a configuration key is unknown or its
        value is bad

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store_configuration: FileStoreConfiguration | None,
        cache_backend: CacheProtocol[CachedResource] | None,
        *,
        options: StoreOptions | None = None,
    ) -> None:
        configuration: FileStoreConfiguration = (
            store_configuration if store_configuration is not None else {}
        )
        #: The validated settings.
        self.settings = FileStoreSettings.from_configuration(configuration)
        super().__init__(configuration, cache_backend, options=options)

    @override
    def get_resource_metadata(self, query: FileStoreQuery) -> FileStoreResourceInfo:
        """Check the query and return the resource's metadata; no file access.

        :param query: exactly one of ``path`` and ``url``, and exactly one of
            ``sha`` (SHA-1), ``sha256`` or ``sha512``
        :raises InvalidQueryError: a key is missing, unknown or duplicated; a
            value is not a string; the path is relative without a root or
            climbs out of the root; the URL is not a local ``file://`` URL; the
            digest is not hex of the right length
        """
        return _parse_query(query, self.settings.root)

    @override
    def download_resource_content(
        self, metadata: FileStoreResourceInfo, dest: str
    ) -> str:
        """Copy the file into *dest*, bypassing the cache.

        :param metadata: the resource's metadata
        :param dest: the directory to copy into (created if missing)
        :return: the path of the copy, inside *dest*
        :raises DestinationError: *dest* cannot take the copy (a full disk...)
        :raises DownloadError: the file is missing, not a regular file, out of
            the root once links are resolved, or cannot be read
        :raises IntegrityError: its content has another digest
        """
        source = self._resolved(metadata)
        location = metadata.location
        if "\0" in dest:  # os calls would raise a bare ValueError
            raise DestinationError(location, dest, "a NUL byte in the path")
        # Within a root, the path is resolved already: a link appearing at it
        # since then is not followed.
        flags = _READ_FLAGS if self.settings.root is None else _READ_FLAGS | _NOFOLLOW
        try:
            fd = os.open(source, flags)
        except FileNotFoundError as exc:
            raise DownloadError(location, "no such file") from exc
        except OSError as exc:
            raise DownloadError(location, f"cannot open {source}: {exc}") from exc
        try:
            self._check_opened(fd, metadata)
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise DownloadError(location, f"not a regular file: {_kind(mode)}")
            return self._copy(fd, metadata, dest, stat.S_IMODE(mode))
        finally:
            os.close(fd)

    def _check_opened(self, fd: int, metadata: FileStoreResourceInfo) -> None:
        """Check that the file opened lies in the root, where the system says
        which file a descriptor is: a directory of the path swapped for a link
        between its resolution and the open would have led out of it."""
        root = self.settings.root
        opened = _opened_path(fd) if root is not None else None
        if root is not None and opened is not None:
            if not _inside(opened, os.path.realpath(root)):
                raise DownloadError(
                    metadata.location, f"opened {opened}, outside the root {root}"
                )

    def _resolved(self, metadata: FileStoreResourceInfo) -> str:
        root = self.settings.root
        if root is None:
            return metadata.path
        real_root = os.path.realpath(root)
        real = os.path.realpath(metadata.path)
        if not _inside(real, real_root):
            raise DownloadError(
                metadata.location, f"resolves to {real}, outside the root {root}"
            )
        return real

    def _copy(
        self, source_fd: int, metadata: FileStoreResourceInfo, dest: str, mode: int
    ) -> str:
        location = metadata.location
        try:
            os.makedirs(dest, exist_ok=True)
            name = metadata.file_name
            # No name until published where the system allows: a process
            # killed while copying leaves nothing in dest. Read-write, so that
            # a clone can be hashed through the same descriptor. The source's
            # permission bits, less the umask, as cp gives them: a file only
            # its owner may read is no world-readable copy in a shared cache.
            target_fd, temp = create_unnamed(dest, name, os.O_RDWR, mode)
        except OSError as exc:
            raise DestinationError(
                location, dest, f"cannot write into {dest}: {exc}"
            ) from exc
        try:
            try:
                actual = self._transfer(
                    source_fd, target_fd, metadata.algorithm, location, dest
                )
            except OSError as exc:  # writes are DestinationErrors already
                raise DownloadError(location, f"cannot read it: {exc}") from exc
            if actual != metadata.digest:
                raise IntegrityError(location, metadata.digest, actual)
        except BaseException:
            os.close(target_fd)
            _unlink_quietly(temp)
            raise
        target = os.path.join(dest, name)
        try:
            publish(target_fd, temp, target)  # closes target_fd
        except OSError as exc:
            _unlink_quietly(temp)
            raise DestinationError(
                location, dest, f"cannot move the copy to {target}: {exc}"
            ) from exc
        return target

    def _transfer(
        self,
        source_fd: int,
        target_fd: int,
        algorithm: Algorithm,
        location: str,
        dest: str,
    ) -> str:
        """Fill *target_fd* with the content of *source_fd*; return its digest.

        :raises DestinationError: the target cannot be written
        :raises OSError: the source cannot be read
        """
        digest = hashlib.new(algorithm)
        try:
            cloned = self.settings.reflink and _clone(source_fd, target_fd)
        except OSError as exc:  # a failure that is not "cannot clone here"
            raise DestinationError(
                location, dest, f"cannot clone it into {dest}: {exc}"
            ) from exc
        if cloned:
            # The clone shares the source's blocks: hashing it is the one pass.
            os.lseek(target_fd, 0, os.SEEK_SET)
            reading, writing = target_fd, None
        else:
            reading, writing = source_fd, target_fd
        buffer = bytearray(self.settings.chunk_size)
        view = memoryview(buffer)
        # Where the source has runs of zeros (a sparse file), the copy has
        # holes: a gigabyte of them is not written out (see SparseWriter).
        writer = SparseWriter(writing) if writing is not None else None
        with open(reading, "rb", buffering=0, closefd=False) as stream:
            while size := stream.readinto(view):
                chunk = view[:size]
                digest.update(chunk)
                if writer is not None:
                    try:
                        writer.write(chunk)
                    except OSError as exc:  # a full disk, say
                        raise DestinationError(
                            location, dest, f"cannot copy it into {dest}: {exc}"
                        ) from exc
        if writer is not None:
            try:
                writer.finish()
            except OSError as exc:
                raise DestinationError(
                    location, dest, f"cannot copy it into {dest}: {exc}"
                ) from exc
        return digest.hexdigest()


def _read_flags() -> int:
    if sys.platform == "win32":
        return os.O_RDONLY | os.O_BINARY
    # O_NONBLOCK: a FIFO in place of the file does not block the open (it is
    # then refused as not a regular file).
    return os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


_READ_FLAGS = _read_flags()
_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)


def _clone(source_fd: int, target_fd: int) -> bool:
    """Make *target_fd* a copy-on-write clone of *source_fd*, if the OS allows."""
    if not sys.platform.startswith("linux"):
        return False
    import fcntl

    try:
        fcntl.ioctl(target_fd, _FICLONE, source_fd)
    except OSError as exc:
        if exc.errno in _NO_CLONE:
            return False
        raise
    return True


def _unlink_quietly(path: str | None) -> None:
    if path is None:  # an unnamed file: it went with its descriptor
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot remove %s: %s", path, exc)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def _opened_path(fd: int) -> str | None:
    """The path of the file open as *fd*, as the system knows it: through
    ``/proc/self/fd`` on Linux, ``F_GETPATH`` on macOS; None elsewhere."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    if sys.platform == "darwin":
        import fcntl

        try:
            path = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024))
        except OSError:
            return None
        return os.fsdecode(path.split(b"\0", 1)[0])
    return None


def _inside(path: str, directory: str) -> bool:
    # Both absolute and normalized: a lexical test.
    return path != directory and os.path.commonpath([directory, path]) == directory


def _is_safe_name(name: str) -> bool:
    # Not hidden, and kept whole by the rule names from servers go through.
    return not name.startswith(".") and safe_file_name(name) == name


def _root(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidConfigurationError(
            "root", value, f"expected a directory path, got {type(value).__name__}"
        )
    if not value or "\0" in value:
        raise InvalidConfigurationError("root", value, "expected a directory path")
    return os.path.normpath(os.path.abspath(value))


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidConfigurationError(name, value, "expected true or false")
    return value


def _chunk_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigurationError("chunk_size", value, "expected an integer")
    if not _MIN_CHUNK <= value <= _MAX_CHUNK:
        raise InvalidConfigurationError(
            "chunk_size", value, f"must be in [{_MIN_CHUNK}, {_MAX_CHUNK}]"
        )
    return value


def _parse_query(value: object, root: str | None) -> FileStoreResourceInfo:
    # ``object``: the checks hold whatever a caller without a type checker sends.
    if not is_mapping(value):
        raise InvalidQueryError("query", value, "expected a mapping")
    query: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str) or (
            key not in _LOCATION_KEYS and key not in DIGEST_KEYS
        ):
            name = key if isinstance(key, str) else repr(key)
            raise InvalidQueryError(name, item, "unknown key")
        query[key] = item
    locations = [key for key in _LOCATION_KEYS if key in query]
    if not locations:
        raise InvalidQueryError("path", None, "one of path or url is required")
    if len(locations) > 1:
        raise InvalidQueryError(
            "url", query["url"], "give either path or url, not both"
        )
    algorithm, sha = query_digest(query)
    location_key = locations[0]
    location = required_str(query, location_key)
    if location_key == "url":
        path = _url_path(location)
    else:
        path = _checked_path(location)
    return FileStoreResourceInfo(
        location,
        _rooted("path" if location_key == "path" else "url", location, path, root),
        sha,
        algorithm,
    )


def _checked_path(path: str) -> str:
    if "\0" in path:
        raise InvalidQueryError("path", path, "NUL character in the path")
    return path


def _url_path(url: str) -> str:
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in url):
        raise InvalidQueryError("url", url, "white space or control character")
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise InvalidQueryError("url", url, "only file:// URLs are served")
    if parts.netloc.lower() not in {"", "localhost"}:
        raise InvalidQueryError("url", url, "only local file:// URLs are served")
    if parts.query or parts.fragment:
        raise InvalidQueryError("url", url, "a file:// URL has no query or fragment")
    # Percent-encoded bytes are a file name's bytes, whatever their encoding.
    path = os.fsdecode(unquote_to_bytes(parts.path))
    if not path.startswith("/"):
        raise InvalidQueryError("url", url, "the URL has no absolute path")
    if "\0" in path:
        raise InvalidQueryError("url", url, "NUL character in the path")
    return path


def _rooted(key: str, location: str, path: str, root: str | None) -> str:
    if root is None:
        if not os.path.isabs(path):
            raise InvalidQueryError(
                key, location, "a relative path needs a configured root"
            )
        return os.path.normpath(path)
    full = os.path.normpath(os.path.join(root, path))
    if not _inside(full, root):
        raise InvalidQueryError(key, location, f"lies outside the root {root}")
    return full
