"""Helpers of the HTTP tests: one download with a fresh store and no cache, and
a standard-library server, able to trickle a head, run in a thread for the
life of a block."""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
)
from tests.httpserver import TRICKLED_HEAD

__all__ = ["TricklingServer", "fetch_over_http", "running"]


def fetch_over_http(
    url: str, dest: Path, sha256: str, configuration: HTTPSimpleStoreConfiguration
) -> Path:
    """Download *url* into *dest* with a fresh store and no cache."""
    store = HTTPSimpleStore(configuration, None)
    info = store.get_resource_metadata({"url": url, "sha256": sha256})
    return Path(store.download_resource_content(info, str(dest)))


class TricklingServer(ThreadingHTTPServer):
    """A standard-library server on 127.0.0.1 whose handlers can trickle."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        #: How many bytes were trickled (of TRICKLED_HEAD, or of a body).
        self.trickled = 0
        #: Set when the server stops: a trickle in progress ends.
        self.stopping = threading.Event()

    def trickle_head(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer with TRICKLED_HEAD, a byte every 50 ms, until the client
        goes away or the server stops."""
        handler.close_connection = True
        self.trickle(handler, TRICKLED_HEAD)

    def trickle(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        """Send *data* a byte every 50 ms, until the client goes away or the
        server stops."""
        for offset in range(len(data)):
            try:
                handler.wfile.write(data[offset : offset + 1])
                handler.wfile.flush()
            except OSError:
                return
            self.trickled += 1
            if self.stopping.wait(0.05):
                return


@contextmanager
def running(server: ThreadingHTTPServer) -> Generator[None, None, None]:
    """Serve with *server* in a thread; on leaving, end any trickle, stop the
    server, close it, join."""
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}
    )
    thread.start()
    try:
        yield
    finally:
        if isinstance(server, TricklingServer):
            server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
