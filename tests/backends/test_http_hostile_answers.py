"""HTTPSimpleStore against answers that lie about their own bytes: sizes no
server can have, redirects in raw UTF-8 or with control characters, answers
that are not HTTP/1, endless informational answers, bodies that do not decode
or decode without end, and resumed content that does not fit.

Each server is a real one on 127.0.0.1 (tests/httpserver.py), never a mock.
"""

from __future__ import annotations

import gzip
import hashlib
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e3_typed_store.backends.http_simple_store import HTTPSimpleStoreConfiguration
from e3_typed_store.errors import DownloadError, IntegrityError
from tests.backends.test_http_hostile import (
    CONTENT,
    FAST,
    HALF,
    SIZE,
    cut_after,
    dest_files,
    fetch,
    full,
    sequence,
)
from tests.backends.test_http_simple_store import stderr_on_a_terminal
from tests.httpserver import Exchange, LoopbackServer


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


def raw_head(exchange: Exchange, *lines: bytes) -> None:
    """Send a head made of *lines* as they are, then close after the body."""
    exchange.send(b"\r\n".join([*lines, b"Connection: close", b"", b""]))


# -- sizes ----------------------------------------------------------------------


def huge_length(digits: int) -> Callable[[Exchange], None]:
    def handler(exchange: Exchange) -> None:
        raw_head(exchange, b"HTTP/1.1 200 OK", b"Content-Length: " + b"9" * digits)
        exchange.send(CONTENT)

    return handler


def test_a_content_length_int_refuses_is_no_length(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # int() refuses over 4,300 digits: as for http.client, no length at all,
    # and the body is read to the connection's end and checked.
    server.route("/r.bin", huge_length(5000))
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT


def test_a_content_length_past_any_size_is_a_short_body_under_a_progress_bar(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 400 digits: a float overflows, and so did the bar drawn on a terminal.
    server.route("/r.bin", huge_length(400))
    with stderr_on_a_terminal(monkeypatch):
        with pytest.raises(DownloadError, match="connection lost"):
            fetch(server, tmp_path, configuration={**FAST, "progress": True})
    assert dest_files(tmp_path) == []


def test_a_content_range_no_server_can_have_starts_over(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def huge_range(exchange: Exchange) -> None:
        exchange.send_head(206, {"Content-Range": f"bytes {HALF}-{'9' * 5000}/*"})
        exchange.send(CONTENT[HALF:])

    server.route("/r.bin", sequence(cut_after(HALF), huge_range, full))
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    assert "range" not in server.requests("/r.bin")[2].headers


# -- redirects ------------------------------------------------------------------


def test_a_redirect_in_raw_utf8_is_followed_to_its_path(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route(
        "/r.bin",
        lambda exchange: raw_head(
            exchange,
            b"HTTP/1.1 302 Found",
            "Location: /déjà.bin".encode(),
            b"Content-Length: 0",
        ),
    )
    server.route("/d%C3%A9j%C3%A0.bin", full)
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    assert [request.path for request in server.requests()] == [
        "/r.bin",
        "/d%C3%A9j%C3%A0.bin",
    ]


def test_a_file_name_in_raw_utf8_is_read_as_utf8(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def named(exchange: Exchange) -> None:
        raw_head(
            exchange,
            b"HTTP/1.1 200 OK",
            'Content-Disposition: attachment; filename="déjà.bin"'.encode(),
            b"Content-Length: %d" % len(CONTENT),
        )
        exchange.send(CONTENT)

    server.route("/r.bin", named)
    assert Path(fetch(server, tmp_path)).name == "déjà.bin"


def test_a_redirect_with_control_characters_is_refused(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route(
        "/r.bin",
        lambda exchange: raw_head(
            exchange,
            b"HTTP/1.1 302 Found",
            b"Location: /x\x1b[2J\x07.bin",
            b"Content-Length: 0",
        ),
    )
    with pytest.raises(DownloadError, match="control characters") as raised:
        fetch(server, tmp_path)
    assert "\x1b" not in str(raised.value)
    assert len(server.requests()) == 1
    assert dest_files(tmp_path) == []


# -- answers that are not HTTP/1 ------------------------------------------------


def test_an_answer_that_is_not_http_is_quoted_short_and_escaped(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route(
        "/r.bin", lambda exchange: exchange.send(b"\x1b]0;owned\x07" + b"A" * 60_000)
    )
    with pytest.raises(DownloadError, match="the answer is not HTTP") as raised:
        fetch(server, tmp_path)
    message = str(raised.value)
    assert "\x1b" not in message and "\x07" not in message
    assert len(message) < 1000


# -- encoded bodies -------------------------------------------------------------


def send_encoded(exchange: Exchange, body: bytes, encoding: bytes) -> None:
    raw_head(
        exchange,
        b"HTTP/1.1 200 OK",
        b"Content-Encoding: " + encoding,
        b"Content-Length: %d" % len(body),
    )
    exchange.send(body)


def test_a_body_that_does_not_decode_is_not_asked_again(
    server: LoopbackServer, tmp_path: Path
) -> None:
    broken = bytearray(gzip.compress(CONTENT))
    broken[len(broken) // 2 : len(broken) // 2 + 64] = b"\xff" * 64
    server.route(
        "/r.bin", lambda exchange: send_encoded(exchange, bytes(broken), b"gzip")
    )
    with pytest.raises(DownloadError, match="cannot be decoded"):
        fetch(server, tmp_path)
    assert len(server.requests("/r.bin")) == 1
    assert dest_files(tmp_path) == []


def test_a_compression_bomb_is_stopped_early(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # 512 MiB of zeros in two layers of gzip: about 1 KiB on the wire.
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    layer = b"".join(inner.compress(bytes(1 << 20)) for _ in range(512)) + inner.flush()
    bomb = gzip.compress(layer, 9)
    server.route("/r.bin", lambda exchange: send_encoded(exchange, bomb, b"gzip, gzip"))
    with pytest.raises(DownloadError, match="compression bomb"):
        fetch(server, tmp_path)
    assert dest_files(tmp_path) == []


def test_a_body_compressed_as_far_as_gzip_goes_is_kept(
    server: LoopbackServer, tmp_path: Path
) -> None:
    zeros = bytes(96 << 20)  # gzip's best ratio, about 1,030 to 1
    body = gzip.compress(zeros, 9)
    server.route("/r.bin", lambda exchange: send_encoded(exchange, body, b"gzip"))
    digest = hashlib.sha256(zeros).hexdigest()
    path = fetch(server, tmp_path, sha256=digest)
    assert Path(path).stat().st_size == len(zeros)


# -- resumed content ------------------------------------------------------------


def shifted_partial(exchange: Exchange) -> None:
    """A 206 whose Content-Range is right and whose bytes are one off."""
    start = int(exchange.request.headers["range"].removeprefix("bytes=").rstrip("-"))
    body = CONTENT[start + 1 :] + b"\0"
    exchange.send_head(
        206,
        {
            "Content-Length": str(len(body)),
            "Content-Range": f"bytes {start}-{SIZE - 1}/{SIZE}",
        },
    )
    exchange.send(body)


def test_resumed_content_that_fails_its_digest_is_fetched_whole(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/r.bin", sequence(cut_after(HALF), shifted_partial, full))
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    first, second, third = server.requests("/r.bin")
    assert "range" not in first.headers and "range" in second.headers
    assert "range" not in third.headers


def test_a_partial_body_past_its_range_is_cut_at_the_content_end(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def runs_on(exchange: Exchange) -> None:
        start = int(
            exchange.request.headers["range"].removeprefix("bytes=").rstrip("-")
        )
        exchange.send_head(206, {"Content-Range": f"bytes {start}-{SIZE - 1}/{SIZE}"})
        exchange.send(CONTENT[start:] + b"junk past the end" * 100)

    server.route("/r.bin", sequence(cut_after(HALF), runs_on))
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 2


def test_content_of_unknown_size_resumed_a_piece_at_a_time_arrives_whole(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The first answer gives no size and drops; each Range request is answered
    # with a piece of the rest only, its Content-Range naming the whole size:
    # a piece's end is not the content's.
    piece = SIZE // 8

    def no_size_then_dropped(exchange: Exchange) -> None:
        exchange.send_head(200, {"Accept-Ranges": "bytes", "ETag": '"v1"'})
        exchange.send(CONTENT[:HALF])
        exchange.reset()

    def a_piece(exchange: Exchange) -> None:
        start = int(
            exchange.request.headers["range"].removeprefix("bytes=").rstrip("-")
        )
        end = min(start + piece, SIZE) - 1
        exchange.send_head(
            206,
            {
                "Content-Length": str(end - start + 1),
                "Content-Range": f"bytes {start}-{end}/{SIZE}",
                "ETag": '"v1"',
            },
        )
        exchange.send(CONTENT[start : end + 1])

    server.route("/r.bin", sequence(no_size_then_dropped, a_piece))
    path = fetch(server, tmp_path, configuration={**FAST, "retries": 8})
    assert Path(path).read_bytes() == CONTENT
    ranges = [r.headers.get("range") for r in server.requests("/r.bin")]
    assert ranges[0] is None and all(ranges[1:])  # never started over
    assert len(ranges) >= 1 + (SIZE - HALF) // piece  # a piece per answer


# -- a server that asks for a wait, among mirrors -------------------------------


def busy_for(seconds: int) -> Callable[[Exchange], None]:
    def handler(exchange: Exchange) -> None:
        exchange.respond(503, b"busy", {"Retry-After": str(seconds)})

    return handler


def fetch_through_mirror(server: LoopbackServer, dest: Path) -> str:
    return fetch(server, dest, configuration={**FAST, "mirrors": [server.url("/m")]})


def test_a_mirror_that_asks_for_a_wait_lets_the_next_url_serve(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/m/r.bin", sequence(busy_for(5), full))
    server.route("/r.bin", full)
    started = time.monotonic()
    path = fetch_through_mirror(server, tmp_path)
    assert time.monotonic() - started < 4  # not the 5 s asked for
    assert Path(path).read_bytes() == CONTENT
    assert [request.path for request in server.requests()] == ["/m/r.bin", "/r.bin"]


def test_a_url_that_asked_for_a_wait_is_asked_again_after_the_others(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/m/r.bin", sequence(busy_for(1), full))
    server.route("/r.bin", lambda exchange: exchange.respond(404, b"gone"))
    started = time.monotonic()
    path = fetch_through_mirror(server, tmp_path)
    assert time.monotonic() - started >= 1  # the wait asked for was kept
    assert Path(path).read_bytes() == CONTENT
    assert [request.path for request in server.requests()] == [
        "/m/r.bin",
        "/r.bin",
        "/m/r.bin",
    ]


def test_a_url_serving_other_content_is_the_error_not_a_busy_mirror(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The mirror, asked again after its wait, is busy again: what the origin
    # served (other content) is the news, not the mirror's 503.
    server.route("/m/r.bin", busy_for(1))
    server.route("/r.bin", full)
    configuration: HTTPSimpleStoreConfiguration = {
        **FAST,
        "mirrors": [server.url("/m")],
    }
    with pytest.raises(IntegrityError):
        fetch(server, tmp_path, sha256="0" * 64, configuration=configuration)


def test_resumed_content_is_fetched_whole_even_with_one_retry(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The one retry goes to the resume; fetching whole after it fails its
    # digest is not a retry of its own.
    server.route("/r.bin", sequence(cut_after(HALF), shifted_partial, full))
    path = fetch(server, tmp_path, configuration={**FAST, "retries": 1})
    assert Path(path).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 3
