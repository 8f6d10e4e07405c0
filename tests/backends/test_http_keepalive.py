"""Connections kept open between downloads: reused, never shared, never stale.

These tests run a real HTTP/1.1 server on 127.0.0.1 that keeps connections
open and counts them, unlike tests.httpserver (one request per connection).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from typing_extensions import override

from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStoreConfiguration,
    close_connections,
)
from e3_typed_store.errors import DeadlineExceededError, DownloadError
from tests.backends.fetching import TricklingServer, fetch_over_http, running
from tests.httpserver import TRICKLED_HEAD, LoopbackServer

CONTENT = os.urandom(300_000)
SHA256 = hashlib.sha256(CONTENT).hexdigest()
QUICK: HTTPSimpleStoreConfiguration = {
    "progress": False,
    "retries": 0,
    "read_timeout": 10.0,
    "deadline": 20.0,
}


class KeepAliveServer(TricklingServer):
    """Serves CONTENT at any path over HTTP/1.1; counts connections and GETs."""

    def __init__(
        self,
        close_after_response: bool = False,
        close_when_reused: bool = False,
        trickle_when_reused: bool = False,
        garbage_when_reused: bool = False,
        early_hints: bool = False,
        overlong: bool = False,
    ) -> None:
        super().__init__(_Handler)
        #: Drop each connection after its response, without saying so in a
        #: ``Connection: close`` header: what a server does to an idle one.
        self.close_after_response = close_after_response
        #: Close a connection, unanswered, when a second request comes on it:
        #: the server's idle timeout striking just as the client reuses it.
        self.close_when_reused = close_when_reused
        #: Answer a second request on a connection with a head sent a byte
        #: every 50 ms (TRICKLED_HEAD), until the client goes away.
        self.trickle_when_reused = trickle_when_reused
        #: Answer a second request on a connection with bytes that are no
        #: HTTP: what the leftovers of an earlier answer look like.
        self.garbage_when_reused = garbage_when_reused
        #: Send a ``103 Early Hints`` before each answer.
        self.early_hints = early_hints
        #: Send bytes past the ``Content-Length`` of each body.
        self.overlong = overlong
        self.lock = threading.Lock()
        self.connections = 0
        self.gets = 0
        #: The Cookie header of each GET ("" when none was sent).
        self.cookies: list[str] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/r.bin"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _counts(self) -> KeepAliveServer:
        server = self.server
        assert isinstance(server, KeepAliveServer)
        return server

    @override
    def setup(self) -> None:
        super().setup()
        self.on_this_connection = 0
        server = self._counts()
        with server.lock:
            server.connections += 1

    def do_GET(self) -> None:
        server = self._counts()
        self.on_this_connection += 1
        with server.lock:
            server.gets += 1
            server.cookies.append(self.headers.get("Cookie", ""))
            visit = server.gets
        if server.close_when_reused and self.on_this_connection > 1:
            self.close_connection = True
            return
        if server.garbage_when_reused and self.on_this_connection > 1:
            self.close_connection = True
            self.wfile.write(b"leftovers of an earlier answer\r\n\r\n")
            return
        if server.trickle_when_reused and self.on_this_connection > 1:
            server.trickle_head(self)
            return
        if server.early_hints:
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
        self.send_response(200)
        self.send_header("Set-Cookie", f"visit={visit}; Path=/")
        self.send_header("Content-Length", str(len(CONTENT)))
        self.end_headers()
        self.wfile.write(CONTENT)
        if server.overlong:
            self.wfile.write(b"bytes past the content's length\r\n")
        self.wfile.flush()
        if server.close_after_response:
            self.close_connection = True

    @override
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(
    close_after_response: bool = False,
    close_when_reused: bool = False,
    trickle_when_reused: bool = False,
    garbage_when_reused: bool = False,
    early_hints: bool = False,
    overlong: bool = False,
) -> Generator[KeepAliveServer, None, None]:
    server = KeepAliveServer(
        close_after_response,
        close_when_reused,
        trickle_when_reused,
        garbage_when_reused,
        early_hints,
        overlong,
    )
    with running(server):
        yield server


@pytest.fixture
def server() -> Iterator[KeepAliveServer]:
    with serve() as started:
        yield started


@pytest.fixture
def closing_server() -> Iterator[KeepAliveServer]:
    with serve(close_after_response=True) as started:
        yield started


@pytest.fixture
def server_closing_reused() -> Iterator[KeepAliveServer]:
    with serve(close_when_reused=True) as started:
        yield started


def fetch(url: str, dest: Path) -> Path:
    return fetch_over_http(url, dest, SHA256, QUICK)


def test_downloads_from_one_server_share_a_connection(
    server: KeepAliveServer, tmp_path: Path
) -> None:
    for index in range(3):
        assert fetch(server.url, tmp_path / str(index)).read_bytes() == CONTENT
    assert server.gets == 3
    assert server.connections == 1


def test_early_hints_leave_nothing_on_a_kept_connection(tmp_path: Path) -> None:
    # Each answer comes after a 103: every download reads its own answer,
    # and the connection serves the next one.
    with serve(early_hints=True) as hinting:
        for index in range(3):
            path = fetch(hinting.url, tmp_path / str(index))
            assert path.read_bytes() == CONTENT
        assert hinting.gets == 3
        assert hinting.connections == 1


def test_a_connection_the_server_dropped_is_not_reused(
    closing_server: KeepAliveServer, tmp_path: Path
) -> None:
    # No retry is allowed (retries=0): a write on the dead connection would
    # fail the second download.
    for index in range(3):
        assert fetch(closing_server.url, tmp_path / str(index)).read_bytes() == CONTENT
    assert closing_server.gets == 3
    assert closing_server.connections == 3


def test_threads_do_not_share_connections(
    server: KeepAliveServer, tmp_path: Path
) -> None:
    failures: list[BaseException] = []

    def fetch_some(index: int) -> None:
        try:
            for round_ in range(3):
                path = fetch(server.url, tmp_path / f"t{index}-{round_}")
                assert path.read_bytes() == CONTENT
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=fetch_some, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert server.gets == 12
    assert server.connections <= 4  # each thread keeps its own


def fetch_in_forked_child(url: str, dest: str) -> None:
    """In a forked child: download over a connection of the child's own."""
    try:
        ok = fetch(url, Path(dest)).read_bytes() == CONTENT
    except BaseException:  # noqa: BLE001 - the exit status says it
        ok = False
    os._exit(0 if ok else 1)


def test_a_forked_child_opens_its_own_connection(
    server: KeepAliveServer, tmp_path: Path
) -> None:
    # The parent's pooled connection must not be written on by the child: two
    # processes on one socket would mix their requests and responses.
    fetch(server.url, tmp_path / "parent")
    child = multiprocessing.get_context("fork").Process(
        target=fetch_in_forked_child, args=(server.url, str(tmp_path / "child"))
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert fetch(server.url, tmp_path / "parent-again").read_bytes() == CONTENT
    assert server.gets == 3
    assert server.connections == 2  # the parent's, reused, and the child's


def test_no_cookie_is_kept_from_one_download_to_the_next(
    server: KeepAliveServer, tmp_path: Path
) -> None:
    # The server sets a cookie on every response: a kept session must not
    # carry it to the next download (the downloads are unrelated).
    for index in range(3):
        fetch(server.url, tmp_path / str(index))
    assert server.cookies == ["", "", ""]
    assert server.connections == 1


def test_a_connection_closed_as_it_is_reused_costs_no_attempt(
    server_closing_reused: KeepAliveServer, tmp_path: Path
) -> None:
    # retries=0: the request that met a closed connection is sent again on a
    # new one, not counted as a failed attempt.
    server = server_closing_reused
    for index in range(3):
        assert fetch(server.url, tmp_path / str(index)).read_bytes() == CONTENT
    assert server.gets == 5  # 3 answered, 2 met a closing connection
    assert server.connections == 3


def test_a_server_that_never_answers_is_asked_twice_per_attempt(
    tmp_path: Path,
) -> None:
    with LoopbackServer() as server:
        server.route("/r.bin", lambda exchange: None)  # closes, unanswered
        with pytest.raises(DownloadError):
            fetch(server.url("/r.bin"), tmp_path)
        assert len(server.requests("/r.bin")) == 2


def test_a_head_trickled_on_a_reused_connection_is_cut_at_the_deadline(
    tmp_path: Path,
) -> None:
    # The connection is the pool's, already open: the watchdog has its socket
    # from the start of the request.
    with serve(trickle_when_reused=True) as server:
        assert fetch(server.url, tmp_path / "first").read_bytes() == CONTENT
        with pytest.raises(DeadlineExceededError) as raised:
            fetch_over_http(
                server.url, tmp_path / "second", SHA256, {**QUICK, "deadline": 1.0}
            )
        assert raised.value.deadline == 1.0
        assert 0 < server.trickled < len(TRICKLED_HEAD)
        assert server.connections == 1
        assert not (tmp_path / "second").exists() or not any(
            (tmp_path / "second").iterdir()
        )
        # The connection that was shut is not handed out again.
        assert fetch(server.url, tmp_path / "third").read_bytes() == CONTENT
        assert server.connections == 2


def test_an_answer_that_is_not_http_on_a_kept_connection_costs_no_attempt(
    tmp_path: Path,
) -> None:
    # On a connection kept from an earlier download, bytes that are no HTTP
    # may be what that download left (a body longer than its Content-Length):
    # the request is sent again at once on a new connection, not counted as a
    # failed attempt (retries=0 here). On a new one it would fail at once.
    with serve(garbage_when_reused=True) as server:
        assert fetch(server.url, tmp_path / "first").read_bytes() == CONTENT
        assert fetch(server.url, tmp_path / "second").read_bytes() == CONTENT
        assert server.gets == 3
        assert server.connections == 2


def test_a_body_longer_than_its_content_length_is_cut_and_costs_nothing_later(
    tmp_path: Path,
) -> None:
    # The bytes past Content-Length are not the file's, and they do not spoil
    # the next download on that server (retries=0).
    with serve(overlong=True) as server:
        for index in range(3):
            assert fetch(server.url, tmp_path / str(index)).read_bytes() == CONTENT


def test_closed_connections_are_not_reused(
    server: KeepAliveServer, tmp_path: Path
) -> None:
    assert fetch(server.url, tmp_path / "a").read_bytes() == CONTENT
    close_connections()
    close_connections()  # nothing left to close: no error
    assert fetch(server.url, tmp_path / "b").read_bytes() == CONTENT
    assert (server.gets, server.connections) == (2, 2)
    assert fetch(server.url, tmp_path / "c").read_bytes() == CONTENT
    assert server.connections == 2  # the new one is kept in turn


def test_a_thread_closes_its_own_connections_only(
    server: KeepAliveServer, tmp_path: Path
) -> None:
    # This thread's connection and another's: closing this thread's leaves
    # the other's open and reused.
    assert fetch(server.url, tmp_path / "m1").read_bytes() == CONTENT
    started, closed = threading.Event(), threading.Event()
    got: list[bytes] = []

    def other() -> None:
        got.append(fetch(server.url, tmp_path / "t1").read_bytes())
        started.set()
        closed.wait(30)
        got.append(fetch(server.url, tmp_path / "t2").read_bytes())

    worker = threading.Thread(target=other)
    worker.start()
    assert started.wait(30)
    assert server.connections == 2
    close_connections()
    closed.set()
    worker.join(30)
    assert got == [CONTENT, CONTENT]
    assert (server.gets, server.connections) == (3, 2)  # the other's reused
    assert fetch(server.url, tmp_path / "m2").read_bytes() == CONTENT
    assert server.connections == 3  # this thread's was closed


def test_closing_without_a_download_imports_no_http_stack() -> None:
    code = (
        "import sys\n"
        "from e3_typed_store.backends.http_simple_store import close_connections\n"
        "close_connections()\n"
        "assert 'requests' not in sys.modules and 'urllib3' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
