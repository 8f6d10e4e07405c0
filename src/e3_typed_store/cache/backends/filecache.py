"""A cache that keeps one JSON file per entry in a directory.

The counterpart of ``e3.store.cache.backends.filecache.FileCache``, with the
same constructor (``FileCache({"cache_dir": ...})``) and the same public
``cache_dir`` attribute, hardened:

- entries are JSON, never pickles: reading an entry never runs code;
- a uid cannot name a file outside the cache: a uid that is a safe name
  (``[a-z0-9][a-z0-9._-]{0,127}``) is used as the file name as is, any
  other uid gets a name derived from its SHA-256 (upper case included, so that
  two uids that differ only in case stay two files on a case-insensitive
  filesystem); the entry records the real uid and a read checks it, so two
  uids never share an entry silently;
- an entry that cannot be read back as a :class:`CachedResource` (empty,
  truncated, not UTF-8, not the expected JSON, another uid's) is a miss and is
  removed; ``get`` never raises;
- writes are atomic (a temporary file in the same directory, then
  ``os.replace``), so concurrent readers and writers, threads or processes,
  only ever see whole entries; ``set`` answers False when it cannot write and
  logs why;
- ``cache_dir`` is made absolute at construction, so that a relative one
  still names the same cache, and its kept copies the same files, after the
  working directory changes.

On-disk layout. Entries live in the ``entries`` subdirectory of ``cache_dir``,
one file per uid, named ``<uid>.json`` for a safe uid and
``_<sha256 of the uid>.json`` otherwise; a write in progress is a hidden
``.<entry name>.<pid>.<random>.tmp`` file beside them. An entry reads::

    {"format": "e3-typed-store.cache-entry", "version": 1, "uid": "<uid>",
     "expiry": 1700000000.0, "value": {"uid": "<uid>", "local_path": "<path>"}}

where ``expiry`` is the time, in seconds since the epoch, after which the
entry is a miss (see :meth:`~e3_typed_store.cache.backends.base.Cache.get_expiry_time`).
The other subdirectories of ``cache_dir`` belong to the store (``resources``,
``locks``). e3-core's ``FileCache`` can share ``cache_dir``: it reads and
writes ``<uid>.cache`` files directly in it, which this cache neither reads,
writes nor removes, and its ``clear`` leaves the ``entries`` subdirectory alone.

Warnings go to the logger ``e3.store.cache``.

.. versionadded:: 0.1
"""

# No ``from __future__ import annotations`` here: beartype resolves the string
# annotations of a NamedTuple's generated ``__new__`` in a synthetic module, where
# ``CachedResource`` (a field type of FileCacheEntry) cannot be found.

import errno
import json
import logging
import math
import os
import re
import reprlib
import stat
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple, TypedDict

from e3_typed_store._fs import SAFE_COMPONENT_FORMS, safe_component, unique_temp_name
from e3_typed_store._types import CachedResource, is_mapping, override
from e3_typed_store.cache.backends.base import DEFAULT_TIMEOUT, Cache
from e3_typed_store.errors import CacheError, InvalidConfigurationError

__all__ = ["FileCache", "FileCacheConfiguration", "FileCacheEntry"]

_logger = logging.getLogger("e3.store.cache")

# The subdirectory of cache_dir holding the entries: not a name the store uses
# (resources, locks), and no e3-core FileCache file (<uid>.cache) can be it.
_ENTRIES_SUBDIR = "entries"
_FORMAT = "e3-typed-store.cache-entry"
_VERSION = 1
_SUFFIX = ".json"
_ENVELOPE_KEYS = frozenset({"format", "version", "uid", "expiry", "value"})
_VALUE_KEYS = frozenset(CachedResource._fields)
# An entry is a few hundred bytes; anything far larger is not one of ours, and
# a bound keeps a planted huge file from being read into memory.
_MAX_ENTRY_BYTES = 1 << 20

# The names of older versions too: still this package's files, for clear and
# prune to remove.
_ENTRY_NAME = re.compile(
    "(?:" + SAFE_COMPONENT_FORMS.pattern + ")" + re.escape(_SUFFIX)
)
# What e3_typed_store._fs.unique_temp_name makes of an entry name.
_TEMP_NAME = re.compile(r"\.(?P<entry>.+)\.[0-9]+\.[0-9a-f]{32}\.tmp")


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 160  # uids and file contents are arbitrary: keep logs readable


def _show(value: object) -> str:
    """Return the repr of *value* for a log line, shortened if it is long."""
    return _SHOWN.repr(value)


def _shown(uid: str | None, path: str) -> str:
    """Name an entry in a log line: by its uid, else by its file name."""
    return _show(uid) if uid is not None else os.path.basename(path)


def _open_flags() -> tuple[int, int]:
    """Return the flags to open an entry for reading, and a new file for writing."""
    if sys.platform == "win32":
        binary = os.O_BINARY
        return os.O_RDONLY | binary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | binary
    # No symlink is followed out of the cache, and a FIFO planted at an entry
    # path does not block the open.
    return (
        os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
    )


_READ_FLAGS, _WRITE_FLAGS = _open_flags()


class FileCacheConfiguration(TypedDict):
    """The configuration of a :class:`FileCache`.

    .. versionadded:: 0.1
    """

    #: The directory of the cache; created on the first ``set``.
    cache_dir: str


class FileCacheEntry(NamedTuple):
    """A valid entry of a :class:`FileCache`, as listed by ``iter_entries``.

    .. versionadded:: 0.1
    """

    #: The uid the entry is stored under.
    uid: str
    #: The stored value.
    value: CachedResource
    #: When the entry expires, in seconds since the epoch.
    expiry: float


# A valid entry as _decode_entry reads it: (uid, value, expiry), the fields of
# FileCacheEntry. A plain tuple is quicker to build, and get needs no more.
_Fields = tuple[str, CachedResource, float]


class _JsonObject(dict[str, object]):
    """A JSON object as decoded by :func:`_decode_entry`, typed for the checks."""


class _DuplicateKeyError(ValueError):
    """A JSON object of an entry names a key twice."""


def _json_object(pairs: list[tuple[str, object]]) -> _JsonObject:
    found = _JsonObject(pairs)
    if len(found) != len(pairs):
        # Which value counts would be a guess: such an entry was not written here.
        raise _DuplicateKeyError("duplicate key in a JSON object")
    return found


# One decoder for every read: json.loads with a hook builds a new one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_json_object)


def _parse_json(text: str) -> object:
    """Decode *text* as ``_DECODER.decode`` does, with the same errors.

    An entry as written here is its object then a newline: for that shape one
    ``raw_decode`` does the work, without the two regular expression matches
    ``decode`` spends on the whitespace around the document.
    """
    if text.startswith("{"):
        # decode() would call raw_decode(text, 0) too, so it raises the same.
        found: tuple[object, int] = _DECODER.raw_decode(text)
        document, end = found
        if end == len(text) or text[end:] == "\n":
            return document
    return _DECODER.decode(text)


def _why(error: OSError, path: str) -> str:
    """What *error* says of *path*, without naming *path* a second time."""
    if error.filename == path and error.strerror:
        return error.strerror
    return str(error)


def _entry_name(uid: str) -> str:
    """Return the file name of the entry of *uid*: never a path, never ``.cache``."""
    return safe_component(uid) + _SUFFIX


def _is_own_file(name: str) -> bool:
    """Tell whether *name* is an entry or an entry's temporary file."""
    if _ENTRY_NAME.fullmatch(name):
        return True
    temp = _TEMP_NAME.fullmatch(name)
    return temp is not None and _ENTRY_NAME.fullmatch(temp.group("entry")) is not None


def _as_cached_resource(value: object) -> CachedResource | None:
    """Return *value* as a CachedResource if it is one, or e3-core's equivalent."""
    fields: object = getattr(type(value), "_fields", None)
    uid: object = getattr(value, "uid", None)
    local_path: object = getattr(value, "local_path", None)
    if not isinstance(value, tuple) or fields != CachedResource._fields:
        return None
    if not isinstance(uid, str) or not isinstance(local_path, str):
        return None
    return CachedResource(uid=uid, local_path=local_path)


def _encode_entry(uid: str, value: CachedResource, expiry: float) -> bytes:
    document = {
        "format": _FORMAT,
        "version": _VERSION,
        "uid": uid,
        "expiry": expiry,
        "value": {"uid": value.uid, "local_path": value.local_path},
    }
    # ASCII only: any uid, lone surrogates included, encodes and reads back.
    text = json.dumps(document, ensure_ascii=True, allow_nan=False)
    return (text + "\n").encode("ascii")


def _finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _written_entry() -> re.Pattern[str]:
    """Entries laid out as :func:`_encode_entry` lays them out, whose strings
    hold no escape: groups for the uid, the expiry, the value's uid and its
    path.

    The layout (keys, their order, the spacing) is taken from the encoder's
    output; the strings and the number are JSON's own grammar, so that a match
    reads as the JSON decoder reads it. That takes in more than set() writes
    (raw non-ASCII characters, ``1E+5``), never anything the decoder reads
    otherwise.
    """
    string = r'"([^"\\\x00-\x1f]*)"'  # JSON's characters, no escape among them
    # With a fraction or an exponent, as a float's repr has: JSON reads an
    # integer otherwise, and float() reads exactly what JSON's decoder does.
    number = r"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+))"
    marks = ["\x01", "\x02", "\x03"]
    text = _encode_entry(marks[0], CachedResource(marks[1], marks[2]), 0.5).decode()
    pattern = re.escape(text)
    for mark in marks:
        pattern = pattern.replace(re.escape(json.dumps(mark)), string, 1)
    compiled = re.compile(pattern.replace(re.escape("0.5"), number, 1))
    if compiled.groups != 4:  # the encoder changed: a mark no longer shows
        raise RuntimeError(f"the entry layout is not the one expected: {text!r}")
    return compiled


# Entries as set() writes them, read with one match instead of the JSON decoder
# and its Python hook for each object. Anything else, an escape in a string
# included, goes through the decoder and its checks, which take it the same.
_WRITTEN_ENTRY = _written_entry()
# An entry is a few hundred characters; a longer one (a planted file, a long
# uid or path) goes to the decoder: on a hostile file near the 1 MiB bound the
# match, which backtracks over runs of digits, took 20 times the decoder's time.
_WRITTEN_ENTRY_CHARS = 16 << 10


def _decode_written(text: str) -> _Fields | None:
    """The entry *text* holds if set() wrote it as it is, checked; else None."""
    if len(text) > _WRITTEN_ENTRY_CHARS:
        return None
    match = _WRITTEN_ENTRY.fullmatch(text)
    if match is None:
        return None
    uid, written_expiry, value_uid, local_path = match.groups()
    expiry = float(written_expiry)
    if not math.isfinite(expiry) or _path_problem(local_path) is not None:
        return None  # refused: the decoder's checks say why
    return (uid, CachedResource(value_uid, local_path), expiry)


def _decode_entry(data: bytes) -> _Fields | str:
    """Return the entry encoded in *data*, or why it is not a valid one."""
    if len(data) > _MAX_ENTRY_BYTES:
        return f"larger than {_MAX_ENTRY_BYTES} bytes"
    try:
        text = data.decode("utf-8")
    except ValueError as exc:
        return f"not a JSON entry ({type(exc).__name__}: {exc})"
    written = _decode_written(text)
    if written is not None:
        return written
    try:
        document = _parse_json(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad JSON, duplicate keys and integers too long to
        # convert; RecursionError, absurdly deep nesting.
        return f"not a JSON entry ({type(exc).__name__}: {exc})"
    if not isinstance(document, _JsonObject):
        return f"expected a JSON object, got {type(document).__name__}"
    if document.keys() != _ENVELOPE_KEYS:
        return (
            f"expected the keys {sorted(_ENVELOPE_KEYS)}, got {_show(sorted(document))}"
        )
    version = document["version"]
    if document["format"] != _FORMAT or type(version) is not int or version != _VERSION:
        return f"format is not {_FORMAT!r} version {_VERSION}"
    uid = document["uid"]
    if not isinstance(uid, str):
        return f"uid is not a string: {_show(uid)}"
    expiry = document["expiry"]
    if type(expiry) is not float or not math.isfinite(expiry):
        # Not the float set() writes: an integer is converted, the rest refused.
        expiry = _finite_number(expiry)
    if expiry is None:
        return f"expiry is not a finite number: {_show(document['expiry'])}"
    value = document["value"]
    if not isinstance(value, _JsonObject) or value.keys() != _VALUE_KEYS:
        return f"value is not a CachedResource: {_show(value)}"
    value_uid = value["uid"]
    local_path = value["local_path"]
    if not isinstance(value_uid, str) or not isinstance(local_path, str):
        return f"value is not a CachedResource: {_show(value)}"
    problem = _path_problem(local_path)
    if problem is not None:
        return f"local_path {_show(local_path)} {problem}"
    return (uid, CachedResource(value_uid, local_path), expiry)


def _path_problem(path: str) -> str | None:
    """Why *path* can name no file, if it cannot: JSON carries a NUL or a
    lone surrogate as well as any character, and every os call then raises."""
    if "\0" in path:
        return "holds a NUL byte"
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return "is not encodable as a file name"
    return None


def _read_entry(fd: int, size: int) -> bytes:
    """Read an entry file of *size* bytes (fstat), at most one byte past the bound.

    One read in the common case; the loop only for a file that grew meanwhile.
    """
    want = (size if size < _MAX_ENTRY_BYTES else _MAX_ENTRY_BYTES) + 1
    data = os.read(fd, want)
    if len(data) < want:
        return data  # the whole file: a regular file's read is short only at its end
    return data + _read_at_most(fd, _MAX_ENTRY_BYTES + 1 - len(data))


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # not there; under a file that is no directory, it cannot be


def _drop_temp(path: str) -> None:
    """Remove the temporary file of a failed write, if it was created."""
    try:
        _unlink_quietly(path)
    except OSError as exc:
        _logger.warning("cannot remove %s: %s", path, exc)


def _foreign_dir(path: str) -> bool:
    """Tell whether something that is no directory (a symbolic link, a file)
    stands at *path*, the entries directory: this cache reads, writes and
    removes nothing through it, so that no file outside the cache is touched.
    """
    try:
        return not stat.S_ISDIR(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False  # missing: no entries (set makes it)


def _not_a_directory(path: str) -> str:
    return f"{path} is not a directory of the cache (a symbolic link or a file?)"


def _configured_dir(configuration: object) -> str:
    # Typed as a mapping, but e3-core's load_cache() passes None by default:
    # a clear error, not a TypeError from ``in``, when checks are off.
    if not is_mapping(configuration):
        raise InvalidConfigurationError(
            "cache_configuration",
            configuration,
            "expected a mapping such as {'cache_dir': '/path/to/cache'}",
        )
    if "cache_dir" not in configuration:
        raise InvalidConfigurationError("cache_dir", None, "required key is missing")
    cache_dir = configuration["cache_dir"]
    if not isinstance(cache_dir, str):
        raise InvalidConfigurationError(
            "cache_dir", cache_dir, f"expected a string, got {type(cache_dir).__name__}"
        )
    if not cache_dir:
        raise InvalidConfigurationError("cache_dir", cache_dir, "must not be empty")
    if "\0" in cache_dir:
        raise InvalidConfigurationError("cache_dir", cache_dir, "holds a NUL byte")
    # Absolute: a relative one would name another directory, and the kept
    # copies' recorded paths other files, once the working directory changes.
    return os.path.abspath(cache_dir)


class FileCache(Cache[CachedResource, FileCacheConfiguration]):
    """Keep :class:`CachedResource` entries as JSON files under ``cache_dir``.

    See the module documentation for the layout on disk. Every method may be
    called from several threads and processes at once.

    :param cache_configuration: where the cache lives
    :raises InvalidConfigurationError: the configuration is no mapping, or
        its ``cache_dir`` is missing, not a string, empty or holds a NUL byte

    .. versionadded:: 0.1
    """

    def __init__(self, cache_configuration: FileCacheConfiguration) -> None:
        super().__init__(cache_configuration)
        #: The directory of the cache, as configured, made absolute (a
        #: relative one is taken from the working directory at construction).
        #: The store keeps its own files in subdirectories of it.
        self.cache_dir: str = _configured_dir(cache_configuration)
        #: The directory holding the entry files: ``entries`` under ``cache_dir``.
        self.entries_dir: str = os.path.join(self.cache_dir, _ENTRIES_SUBDIR)

    @override
    def __repr__(self) -> str:
        return f"{type(self).__name__}({{'cache_dir': {self.cache_dir!r}}})"

    def uid_to_file(self, uid: str) -> str:
        """Return the path of the file holding the entry of *uid*.

        The path lies in :attr:`entries_dir` whatever the uid: ``../x``, an
        absolute path or a NUL character cannot lead elsewhere.

        :param uid: the resource uid

        .. versionadded:: 0.1
        """
        # os.path.join, spelled out for the hot path of get: the entry name is
        # never absolute and entries_dir never ends with a separator.
        return f"{self.entries_dir}{os.sep}{_entry_name(uid)}"

    @override
    def get(
        self, uid: str, default: CachedResource | None = None
    ) -> CachedResource | None:
        """Return the entry stored under *uid*, or *default* on a miss.

        An expired entry is a miss and is removed. So is an entry that is not
        a valid JSON entry of *uid*; that one is logged too. Never raises.

        :param uid: the resource uid
        :param default: the value to return on a miss
        """
        found = self._load(self.uid_to_file(uid), uid)
        if found is None:
            return default
        _, value, _ = found
        return value

    @override
    def set(
        self, uid: str, value: CachedResource, timeout: int = DEFAULT_TIMEOUT
    ) -> bool:
        """Store *value* under *uid* for *timeout* seconds, atomically.

        Readers see the previous entry or the new one, never a part of it.

        :param uid: the resource uid
        :param value: the entry to store
        :param timeout: the entry's lifetime in seconds
        :return: True if the entry is stored; False, with a warning logged,
            when it cannot be (the directory cannot be created or written, the
            disk is full, the timeout is out of range, the path can name no
            file: a NUL byte, a lone surrogate, the entries directory is a
            symbolic link or a file)
        :raises TypeError: *value* is neither a ``CachedResource`` nor
            e3-core's equivalent (only reachable without runtime checks)
        """
        resource = _as_cached_resource(value)
        if resource is None:
            raise TypeError(f"a FileCache stores CachedResource values, not {value!r}")
        problem = _path_problem(resource.local_path)
        if problem is not None:
            # Stored, it would be refused on reading: refused now.
            _logger.warning(
                "cannot cache %s: local_path %s %s",
                _show(uid),
                _show(resource.local_path),
                problem,
            )
            return False
        try:
            expiry = self.get_expiry_time(timeout)
        except OverflowError:
            expiry = math.inf
        if not math.isfinite(expiry):
            _logger.warning(
                "cannot cache %s: timeout %d is out of range", _show(uid), timeout
            )
            return False
        data = _encode_entry(uid, resource, expiry)
        if len(data) > _MAX_ENTRY_BYTES:
            _logger.warning(
                "cannot cache %s: the entry would exceed %d bytes",
                _show(uid),
                _MAX_ENTRY_BYTES,
            )
            return False
        if _foreign_dir(self.entries_dir):
            _logger.warning(
                "cannot cache %s: %s", _show(uid), _not_a_directory(self.entries_dir)
            )
            return False
        name = _entry_name(uid)
        temp = unique_temp_name(self.entries_dir, name)
        created = False  # a temporary file never made is not removed
        try:
            fd = self._create(temp)
            created = True
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(temp, os.path.join(self.entries_dir, name))
        except OSError as exc:
            if created:
                _drop_temp(temp)
            _logger.warning(
                "cannot cache %s in %s: %s", _show(uid), self.entries_dir, exc
            )
            return False
        except BaseException:
            if created:
                _drop_temp(temp)
            raise
        return True

    def _create(self, temp: str) -> int:
        """Open the new file *temp* for writing, making the entries directory
        only when it is missing (it is there for every set but the first)."""
        try:
            return os.open(temp, _WRITE_FLAGS, 0o666)
        except FileNotFoundError:
            os.makedirs(self.entries_dir, exist_ok=True)
            return os.open(temp, _WRITE_FLAGS, 0o666)

    @override
    def delete(self, uid: str) -> None:
        """Remove the entry stored under *uid*; do nothing if there is none.

        :param uid: the resource uid
        :raises CacheError: the entry exists but cannot be removed
        """
        if _foreign_dir(self.entries_dir):
            return  # no entry of this cache is there: see iter_entries
        path = self.uid_to_file(uid)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            # NotADirectoryError: cache_dir is a file, so there is no entry.
            pass
        except OSError as exc:
            raise CacheError(uid, f"cannot remove {path}: {_why(exc, path)}") from exc

    @override
    def clear(self) -> None:
        """Remove every entry, and the temporary files of interrupted writes.

        Only files named as this cache names them are removed: what others
        keep in ``cache_dir`` (e3-core's ``.cache`` files, the store's
        subdirectories, anything else) stays. A ``set`` running meanwhile may
        lose its temporary file and answer False.

        The entries directory being no directory (a symbolic link, a file)
        is logged, and nothing is removed.

        :raises CacheError: entries exist but cannot be removed (the others
            are removed first): its reason names each one's full path once,
            with why; its uid is ``*``, every entry
        """
        if _foreign_dir(self.entries_dir):
            _logger.warning("%s, left alone", _not_a_directory(self.entries_dir))
            return
        try:
            with os.scandir(self.entries_dir) as listing:
                doomed = [
                    found.name
                    for found in listing
                    if _is_own_file(found.name)
                    and (found.is_symlink() or found.is_file(follow_symlinks=False))
                ]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise CacheError("*", f"cannot list {self.entries_dir}: {exc}") from exc
        failed: list[str] = []
        for name in doomed:
            path = os.path.join(self.entries_dir, name)
            try:
                _unlink_quietly(path)
            except OSError as exc:
                _logger.warning("cannot remove cache entry %s: %s", path, exc)
                failed.append(f"{path}: {_why(exc, path)}")
        if failed:
            raise CacheError("*", "cannot remove " + ", ".join(failed))

    def iter_entries(self) -> Iterator[FileCacheEntry]:
        """Yield every valid, unexpired entry, in the order of their file names.

        Reading an entry here is reading it with :meth:`get`: an expired or
        invalid entry met on the way is removed (and an invalid one logged)
        instead of being yielded. Files that are not entries are ignored.
        Entries set or deleted during the iteration may or may not be seen.

        An entries directory that is no directory (a symbolic link, a file) has
        no entries: it is logged, and nothing in it is read nor removed.

        :return: ``(uid, value, expiry)`` named tuples
        :raises CacheError: the entries directory exists but cannot be listed

        .. versionadded:: 0.1
        """
        if _foreign_dir(self.entries_dir):
            _logger.warning("%s, left alone", _not_a_directory(self.entries_dir))
            return
        try:
            names = sorted(os.listdir(self.entries_dir))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise CacheError("*", f"cannot list {self.entries_dir}: {exc}") from exc
        for name in names:
            if _ENTRY_NAME.fullmatch(name):
                found = self._load(os.path.join(self.entries_dir, name), None)
                if found is not None:
                    yield FileCacheEntry._make(found)

    def _load(self, path: str, uid: str | None) -> _Fields | None:
        """Read the entry at *path*; drop it if it is expired or invalid.

        :param path: the entry file
        :param uid: the uid asked for, or None to accept the one the file is
            named after
        """
        try:
            fd = os.open(path, _READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP or os.path.islink(path):
                # O_NOFOLLOW refused a symlink: no entry is one.
                _logger.warning(
                    "cache entry %s is a symlink, discarded", _shown(uid, path)
                )
                self._discard(path, None)
            else:
                _logger.warning(
                    "cannot read cache entry %s: %s", _shown(uid, path), exc
                )
            return None
        try:
            status = os.fstat(fd)
            if stat.S_ISREG(status.st_mode):
                decoded = _decode_entry(_read_entry(fd, status.st_size))
            else:
                decoded = "not a regular file"
            if isinstance(decoded, str):
                reason = decoded
            else:
                entry_uid, _, expiry = decoded
                if (
                    entry_uid != uid
                    if uid is not None  # then path is uid_to_file(uid)
                    else _entry_name(entry_uid) != os.path.basename(path)
                ):
                    reason = f"it records the uid {_show(entry_uid)}"
                elif expiry < time.time():
                    _logger.debug("cache entry %s expired, removed", _shown(uid, path))
                    self._discard(path, status)
                    return None
                else:
                    return decoded
            _logger.warning(
                "invalid cache entry %s, discarded: %s", _shown(uid, path), reason
            )
            self._discard(path, status)
            return None
        except OSError as exc:
            _logger.warning("cannot read cache entry %s: %s", _shown(uid, path), exc)
            return None
        finally:
            os.close(fd)

    @staticmethod
    def _discard(path: str, read: os.stat_result | None) -> None:
        """Remove *path* if it is still the file that was read.

        A writer may have replaced it with a fresh entry since: that one stays.
        The caller keeps the file it read open, so its inode cannot be reused.

        :param path: the entry file
        :param read: the status of the file read, or None for a symlink
        """
        if _foreign_dir(os.path.dirname(path)):
            # get() read it through a link planted at the entries directory:
            # the file is someone else's.
            _logger.warning(
                "%s, %s left alone", _not_a_directory(os.path.dirname(path)), path
            )
            return
        try:
            current = os.lstat(path)
            if read is None:
                same = stat.S_ISLNK(current.st_mode)
            else:
                same = (current.st_dev, current.st_ino) == (read.st_dev, read.st_ino)
            if same:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            _logger.warning("cannot remove cache entry %s: %s", path, exc)
