"""A cache that lives in the memory of one process.

.. versionadded:: 0.1
"""

from __future__ import annotations

import time

from e3_typed_store._types import CachedResource, TypeVar, override
from e3_typed_store.cache.backends.base import (
    DEFAULT_TIMEOUT,
    Cache,
    CacheConfiguration,
)

__all__ = ["MemoryCache"]

ValueT = TypeVar("ValueT", default=CachedResource)


class MemoryCache(Cache[ValueT, CacheConfiguration]):
    """Keep entries in a dictionary, for tests and short-lived programs.

    Entries expire like those of every cache; nothing survives the process.

    :param cache_configuration: ignored; accepted for the e3 constructor shape

    .. versionadded:: 0.1
    """

    def __init__(self, cache_configuration: CacheConfiguration = None) -> None:
        super().__init__(cache_configuration)
        self._entries: dict[str, tuple[float, ValueT]] = {}

    @override
    def get(self, uid: str, default: ValueT | None = None) -> ValueT | None:
        found = self._entries.get(uid)
        if found is None:
            return default
        expiry, value = found
        if expiry < time.time():
            del self._entries[uid]
            return default
        return value

    @override
    def set(self, uid: str, value: ValueT, timeout: int = DEFAULT_TIMEOUT) -> bool:
        self._entries[uid] = (self.get_expiry_time(timeout), value)
        return True

    @override
    def delete(self, uid: str) -> None:
        self._entries.pop(uid, None)

    @override
    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        """Count the entries held, expired ones included until they are read."""
        return len(self._entries)
