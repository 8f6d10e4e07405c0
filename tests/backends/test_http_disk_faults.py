"""HTTPSimpleStore when the destination cannot take the download, or is missing.

Real faults, no mock: a file-size limit (``RLIMIT_FSIZE``, set in a forked
child by e3_typed_store._faults) makes the kernel refuse a write past it with
``EFBIG``, as a full disk refuses one with ``ENOSPC``; a regular file where
the destination's parent should be, and a directory where the downloaded file
should go, make the creation and the final rename fail. Each time the caller
gets a ``DestinationError`` (a ``DownloadError``) that names ``dest``, no
temporary file is left behind, nothing is recorded in the cache, and no
second request is made for a fault of the disk. A destination that does not
exist yet is made.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pytest

from e3_typed_store._faults import call_with_file_size_limit
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
)
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.errors import DestinationError, StoreError
from tests.httpserver import Exchange, LoopbackServer

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="RLIMIT_FSIZE and fork are POSIX"
)

LARGE = bytes(range(256)) * 1024  # 256 KiB: written straight to the file
SMALL = b"small payload\n" * 300  # 4.2 KiB: held in the file's buffer until flushed
CONFIGURATION: HTTPSimpleStoreConfiguration = {
    "retries": 2,
    "backoff_base": 0.01,
    "backoff_max": 0.02,
    "deadline": 20.0,
    "chunk_size": 16 * 1024,
    "progress": False,
}


class Outcome(NamedTuple):
    """What a child saw: the error raised (or none) and the files it left."""

    error: str | None
    message: str
    dest_files: list[str]
    cache_entries: list[str]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        running.route("/large.bin", serve(LARGE))
        running.route("/small.bin", serve(SMALL))
        yield running


def serve(content: bytes) -> Callable[[Exchange], None]:
    def handler(exchange: Exchange) -> None:
        exchange.respond(200, content, {"Accept-Ranges": "bytes"})

    return handler


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def fetch_and_report(url: str, sha256: str, dest: str, cache_dir: str) -> Outcome:
    """Fetch through a FileCache; say what was raised and what was left."""
    store = HTTPSimpleStore(CONFIGURATION, FileCache({"cache_dir": cache_dir}))
    info = store.get_resource_metadata({"url": url, "sha256": sha256})
    error: str | None = None
    message = ""
    try:
        store.fetch_resource(info, dest)
    except StoreError as exc:
        error, message = type(exc).__name__, str(exc)
    entries = os.path.join(cache_dir, "entries")
    return Outcome(error, message, listing(Path(dest)), listing(Path(entries)))


def run_limited(
    server: LoopbackServer, tmp_path: Path, name: str, content: bytes, limit: int
) -> Outcome:
    outcome = call_with_file_size_limit(
        limit,
        partial(
            fetch_and_report,
            server.url(f"/{name}"),
            hashlib.sha256(content).hexdigest(),
            str(tmp_path / "dest"),
            str(tmp_path / "cache"),
        ),
    )
    assert isinstance(outcome, Outcome)
    return outcome


def test_a_write_refused_by_the_disk_is_a_download_error(
    server: LoopbackServer, tmp_path: Path
) -> None:
    outcome = run_limited(server, tmp_path, "large.bin", LARGE, 64 * 1024)
    assert outcome.error == "DestinationError"
    assert f"cannot write into {tmp_path / 'dest'}" in outcome.message
    assert "File too large" in outcome.message  # the OS's own words are kept
    assert outcome.dest_files == []  # the partial file is removed
    assert outcome.cache_entries == []
    assert len(server.requests("/large.bin")) == 1  # a disk fault is not retried


def test_a_flush_refused_by_the_disk_is_a_download_error(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The whole body fits in the file's buffer: the failure comes at the flush.
    outcome = run_limited(server, tmp_path, "small.bin", SMALL, 1024)
    assert outcome.error == "DestinationError"
    assert f"cannot write into {tmp_path / 'dest'}" in outcome.message
    assert outcome.dest_files == []
    assert outcome.cache_entries == []
    assert len(server.requests("/small.bin")) == 1


def test_the_same_fetch_succeeds_within_the_limit(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # The limit above is what failed the fetches: with room, the same child works.
    outcome = run_limited(server, tmp_path, "large.bin", LARGE, 16 * 1024 * 1024)
    assert outcome.error is None
    assert outcome.dest_files == ["large.bin"]
    assert len(outcome.cache_entries) == 1


def test_a_directory_in_place_of_the_file_is_a_download_error(
    server: LoopbackServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    (dest / "large.bin").mkdir(parents=True)
    (dest / "large.bin" / "kept").write_bytes(b"not ours")
    store = HTTPSimpleStore(
        CONFIGURATION, FileCache({"cache_dir": str(tmp_path / "cache")})
    )
    info = store.get_resource_metadata(
        {"url": server.url("/large.bin"), "sha256": hashlib.sha256(LARGE).hexdigest()}
    )
    with pytest.raises(DestinationError) as raised:
        store.fetch_resource(info, str(dest))
    assert raised.value.dest == str(dest)
    assert f"cannot move the download to {dest / 'large.bin'}" in str(raised.value)
    assert listing(dest) == ["large.bin"]  # the temporary file is gone
    assert (dest / "large.bin" / "kept").read_bytes() == b"not ours"
    assert listing(tmp_path / "cache" / "entries") == []
    assert store.download_resource(info, str(dest)) is None  # the seed's form


def test_a_destination_under_a_file_is_an_error_before_any_request(
    server: LoopbackServer, tmp_path: Path
) -> None:
    (tmp_path / "plain").write_bytes(b"a file, not a directory")
    dest = tmp_path / "plain" / "dest"
    sha256 = hashlib.sha256(LARGE).hexdigest()
    # Through the store: the destination is made before the lock is taken.
    store = HTTPSimpleStore(
        CONFIGURATION, FileCache({"cache_dir": str(tmp_path / "cache")})
    )
    info = store.get_resource_metadata(
        {"url": server.url("/large.bin"), "sha256": sha256}
    )
    with pytest.raises(
        StoreError, match=re.escape(f"cannot place {info.uid} into {dest}")
    ):
        store.fetch_resource(info, str(dest))
    # Straight through the driver: its own check, with the same promise.
    with pytest.raises(DestinationError, match=re.escape(f"cannot write into {dest}")):
        store.download_resource_content(info, str(dest))
    assert server.requests("/large.bin") == []
    assert (tmp_path / "plain").read_bytes() == b"a file, not a directory"


def test_a_destination_with_a_nul_byte_is_an_error_before_any_request(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # No path can hold one: the system's calls would raise a bare ValueError.
    dest = str(tmp_path / "a\0b")
    store = HTTPSimpleStore(
        CONFIGURATION, FileCache({"cache_dir": str(tmp_path / "cache")})
    )
    info = store.get_resource_metadata(
        {"url": server.url("/large.bin"), "sha256": hashlib.sha256(LARGE).hexdigest()}
    )
    with pytest.raises(StoreError, match="a NUL byte in the path"):
        store.fetch_resource(info, dest)
    assert store.download_resource(info, dest) is None  # the seed's form
    with pytest.raises(DestinationError, match="a NUL byte in the path"):
        store.download_resource_content(info, dest)
    assert server.requests("/large.bin") == []
    assert sorted(os.listdir(tmp_path)) == []


def test_the_driver_makes_a_missing_destination(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # Called directly, not through the store that makes dest first.
    store = HTTPSimpleStore(CONFIGURATION, None)
    info = store.get_resource_metadata(
        {"url": server.url("/small.bin"), "sha256": hashlib.sha256(SMALL).hexdigest()}
    )
    dest = tmp_path / "not" / "yet" / "there"
    path = store.download_resource_content(info, str(dest))
    assert path == str(dest / "small.bin")
    assert Path(path).read_bytes() == SMALL
    assert listing(dest) == ["small.bin"]
