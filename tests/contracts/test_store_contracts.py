"""This package's stores through the store contract of e3_typed_store.testing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from typing_extensions import override

from e3_typed_store._demo import DemoServer
from e3_typed_store.backends.base import CachedResource
from e3_typed_store.backends.file_store import (
    FileStore,
    FileStoreQuery,
    FileStoreResourceInfo,
)
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleQuery,
    HTTPSimpleStore,
    HTTPSimpleStoreResourceInfo,
)
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.testing import StoreContract

PAYLOAD = b"contract payload\n" * 64
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
OTHER_SHA256 = hashlib.sha256(b"something else").hexdigest()


class TestFileStore(StoreContract[FileStoreResourceInfo, FileStoreQuery]):
    @override
    def make_store(
        self, cache: CacheProtocol[CachedResource] | None, tmp_path: Path
    ) -> FileStore:
        mirror = tmp_path / "mirror"
        mirror.mkdir(exist_ok=True)
        return FileStore({"root": str(mirror)}, cache)

    @override
    def good_query(self, tmp_path: Path) -> FileStoreQuery:
        (tmp_path / "mirror" / "res.tgz").write_bytes(PAYLOAD)
        return {"path": "res.tgz", "sha256": SHA256}

    @override
    def missing_query(self, tmp_path: Path) -> FileStoreQuery:
        return {"path": "absent.tgz", "sha256": SHA256}

    @override
    def mismatched_query(self, tmp_path: Path) -> FileStoreQuery:
        self.good_query(tmp_path)
        return {"path": "res.tgz", "sha256": OTHER_SHA256}

    @override
    def bad_queries(self) -> Sequence[Mapping[str, object]]:
        return [
            {},
            {"path": "res.tgz"},
            {"path": "../res.tgz", "sha256": SHA256},
            {"url": "http://127.0.0.1/res.tgz", "sha256": SHA256},
            {"path": "res.tgz", "sha256": "not hex"},
            {"path": 1, "sha256": SHA256},
        ]


class TestFileStoreMemoryCache(TestFileStore):
    """The same rules with a cache that has no directory."""

    @override
    def make_cache(self, tmp_path: Path) -> CacheProtocol[CachedResource]:
        return MemoryCache()


class TestHTTPSimpleStore(StoreContract[HTTPSimpleStoreResourceInfo, HTTPSimpleQuery]):
    server: DemoServer

    #: Serve from the server that suggests a file name out of dest.
    hostile = False

    @pytest.fixture(autouse=True)
    def serve(self, demo_server: DemoServer, hostile_server: DemoServer) -> None:
        # One server for the module (stopping one takes a poll interval).
        self.server = hostile_server if self.hostile else demo_server

    @override
    def make_store(
        self, cache: CacheProtocol[CachedResource] | None, tmp_path: Path
    ) -> HTTPSimpleStore:
        return HTTPSimpleStore({"progress": False, "retries": 0}, cache)

    @override
    def good_query(self, tmp_path: Path) -> HTTPSimpleQuery:
        return {"url": self.server.url("res.tgz"), "sha256": SHA256}

    @override
    def missing_query(self, tmp_path: Path) -> HTTPSimpleQuery:
        return {"url": self.server.url("absent.tgz"), "sha256": SHA256}

    @override
    def mismatched_query(self, tmp_path: Path) -> HTTPSimpleQuery:
        return {"url": self.server.url("res.tgz"), "sha256": OTHER_SHA256}

    @override
    def bad_queries(self) -> Sequence[Mapping[str, object]]:
        return [
            {},
            {"url": self.server.url("res.tgz")},
            {"sha256": SHA256},
            {"url": "file:///etc/passwd", "sha256": SHA256},
            {"url": self.server.url("res.tgz"), "sha": SHA256},
            {"url": self.server.url("res.tgz"), "sha256": SHA256, "extra": "1"},
        ]


class TestHTTPSimpleStoreHostileServer(TestHTTPSimpleStore):
    """A server whose Content-Disposition names ``../escaped.tgz``."""

    hostile = True
