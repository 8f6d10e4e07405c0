"""Helpers of the HTTP tests: one download with a fresh store and no cache, and
a standard-library server run in a thread for the life of a block."""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
)

__all__ = ["fetch_over_http", "running"]


def fetch_over_http(
    url: str, dest: Path, sha256: str, configuration: HTTPSimpleStoreConfiguration
) -> Path:
    """Download *url* into *dest* with a fresh store and no cache."""
    store = HTTPSimpleStore(configuration, None)
    info = store.get_resource_metadata({"url": url, "sha256": sha256})
    return Path(store.download_resource_content(info, str(dest)))


@contextmanager
def running(server: ThreadingHTTPServer) -> Generator[None, None, None]:
    """Serve with *server* in a thread; on leaving, stop it, close it, join."""
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
