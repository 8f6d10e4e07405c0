"""HTTPS: certificates checked against the CA bundle the environment names.

A real TLS server on 127.0.0.1, with a certificate from a throwaway authority
(trustme). requests trusts ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``,
else its own bundle, which does not know this authority.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import trustme
from typing_extensions import override

from e3_typed_store._http import tls_read_size
from e3_typed_store.backends.http_simple_store import HTTPSimpleStoreConfiguration
from e3_typed_store.errors import DeadlineExceededError, DownloadError
from tests.backends.fetching import TricklingServer, fetch_over_http, running
from tests.httpserver import TRICKLED_HEAD

CONTENT = b"served over TLS\n" * 500
SHA256 = hashlib.sha256(CONTENT).hexdigest()
QUICK: HTTPSimpleStoreConfiguration = {"progress": False, "retries": 0}
# Several chunks of the download (1 MiB by default), over TLS records of 16 KiB.
BIG = bytes(range(256)) * (3 << 12) + b"tail"
BIG_SHA256 = hashlib.sha256(BIG).hexdigest()
#: Where the first answer for /drop-*.bin ends: in the middle of a chunk.
DROP_AT = 3 << 19


class _TLSServer(TricklingServer):
    """Serves CONTENT; at /trickle, a head sent a byte every 50 ms; at
    /big.bin, BIG; at /drop-reset.bin and /drop-close.bin, BIG with ranges,
    the first answer cut after DROP_AT bytes by a reset or a close; at
    /trickle-body.bin, a head, then a byte every 50 ms."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        #: The Range header of each request, None when there was none.
        self.ranges: list[str | None] = []

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _TLSServer)
        if self.path == "/trickle":
            server.trickle_head(self)
            return
        if self.path.startswith("/drop-"):
            self._drop(server)
            return
        if self.path == "/trickle-body.bin":
            self._trickle_body(server)
            return
        body = BIG if self.path == "/big.bin" else CONTENT
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self, server: _TLSServer) -> None:
        asked = self.headers.get("Range")
        server.ranges.append(asked)
        if asked is not None:
            start = int(asked.removeprefix("bytes=").removesuffix("-"))
            self.send_response(206)
            self.send_header(
                "Content-Range", f"bytes {start}-{len(BIG) - 1}/{len(BIG)}"
            )
            self.send_header("Content-Length", str(len(BIG) - start))
            self.send_header("ETag", '"big"')
            self.end_headers()
            self.wfile.write(BIG[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BIG)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"big"')
        self.end_headers()
        self.wfile.write(BIG[:DROP_AT])
        self.wfile.flush()
        self.close_connection = True
        if self.path == "/drop-reset.bin":
            # An abrupt end: RST, which the client's read sees as an error.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.connection.close()

    def _trickle_body(self, server: _TLSServer) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BIG)))
        self.end_headers()
        self.close_connection = True
        server.trickle(self, BIG)

    @override
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def server_context(authority: trustme.CA, pem: Path) -> ssl.SSLContext:
    """A server's TLS context, its certificate for 127.0.0.1 from *authority*
    (its key and chain written to *pem*)."""
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(pem)
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pem))
    return context


@pytest.fixture
def https_server(authority: trustme.CA, tmp_path: Path) -> Iterator[_TLSServer]:
    context = server_context(authority, tmp_path / "server.pem")
    server = _TLSServer()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with running(server):
        yield server


@pytest.fixture
def https_url(https_server: _TLSServer) -> str:
    return https_server.url("/r.bin")


@pytest.fixture
def bundle(authority: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def trusted(bundle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test authority's bundle named by REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)


@pytest.fixture(autouse=True)
def no_ca_bundle_variables(
    monkeypatch: pytest.MonkeyPatch, no_proxy_variables: None
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def fetch(url: str, dest: Path) -> bytes:
    return fetch_over_http(url, dest, SHA256, QUICK).read_bytes()


def test_an_unknown_authority_is_refused(https_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="TLS error"):
        fetch(https_url, dest)
    assert not dest.exists() or list(dest.iterdir()) == []


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_bundle_named_by_the_environment_is_trusted(
    https_url: str,
    bundle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, bundle)
    assert fetch(https_url, tmp_path) == CONTENT


def test_requests_ca_bundle_comes_before_curl_ca_bundle(
    https_url: str,
    bundle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = trustme.CA()
    elsewhere = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(elsewhere))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(elsewhere))
    monkeypatch.setenv("CURL_CA_BUNDLE", bundle)
    with pytest.raises(DownloadError, match="TLS error"):
        fetch(https_url, tmp_path / "one")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    assert fetch(https_url, tmp_path / "two") == CONTENT


@pytest.mark.usefixtures("trusted")
def test_a_head_trickled_over_tls_is_cut_at_the_deadline(
    https_server: _TLSServer, tmp_path: Path
) -> None:
    # The socket shut down under the TLS layer must end the wait as a
    # deadline, not as some TLS or attribute error.
    dest = tmp_path / "dest"
    with pytest.raises(DeadlineExceededError) as raised:
        fetch_over_http(
            https_server.url("/trickle"),
            dest,
            SHA256,
            {**QUICK, "deadline": 1.0, "read_timeout": 30.0},
        )
    assert raised.value.deadline == 1.0
    assert 0 < https_server.trickled < len(TRICKLED_HEAD)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_a_handshake_trickled_a_byte_at_a_time_is_cut_at_the_deadline(
    tmp_path: Path,
) -> None:
    # A server that announces a 16 KiB handshake record and sends it a byte
    # at a time: every read gets a byte before the read timeout, and the TLS
    # layer waits for the rest. Python bounds a whole handshake by the socket's
    # timeout, which is the connect timeout capped by what is left of the
    # deadline (the request watchdog would shut the socket too).
    stopping = threading.Event()
    sent: list[int] = []

    def trickle(listener: socket.socket) -> None:
        connection, _address = listener.accept()
        with connection:
            connection.recv(4096)  # the ClientHello
            connection.sendall(bytes([0x16, 0x03, 0x03, 0x40, 0x00]))
            while not stopping.wait(0.05):
                try:
                    connection.sendall(b"\x00")
                except OSError:
                    return
                sent.append(1)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port: int = listener.getsockname()[1]
        server = threading.Thread(target=trickle, args=(listener,))
        server.start()
        try:
            start = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                fetch_over_http(
                    f"https://127.0.0.1:{port}/r.bin",
                    tmp_path,
                    SHA256,
                    {**QUICK, "deadline": 1.0, "connect_timeout": 30.0},
                )
            # Cut near the deadline, not by a timeout: the error would be a
            # DeadlineExceededError then too, the deadline being long past.
            assert time.monotonic() - start < 15
        finally:
            stopping.set()
            server.join(10)
    assert 0 < len(sent) < 300


@pytest.mark.usefixtures("trusted")
def test_a_body_of_several_chunks_arrives_whole(
    https_server: _TLSServer, tmp_path: Path
) -> None:
    path = fetch_over_http(https_server.url("/big.bin"), tmp_path, BIG_SHA256, QUICK)
    assert path.read_bytes() == BIG


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("ending", ["reset", "close"])
def test_a_tls_transfer_cut_midway_resumes_and_arrives_whole(
    https_server: _TLSServer, tmp_path: Path, ending: str
) -> None:
    # Over TLS a read fills a whole chunk. A close ends the chunk being
    # filled short, and every byte received is kept; an error in the middle of
    # one may lose that chunk's bytes, which the resumed request asks for again.
    path = fetch_over_http(
        https_server.url(f"/drop-{ending}.bin"),
        tmp_path,
        BIG_SHA256,
        {"progress": False, "retries": 2, "backoff_base": 0.01, "backoff_max": 0.02},
    )
    assert path.read_bytes() == BIG
    first, second = https_server.ranges
    assert first is None
    assert second is not None
    resumed_at = int(second.removeprefix("bytes=").removesuffix("-"))
    if ending == "close":
        assert resumed_at == DROP_AT  # every byte received was kept
    else:
        assert 0 < resumed_at <= DROP_AT


@pytest.mark.usefixtures("trusted")
def test_a_body_trickled_over_tls_is_cut_at_the_deadline(
    https_server: _TLSServer, tmp_path: Path
) -> None:
    # A read that waits to fill a whole chunk is woken by the socket's
    # shutdown at the deadline, not held until the chunk is full.
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        fetch_over_http(
            https_server.url("/trickle-body.bin"),
            tmp_path / "dest",
            BIG_SHA256,
            {**QUICK, "deadline": 1.0, "read_timeout": 30.0},
        )
    assert time.monotonic() - start < 15
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


def test_tls_reads_grow_on_a_fast_link_and_shrink_on_a_slow_one() -> None:
    largest = 1 << 20
    size = 64 << 10
    sizes: list[int] = []
    for _ in range(6):  # quick reads: doubled up to the chunk size
        size = tls_read_size(size, 0.001, largest)
        sizes.append(size)
    assert sizes == [128 << 10, 256 << 10, 512 << 10, largest, largest, largest]
    assert tls_read_size(size, 0.1, largest) == size  # neither quick nor slow
    for _ in range(10):  # slow reads: halved down to one TLS record
        size = tls_read_size(size, 2.0, largest)
    assert size == 16 << 10
    # A chunk size below a record bounds both ways.
    assert tls_read_size(4 << 10, 2.0, 4 << 10) == 4 << 10
    assert tls_read_size(4 << 10, 0.001, 4 << 10) == 4 << 10


class _TunnelHandler(socketserver.BaseRequestHandler):
    """A proxy's CONNECT: answered with 200, then bytes piped both ways."""

    @override
    def handle(self) -> None:
        client: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                return
            head += data
        server = self.server
        assert isinstance(server, _TLSProxy)
        server.requests.append(head.split(b"\r\n", 1)[0].decode())
        target = head.split(b" ", 2)[1].decode()
        host, _, port = target.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=30) as origin:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(origin, client), daemon=True)
            back.start()
            _pipe(client, origin)
            back.join(30)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _TLSProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TunnelHandler)
        #: The request line of each CONNECT.
        self.requests: list[str] = []


def test_https_through_an_https_proxy(
    https_server: _TLSServer,
    authority: trustme.CA,
    tmp_path: Path,
    trusted: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # TLS inside TLS: urllib3 hands the response a TLS layer of its own, not
    # a socket. With runtime checks on, as in these tests, a response class
    # that took only sockets failed every such download.
    context = server_context(authority, tmp_path / "proxy.pem")
    proxy = _TLSProxy()
    proxy.socket = context.wrap_socket(proxy.socket, server_side=True)
    thread = threading.Thread(
        target=proxy.serve_forever, kwargs={"poll_interval": 0.05}
    )
    thread.start()
    try:
        monkeypatch.setenv(
            "https_proxy", f"https://127.0.0.1:{proxy.server_address[1]}"
        )
        assert fetch(https_server.url("/r.bin"), tmp_path / "dest") == CONTENT
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
    port = https_server.server_address[1]
    assert [line.rsplit(" ", 1)[0] for line in proxy.requests] == [
        f"CONNECT 127.0.0.1:{port}"
    ]
