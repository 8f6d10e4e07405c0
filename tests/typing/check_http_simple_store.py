"""Type tests for the HTTP driver: checked by mypy and basedpyright, never executed."""

from __future__ import annotations

from typing_extensions import assert_type

from e3_typed_store.backends.base import ResourceInfo, StoreProtocol
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleQuery,
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
    HTTPSimpleStoreResourceInfo,
    HTTPSimpleStoreSettings,
)
from e3_typed_store.cache.backends.memory import MemoryCache
from tests.backends.drivers import CopyInfo

SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"


def e3_construction_and_query() -> None:
    store = HTTPSimpleStore({}, None)
    info = store.get_resource_metadata({"url": "https://h/x", "sha": SHA1})
    assert_type(info, HTTPSimpleStoreResourceInfo)
    assert_type(info.uid, str)
    assert_type(store.settings, HTTPSimpleStoreSettings)
    assert_type(store.store_configuration, HTTPSimpleStoreConfiguration)
    HTTPSimpleStore(None, MemoryCache())


def content_download_is_typed(
    store: HTTPSimpleStore, info: HTTPSimpleStoreResourceInfo
) -> None:
    # The driver's own metadata type, and a path rather than an Optional.
    assert_type(store.download_resource_content(info, "/tmp"), str)
    assert_type(store.download_resource(info, "/tmp"), str | None)
    assert_type(store.fetch_resource(info, "/tmp"), str)


def a_query_needs_a_url(store: HTTPSimpleStore) -> None:
    store.get_resource_metadata({"sha": SHA1})  # type: ignore[typeddict-item]


def query_values_are_strings() -> None:
    query: HTTPSimpleQuery = {"url": "https://h/x", "sha256": 42}  # type: ignore[typeddict-item]
    del query


def unknown_query_keys_are_rejected() -> None:
    query: HTTPSimpleQuery = {"url": "https://h/x", "sha265": SHA1}  # type: ignore[typeddict-unknown-key]
    del query


def other_metadata_is_rejected(store: HTTPSimpleStore, info: CopyInfo) -> None:
    store.download_resource_content(info, "/tmp")  # type: ignore[arg-type]


def base_metadata_is_rejected(store: HTTPSimpleStore, info: ResourceInfo) -> None:
    store.download_resource_content(info, "/tmp")  # type: ignore[arg-type]


def configuration_values_are_typed() -> None:
    HTTPSimpleStore({"deadline": "soon"}, None)  # type: ignore[arg-type]
    HTTPSimpleStore({"retry": 3}, None)  # type: ignore[arg-type]


def the_store_satisfies_the_protocol(store: HTTPSimpleStore) -> None:
    proto: StoreProtocol[HTTPSimpleStoreResourceInfo, HTTPSimpleQuery] = store
    del proto
