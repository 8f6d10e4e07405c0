"""Helpers of the HTTP tests: one download with a fresh store and no cache, a
standard-library server run in a thread for the life of a block, and a head
such a server trickles."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
)
from tests.httpserver import TRICKLED_HEAD

__all__ = ["fetch_over_http", "running", "trickle_head"]


def fetch_over_http(
    url: str, dest: Path, sha256: str, configuration: HTTPSimpleStoreConfiguration
) -> Path:
    """Download *url* into *dest* with a fresh store and no cache."""
    store = HTTPSimpleStore(configuration, None)
    info = store.get_resource_metadata({"url": url, "sha256": sha256})
    return Path(store.download_resource_content(info, str(dest)))


def trickle_head(
    handler: BaseHTTPRequestHandler,
    stopping: threading.Event,
    sent_one: Callable[[], None],
) -> None:
    """Answer with TRICKLED_HEAD, a byte every 50 ms, until the client goes
    away or *stopping* is set; *sent_one* is called after each byte."""
    handler.close_connection = True
    for offset in range(len(TRICKLED_HEAD)):
        try:
            handler.wfile.write(TRICKLED_HEAD[offset : offset + 1])
            handler.wfile.flush()
        except OSError:
            return
        sent_one()
        if stopping.wait(0.05):
            return


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
