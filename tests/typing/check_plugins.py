"""Type tests for loading drivers by name: checked, never executed."""

from __future__ import annotations

from collections.abc import Mapping

from typing_extensions import assert_type

from e3_typed_store import load_cache, load_store
from e3_typed_store.backends.base import (
    CachedResource,
    ResourceInfoProtocol,
    StoreProtocol,
)
from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.cache.backends.memory import MemoryCache


def known_names_give_precise_types() -> None:
    store = load_store("http-simple-store", {}, None, expect=HTTPSimpleStore)
    assert_type(store, HTTPSimpleStore)
    assert_type(load_cache("file-cache", {"cache_dir": "/tmp"}), FileCache)
    assert_type(load_cache("memory-cache"), MemoryCache[CachedResource])


def other_names_give_the_erased_type(name: str) -> None:
    store = load_store(name, {"any": "thing"}, None)
    assert_type(store, StoreProtocol[ResourceInfoProtocol, Mapping[str, object]])
    assert_type(load_cache(name, None), CacheProtocol[CachedResource])


def an_expected_class_must_be_a_class() -> None:
    load_store("http-simple-store", {}, None, expect="HTTPSimpleStore")  # type: ignore[call-overload]


def the_cache_package_loader_is_the_same() -> None:
    from e3_typed_store.cache import load_cache as from_cache_package

    assert_type(from_cache_package("file-cache", {"cache_dir": "/tmp"}), FileCache)
    assert_type(from_cache_package("memory-cache"), MemoryCache[CachedResource])
