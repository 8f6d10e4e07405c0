"""HTTPSimpleStore against misbehaving servers: every byte counted at the server.

Dropped connections, lying Content-Length, stalls and trickles, error statuses,
Retry-After, Range resumption, huge error bodies and hostile redirects. Each
server is a real one on 127.0.0.1 (tests/httpserver.py), never a mock.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import logging
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from e3_typed_store._fs import safe_file_name
from e3_typed_store._http import (
    INLINE_DIGEST_BYTES,
    backoff_seconds,
    content_disposition_name,
    retry_after_seconds,
)
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
    HTTPSimpleStoreResourceInfo,
    HTTPSimpleStoreSettings,
)
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.errors import (
    DeadlineExceededError,
    DownloadError,
    HTTPStatusError,
    IntegrityError,
)
from tests.httpserver import TRICKLED_HEAD, Exchange, LoopbackServer

SIZE = 256 * 1024
CONTENT = bytes(range(256)) * (SIZE // 256)
SHA256 = hashlib.sha256(CONTENT).hexdigest()
HALF = SIZE // 2
BIG_ERROR = 50 * 1024 * 1024

FAST: HTTPSimpleStoreConfiguration = {
    "retries": 2,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "deadline": 10.0,
    "connect_timeout": 2.0,
    "read_timeout": 5.0,
    "chunk_size": 16 * 1024,
}


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


def fetch(
    server: LoopbackServer,
    dest: Path,
    path: str = "/r.bin",
    sha256: str = SHA256,
    configuration: HTTPSimpleStoreConfiguration = FAST,
) -> str:
    store = HTTPSimpleStore(configuration, None)
    info = store.get_resource_metadata({"url": server.url(path), "sha256": sha256})
    return store.download_resource_content(info, str(dest))


def dest_files(dest: Path) -> list[str]:
    return sorted(os.listdir(dest)) if dest.exists() else []


def full(exchange: Exchange) -> None:
    exchange.respond(200, CONTENT, {"Accept-Ranges": "bytes", "ETag": '"v1"'})


def partial(exchange: Exchange, content: bytes = CONTENT, etag: str = '"v1"') -> bool:
    """Answer a ``Range: bytes=N-`` request with 206; False if there is none."""
    wanted = exchange.request.headers.get("range")
    if wanted is None:
        return False
    start = int(wanted.removeprefix("bytes=").rstrip("-"))
    body = content[start:]
    exchange.send_head(
        206,
        {
            "Content-Length": str(len(body)),
            "Content-Range": f"bytes {start}-{len(content) - 1}/{len(content)}",
            "ETag": etag,
        },
    )
    exchange.send(body)
    return True


def cut_after(size: int, *, reset: bool = False) -> Callable[[Exchange], None]:
    """A 200 that promises the whole content and delivers *size* bytes."""

    def handler(exchange: Exchange) -> None:
        exchange.send_head(
            200, {"Content-Length": str(SIZE), "Accept-Ranges": "bytes", "ETag": '"v1"'}
        )
        exchange.send(CONTENT[:size])
        if reset:
            exchange.reset()

    return handler


def sequence(*handlers: Callable[[Exchange], None]) -> Callable[[Exchange], None]:
    """Answer the n-th request with the n-th handler (the last one repeats)."""
    calls: list[int] = []

    def handler(exchange: Exchange) -> None:
        calls.append(1)
        handlers[min(len(calls), len(handlers)) - 1](exchange)

    return handler


# -- dropped connections and lying lengths --------------------------------------


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_dropped_connection_resumes_with_range(
    server: LoopbackServer, tmp_path: Path, reset: bool
) -> None:
    def resumable(exchange: Exchange) -> None:
        if not partial(exchange):
            cut_after(HALF, reset=reset)(exchange)

    server.route("/r.bin", resumable)
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    first, second = server.requests("/r.bin")
    assert "range" not in first.headers
    # A reset discards what was in flight: the client asks from what it got.
    resumed_at = int(second.headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= HALF
    assert resumed_at == HALF or reset
    assert second.headers["if-range"] == '"v1"'
    assert server.body_sent("/r.bin") < 2 * SIZE
    assert dest_files(tmp_path) == ["r.bin"]


def test_dropped_connection_without_range_support_restarts(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/r.bin", sequence(cut_after(HALF), full))
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    _first, second = server.requests("/r.bin")
    assert second.headers["range"] == f"bytes={HALF}-"  # asked, but got a 200
    # The client can have every byte before the server counts its last send.
    server.wait_finished()
    assert server.body_sent("/r.bin") == HALF + SIZE


def test_a_partial_response_that_does_not_fit_restarts_from_zero(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def wrong_range(exchange: Exchange) -> None:
        exchange.send_head(
            206,
            {
                "Content-Length": str(SIZE),
                "Content-Range": f"bytes 0-{SIZE - 1}/{SIZE}",
            },
        )
        exchange.send(CONTENT)

    server.route("/r.bin", sequence(cut_after(HALF), wrong_range, full))
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    requests = server.requests("/r.bin")
    assert len(requests) == 3
    assert "range" in requests[1].headers
    assert "range" not in requests[2].headers


@pytest.mark.parametrize(
    "content_range",
    [None, "bytes */262144", f"bytes {HALF + 10}-{HALF}/{SIZE}", "items 0-1/2"],
    ids=["missing", "unsatisfied-form", "backwards", "other-unit"],
)
def test_a_partial_response_without_a_usable_range_restarts(
    server: LoopbackServer, tmp_path: Path, content_range: str | None
) -> None:
    def unusable_range(exchange: Exchange) -> None:
        headers = {"Content-Length": str(SIZE - HALF)}
        if content_range is not None:
            headers["Content-Range"] = content_range
        exchange.send_head(206, headers)
        exchange.send(CONTENT[HALF:])

    server.route("/r.bin", sequence(cut_after(HALF), unusable_range, full))
    path = fetch(server, tmp_path)
    assert Path(path).read_bytes() == CONTENT
    requests = server.requests("/r.bin")
    assert ["range" in r.headers for r in requests] == [False, True, False]


def test_a_partial_response_to_a_plain_request_can_be_the_whole_content(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def always_partial(exchange: Exchange) -> None:
        exchange.send_head(
            206,
            {
                "Content-Length": str(SIZE),
                "Content-Range": f"bytes 0-{SIZE - 1}/{SIZE}",
                "ETag": '"v1"',
            },
        )
        exchange.send(CONTENT)

    server.route("/r.bin", always_partial)
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 1


def test_truncated_body_every_time_fails_after_the_retries(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/r.bin", cut_after(HALF))
    with pytest.raises(DownloadError) as raised:
        fetch(server, tmp_path, configuration={**FAST, "retries": 2})
    assert not isinstance(raised.value, HTTPStatusError)
    assert len(server.requests("/r.bin")) == 3
    assert dest_files(tmp_path) == []


def test_body_longer_than_content_length_is_an_integrity_error(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def longer(exchange: Exchange) -> None:
        exchange.send_head(200, {"Content-Length": str(HALF)})
        exchange.send(CONTENT)

    server.route("/r.bin", longer)
    with pytest.raises(IntegrityError) as raised:
        fetch(server, tmp_path)
    assert raised.value.actual == hashlib.sha256(CONTENT[:HALF]).hexdigest()
    assert dest_files(tmp_path) == []


@pytest.mark.parametrize(
    "length",
    [f" {SIZE} ", f"+{SIZE}", f"{SIZE}, {SIZE}", hex(SIZE), "abc", "-5"],
    ids=["spaces", "plus", "repeated", "hex", "garbage", "negative"],
)
def test_a_malformed_content_length_leaves_the_digest_to_decide(
    server: LoopbackServer, tmp_path: Path, length: str
) -> None:
    # Whatever the client makes of the header (the length, or no length and a
    # body read to the connection's end), the right content is kept, once.
    def answer(exchange: Exchange) -> None:
        exchange.send(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
        exchange.send(CONTENT)

    server.route("/r.bin", answer)
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 1
    assert dest_files(tmp_path) == ["r.bin"]


def test_an_absurd_content_length_is_a_transfer_cut_short(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # 10**23 bytes announced, 256 KiB sent: nothing is reserved up front, and
    # the short body is a dropped transfer, retried, then given up.
    def answer(exchange: Exchange) -> None:
        exchange.send_head(200, {"Content-Length": str(10**23)})
        exchange.send(CONTENT)

    server.route("/r.bin", answer)
    with pytest.raises(DownloadError, match="connection lost after"):
        fetch(server, tmp_path)
    assert len(server.requests("/r.bin")) == 3  # FAST: 2 retries
    assert dest_files(tmp_path) == []


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-%d: a\r\n" % i for i in range(200))
        + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"HTTP/2 200\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 150,
    ],
    ids=[
        "ssh-banner",
        "bad-status",
        "too-many-headers",
        "header-too-long",
        "http2-status-line",
        "endless-103",
    ],
)
def test_an_answer_that_is_not_http_is_not_asked_again(
    server: LoopbackServer, tmp_path: Path, answer: bytes
) -> None:
    # A service that is no HTTP server will not become one on a second try:
    # the URL fails at once (the next mirror, if any, is tried).
    server.route("/r.bin", lambda exchange: exchange.send(answer))
    with pytest.raises(DownloadError, match="the answer is not HTTP"):
        fetch(server, tmp_path)
    assert len(server.requests("/r.bin")) == 1
    assert dest_files(tmp_path) == []


def test_chunked_and_close_delimited_bodies(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def chunked(exchange: Exchange) -> None:
        exchange.send_head(200, {"Transfer-Encoding": "chunked"})
        for start in range(0, SIZE, 10000):
            piece = CONTENT[start : start + 10000]
            exchange.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        exchange.send(b"0\r\n\r\n")

    def close_delimited(exchange: Exchange) -> None:
        exchange.send_head(200)
        exchange.send(CONTENT)

    server.route("/chunked", chunked)
    server.route("/close", close_delimited)
    assert Path(fetch(server, tmp_path / "a", "/chunked")).read_bytes() == CONTENT
    assert Path(fetch(server, tmp_path / "b", "/close")).read_bytes() == CONTENT


@pytest.mark.parametrize("length", [100, SIZE, 2 * SIZE])
def test_a_chunked_body_is_read_by_its_chunks_whatever_its_content_length(
    server: LoopbackServer, tmp_path: Path, length: int
) -> None:
    # Transfer-Encoding overrides Content-Length (RFC 9112, section 6.3), as
    # http.client reading the body does: a length that disagrees with the
    # chunks neither cuts the content nor makes it look truncated.
    def both(exchange: Exchange) -> None:
        exchange.send_head(
            200,
            {
                "Transfer-Encoding": "chunked",
                "Content-Length": str(length),
                "Accept-Ranges": "bytes",
            },
        )
        exchange.send(b"%x\r\n%s\r\n0\r\n\r\n" % (SIZE, CONTENT))

    server.route("/r.bin", both)
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 1


@pytest.mark.parametrize("length", [100, 2 * SIZE])
def test_a_chunked_body_said_twice_is_read_by_its_chunks_too(
    server: LoopbackServer, tmp_path: Path, length: int
) -> None:
    # Two Transfer-Encoding lines reach requests as "chunked, chunked":
    # chunked all the same, as urllib3 reads the body.
    def twice(exchange: Exchange) -> None:
        exchange.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % length
        )
        exchange.send(b"%x\r\n%s\r\n0\r\n\r\n" % (SIZE, CONTENT))

    server.route("/r.bin", twice)
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 1


def test_truncated_chunked_body_is_retried(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def cut_chunked(exchange: Exchange) -> None:
        exchange.send_head(200, {"Transfer-Encoding": "chunked"})
        exchange.send(b"%x\r\n%s\r\n" % (HALF, CONTENT[:HALF]))

    server.route("/r.bin", sequence(cut_chunked, full))
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 2


def test_content_encoding_is_decoded_as_e3_does(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def gzipped(exchange: Exchange) -> None:
        exchange.respond(200, gzip.compress(CONTENT), {"Content-Encoding": "gzip"})

    server.route("/r.bin", gzipped)
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert server.requests("/r.bin")[0].headers["accept-encoding"] == "identity"


# -- deadline ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["head", "body"])
def test_a_trickling_server_is_cut_off_at_the_deadline(
    server: LoopbackServer, tmp_path: Path, where: str
) -> None:
    # A byte just before each read timeout would hold the download, in the
    # response's head or in its body, for as long as the server likes.
    def trickle(exchange: Exchange) -> None:
        if where == "head":
            exchange.trickle(TRICKLED_HEAD)
        else:
            exchange.send_head(200, {"Content-Length": str(SIZE)})
            exchange.trickle(CONTENT)

    server.route("/r.bin", trickle)
    with pytest.raises(DeadlineExceededError) as raised:
        fetch(
            server,
            tmp_path,
            configuration={**FAST, "deadline": 1.0, "read_timeout": 30.0},
        )
    assert raised.value.deadline == 1.0
    whole = len(TRICKLED_HEAD) if where == "head" else SIZE
    assert 0 < server.body_sent("/r.bin") < whole
    assert len(server.requests("/r.bin")) == 1
    assert dest_files(tmp_path) == []


@pytest.mark.parametrize("where", ["before-head", "mid-body"])
def test_a_stalled_server_is_cut_off_at_the_deadline(
    server: LoopbackServer, tmp_path: Path, where: str
) -> None:
    def stall(exchange: Exchange) -> None:
        if where == "mid-body":
            exchange.send_head(200, {"Content-Length": str(SIZE)})
            exchange.send(CONTENT[:100])
        exchange.sleep(60)

    server.route("/r.bin", stall)
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        fetch(
            server,
            tmp_path,
            configuration={**FAST, "deadline": 1.0, "read_timeout": 30.0},
        )
    # Cut near the deadline, not by the read timeout: the error would be a
    # DeadlineExceededError then too, the deadline being long past.
    assert time.monotonic() - start < 15
    assert dest_files(tmp_path) == []


def test_through_the_store_a_deadline_keeps_its_type(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # DeadlineExceededError is also a TimeoutError, an OSError: the store's
    # own wrapping of OSErrors must not turn it into a bare StoreError.
    def stall(exchange: Exchange) -> None:
        exchange.send_head(200, {"Content-Length": str(SIZE)})
        exchange.send(CONTENT[:100])
        exchange.sleep(60)

    server.route("/r.bin", stall)
    store = HTTPSimpleStore(
        {**FAST, "deadline": 1.0, "read_timeout": 30.0},
        FileCache({"cache_dir": str(tmp_path / "cache")}),
    )
    info = store.get_resource_metadata({"url": server.url("/r.bin"), "sha256": SHA256})
    dest = tmp_path / "dest"
    with pytest.raises(DeadlineExceededError) as raised:
        store.fetch_resource(info, str(dest))
    assert raised.value.deadline == 1.0
    with caplog.at_level(logging.ERROR, logger="e3.store"):
        assert store.download_resource(info, str(dest)) is None
    assert "deadline" in caplog.text
    assert dest_files(dest) == []


@pytest.mark.parametrize("informational", [[103], [103, 103], [100, 103], [102]])
def test_informational_answers_before_the_real_one_are_skipped(
    informational: list[int], server: LoopbackServer, tmp_path: Path
) -> None:
    # 103 Early Hints (or 102 Processing) comes before the answer itself:
    # http.client skips only 100 Continue, and took the 103 for the answer.
    def hinted(exchange: Exchange) -> None:
        for status in informational:
            exchange.send_head(status, {"Link": "</style.css>; rel=preload"})
        full(exchange)

    server.route("/r.bin", hinted)
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 1


def hints_then(*pieces: bytes) -> Callable[[Exchange], None]:
    """Send *pieces* as they are, a moment apart, then the real answer."""

    def handler(exchange: Exchange) -> None:
        for piece in pieces:
            exchange.send(piece)
            exchange.sleep(0.05)
        full(exchange)

    return handler


HINT = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
# A first hint that fills the reader's 8 KiB buffer up to 5 bytes before its
# end, where the next hint's status line starts.
PADDED = HINT[:-2] + b"X-Pad: " + b"p" * (8192 - 5 - len(HINT) - 9) + b"\r\n\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 1", HINT[10:]],
        [PADDED + HINT],
        [HINT.replace(b"HTTP/1.1", b"HTTP/1.2")],
        [HINT.replace(b"103 ", b"103\t")],
        [HINT.replace(b" 103", b"  103")],
    ],
    ids=["split-status-line", "across-the-buffer", "http-1.2", "tab", "two-spaces"],
)
def test_informational_answers_are_skipped_however_they_arrive(
    pieces: list[bytes], server: LoopbackServer, tmp_path: Path
) -> None:
    # Read as http.client reads a status line, whole, wherever the reads
    # of the connection cut it: not told by a look at the bytes buffered.
    assert len(PADDED) == 8192 - 5
    server.route("/r.bin", hints_then(*pieces))
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 1


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 20", b"HT"],
    ids=["after-the-status-line", "in-a-header-line", "in-the-status-line", "early"],
)
def test_a_head_cut_by_a_closed_connection_is_a_dropped_connection(
    head: bytes, server: LoopbackServer, tmp_path: Path
) -> None:
    # http.client takes the end of the stream for the end of the head: an
    # answer with no headers and an empty body, which failed the digest
    # (IntegrityError) or was no HTTP, with no second try.
    server.route("/r.bin", sequence(lambda exchange: exchange.send(head), full))
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 2


def test_a_huge_deadline_leaves_the_other_deadlines_working(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # 1e10 s is a valid deadline, longer than a thread can wait at once: the
    # one alarm thread of the process must survive it, and so must the wait
    # for a host name (localhost: resolved by a helper thread).
    server.route("/a.bin", full)
    endless: HTTPSimpleStoreConfiguration = {**FAST, "deadline": 1e10}
    for host in ("127.0.0.1", "localhost"):
        store = HTTPSimpleStore(endless, None)
        url = server.url("/a.bin").replace("127.0.0.1", host)
        info = store.get_resource_metadata({"url": url, "sha256": SHA256})
        path = store.download_resource_content(info, str(tmp_path / host))
        assert Path(path).read_bytes() == CONTENT
    server.route("/r.bin", lambda exchange: exchange.trickle(TRICKLED_HEAD))
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        fetch(
            server,
            tmp_path / "later",
            configuration={**FAST, "deadline": 1.0, "read_timeout": 30.0},
        )
    assert time.monotonic() - start < 15


def trickle_slowly(exchange: Exchange) -> None:
    exchange.send_head(200, {"Content-Length": str(SIZE)})
    for offset in range(SIZE):
        exchange.send(CONTENT[offset : offset + 1])
        exchange.sleep(0.05)


def test_deadlines_of_concurrent_downloads_fire_earliest_first(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # One alarm thread serves every download: a short deadline set after a
    # long one still fires first, and each download gets its own deadline.
    server.route("/r.bin", trickle_slowly)
    ended: list[float] = []

    def attempt(deadline: float) -> None:
        with pytest.raises(DeadlineExceededError) as raised:
            fetch(
                server,
                tmp_path / str(deadline),
                configuration={**FAST, "deadline": deadline, "read_timeout": 30.0},
            )
        ended.append(raised.value.deadline)

    long_one = threading.Thread(target=attempt, args=(3.0,))
    long_one.start()
    while not server.requests("/r.bin"):
        assert long_one.is_alive()
        time.sleep(0.01)
    attempt(0.5)
    long_one.join()
    assert ended == [0.5, 3.0]


def fetch_in_forked_child(server_url: str, dest: str) -> None:
    """In a forked child: a trickled download must still end at its deadline."""
    store = HTTPSimpleStore({**FAST, "deadline": 0.5, "read_timeout": 30.0}, None)
    info = store.get_resource_metadata({"url": server_url, "sha256": SHA256})
    try:
        store.download_resource_content(info, dest)
    except DeadlineExceededError:
        os._exit(0)
    os._exit(1)


def test_the_deadline_holds_in_a_forked_child(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The parent's alarm thread does not survive a fork: the child needs its own.
    server.route("/ok.bin", full)
    server.route("/r.bin", trickle_slowly)
    fetch(server, tmp_path / "parent", path="/ok.bin")
    child = multiprocessing.get_context("fork").Process(
        target=fetch_in_forked_child,
        args=(server.url("/r.bin"), str(tmp_path / "child")),
    )
    child.start()
    child.join(20)
    alive = child.is_alive()
    child.kill()
    child.join()
    assert not alive, "the child's download outlived its deadline"
    assert child.exitcode == 0


def test_a_stalled_body_without_length_is_a_deadline_error_not_a_short_file(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def close_delimited_stall(exchange: Exchange) -> None:
        exchange.send_head(200)
        exchange.send(CONTENT[:HALF])
        exchange.sleep(60)

    server.route("/r.bin", close_delimited_stall)
    with pytest.raises(DeadlineExceededError):
        fetch(
            server,
            tmp_path,
            configuration={**FAST, "deadline": 1.0, "read_timeout": 30.0},
        )
    assert dest_files(tmp_path) == []


# -- statuses and retries ------------------------------------------------------


def test_500_then_200_is_retried(server: LoopbackServer, tmp_path: Path) -> None:
    server.route(
        "/r.bin", sequence(lambda exchange: exchange.respond(500, b"oops"), full)
    )
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 2


def test_503_every_time_gives_up_after_the_retries(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/r.bin", lambda exchange: exchange.respond(503, b"busy"))
    with pytest.raises(HTTPStatusError) as raised:
        fetch(server, tmp_path, configuration={**FAST, "retries": 3})
    assert raised.value.status == 503
    assert len(server.requests("/r.bin")) == 4
    assert dest_files(tmp_path) == []


def test_a_failure_kept_keeps_no_earlier_attempt(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # A program that keeps its failures (a build daemon's report) keeps the
    # error raised: not the earlier attempts' errors, with their responses.
    server.route("/r.bin", lambda exchange: exchange.respond(503, b"busy"))
    with pytest.raises(HTTPStatusError) as raised:
        fetch(server, tmp_path, configuration={**FAST, "retries": 3})
    kept = raised.value
    del raised
    gc.collect()
    url = server.url("/r.bin")  # other tests' errors may live on (module lists)
    alive = [
        o for o in gc.get_objects() if isinstance(o, HTTPStatusError) and o.url == url
    ]
    assert alive == [kept]


def test_retry_waits_are_exponential_with_jitter(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.route("/r.bin", lambda exchange: exchange.respond(503, b"busy"))
    configuration: HTTPSimpleStoreConfiguration = {
        **FAST,
        "retries": 4,
        "backoff_base": 0.02,
        "backoff_max": 0.05,
    }
    with (
        caplog.at_level(logging.WARNING, logger="e3_typed_store"),
        pytest.raises(HTTPStatusError),
    ):
        fetch(server, tmp_path, configuration=configuration)
    waits = [
        float(found.group(1))
        for record in caplog.records
        if (found := re.search(r"retry \d+ of 4 in (\S+) s$", record.getMessage()))
    ]
    # Each wait lies between half and all of 0.02, 0.04, then the 0.05 cap.
    ceilings = [0.02, 0.04, 0.05, 0.05]
    assert len(waits) == len(ceilings)
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling / 2 * (1 - 1e-5) <= wait <= ceiling * (1 + 1e-5)


def test_backoff_waits_are_spread_not_fixed() -> None:
    policy = HTTPSimpleStoreSettings(backoff_base=1.0, backoff_max=30.0)
    third = [backoff_seconds(policy, 2) for _ in range(200)]
    assert all(2.0 <= wait <= 4.0 for wait in third)
    # Clients that failed together come back spread over the whole span.
    assert min(third) < 2.5
    assert max(third) > 3.5
    capped = [backoff_seconds(policy, 10) for _ in range(50)]
    assert all(15.0 <= wait <= 30.0 for wait in capped)
    assert backoff_seconds(HTTPSimpleStoreSettings(backoff_base=0.0), 3) == 0.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_errors_are_not_retried(
    server: LoopbackServer, tmp_path: Path, status: int
) -> None:
    server.route("/r.bin", lambda exchange: exchange.respond(status, b"no"))
    with pytest.raises(HTTPStatusError) as raised:
        fetch(server, tmp_path)
    assert raised.value.status == status
    assert raised.value.url == server.url("/r.bin")
    assert len(server.requests("/r.bin")) == 1
    assert dest_files(tmp_path) == []


def test_429_retry_after_is_honoured(server: LoopbackServer, tmp_path: Path) -> None:
    def too_many(exchange: Exchange) -> None:
        exchange.respond(429, b"slow down", {"Retry-After": "1"})

    server.route("/r.bin", sequence(too_many, full))
    start = time.monotonic()
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 2
    assert time.monotonic() - start >= 0.9  # waited as told, not the 10 ms backoff


@pytest.mark.parametrize(
    "value",
    [
        "\xb9",  # a digit to str.isdigit, not to int
        "Wed, 21 Oct 2015 07:28:00 +99999999999999999",  # a date out of range
        "soon",
    ],
    ids=["superscript", "date-overflow", "word"],
)
def test_an_unreadable_retry_after_is_ignored(
    value: str, server: LoopbackServer, tmp_path: Path
) -> None:
    def too_many(exchange: Exchange) -> None:
        exchange.respond(429, b"slow down", {"Retry-After": value})

    server.route("/r.bin", sequence(too_many, full))
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    assert len(server.requests("/r.bin")) == 2  # retried after the backoff


def test_a_content_length_in_other_digits_is_no_length(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # "²" passes str.isdigit, and int() refuses it: read to the end instead,
    # as http.client does.
    def odd_length(exchange: Exchange) -> None:
        exchange.send_head(200, {"Content-Length": "\xb2"})
        exchange.send(CONTENT)

    server.route("/r.bin", odd_length)
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT


def test_429_retry_after_beyond_the_deadline_gives_up_at_once(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route(
        "/r.bin", lambda exchange: exchange.respond(429, b"", {"Retry-After": "3600"})
    )
    with pytest.raises(HTTPStatusError) as raised:
        fetch(server, tmp_path, configuration={**FAST, "deadline": 5.0})
    assert raised.value.status == 429
    assert len(server.requests("/r.bin")) == 1


@pytest.mark.parametrize("status", [500, 302])
def test_a_huge_error_or_redirect_body_is_not_read(
    server: LoopbackServer, tmp_path: Path, status: int
) -> None:
    def huge(exchange: Exchange) -> None:
        exchange.set_send_buffer(64 * 1024)
        headers = {"Content-Length": str(BIG_ERROR), "Content-Type": "text/plain"}
        if status == 302:
            headers["Location"] = "/elsewhere"
        exchange.send_head(status, headers)
        piece = b"E" * 65536
        for _ in range(BIG_ERROR // len(piece)):
            exchange.send(piece)

    server.route("/r.bin", huge)
    server.route("/elsewhere", lambda exchange: exchange.respond(404))
    with pytest.raises(HTTPStatusError):
        fetch(server, tmp_path, configuration={**FAST, "retries": 0})
    server.wait_finished()
    [exchange] = [e for e in server.exchanges if e.request.path == "/r.bin"]
    assert exchange.error is not None  # the client hung up mid-body
    assert exchange.body_sent < BIG_ERROR // 10
    assert dest_files(tmp_path) == []


# -- redirects -------------------------------------------------------------------


def test_redirects_are_followed(server: LoopbackServer, tmp_path: Path) -> None:
    server.route(
        "/r.bin", lambda exchange: exchange.respond(301, b"", {"Location": "/v2/r.bin"})
    )
    server.route(
        "/v2/r.bin",
        lambda exchange: exchange.respond(307, b"", {"Location": server.url("/final")}),
    )
    server.route("/final", full)
    path = fetch(server, tmp_path)
    assert path == str(tmp_path / "r.bin")  # named after the URL asked for
    assert Path(path).read_bytes() == CONTENT


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http:///nohost"]
)
def test_redirects_off_http_are_refused(
    server: LoopbackServer, tmp_path: Path, location: str
) -> None:
    server.route(
        "/r.bin", lambda exchange: exchange.respond(302, b"", {"Location": location})
    )
    with pytest.raises(DownloadError, match="redirect"):
        fetch(server, tmp_path)
    assert len(server.requests()) == 1
    assert dest_files(tmp_path) == []


@pytest.mark.parametrize("host", ["a..example", "a" * 64 + ".example"])
def test_a_redirect_to_a_host_name_no_request_can_be_made_to_is_refused_at_once(
    server: LoopbackServer, tmp_path: Path, host: str
) -> None:
    # Not retried as a connection that failed: no attempt can reach it.
    location = f"http://{host}/x"
    server.route(
        "/r.bin", lambda exchange: exchange.respond(302, b"", {"Location": location})
    )
    with pytest.raises(DownloadError, match="refused: the host is not a valid name"):
        fetch(server, tmp_path)
    assert len(server.requests()) == 1
    assert dest_files(tmp_path) == []


@pytest.mark.parametrize(
    "location", ["http://[::1", "http://[bad]/x", "http://h:99999/x", "http://h:0/x"]
)
def test_a_malformed_redirect_is_refused_without_retries(
    server: LoopbackServer, tmp_path: Path, location: str
) -> None:
    server.route(
        "/r.bin", lambda exchange: exchange.respond(302, b"", {"Location": location})
    )
    with pytest.raises(DownloadError, match="bad redirect") as raised:
        fetch(server, tmp_path)
    assert location in str(raised.value)
    assert len(server.requests("/r.bin")) == 1
    assert dest_files(tmp_path) == []


def test_a_redirect_loop_ends(server: LoopbackServer, tmp_path: Path) -> None:
    server.route(
        "/r.bin", lambda exchange: exchange.respond(302, b"", {"Location": "/r.bin"})
    )
    with pytest.raises(DownloadError, match="redirects"):
        fetch(server, tmp_path)
    assert len(server.requests()) == 11


def test_resource_info_built_directly_downloads(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/r.bin", full)
    store = HTTPSimpleStore(FAST, None)
    info = HTTPSimpleStoreResourceInfo(server.url("/r.bin"), SHA256, "sha256")
    assert Path(store.download_resource_content(info, str(tmp_path))).read_bytes() == (
        CONTENT
    )


def test_an_error_status_then_silence_is_still_the_status(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def stall_after_head(exchange: Exchange) -> None:
        exchange.send_head(404, {"Content-Length": "1000"})
        exchange.sleep(60)

    server.route("/r.bin", stall_after_head)
    with pytest.raises(HTTPStatusError) as raised:
        fetch(server, tmp_path, configuration={**FAST, "read_timeout": 30.0})
    assert raised.value.status == 404


def test_range_not_satisfiable_starts_over(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def refuse_range(exchange: Exchange) -> None:
        exchange.respond(416, b"", {"Content-Range": f"bytes */{SIZE}"})

    server.route("/r.bin", sequence(cut_after(HALF), refuse_range, full))
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    requests = server.requests("/r.bin")
    assert ["range" in r.headers for r in requests] == [False, True, False]


def chunked_without_end(content: bytes) -> Callable[[Exchange], None]:
    """A chunked 200 of *content* that closes before its last chunk: the client
    holds every byte, and no sign that it has them all."""

    def handler(exchange: Exchange) -> None:
        exchange.send_head(
            200,
            {"Transfer-Encoding": "chunked", "Accept-Ranges": "bytes", "ETag": '"v1"'},
        )
        exchange.send(f"{len(content):x}\r\n".encode() + content + b"\r\n")

    return handler


def refuse_range_of_whole(exchange: Exchange) -> None:
    exchange.respond(416, b"", {"Content-Range": f"bytes */{SIZE}"})


def test_range_not_satisfiable_past_all_that_is_held_finishes(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.route(
        "/r.bin", sequence(chunked_without_end(CONTENT), refuse_range_of_whole, full)
    )
    with caplog.at_level(logging.INFO, logger="e3.store"):
        assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    requests = server.requests("/r.bin")
    assert [r.headers.get("range") for r in requests] == [None, f"bytes={SIZE}-"]
    assert f"has all {SIZE} bytes of the content already" in caplog.text
    assert "HTTP 416" not in caplog.text  # no warning: nothing went wrong


def test_held_bytes_a_416_calls_whole_are_still_checked(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The bytes held are not the content: its digest fails, and the content
    # is fetched whole once, as for content put together from several answers.
    other = bytes(SIZE)
    server.route(
        "/r.bin", sequence(chunked_without_end(other), refuse_range_of_whole, full)
    )
    assert Path(fetch(server, tmp_path)).read_bytes() == CONTENT
    requests = server.requests("/r.bin")
    assert ["range" in r.headers for r in requests] == [False, True, False]


def test_retry_after_forms() -> None:
    from email.utils import format_datetime

    assert retry_after_seconds(None) is None
    assert retry_after_seconds(" 7 ") == 7.0
    assert retry_after_seconds("99999999999") == 86400.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") is None
    past = format_datetime(datetime(2000, 1, 1, tzinfo=timezone.utc), usegmt=True)
    assert retry_after_seconds(past) == 0.0
    # "-0000" (RFC 5322: no zone information) is read as UTC.
    assert retry_after_seconds("Sat, 01 Jan 2000 00:00:00 -0000") == 0.0
    soon = datetime.now(timezone.utc) + timedelta(seconds=300)
    unzoned = soon.strftime("%a, %d %b %Y %H:%M:%S -0000")
    waited_unzoned = retry_after_seconds(unzoned)
    assert waited_unzoned is not None and 280 < waited_unzoned <= 300
    later = datetime.now(timezone.utc) + timedelta(seconds=120)
    waited = retry_after_seconds(format_datetime(later, usegmt=True))
    assert waited is not None and 100 < waited <= 120


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("attachment; filename=plain.txt", "plain.txt"),
        ('attachment; filename="quoted \\"name\\".txt"', None),
        ('attachment; filename="semi;colon.txt"', "semi;colon.txt"),
        ("attachment; FILENAME=upper.txt", "upper.txt"),
        ("attachment; filename*=utf-8'en'%E2%82%AC.txt", "\u20ac.txt"),
        ("attachment; filename*=iso-8859-1''%E9t%E9.txt", "\xe9t\xe9.txt"),
        ("attachment; filename*=koi8-r''x.txt", None),
        ("attachment; filename*=UTF-8no-quotes.txt", None),
        ("attachment; filename*=UTF-8no-quotes.txt; filename=plain.txt", "plain.txt"),
        ("attachment; filename*=UTF-8''a%2Fb.txt; filename=c.txt", "b.txt"),
        ('attachment; x="; filename=../evil"; filename=good.txt', "good.txt"),
        ("attachment; filename=CON", None),
        ("attachment; filename=com1.tar.gz", None),
        ("attachment; filename=LPT0.txt", None),
        ("attachment; filename=.bashrc", None),
        ("attachment; filename*=UTF-8''.profile; filename=visible.txt", "visible.txt"),
        ("attachment; filename=..hidden.tgz", None),
        ("attachment; filename=conin$", None),
        ("attachment; filename=a:b", None),
        ("attachment; filename=a|b", None),
        ("attachment; filename=a?b", None),
        ("attachment; filename=a\tb", None),
        ("attachment; filename=\u00e9\u0301", "\u00e9\u0301"),
        ('attachment; filename="two words.txt"', "two words.txt"),
        # Two headers, joined by http.client: no name is the server's.
        ("attachment; filename=a.bin, attachment; filename=b.bin", None),
        ('attachment; filename="CON .txt"', None),
        ('attachment; filename="nul .tar"', None),
        ('attachment; filename="a\u2028b.txt"', None),
        ('attachment; filename="a\u2029b.txt"', None),
    ],
)
def test_content_disposition_names(header: str, expected: str | None) -> None:
    assert content_disposition_name(header) == expected


@pytest.mark.parametrize(
    "candidate",
    [
        "../x",
        "/etc/passwd",
        "*",
        "..",
        "",
        "C:\\x",
        "a/../../b",
        "a\x00b",
        "\\\\srv\\s",
    ],
)
def test_safe_file_name_is_a_single_component_or_none(candidate: str) -> None:
    name = safe_file_name(candidate)
    if name is not None:
        assert name not in {".", ".."}
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert os.path.basename(name) == name


# -- large content: the digest worker thread at work ---------------------------

# 2 MiB past what is hashed inline: of a known size, hashed by a worker from
# its first byte; of an unknown size, from the end of the inline part on.
LARGE = bytes(range(251)) * ((INLINE_DIGEST_BYTES + (2 << 20)) // 251)
LARGE_SHA256 = hashlib.sha256(LARGE).hexdigest()
BIG_CHUNKS: HTTPSimpleStoreConfiguration = {**FAST, "chunk_size": 1 << 20}
DIGEST_WORKER = "e3-typed-store-digest"


def fetch_large(server: LoopbackServer, dest: Path) -> str:
    return fetch(server, dest, "/big.bin", LARGE_SHA256, BIG_CHUNKS)


def digest_workers() -> int:
    return sum(thread.name == DIGEST_WORKER for thread in threading.enumerate())


def large_partial_or_cut(cut: int) -> Callable[[Exchange], None]:
    """A first answer that drops after *cut* bytes; a 206 for the rest after it."""

    def handler(exchange: Exchange) -> None:
        if partial(exchange, LARGE, '"big"'):
            return
        exchange.send_head(
            200,
            {
                "Content-Length": str(len(LARGE)),
                "Accept-Ranges": "bytes",
                "ETag": '"big"',
            },
        )
        exchange.send(LARGE[:cut])

    return handler


@pytest.mark.parametrize("cut", [100 << 10, 7 << 20], ids=["early", "late"])
def test_large_download_resumes_with_the_digest_intact(
    server: LoopbackServer, tmp_path: Path, cut: int
) -> None:
    # A known size above the inline limit: a worker hashes from the first
    # byte and goes on with the resumed rest, whether the cut came early or late.
    server.route("/big.bin", large_partial_or_cut(cut))
    path = fetch_large(server, tmp_path)
    assert Path(path).read_bytes() == LARGE
    assert len(server.requests("/big.bin")) == 2
    assert server.body_sent("/big.bin") < 2 * len(LARGE)


def test_large_download_of_unknown_size_is_hashed_inline_then_by_a_worker(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # No Content-Length: the body ends when the connection closes. The first
    # chunks are hashed inline, the rest by a worker, in order.
    def until_close(exchange: Exchange) -> None:
        exchange.send_head(200, {})
        exchange.send(LARGE)

    server.route("/big.bin", until_close)
    path = fetch_large(server, tmp_path)
    assert Path(path).read_bytes() == LARGE
    tampered = LARGE[:-1] + b"X"

    def tampered_until_close(exchange: Exchange) -> None:
        exchange.send_head(200, {})
        exchange.send(tampered)

    server.route("/big.bin", tampered_until_close)
    with pytest.raises(IntegrityError) as raised:
        fetch_large(server, tmp_path / "again")
    assert raised.value.actual == hashlib.sha256(tampered).hexdigest()


def test_large_download_restarts_with_a_fresh_digest(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def whole(exchange: Exchange) -> None:
        exchange.respond(200, LARGE, {})

    def cut(exchange: Exchange) -> None:
        exchange.send_head(200, {"Content-Length": str(len(LARGE))})
        exchange.send(LARGE[: 7 << 20])

    server.route("/big.bin", sequence(cut, whole))
    path = fetch_large(server, tmp_path)
    assert Path(path).read_bytes() == LARGE


def test_large_mismatch_is_detected_by_the_worker(
    server: LoopbackServer, tmp_path: Path
) -> None:
    tampered = LARGE[:-1] + b"X"
    server.route("/big.bin", lambda exchange: exchange.respond(200, tampered, {}))
    with pytest.raises(IntegrityError) as raised:
        fetch_large(server, tmp_path)
    assert raised.value.actual == hashlib.sha256(tampered).hexdigest()
    assert dest_files(tmp_path) == []


def test_digest_workers_are_reused_not_multiplied(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/big.bin", lambda exchange: exchange.respond(200, LARGE, {}))
    fetch_large(server, tmp_path / "first")
    after_one = digest_workers()
    assert after_one >= 1  # kept, waiting for the next download
    for index in range(5):
        fetch_large(server, tmp_path / str(index))
    assert digest_workers() == after_one
    # Concurrent downloads hash in parallel, each with a worker; once they are
    # over, at most a few workers stay.
    threads = [
        threading.Thread(target=fetch_large, args=(server, tmp_path / f"c{index}"))
        for index in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(
        Path(tmp_path / f"c{index}" / "big.bin").read_bytes() == LARGE
        for index in range(8)
    )
    assert digest_workers() <= 4


def fetch_large_in_forked_child(server_url: str, dest: str) -> None:
    """In a forked child: a download hashed by a worker must complete."""
    store = HTTPSimpleStore(BIG_CHUNKS, None)
    info = store.get_resource_metadata({"url": server_url, "sha256": LARGE_SHA256})
    path = store.download_resource_content(info, dest)
    os._exit(0 if Path(path).read_bytes() == LARGE else 1)


def test_a_forked_child_gets_digest_workers_of_its_own(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The parent's idle workers do not survive a fork: handing a digest to
    # one of them would hang the child.
    server.route("/big.bin", lambda exchange: exchange.respond(200, LARGE, {}))
    fetch_large(server, tmp_path / "parent")
    assert digest_workers() >= 1
    child = multiprocessing.get_context("fork").Process(
        target=fetch_large_in_forked_child,
        args=(server.url("/big.bin"), str(tmp_path / "child")),
    )
    child.start()
    child.join(30)
    alive = child.is_alive()
    child.kill()
    child.join()
    assert not alive, "the child's download hung"
    assert child.exitcode == 0
