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
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import native
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
    seconds, digest = bound.transfer(server.url("/data.bin"), str(hashed), True)
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert hashed.read_bytes() == PAYLOAD
    assert seconds > 0
    # The server closed the first connection: the bound connects again.
    seconds, digest = bound.transfer(server.url("/data.bin"), str(raw), False)
    assert digest is None
    assert raw.read_bytes() == PAYLOAD
    assert len(server.requests("/data.bin")) == 2


def test_an_error_status_is_an_error(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match=r"not a 200 answer: HTTP/1\.1 404"):
        bound.transfer(server.url("/missing"), str(tmp_path / "out"), True)


def cut_short(exchange: Exchange) -> None:
    exchange.send_head(200, {"Content-Length": str(len(PAYLOAD) + 100)})
    exchange.send(PAYLOAD)


def no_length(exchange: Exchange) -> None:
    exchange.send_head(200)
    exchange.send(PAYLOAD)


def test_a_body_cut_short_is_an_error_and_the_next_request_works(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/short", cut_short)
    expected = f"body ended at byte {len(PAYLOAD)} of {len(PAYLOAD) + 100}"
    with pytest.raises(RuntimeError, match=expected):
        bound.transfer(server.url("/short"), str(tmp_path / "short"), True)
    _, digest = bound.transfer(server.url("/data.bin"), str(tmp_path / "out"), True)
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()


def test_a_body_without_a_length_is_refused(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/unsized", no_length)
    with pytest.raises(RuntimeError, match="no Content-Length"):
        bound.transfer(server.url("/unsized"), str(tmp_path / "out"), True)


def test_a_stalled_server_kills_the_bound(
    executable: str, server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/stalled", lambda exchange: exchange.sleep(30))
    client = native.NativeClient(executable, server.base, answer_seconds=0.5)
    try:
        with pytest.raises(RuntimeError, match=r"took over 0\.5 s"):
            client.transfer(server.url("/stalled"), str(tmp_path / "out"), True)
        with pytest.raises(RuntimeError, match="the native bound stopped"):
            client.transfer(server.url("/data.bin"), str(tmp_path / "out"), True)
    finally:
        client.close()


def test_an_unwritable_output_is_an_error(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-dir" / "out"
    with pytest.raises(RuntimeError, match=re.escape(f"open {target}: No such file")):
        bound.transfer(server.url("/data.bin"), str(target), True)


def test_a_url_of_another_server_or_with_spaces_is_refused(
    bound: native.NativeClient, server: LoopbackServer, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="is not served at"):
        bound.transfer("http://127.0.0.1:1/data.bin", str(tmp_path / "out"), True)
    with pytest.raises(ValueError, match="white space"):
        bound.transfer(server.url("/data.bin"), str(tmp_path / "a b"), True)


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
