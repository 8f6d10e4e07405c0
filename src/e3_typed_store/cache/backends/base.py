"""The cache API shared by every cache backend.

:class:`Cache` is the base class to subclass: it supplies ``has_resource``,
``__contains__``, ``get_expiry_time`` and ``close`` around the abstract
``get``, ``set``, ``delete`` and ``clear``, with the names and meaning of
``e3.store.cache.backends.base.Cache``. :class:`CacheProtocol` is what a store
needs from a cache, structurally: e3-core's own ``FileCache`` satisfies it.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from typing import Generic, Protocol, runtime_checkable

from e3_typed_store._types import CachedResource, TypeVar

__all__ = [
    "Cache",
    "CacheConfiguration",
    "CacheProtocol",
    "DEFAULT_TIMEOUT",
]

#: Lifetime of a cache entry, in seconds, when ``set`` is given none (one day).
DEFAULT_TIMEOUT = 3600 * 24

#: The configuration a cache accepts when it defines no narrower type.
CacheConfiguration = Mapping[str, object] | None

ValueT = TypeVar("ValueT", default=CachedResource)
ValueT_contra = TypeVar("ValueT_contra", contravariant=True, default=CachedResource)
ConfigT = TypeVar("ConfigT", default=CacheConfiguration)


@runtime_checkable
class CacheProtocol(Protocol[ValueT_contra]):
    """What a store needs from a cache backend.

    ``get`` answers ``object``: whatever a backend hands back, a store checks
    it before trusting it. ``set`` takes the value type the cache stores.

    .. versionadded:: 0.1
    """

    def get(self, uid: str, default: None = None) -> object:
        """Return the entry stored under *uid*, or *default*.

        :param uid: the resource uid
        :param default: the value to return on a miss
        """
        ...

    def set(
        self, uid: str, value: ValueT_contra, timeout: int = DEFAULT_TIMEOUT
    ) -> bool:
        """Store *value* under *uid* for *timeout* seconds.

        :param uid: the resource uid
        :param value: the entry to store
        :param timeout: the entry's lifetime in seconds
        :return: whether the entry was stored
        """
        ...

    def delete(self, uid: str) -> object:
        """Remove the entry stored under *uid*, if any.

        :param uid: the resource uid
        """
        ...

    def clear(self) -> object:
        """Remove every entry."""
        ...

    def has_resource(self, uid: str) -> bool:
        """Tell whether an unexpired entry is stored under *uid*.

        :param uid: the resource uid
        """
        ...

    def __contains__(self, uid: str) -> bool:
        """Tell whether an unexpired entry is stored under *uid*.

        :param uid: the resource uid
        """
        ...

    def get_expiry_time(self, timeout: int = DEFAULT_TIMEOUT) -> float:
        """Return the expiry date, in seconds since the epoch, of an entry set now.

        :param timeout: the entry's lifetime in seconds
        """
        ...

    def close(self) -> object:
        """Release what the cache holds open."""
        ...


class Cache(abc.ABC, Generic[ValueT, ConfigT]):
    """Base class of cache backends, generic in the values they store.

    A subclass implements ``get``, ``set``, ``delete`` and ``clear``; the rest
    is derived from them. ``Cache[ValueT]`` satisfies ``CacheProtocol[ValueT]``.

    :param cache_configuration: the backend's configuration

    .. versionadded:: 0.1
    """

    def __init__(self, cache_configuration: ConfigT) -> None:
        self.cache_configuration = cache_configuration

    @abc.abstractmethod
    def get(self, uid: str, default: ValueT | None = None) -> ValueT | None:
        """Return the entry stored under *uid*, or *default* on a miss.

        An expired entry is a miss. A backend that finds an unreadable entry
        removes it and answers a miss rather than raising.

        :param uid: the resource uid
        :param default: the value to return on a miss
        """

    @abc.abstractmethod
    def set(self, uid: str, value: ValueT, timeout: int = DEFAULT_TIMEOUT) -> bool:
        """Store *value* under *uid* for *timeout* seconds.

        :param uid: the resource uid
        :param value: the entry to store
        :param timeout: the entry's lifetime in seconds
        :return: True if the value is stored, False on failure
        """

    @abc.abstractmethod
    def delete(self, uid: str) -> None:
        """Remove the entry stored under *uid*; do nothing if there is none.

        :param uid: the resource uid
        """

    @abc.abstractmethod
    def clear(self) -> None:
        """Remove every entry of the cache."""

    def get_expiry_time(self, timeout: int = DEFAULT_TIMEOUT) -> float:
        """Return the expiry date, in seconds since the epoch, of an entry set now.

        :param timeout: the entry's lifetime in seconds
        """
        return time.time() + timeout

    def has_resource(self, uid: str) -> bool:
        """Tell whether an unexpired entry is stored under *uid*.

        :param uid: the resource uid
        """
        return self.get(uid) is not None

    def close(self) -> None:
        """Release what the cache holds open; the default holds nothing."""

    def __contains__(self, uid: str) -> bool:
        """Tell whether an unexpired entry is stored under *uid*.

        :param uid: the resource uid
        """
        return self.has_resource(uid)
