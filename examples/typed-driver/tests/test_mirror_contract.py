"""MirrorStore through e3-typed-store's conformance kit, plus its own tests."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from e3_typed_store_example_driver.mirror import (
    MirrorConfig,
    MirrorInfo,
    MirrorQuery,
    MirrorStore,
)
from typing_extensions import override

from e3_typed_store import load_store
from e3_typed_store.backends.base import CachedResource
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.testing import CacheContract, StoreContract

PAYLOAD = b"mirrored payload\n" * 100
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class TestMirrorStore(StoreContract[MirrorInfo, MirrorQuery]):
    """Every rule of the kit, run against MirrorStore and the default FileCache."""

    @override
    def make_store(
        self, cache: CacheProtocol[CachedResource] | None, tmp_path: Path
    ) -> MirrorStore:
        (tmp_path / "mirror").mkdir(exist_ok=True)
        return MirrorStore(MirrorConfig(root=str(tmp_path / "mirror")), cache)

    @override
    def good_query(self, tmp_path: Path) -> MirrorQuery:
        (tmp_path / "mirror" / "tool.tgz").write_bytes(PAYLOAD)
        return {"name": "tool.tgz", "sha256": SHA256}

    @override
    def missing_query(self, tmp_path: Path) -> MirrorQuery:
        return {"name": "absent.tgz", "sha256": SHA256}

    @override
    def mismatched_query(self, tmp_path: Path) -> MirrorQuery:
        self.good_query(tmp_path)
        return {"name": "tool.tgz", "sha256": "0" * 64}

    @override
    def bad_queries(self) -> Sequence[Mapping[str, object]]:
        return [
            {},
            {"name": "../tool.tgz", "sha256": SHA256},
            {"name": "tool.tgz", "sha256": "not hex"},
            {"name": 3, "sha256": SHA256},
        ]


class TestMirrorStoreMemoryCache(TestMirrorStore):
    """The same rules with a cache that keeps no directory."""

    @override
    def make_cache(self, tmp_path: Path) -> CacheProtocol[CachedResource]:
        return MemoryCache()


class TestMemoryCache(CacheContract):
    """A cache backend goes through the cache kit the same way."""

    @override
    def make_cache(self, tmp_path: Path) -> MemoryCache:
        return MemoryCache()


def test_loaded_through_its_entry_point(tmp_path: Path) -> None:
    (tmp_path / "tool.tgz").write_bytes(PAYLOAD)
    store = load_store(
        "example-mirror", MirrorConfig(str(tmp_path)), None, expect=MirrorStore
    )
    info = store.get_resource_metadata({"name": "tool.tgz", "sha256": SHA256})
    path = store.fetch_resource(info, str(tmp_path / "dest"))
    assert Path(path).read_bytes() == PAYLOAD


def test_runtime_checks_are_on() -> None:
    from e3_typed_store import runtime_checks_enabled

    assert runtime_checks_enabled(), "tests/conftest.py must turn beartype on"
