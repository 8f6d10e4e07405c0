"""Type tests for the store API: checked by mypy and basedpyright, never executed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from e3.store.backends.http_simple_store import HTTPSimpleStoreResourceInfo
from typing_extensions import assert_type, override

from e3_typed_store.backends.base import (
    CachedResource,
    ResourceInfo,
    ResourceInfoProtocol,
    Store,
    StoreProtocol,
)
from e3_typed_store.cache.backends.memory import MemoryCache
from tests.backends.drivers import CopyConfig, CopyInfo, CopyQuery, CopyStore


class OtherQuery(TypedDict):
    token: str


@dataclass(frozen=True)
class OtherInfo:
    """Metadata as a frozen dataclass: satisfies the protocol without subclassing."""

    uid: str

    def verify(self, resource_path: str) -> bool:
        return bool(resource_path)


class OtherStore(Store[OtherInfo, OtherQuery, None]):
    @override
    def get_resource_metadata(self, query: OtherQuery) -> OtherInfo:
        assert_type(query["token"], str)
        return OtherInfo(uid=query["token"])

    @override
    def download_resource_content(self, metadata: OtherInfo, dest: str) -> str | None:
        # The driver's own metadata type, with no cast and no isinstance.
        assert_type(metadata, OtherInfo)
        return dest + "/" + metadata.uid


def a_driver_receives_its_own_types(store: CopyStore, query: CopyQuery) -> None:
    info = store.get_resource_metadata(query)
    assert_type(info, CopyInfo)
    assert_type(store.download_resource(info, "/tmp"), str | None)
    assert_type(store.fetch_resource(info, "/tmp"), str)
    assert_type(store.store_configuration, CopyConfig)


def another_drivers_metadata_is_rejected(store: CopyStore, other: OtherInfo) -> None:
    store.download_resource(other, "/tmp")  # type: ignore[arg-type]


def a_query_missing_a_key_is_rejected(store: CopyStore) -> None:
    store.get_resource_metadata({"name": "x"})  # type: ignore[typeddict-item]


def a_query_with_a_mistyped_value_is_rejected(store: CopyStore) -> None:
    store.get_resource_metadata({"name": "x", "sha256": 3})  # type: ignore[typeddict-item]


def a_wrong_configuration_is_rejected() -> None:
    CopyStore("/some/dir", None)  # type: ignore[arg-type]


def cached_resource_fields_are_str(entry: CachedResource) -> None:
    assert_type(entry.uid, str)
    assert_type(entry.local_path, str)
    uid, local_path = entry
    assert_type(uid, str)
    assert_type(local_path, str)


def a_bare_store_reads_as_the_seed(store: Store) -> None:
    assert_type(store.store_configuration, object)
    info = store.get_resource_metadata({"any": "key"})
    assert_type(info, ResourceInfo)


def metadata_satisfies_the_protocol(
    e3_info: HTTPSimpleStoreResourceInfo, info: CopyInfo
) -> None:
    a: ResourceInfoProtocol = e3_info
    b: ResourceInfoProtocol = info
    c: ResourceInfoProtocol = OtherInfo(uid="x")
    del a, b, c


def a_non_metadata_is_rejected() -> None:
    bad: ResourceInfoProtocol = CachedResource("u", "p")  # type: ignore[assignment]
    del bad


def stores_satisfy_the_store_protocol(store: CopyStore, other: OtherStore) -> None:
    a: StoreProtocol[CopyInfo, CopyQuery] = store
    b: StoreProtocol[OtherInfo, OtherQuery] = other
    del a, b


def a_store_protocol_with_the_wrong_metadata_is_rejected(store: CopyStore) -> None:
    bad: StoreProtocol[OtherInfo, CopyQuery] = store  # type: ignore[assignment]
    del bad


def a_store_that_forgets_an_abstract_method_cannot_be_instantiated() -> None:
    class Forgetful(Store[OtherInfo, OtherQuery, None]):
        @override
        def get_resource_metadata(self, query: OtherQuery) -> OtherInfo:
            return OtherInfo(uid=query["token"])

    Forgetful(None, None)  # type: ignore[abstract]


def a_resource_info_that_forgets_verify_cannot_be_instantiated() -> None:
    class Forgetful(ResourceInfo):
        @property
        @override
        def uid(self) -> str:
            return "x"

    Forgetful()  # type: ignore[abstract]


def an_override_must_be_marked() -> None:
    class Unmarked(OtherStore):
        def get_resource_metadata(self, query: OtherQuery) -> OtherInfo:  # type: ignore[explicit-override]
            return OtherInfo(uid="x")

    del Unmarked


def uid_is_read_only(info: CopyInfo) -> None:
    info.uid = "other"  # type: ignore[misc]


def any_cache_of_cached_resources_is_accepted(source: CopyConfig) -> None:
    CopyStore(source, MemoryCache[CachedResource]())
    CopyStore(source, MemoryCache[object]())


def a_cache_of_other_values_is_rejected(source: CopyConfig) -> None:
    CopyStore(source, MemoryCache[int]())  # type: ignore[arg-type]
