"""This package's caches through the cache contract of e3_typed_store.testing."""

from __future__ import annotations

from pathlib import Path

from typing_extensions import override

from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.testing import CacheContract


class TestFileCache(CacheContract):
    @override
    def make_cache(self, tmp_path: Path) -> FileCache:
        return FileCache({"cache_dir": str(tmp_path / "cache")})


class TestMemoryCache(CacheContract):
    @override
    def make_cache(self, tmp_path: Path) -> MemoryCache:
        return MemoryCache()
