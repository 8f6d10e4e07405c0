"""The benchmark's native bound (bench/native.py): the cold fetch's design in C.

A missed cold-fetch target is read against this bound, so it must fetch
exactly what was served, hash it right, and fail loudly on whatever it cannot
fetch. It is built with the machine's C compiler and run against a real
loopback server, which closes every connection after one answer: each request
after the first also exercises the bound's reconnection.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typing_extensions import override

from bench import native
from bench.server import start_server
from tests.httpserver import Exchange, LoopbackServer

# Over the bound's ring of 16 slots of 1 MiB, with a ragged end: the reader
# waits for the hasher to free slots, and the last slot is partly filled.
PAYLOAD = random.Random(3).randbytes(17 * (1 << 20) + 17)


@pytest.fixture(scope="module")
def executable(tmp_path_factory: pytest.TempPathFactory) -> str:
    try:
        return native.build(str(tmp_path_factory.mktemp("native")))
    except native.NativeUnavailableError as exc:
        pytest.skip(f"the native bound cannot be built here: {exc}")


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        running.route("/data.bin", lambda exchange: exchange.respond(200, PAYLOAD))
        yield running


class _KeptAlive(socketserver.StreamRequestHandler):
    """HTTP/1.1 with kept connections, as nginx answers: /data.bin is PAYLOAD,
    anything else a 404 with a body and a long head."""

    @override
    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head += line
            path = head.split(b" ")[1]
            if path == b"/data.bin":
                status, body = b"200 OK", PAYLOAD
            else:
                status, body = b"404 Not Found", b"no such file\n" * 50
            self.wfile.write(
                b"HTTP/1.1 " + status + b"\r\nServer: kept-alive/1\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )


class KeptAliveServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def kept_alive() -> Iterator[str]:
    """The base URL of a server that keeps connections open between answers."""
    running = KeptAliveServer(("127.0.0.1", 0), _KeptAlive)
    thread = threading.Thread(target=running.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{running.server_address[1]}"
    finally:
        running.shutdown()
        running.server_close()
        thread.join()


@pytest.fixture
def bound(executable: str, server: LoopbackServer) -> Iterator[native.NativeClient]:
    client = native.NativeClient(executable, server.base, answer_seconds=10)
    try:
        yield client
    finally:
        client.close()


def test_it_writes_the_body_and_hashes_it_request_after_request(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    hashed, raw = tmp_path / "hashed", tmp_path / "raw"
    seconds, digest = bound.transfer(server.url("/data.bin"), str(hashed), "sha256")
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert hashed.read_bytes() == PAYLOAD
    assert seconds > 0
    # The server closed the first connection: the bound connects again.
    seconds, digest = bound.transfer(server.url("/data.bin"), str(raw), "raw")
    assert digest is None
    assert raw.read_bytes() == PAYLOAD
    inline = tmp_path / "inline"
    seconds, digest = bound.transfer(server.url("/data.bin"), str(inline), "inline")
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert inline.read_bytes() == PAYLOAD
    assert len(server.requests("/data.bin")) == 3


def test_an_error_status_is_an_error(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match=r"not a 200 answer: HTTP/1\.1 404"):
        bound.transfer(server.url("/missing"), str(tmp_path / "out"), "sha256")


def test_after_a_failure_on_a_kept_connection_each_answer_is_its_own(
    executable: str, kept_alive: str, tmp_path: Path
) -> None:
    # An error answer's head holds line ends, and its body stays unread; an
    # output that cannot be opened leaves the whole body unread. The next
    # request still gets its own answer, on a connection of its own.
    client = native.NativeClient(executable, kept_alive, answer_seconds=10)
    try:
        with pytest.raises(RuntimeError) as refused:
            client.transfer(kept_alive + "/missing", str(tmp_path / "out"), "sha256")
        assert str(refused.value) == (
            "the native bound: error not a 200 answer: HTTP/1.1 404 Not Found"
        )
        _, digest = client.transfer(
            kept_alive + "/data.bin", str(tmp_path / "a"), "sha256"
        )
        assert digest == hashlib.sha256(PAYLOAD).hexdigest()
        unwritable = tmp_path / "no-such-dir" / "out"
        with pytest.raises(RuntimeError, match="No such file"):
            client.transfer(kept_alive + "/data.bin", str(unwritable), "sha256")
        _, digest = client.transfer(
            kept_alive + "/data.bin", str(tmp_path / "b"), "sha256"
        )
        assert digest == hashlib.sha256(PAYLOAD).hexdigest()
        assert (tmp_path / "b").read_bytes() == PAYLOAD
    finally:
        client.close()


def test_the_benchmarks_fallback_server_is_read(
    executable: str, tmp_path: Path
) -> None:
    # Python's http.server answers HTTP/1.0 and closes each connection.
    root, scratch = tmp_path / "www", tmp_path / "server"
    root.mkdir()
    scratch.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    fallback = start_server(str(root), str(scratch), "python")
    try:
        client = native.NativeClient(executable, fallback.base_url, answer_seconds=30)
        try:
            for name in ("a", "b"):
                _, digest = client.transfer(
                    fallback.url("data.bin"), str(tmp_path / name), "sha256"
                )
                assert digest == hashlib.sha256(PAYLOAD).hexdigest()
        finally:
            client.close()
    finally:
        fallback.stop()


def cut_short(exchange: Exchange) -> None:
    exchange.send_head(200, {"Content-Length": str(len(PAYLOAD) + 100)})
    exchange.send(PAYLOAD)


def no_length(exchange: Exchange) -> None:
    exchange.send_head(200)
    exchange.send(PAYLOAD)


MODES: list[native.Mode] = ["raw", "sha256", "inline"]


@pytest.mark.parametrize("mode", MODES)
def test_a_body_cut_short_is_an_error_and_the_next_request_works(
    bound: native.NativeClient,
    server: LoopbackServer,
    tmp_path: Path,
    mode: native.Mode,
) -> None:
    server.route("/short", cut_short)
    expected = f"body ended at byte {len(PAYLOAD)} of {len(PAYLOAD) + 100}"
    with pytest.raises(RuntimeError, match=expected):
        bound.transfer(server.url("/short"), str(tmp_path / "short"), mode)
    _, digest = bound.transfer(server.url("/data.bin"), str(tmp_path / "out"), mode)
    assert digest == (None if mode == "raw" else hashlib.sha256(PAYLOAD).hexdigest())
    assert (tmp_path / "out").read_bytes() == PAYLOAD


def test_a_body_without_a_length_is_refused(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/unsized", no_length)
    with pytest.raises(RuntimeError, match="no Content-Length"):
        bound.transfer(server.url("/unsized"), str(tmp_path / "out"), "sha256")


def test_a_stalled_server_kills_the_bound(
    executable: str, server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/stalled", lambda exchange: exchange.sleep(30))
    client = native.NativeClient(executable, server.base, answer_seconds=0.5)
    try:
        with pytest.raises(RuntimeError, match=r"took over 0\.5 s"):
            client.transfer(server.url("/stalled"), str(tmp_path / "out"), "sha256")
        with pytest.raises(RuntimeError, match="stopped: exit status -9"):
            client.transfer(server.url("/data.bin"), str(tmp_path / "out"), "sha256")
    finally:
        client.close()


@pytest.mark.parametrize("mode", MODES)
def test_an_unwritable_output_is_an_error(
    bound: native.NativeClient,
    server: LoopbackServer,
    tmp_path: Path,
    mode: native.Mode,
) -> None:
    target = tmp_path / "no-such-dir" / "out"
    with pytest.raises(RuntimeError, match=re.escape(f"open {target}: No such file")):
        bound.transfer(server.url("/data.bin"), str(target), mode)


def test_an_unknown_mode_is_an_unreadable_request(
    executable: str, server: LoopbackServer, tmp_path: Path
) -> None:
    # Written to the bound itself: NativeClient only sends the modes it types.
    port = str(urlsplit(server.base).port)
    lines = "".join(
        f"{n} {mode} /data.bin {tmp_path / 'out'}\n"
        for n, mode in enumerate(["bogus", "SHA256", "inline-x", "sha256"], 1)
    )
    done = subprocess.run(
        [executable, port], input=lines, capture_output=True, text=True, timeout=60
    )
    answers = done.stdout.splitlines()
    assert answers[:3] == [f"{n} error unreadable request" for n in (1, 2, 3)]
    assert answers[3].split()[:2] == ["4", "ok"]
    assert len(server.requests("/data.bin")) == 1


def test_a_url_of_another_server_or_with_spaces_is_refused(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="is not served at"):
        bound.transfer("http://127.0.0.1:1/data.bin", str(tmp_path / "out"), "sha256")
    with pytest.raises(ValueError, match="white space"):
        bound.transfer(server.url("/data.bin"), str(tmp_path / "a b"), "sha256")


def test_without_a_compiler_the_rows_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(native.NativeUnavailableError, match="no C compiler"):
        native.build(str(tmp_path))
    assert native.start(str(tmp_path), "http://127.0.0.1:8/") == (
        "skipped: no C compiler (cc or gcc) on the PATH"
    )


def test_missing_openssl_headers_are_named(tmp_path: Path) -> None:
    # A stand-in for the compiler: this machine has OpenSSL's headers, and a
    # real compiler cannot be made to miss them. It fails as gcc does there.
    compiler = tmp_path / "cc"
    compiler.write_text(
        "#!/bin/sh\n"
        'echo "fetch_bound.c:25:10: fatal error: openssl/evp.h: '
        'No such file or directory" >&2\n'
        "exit 1\n"
    )
    os.chmod(compiler, 0o755)
    with pytest.raises(native.NativeUnavailableError, match=r"\(libssl-dev\)"):
        native.build(str(tmp_path), str(compiler))


def test_another_build_failure_shows_the_compilers_last_line(tmp_path: Path) -> None:
    broken = tmp_path / "cc"
    broken.write_text(
        "#!/bin/sh\necho 'first' >&2\necho 'cc: out of luck' >&2\nexit 1\n"
    )
    os.chmod(broken, 0o755)
    with pytest.raises(
        native.NativeUnavailableError, match=r"failed: cc: out of luck$"
    ):
        native.build(str(tmp_path), str(broken))


def test_a_bound_that_cannot_be_run_is_skipped(tmp_path: Path) -> None:
    # A stand-in for the compiler whose output cannot be executed, as on a
    # noexec mount (which this machine's test directories are not).
    compiler = tmp_path / "cc"
    compiler.write_text('#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done\n: > "$2"\n')
    os.chmod(compiler, 0o755)
    reason = native.start(str(tmp_path), "http://127.0.0.1:8", str(compiler))
    assert isinstance(reason, str)
    assert reason.startswith("skipped: cannot run the native bound: [Errno 13]")
