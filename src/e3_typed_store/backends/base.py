"""The store API: resource metadata, the generic Store base class, its Protocols.

Everything ``e3.store.backends.base`` offers is here with the same names and
meaning -- :data:`logger`, :class:`ResourceInfo`, :class:`CachedResource`,
:class:`StoreError`, :class:`Store` -- and beside them the structural twins
:class:`ResourceInfoProtocol` and :class:`StoreProtocol`.

``Store`` is generic in its metadata, query and configuration types, so a driver
declared as ``class MyStore(Store[MyInfo, MyQuery, MyConfig])`` receives
``MyInfo`` in ``download_resource_content`` without a cast. Each type parameter
has a default, so a bare ``Store`` reads as e3-core's.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import errno
import logging
import os
import stat
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeGuard, runtime_checkable

from e3_typed_store._content import ContentStore, FileStamp
from e3_typed_store._fs import is_within, noting_published, place_in
from e3_typed_store._locking import LOCK_DIR, process_lock, uid_lock
from e3_typed_store._redact import hide_credentials, hide_url_credentials, one_line
from e3_typed_store._types import ALGORITHMS, Algorithm, TypeVar
from e3_typed_store._types import CachedResource as CachedResource
from e3_typed_store.cache.backends.base import DEFAULT_TIMEOUT, CacheProtocol
from e3_typed_store.errors import (
    DestinationError,
    InvalidConfigurationError,
    OfflineError,
)
from e3_typed_store.errors import StoreError as StoreError

__all__ = [
    "CachedResource",
    "OFFLINE_VARIABLE",
    "OpenConfiguration",
    "Query",
    "ResourceInfo",
    "ResourceInfoProtocol",
    "Store",
    "StoreError",
    "StoreOptions",
    "StoreProtocol",
    "logger",
]

#: The logger of the store layer; the same name as e3-core's (``e3.store``), so
#: logging configured for e3 applies unchanged.
logger = logging.getLogger("e3.store")
# The warning that the offline variable says neither on nor off: a logger of
# its own, which the command line shows even when it shows no other warning
# (the user meant something, and the network is used).
_OFFLINE_LOGGER = logging.getLogger("e3.store.offline")

#: The type of a configuration a store does not constrain. e3-core types it
#: ``Any``; a driver that reads its configuration declares a narrower type.
OpenConfiguration = object

#: The widest query a store accepts: a mapping from keys to values. A driver
#: narrows it, usually to a ``TypedDict``.
Query = Mapping[str, object]


@runtime_checkable
class ResourceInfoProtocol(Protocol):
    """What resource metadata offers, structurally.

    A class with a ``uid`` attribute, property or frozen dataclass field and a
    ``verify`` method satisfies it, e3-core's resource metadata included.

    .. versionadded:: 0.1
    """

    @property
    def uid(self) -> str:
        """A unique identifier of the resource, used as its cache key."""
        ...

    def verify(self, resource_path: str) -> bool:
        """Tell whether the file at *resource_path* is the expected resource.

        :param resource_path: path to the downloaded resource
        """
        ...


class ResourceInfo(abc.ABC):
    """Object representing resource metadata.

    This is subclassed by all store drivers (or, structurally, satisfied: see
    :class:`ResourceInfoProtocol`).

    .. versionadded:: 0.1
    """

    @property
    @abc.abstractmethod
    def uid(self) -> str:
        """Return an unique identifier.

        This is meant to be used to implement a cache system: it must be
        stable for a given resource and usable as a cache key.
        """

    @abc.abstractmethod
    def verify(self, resource_path: str) -> bool:
        """Verify that a downloaded resource is valid.

        This is meant to validate the resource fingerprint (e.g. sha1sum).

        :param resource_path: path to the downloaded resource
        :return: True if the file is the expected resource
        """


InfoT = TypeVar("InfoT", bound=ResourceInfoProtocol, default=ResourceInfo)
QueryT_contra = TypeVar("QueryT_contra", bound=Query, contravariant=True, default=Query)
ConfigT = TypeVar("ConfigT", default=OpenConfiguration)
ProtoInfoT = TypeVar(
    "ProtoInfoT", bound=ResourceInfoProtocol, default=ResourceInfoProtocol
)


@runtime_checkable
class StoreProtocol(Protocol[ProtoInfoT, QueryT_contra]):
    """What a store offers, structurally.

    ``Store[I, Q, C]`` satisfies ``StoreProtocol[I, Q]``.

    .. versionadded:: 0.1
    """

    def get_resource_metadata(self, query: QueryT_contra) -> ProtoInfoT:
        """Get a resource metadata from query.

        :param query: store specific keys identifying a resource
        """
        ...

    def download_resource(self, metadata: ProtoInfoT, dest: str) -> str | None:
        """Get the resource into *dest*, from the cache when it holds it.

        :param metadata: resource metadata
        :param dest: directory where the resource will be stored
        :return: resource path, or None on failure
        """
        ...

    def download_resource_content(self, metadata: ProtoInfoT, dest: str) -> str | None:
        """Download the resource into *dest*, bypassing the cache.

        :param metadata: resource metadata
        :param dest: directory where the resource will be stored
        :return: resource path, or None on failure
        """
        ...


#: The environment variable that turns offline mode on ("1", "true", "yes", "on").
OFFLINE_VARIABLE = "E3_TYPED_STORE_OFFLINE"
_TRUTHY = frozenset({"1", "true", "yes", "on"})
# The values that say "off" in so many words; any other is off too, said once.
_FALSY = frozenset({"", "0", "false", "no", "off"})
_UNREAD_OFFLINE_VALUES: set[str] = set()


@dataclass(frozen=True)
class StoreOptions:
    """How :meth:`Store.download_resource` uses the cache and the network.

    :param offline: serve cache hits only and never touch the network; None
        means "as the environment variable ``E3_TYPED_STORE_OFFLINE`` says"
    :param trust_unchanged_files: serve a hit without re-hashing it when its
        size, mtime, inode and device are those it had when last verified
        (one ``stat`` instead of a hash pass). Off by default: every hit is
        verified, as in e3-core
    :param lock_timeout: seconds to wait for another process downloading the
        same resource; ``math.inf`` waits as long as it takes
    :param cache_timeout: seconds a resource recorded in the cache stays
        there. None, the default: for ever when its uid is the SHA-1, SHA-256
        or SHA-512 digest its content must have, as its metadata says with
        ``algorithm`` and ``digest`` attributes (every hit is checked against
        it, so it cannot go stale, and offline mode keeps serving it),
        e3-core's one day
        (:data:`~e3_typed_store.cache.backends.base.DEFAULT_TIMEOUT`)
        otherwise, where an expiry is what makes a driver ask again
    :raises InvalidConfigurationError: *offline* or *trust_unchanged_files*
        is no boolean, *lock_timeout* no positive number (NaN included), or
        *cache_timeout* no positive whole number

    .. versionadded:: 0.1
    """

    offline: bool | None = None
    trust_unchanged_files: bool = False
    lock_timeout: float = 3600.0
    cache_timeout: int | None = None

    #: The configuration keys :meth:`from_configuration` reads.
    KEYS: ClassVar[frozenset[str]] = frozenset(
        {"offline", "trust_unchanged_files", "lock_timeout", "cache_timeout"}
    )

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, object]) -> StoreOptions:
        """Read the options a driver's configuration mapping may carry.

        The keys are the field names (:attr:`KEYS`); absent keys keep their
        defaults, other keys are ignored. A driver whose configuration is
        loaded from a file or passed through ``load_store`` uses this, so
        that offline mode and fast hits are configurable there too.

        :param configuration: the driver's configuration
        :raises InvalidConfigurationError: a value has the wrong type
        """
        options = cls()
        offline = configuration.get("offline", options.offline)
        trust = configuration.get("trust_unchanged_files", False)
        timeout = configuration.get("lock_timeout", options.lock_timeout)
        lifetime = configuration.get("cache_timeout", options.cache_timeout)
        return cls(
            None if offline is None else _boolean("offline", offline),
            _boolean("trust_unchanged_files", trust),
            _lock_timeout(timeout),
            _cache_timeout(lifetime),
        )

    def __post_init__(self) -> None:
        # Built directly too: a NaN or a negative wait fails here, not deep
        # in a lock, and a 1 is no boolean, with runtime checks off as on.
        if self.offline is not None:
            _boolean("offline", self.offline)
        _boolean("trust_unchanged_files", self.trust_unchanged_files)
        _lock_timeout(self.lock_timeout)
        _cache_timeout(self.cache_timeout)

    def lifetime(self, named_by_digest: bool) -> int:
        """Seconds the cache is to keep an entry (see *cache_timeout*).

        :param named_by_digest: whether the entry's uid is the digest its
            content must have, as the resource's metadata says
        """
        if self.cache_timeout is not None:
            return self.cache_timeout
        return _FOR_EVER if named_by_digest else DEFAULT_TIMEOUT

    def is_offline(self) -> bool:
        """Tell whether offline mode is on, from the option or the environment."""
        if self.offline is not None:
            return self.offline
        value = os.environ.get(OFFLINE_VARIABLE, "").strip().lower()
        if value in _TRUTHY:
            return True
        if value not in _FALSY and value not in _UNREAD_OFFLINE_VALUES:
            # "enabled", say: meant as on, maybe. Said once per value.
            _UNREAD_OFFLINE_VALUES.add(value)
            _OFFLINE_LOGGER.warning(
                "%s=%r is neither on (1, true, yes, on) nor off (0, false, no, "
                "off): offline mode is off",
                OFFLINE_VARIABLE,
                os.environ.get(OFFLINE_VARIABLE, ""),
            )
        return False


# What "for ever" is to a cache: a century, a finite date every backend stores.
_FOR_EVER = 100 * 365 * 24 * 3600


@runtime_checkable
class _Digested(Protocol):
    """Metadata that says which digest its content must have."""

    @property
    def algorithm(self) -> str: ...

    @property
    def digest(self) -> str: ...


def _uid_digest(metadata: ResourceInfoProtocol) -> Algorithm | None:
    """The algorithm of the digest that *metadata*'s uid is, if it says so.

    It says so with ``algorithm`` and ``digest`` attributes, the digest hex
    and equal to its uid, as this package's stores' metadata has them. A uid
    that only looks like a digest (the SHA-256 of a name, say) is none.
    """
    try:
        if not isinstance(metadata, _Digested):
            return None
        uid, algorithm, digest = metadata.uid, metadata.algorithm, metadata.digest
        if digest.lower() != uid.lower():  # raises when it is no str
            return None
    except Exception:  # noqa: BLE001 - a driver's property that raises says nothing
        return None
    if not set(uid) <= _HEX_DIGITS:
        return None
    for known, length in ALGORITHMS.items():
        if algorithm == known and len(uid) == length:
            return known
    return None


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidConfigurationError(key, value, "expected a boolean")
    return value


def _cache_timeout(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidConfigurationError(
            "cache_timeout", value, "expected a positive whole number of seconds"
        )
    return value


def _lock_timeout(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0  # NaN too
    ):
        raise InvalidConfigurationError(
            "lock_timeout", value, "expected a positive number of seconds"
        )
    return float(value)


class Store(abc.ABC, Generic[InfoT, QueryT_contra, ConfigT]):
    """Base class of store drivers.

    A driver implements :meth:`get_resource_metadata` and
    :meth:`download_resource_content`; the base supplies the cache logic of
    :meth:`download_resource` and :meth:`fetch_resource` around them.

    When the cache backend has a ``cache_dir`` (this package's ``FileCache``
    and e3-core's), the store keeps its own verified copy of each resource
    there and serializes downloads of one resource across processes with a
    lock file; otherwise it records the downloaded file where it lies.

    :param store_configuration: configuration for this store, typed by the driver
    :param cache_backend: where downloaded resources are recorded; None to
        disable caching
    :param options: cache and network behaviour; when None, read from the
        ``offline``, ``trust_unchanged_files``, ``lock_timeout`` and
        ``cache_timeout`` keys of a configuration mapping
        (:meth:`StoreOptions.from_configuration`), else the defaults
    :raises InvalidConfigurationError: one of those keys has a bad value

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store_configuration: ConfigT,
        cache_backend: CacheProtocol[CachedResource] | None,
        *,
        options: StoreOptions | None = None,
    ) -> None:
        self.store_configuration = store_configuration
        self.cache_backend = cache_backend
        if options is None:
            # What code loading a store by name has: its configuration mapping.
            options = (
                StoreOptions.from_configuration(store_configuration)
                if _is_str_mapping(store_configuration)
                else StoreOptions()
            )
        self.options = options

    @property
    def cache_backend(self) -> CacheProtocol[CachedResource] | None:
        """Where downloaded resources are recorded; None when nothing is.

        Set, as e3-core's attribute may be: the kept copies and the locks of
        the resources fetched from then on go into the new backend's
        directory, if it has one.

        .. versionadded:: 0.1
        """
        return self._cache_backend

    @cache_backend.setter
    def cache_backend(
        self, cache_backend: CacheProtocol[CachedResource] | None
    ) -> None:
        self._cache_backend = cache_backend
        cache_dir: object = getattr(cache_backend, "cache_dir", None)
        # Absolute, as this package's FileCache makes it (e3-core's keeps a
        # relative one): what is recorded must not move with the working
        # directory.
        self._cache_dir = (
            os.path.abspath(cache_dir) if isinstance(cache_dir, str) else None
        )
        self._content = (
            ContentStore(self._cache_dir) if self._cache_dir is not None else None
        )
        # e3-core's FileCache names an entry's file after its uid (see
        # _backend_for): told once, not on each look-up.
        self._uids_are_file_names = _is_e3_core_file_cache(cache_backend)

    @abc.abstractmethod
    def get_resource_metadata(self, query: QueryT_contra) -> InfoT:
        """Get a resource metadata from query.

        :param query: store specific keys identifying a resource
        :raises InvalidQueryError: a key is missing or has a bad value
        """

    @abc.abstractmethod
    def download_resource_content(self, metadata: InfoT, dest: str) -> str | None:
        """Download a resource identified by its metadata in dest.

        The driver validates the resource with ``metadata.verify`` once the
        download is completed, before the file appears under its name in
        *dest*: the store does not hash a fresh download again (it verifies
        a kept copy at its hits). A driver may raise a :class:`StoreError` to
        say why it failed; returning None is accepted too, as in e3-core. Any
        other exception it raises reaches callers as a :class:`StoreError`
        whose ``__cause__`` it is.

        :param metadata: resource metadata
        :param dest: directory where the resource will be stored
        :return: resource path
        """

    def download_resource(self, metadata: InfoT, dest: str) -> str | None:
        """Download a resource identified by its metadata in dest.

        Serve it from the cache when a verified copy is recorded there. On
        failure, log the reason and return None; :meth:`fetch_resource` raises
        it instead.

        :param metadata: resource metadata
        :param dest: directory where the resource will be stored
        :return: resource path (always inside *dest*), or None on failure
        """
        try:
            return self.fetch_resource(metadata, dest)
        except StoreError as exc:
            shown = hide_url_credentials(str(getattr(metadata, "uid", metadata)))
            logger.error("cannot get resource %s into %s: %s", shown, dest, exc)
            return None

    def fetch_resource(self, metadata: InfoT, dest: str) -> str:
        """Get a resource into *dest*, like :meth:`download_resource`, or raise.

        A cache entry that is not a :class:`CachedResource`, whose file is
        missing, or whose file fails ``metadata.verify`` (or makes it raise)
        is logged, removed and treated as a miss. A miss is downloaded once
        even when several processes sharing the cache directory ask at the
        same time.

        :param metadata: resource metadata
        :param dest: directory where the resource will be stored
        :return: resource path, always inside *dest*
        :raises OfflineError: offline mode is on and the cache has no copy
        :raises StoreError: the resource cannot be had; the subclass says why
        """
        uid = _uid_of(metadata)
        # A pathlib.Path, as e3-core took, when runtime checks are off.
        dest = os.fspath(dest)
        if "\0" in dest:  # os calls would raise a bare ValueError
            raise StoreError(
                f"cannot place {uid} into {dest!r}: a NUL byte in the path"
            )
        try:
            os.fsencode(dest)  # os calls would raise a bare UnicodeEncodeError
        except UnicodeEncodeError:
            raise StoreError(
                f"cannot place {uid} into {dest!r}: a character no file name holds"
                " (a lone surrogate)"
            ) from None
        if self._among_the_caches_files(dest):
            raise DestinationError(
                uid, dest, f"cannot place {uid} into {dest}: the cache's own files"
            )
        try:
            # Why a copy that is there cannot be used now, for an offline miss.
            unusable: list[str] = []
            hit = self._verified_cache_hit(metadata, unusable)
            if hit is not None:
                placed = self._place_hit(uid, hit, dest, unusable)
                if placed is not None:
                    logger.info("%s: from the cache: %s", uid, placed)
                    if self._content is not None and self._content.holds(hit):
                        self._content.note_use(uid)  # for `cache prune`
                    return placed
            if self.options.is_offline():
                if hit is not None or self._has_entry(uid):
                    # An entry whose copy could not be checked or placed now:
                    # there, but not to be had offline.
                    raise OfflineError(
                        uid,
                        "its cached copy cannot be used now: "
                        + ("; ".join(unusable) or "see the log"),
                    )
                raise OfflineError(uid)
            try:
                os.makedirs(dest, exist_ok=True)
            except OSError as exc:
                raise _unplaceable(uid, uid, dest, exc) from exc
            with ExitStack() as stack:
                if self._locked(stack, uid) and self._has_entry(uid):
                    # Another process fetched it while this one waited. Its
                    # copy is verified with the lock released, so that all the
                    # processes that waited verify at once, not one by one.
                    stack.close()
                    placed = self._hit_fetched_meanwhile(metadata, dest)
                    if placed is not None:
                        return placed
                    # Its copy could not be had (one this process may not
                    # read, say): the download is made under the lock, taken
                    # again, unless the process that held it meanwhile kept
                    # a copy this one can use. Else every process that met
                    # the copy would download.
                    if self._locked(stack, uid):
                        placed = self._hit_fetched_meanwhile(metadata, dest)
                        if placed is not None:
                            return placed
                logger.info("%s: not in the cache, downloading", uid)
                path = self._download(metadata, dest)
                logger.info("%s: downloaded: %s", uid, path)
                return path
        except StoreError:
            # Already typed, and some are OSErrors too (DeadlineExceededError
            # is a TimeoutError): never hidden under the generic one below.
            raise
        except OSError as exc:
            raise StoreError(f"cannot place {uid} into {dest}: {exc}") from exc

    def _hit_fetched_meanwhile(self, metadata: InfoT, dest: str) -> str | None:
        """The copy another process kept while this one waited for the lock,
        verified and placed in *dest*; None when there is none to be had."""
        hit = self._verified_cache_hit(metadata)
        if hit is None:
            return None
        placed = self._place_hit(metadata.uid, hit, dest)
        if placed is not None:
            logger.info("%s: fetched meanwhile: %s", metadata.uid, placed)
        return placed

    def _locked(self, stack: ExitStack, uid: str) -> bool:
        """Take the lock of *uid* for the life of *stack*; False if there is none.

        Across processes through a lock file when the cache has a directory;
        among the threads sharing the cache otherwise.
        """
        if self.cache_backend is None:
            return False
        if self._cache_dir is None:
            stack.enter_context(
                process_lock(self.cache_backend, uid, self.options.lock_timeout)
            )
            return True
        lock_dir = os.path.join(self._cache_dir, LOCK_DIR)
        try:
            stack.enter_context(uid_lock(lock_dir, uid, self.options.lock_timeout))
        except OSError as exc:
            logger.warning("cannot lock %s, going on unlocked: %s", uid, exc)
            return False
        return True

    def _backend_for(self, uid: str) -> CacheProtocol[CachedResource] | None:
        """The cache backend that may be given *uid*; None when there is none.

        Nor is there one for a uid that is not one path component (``../x``,
        ``a/b``, an absolute path) when the backend is e3-core's
        ``FileCache``: it names the entry's file after the uid, which would
        lead out of its directory. Every uid is safe with this package's
        caches, which name files after a hash of it.
        """
        cache = self.cache_backend
        if cache is not None and self._uids_are_file_names:
            name = uid + ".cache"  # as e3-core names the file
            if (
                os.path.basename(name) != name
                or os.path.splitdrive(name)[0]
                or "\0" in name
            ):
                return None
        return cache

    def _has_entry(self, uid: str) -> bool:
        cache = self._backend_for(uid)
        if cache is None:
            return False
        try:
            return cache.get(uid) is not None
        except Exception:  # noqa: BLE001 - unreadable: a miss, see _verified_cache_hit
            return False

    def _download(self, metadata: InfoT, dest: str) -> str:
        uid = metadata.uid
        try:
            with noting_published() as published:
                answer: object = self.download_resource_content(metadata, dest)
        except StoreError:
            raise
        except Exception as exc:
            # A driver's own error (requests', e3-core's FSError, a ValueError
            # from an archive check...): typed for fetch_resource, logged with
            # a None from download_resource, as the seed promises.
            raise StoreError(
                hide_credentials(
                    f"the store failed to download {uid} into {dest}: {exc!r}"
                )
            ) from exc
        if answer is None:
            raise StoreError(f"the store could not download {uid} into {dest}")
        path = _path_answered(answer)
        if path is None:
            # A driver that breaks its contract (runtime checks off): told
            # here, not by a TypeError from deep inside.
            raise StoreError(
                hide_credentials(
                    f"the store's download of {uid} into {dest} answered"
                    f" {answer!r}, which is no path"
                )
            )
        inside = self._inside(path, dest)
        # The state of the file the driver published, and so verified (the
        # built-in stores'): None for a driver that names its file otherwise.
        verified = published.get(path) if inside == path else None
        self._record(uid, inside, _uid_digest(metadata), verified, metadata)
        return inside

    @staticmethod
    def _inside(path: str, dest: str) -> str:
        # A hit recorded elsewhere, or a driver that wrote outside dest: the
        # caller asked for dest, so the file appears there, atomically.
        if _directly_in(path, dest) or is_within(path, dest):
            return path
        return place_in(path, dest, os.path.basename(path))

    def _among_the_caches_files(self, dest: str) -> bool:
        """Whether *dest* lies where the store keeps its own files (a kept
        copy's directory, say): a download there would overwrite them, or they
        it. Told from the paths as written (a hit pays no system call for
        it): a mistake, not a link made to get there, is what it catches."""
        cache_dir = self._cache_dir
        if cache_dir is None:
            return False
        path, cache_dir = _plain(os.path.abspath(dest)), _plain(cache_dir)
        if not path.startswith(cache_dir):
            return False
        if path == cache_dir:  # a file named resources would take its place
            return True
        inside = path[len(cache_dir) :].lstrip(os.sep)
        return path[len(cache_dir)] == os.sep and (
            inside.split(os.sep, 1)[0] in _STORE_DIRS
        )

    @staticmethod
    def _place_hit(
        uid: str, path: str, dest: str, unusable: list[str] | None = None
    ) -> str | None:
        """Link or copy the verified cached file at *path* into *dest*.

        :param unusable: where to add why the file cannot be placed, if so
        :return: the path in *dest*; None when the cached file vanished since
            it was verified (``cache clear`` in another process): a miss
        :raises DestinationError: *dest* cannot take the file
        """
        # A cached file is linked into dest whether or not it lies somewhere
        # below dest already: one link beats resolving two paths, and a file
        # already there (the same one) is left as it is.
        if _directly_in(path, dest):
            return path
        try:
            # Held open, its inode cannot be freed and given to another file
            # while it is placed: the identity below is the file's own.
            held = os.open(path, _HOLD_FLAGS)
        except OSError:
            held = None
        try:
            if held is not None:
                try:
                    return place_in(path, dest, os.path.basename(path))
                except OSError as exc:
                    if _is_file(path, held):
                        raise _unplaceable(path, uid, dest, exc) from exc
            # Gone, or gone and kept again by another fetch (`cache clear` in
            # another process): not the file verified, and a miss.
            logger.warning(
                "cached file of %s removed before it was placed, a miss: %s",
                uid,
                path,
            )
            if unusable is not None:
                unusable.append(f"{path} was removed before it was placed")
            return None
        finally:
            if held is not None:
                os.close(held)

    def _verified_cache_hit(
        self, metadata: InfoT, unusable: list[str] | None = None
    ) -> str | None:
        """The path of the cached copy of *metadata*, verified; None for a miss.

        :param unusable: where to add why a copy that stays cannot be used now
        """
        uid = metadata.uid
        cache = self._backend_for(uid)
        if cache is None:
            if self.cache_backend is not None:
                logger.warning(
                    "%r is no file name: e3-core's FileCache would keep its entry"
                    " outside its directory; fetched without the cache",
                    uid,
                )
            return None
        try:
            entry = cache.get(uid)
        except Exception as exc:  # noqa: BLE001 - a foreign backend (e3-core's
            # pickle FileCache) raises anything on a garbage file: it is a miss.
            logger.warning("unreadable cache entry for %s, discarded: %r", uid, exc)
            self._discard(uid)
            return None
        if entry is None:
            return None
        local_path = _entry_local_path(entry, uid)
        # One lstat tells a link from a regular file from nothing there.
        mode = None if local_path is None else _mode_of(local_path)
        if local_path is None:
            logger.warning("invalid cache entry for %s, discarded: %r", uid, entry)
        elif mode is not None and stat.S_ISLNK(mode):
            # Planted: placed in dest, the link would name whatever its
            # target holds later, checked or not.
            logger.warning(
                "cached file of %s is a symbolic link, discarded: %s", uid, local_path
            )
        elif mode is None or not stat.S_ISREG(mode):
            logger.warning("cached file of %s is gone, discarded: %s", uid, local_path)
        elif self._trusted(uid, local_path):
            return local_path
        else:
            # Its state before the hash pass, for the stamp: a write during the
            # pass (a big file takes a while) leaves it unstamped.
            state = self._state(local_path)
            verdict = _verdict(metadata, local_path, unusable)
            if verdict is None:
                # Nothing known against the copy: it stays for a later call
                # (offline, it may be the only one there is).
                return None
            if verdict:
                if state is not None:
                    self._stamp(uid, local_path, state)
                return local_path
            logger.warning(
                "corrupted cache entry for %s, discarded: %s", uid, local_path
            )
        self._discard(uid)
        return None

    def _state(self, path: str) -> FileStamp | None:
        """The state of a kept copy that a stamp would record, if stamps apply."""
        content = self._content
        if not self.options.trust_unchanged_files or content is None:
            return None
        if not content.holds(path):
            return None
        try:
            return FileStamp.of(path)
        except OSError:
            return None

    def _trusted(self, uid: str, path: str) -> bool:
        content = self._content
        return (
            self.options.trust_unchanged_files
            and content is not None
            and content.holds(path)
            and content.unchanged(uid, path)
        )

    def _stamp(self, uid: str, path: str, verified: FileStamp | None = None) -> None:
        content = self._content
        if not self.options.trust_unchanged_files or content is None:
            return
        if not content.holds(path):
            return
        try:
            if not content.stamp(uid, path, verified):
                logger.warning("%s changed while verified: not stamped", path)
        except OSError as exc:
            logger.warning("cannot stamp %s as verified: %s", path, exc)

    def _forget_copy(self, uid: str) -> None:
        if self._content is not None:
            try:
                self._content.remove(uid)
            except OSError as exc:
                logger.warning("cannot remove the kept copy of %s: %s", uid, exc)

    def _discard(self, uid: str) -> None:
        if self._content is not None:
            try:
                self._content.forget_stamp(uid)
            except OSError as exc:
                logger.warning("cannot remove the stamp of %s: %s", uid, exc)
        cache = self._backend_for(uid)
        if cache is None:
            return
        try:
            cache.delete(uid)
        except Exception as exc:  # noqa: BLE001 - foreign backend, see above
            logger.warning("cannot remove cache entry %s: %r", uid, exc)

    def _record(
        self,
        uid: str,
        path: str,
        digest: Algorithm | None,
        verified: os.stat_result | None = None,
        metadata: ResourceInfoProtocol | None = None,
    ) -> None:
        """Keep a copy of the downloaded *path* and record it in the cache.

        :param verified: the state of the file the driver verified, when known:
            the copy is kept stamped with that state if it is that file (a
            write since is no verified content). Unknown, the copy is kept
            unstamped: its first hit verifies it.
        :param metadata: what checks a copy that is not the file verified
        :raises DestinationError: *path* is no longer the file the driver
            verified, and what stands there now is not the resource: another
            writer put a file of that name into ``dest`` meanwhile (a fetch of
            another resource of the same name, say)
        """
        cache = self._backend_for(uid)
        if cache is None:
            return
        recorded = os.path.abspath(path)  # a relative dest was given
        if self._content is not None:
            try:
                kept = self._content.keep(uid, path, digest)
            except OSError as exc:
                logger.warning(
                    "cannot keep a copy of %s in the cache, recording %s: %s",
                    uid,
                    path,
                    exc,
                )
            else:
                # A link is checked itself; a copy by its source, still the
                # file verified once copied.
                kept_from = kept.path if kept.same_file else path
                if verified is not None and not _is_state_of(verified, kept_from):
                    # Another writer's file: kept, unstamped, only if it is
                    # the resource all the same (the same resource fetched
                    # into dest at once through another cache, say). One of
                    # another size is not: no hash, no "wrong sha" logged.
                    if (
                        metadata is None
                        or not _of_size(kept.path, verified.st_size)
                        or _verdict(metadata, kept.path) is not True
                    ):
                        self._forget_copy(uid)
                        raise DestinationError(
                            uid,
                            os.path.dirname(path),
                            f"{path} was replaced by another writer while it "
                            "was fetched: it is not the file verified",
                        )
                    verified = None
                recorded = kept.path
                if kept.same_file and verified is not None:
                    self._stamp(uid, recorded, FileStamp.of_state(verified))
        try:
            stored = _set_entry(
                cache,
                CachedResource(uid=uid, local_path=recorded),
                self.options.lifetime(digest is not None),
            )
        except Exception as exc:  # noqa: BLE001 - foreign backend, see above
            logger.warning("cannot record %s in the cache: %r", uid, exc)
            return
        if not stored:
            logger.warning("the cache refused to record %s", uid)


# The directories of a cache directory that hold the store's and the cache's
# own files.
_STORE_DIRS = frozenset({"resources", LOCK_DIR, "entries"})


def _of_size(path: str, size: int) -> bool:
    """Whether the file at *path* has *size* bytes; no file answers False."""
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


def _is_state_of(verified: os.stat_result, path: str) -> bool:
    """Whether the file at *path* is the one whose state was *verified*; any
    doubt (no file there any more) answers False."""
    try:
        return os.path.samestat(os.stat(path), verified)
    except OSError:
        return False


def _plain(path: str) -> str:
    """*path* with a leading ``//`` (which POSIX keeps) as ``/``."""
    if os.sep == "/" and path.startswith("//"):
        return "/" + path.lstrip("/")
    return path


def _uid_of(metadata: object) -> str:
    """The uid of *metadata*; a :class:`StoreError` for what is no metadata.

    With runtime checks off, a driver whose ``get_resource_metadata`` returns
    something else gets the store's error, not an ``AttributeError``.
    """
    uid: object = getattr(metadata, "uid", None)
    if not isinstance(uid, str):
        shown = hide_url_credentials(repr(metadata))
        raise StoreError(
            hide_credentials(f"no resource metadata, its uid is {uid!r}: {shown}")
        )
    return uid


def _is_e3_core_file_cache(cache: object) -> bool:
    """Whether *cache* is e3-core's ``FileCache``, or a class derived from it,
    without importing e3-core."""
    return any(
        base.__module__ == "e3.store.cache.backends.filecache"
        and base.__name__ == "FileCache"
        for base in type(cache).__mro__
    )


def _set_entry(
    cache: CacheProtocol[CachedResource], entry: CachedResource, timeout: int
) -> bool:
    """Record *entry* in *cache*: in a cache of e3-core's (its pickling
    ``FileCache``) as e3-core's own ``CachedResource``, which e3-core code that
    runs without this package can unpickle."""
    if type(cache).__module__.startswith("e3.store."):
        from e3.store.backends.base import CachedResource as E3CachedResource
        from e3.store.cache.backends.base import Cache as E3Cache

        if isinstance(cache, E3Cache):
            e3_entry = E3CachedResource(entry.uid, entry.local_path)
            return cache.set(entry.uid, e3_entry, timeout)
    return cache.set(entry.uid, entry, timeout)


def _unplaceable(location: str, uid: str, dest: str, exc: OSError) -> DestinationError:
    """The error of a *dest* that cannot take *uid*, on a miss as on a hit.

    :param location: where the resource is (its uid before a download, the
        cached file for a hit)
    """
    return DestinationError(location, dest, f"cannot place {uid} into {dest}: {exc}")


# Opening a cached file only to hold it: never blocking on a FIFO planted
# in its place, never inherited.
# Not through a symbolic link: one put in the copy's place once it was
# checked is no file verified (a miss).
_HOLD_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)


def _mode_of(path: str) -> int | None:
    """The mode of *path* itself (a link is not followed); None if nothing is there."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _is_file(path: str, fd: int) -> bool:
    """Tell whether *path* names the file open as *fd*."""
    try:
        named, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _directly_in(path: str, dest: str) -> bool:
    """Tell whether *path* is a regular file (not a link) named in *dest* itself.

    Such a file lies in *dest* once links are resolved too, so
    :func:`is_within`'s two ``realpath`` calls can be spared.
    """
    if os.path.dirname(path) != dest or os.path.basename(path) in {"", ".", ".."}:
        return False
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_str_mapping(value: object) -> TypeGuard[Mapping[str, object]]:
    # Keys are only read by name: other key types simply never match.
    return isinstance(value, Mapping)


def _entry_local_path(entry: object, uid: str) -> str | None:
    """Return the path a cache entry records for *uid*, or None if it is not one.

    e3-core's ``CachedResource`` (another class with the same fields) is
    accepted, so a cache shared with e3-core code keeps serving.
    """
    entry_type = type(entry)
    fields: object = getattr(entry_type, "_fields", None)
    if not issubclass(entry_type, tuple) or fields != CachedResource._fields:
        return None
    entry_uid: object = getattr(entry, "uid", None)
    local_path: object = getattr(entry, "local_path", None)
    if entry_uid != uid or not isinstance(local_path, str):
        return None
    return local_path


def _answer_of(check: Callable[[str], object], path: str) -> object:
    """What *check* answers for *path*, as the driver's code returns it: its
    declared type is a promise that code may break."""
    return check(path)


def _path_answered(answer: object) -> str | None:
    """The path a driver's download answered: a ``str``, or a path object
    (``pathlib.Path``, as an e3-core driver may give); None for anything else
    (bytes too: the store's paths are text)."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, _PathObject):
        path = answer.__fspath__()
        if isinstance(path, str):
            return path
    return None


@runtime_checkable
class _PathObject(Protocol):
    """What ``os.fspath`` takes, its answer unknown (``str``, ``bytes``...)."""

    def __fspath__(self) -> object:
        """The object's path."""
        ...


def _verdict(
    metadata: ResourceInfoProtocol, path: str, unusable: list[str] | None = None
) -> bool | None:
    """Whether *path* passes ``metadata.verify``; a check that raises fails.

    Any exception, not only an OSError: a check that opens an archive raises
    its format's error on a damaged copy (``zipfile.BadZipFile``), and
    e3-core's own raises ``HashError`` when the file vanishes meanwhile. A
    hit is then a miss, never an exception.

    None when the check could not be made for a reason of this process, not
    of the copy: no file descriptor or memory left, or no permission to read
    it. Nothing is then known against the copy; why is added to *unusable*.
    """
    try:
        answer = _answer_of(metadata.verify, path)
    except Exception as exc:  # noqa: BLE001 - logged, and the hit is a miss
        if _of_this_process(exc):
            logger.warning("cannot verify %s now, the copy is kept: %r", path, exc)
            if unusable is not None:
                unusable.append(
                    f"cannot verify it now: {one_line(str(exc)) or type(exc).__name__}"
                )
            return None
        logger.warning("cannot verify %s: %r", path, exc)
        return False
    if not isinstance(answer, bool):
        # A check that breaks its contract ("no" is true): no proof either way,
        # and the copy is not served on it.
        logger.warning(
            "the check of %s answered %r, not True or False: not used", path, answer
        )
        return False
    return answer


# What a check meets for a reason of the process or the system, not of the
# file checked: too many open files, no memory, no permission.
_NOT_THE_FILES_FAULT = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
        errno.ENOBUFS,
        errno.EACCES,
        errno.EPERM,
        errno.EINTR,
        errno.EAGAIN,
    }
)


def _of_this_process(exc: BaseException) -> bool:
    """Whether *exc*, or an error it was raised from (e3-core wraps them),
    is one that says nothing against the file checked."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, MemoryError):
            return True
        if isinstance(current, OSError) and current.errno in _NOT_THE_FILES_FAULT:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False
