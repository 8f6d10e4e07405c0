"""One download over HTTP with a fresh store and no cache, for the HTTP tests."""

from __future__ import annotations

from pathlib import Path

from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
)

__all__ = ["fetch_over_http"]


def fetch_over_http(
    url: str, dest: Path, sha256: str, configuration: HTTPSimpleStoreConfiguration
) -> Path:
    """Download *url* into *dest* with a fresh store and no cache."""
    store = HTTPSimpleStore(configuration, None)
    info = store.get_resource_metadata({"url": url, "sha256": sha256})
    return Path(store.download_resource_content(info, str(dest)))
