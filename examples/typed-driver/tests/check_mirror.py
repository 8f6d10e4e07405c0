"""Type tests: checked by mypy (warn_unused_ignores), never executed."""

from __future__ import annotations

from e3_typed_store_example_driver.mirror import (
    MirrorConfig,
    MirrorInfo,
    MirrorQuery,
    MirrorStore,
)
from typing_extensions import assert_type

from e3_typed_store import load_store
from e3_typed_store.cache.backends.memory import MemoryCache


def the_driver_keeps_its_types(query: MirrorQuery) -> None:
    store = MirrorStore(MirrorConfig(root="/mirror"), MemoryCache())
    info = store.get_resource_metadata(query)
    assert_type(info, MirrorInfo)
    assert_type(store.download_resource(info, "dest"), str | None)
    assert_type(store.fetch_resource(info, "dest"), str)
    assert_type(store.store_configuration, MirrorConfig)
    loaded = load_store("example-mirror", None, None, expect=MirrorStore)
    assert_type(loaded, MirrorStore)


def what_must_be_rejected(store: MirrorStore) -> None:
    store.get_resource_metadata({"name": "x.tgz"})  # type: ignore[typeddict-item]
    store.get_resource_metadata({"name": "x", "sha256": 1})  # type: ignore[typeddict-item]
    MirrorStore({"root": "/mirror"}, None)  # type: ignore[arg-type]
    store.download_resource("not metadata", "dest")  # type: ignore[arg-type]
