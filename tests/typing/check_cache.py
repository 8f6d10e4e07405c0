"""Type tests for the cache API: checked by mypy and basedpyright, never executed."""

from __future__ import annotations

from e3.store.cache.backends.filecache import FileCache as E3FileCache
from typing_extensions import assert_type

from e3_typed_store.backends.base import CachedResource
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.cache.backends.memory import MemoryCache
from tests.backends.drivers import CopyConfig, CopyStore


def e3_filecache_is_a_cache(cache: E3FileCache) -> None:
    accepted: CacheProtocol[CachedResource] = cache
    del accepted


def e3_filecache_is_a_store_backend(cache: E3FileCache, config: CopyConfig) -> None:
    CopyStore(config, cache)


def values_are_precise() -> None:
    cache: MemoryCache = MemoryCache()
    assert_type(cache.get("u"), CachedResource | None)
    assert_type(cache.set("u", CachedResource("u", "/p")), bool)
    assert_type("u" in cache, bool)
    assert_type(cache.get_expiry_time(), float)


def a_wrong_value_is_rejected() -> None:
    cache: MemoryCache = MemoryCache()
    cache.set("u", "/just/a/path")  # type: ignore[arg-type]


def a_wrong_uid_is_rejected() -> None:
    cache: MemoryCache = MemoryCache()
    cache.get(42)  # type: ignore[arg-type]


def a_non_cache_is_rejected(config: CopyConfig) -> None:
    CopyStore(config, {"cache_dir": "/tmp"})  # type: ignore[arg-type]
