"""MemoryCache follows the e3 cache API."""

from __future__ import annotations

import time

from e3_typed_store.backends.base import CachedResource
from e3_typed_store.cache.backends.base import DEFAULT_TIMEOUT, CacheProtocol
from e3_typed_store.cache.backends.memory import MemoryCache

ENTRY = CachedResource(uid="u", local_path="/p")


def test_miss_returns_default() -> None:
    cache: MemoryCache = MemoryCache()
    assert cache.get("u") is None
    assert cache.get("u", ENTRY) == ENTRY
    assert "u" not in cache
    assert not cache.has_resource("u")


def test_set_get_delete_clear() -> None:
    cache: MemoryCache = MemoryCache()
    assert cache.set("u", ENTRY) is True
    assert cache.get("u") == ENTRY
    assert "u" in cache and cache.has_resource("u")
    cache.delete("u")
    cache.delete("u")  # deleting a missing entry is not an error
    assert cache.get("u") is None
    cache.set("a", ENTRY)
    cache.set("b", ENTRY)
    cache.clear()
    assert len(cache) == 0


def test_expired_entries_are_misses_and_dropped() -> None:
    cache: MemoryCache = MemoryCache()
    cache.set("u", ENTRY, timeout=-1)
    assert cache.get("u") is None
    assert len(cache) == 0


def test_expiry_time() -> None:
    cache: MemoryCache = MemoryCache()
    before = time.time()
    assert (
        before + DEFAULT_TIMEOUT
        <= cache.get_expiry_time()
        <= time.time() + DEFAULT_TIMEOUT
    )
    assert cache.get_expiry_time(10) <= time.time() + 10


def test_close_keeps_entries_readable() -> None:
    cache: MemoryCache = MemoryCache()
    cache.set("u", ENTRY)
    cache.close()
    assert cache.get("u") == ENTRY


def test_satisfies_the_protocol_at_runtime() -> None:
    assert isinstance(MemoryCache(), CacheProtocol)
    assert not isinstance(object(), CacheProtocol)
