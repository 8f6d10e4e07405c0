"""What the cache keeps of a download is the very file the store verified.

Against a real loopback server, with real directories: another writer's file
put at the same name in ``dest``, a write into the download before it is kept,
two resources of one name fetched at once, descriptors running out while a
hit is checked, and a ``dest`` too deep for the file's path.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import resource
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest
from typing_extensions import override

from e3_typed_store.backends.base import StoreOptions
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreResourceInfo,
)
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.errors import DestinationError, OfflineError
from tests.httpserver import Exchange, LoopbackServer

ONE = b"the first resource\n" * 4096
TWO = b"another resource, same name\n" * 4096


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    def serving(body: bytes) -> Callable[[Exchange], None]:
        def handler(exchange: Exchange) -> None:
            exchange.respond(200, body)

        return handler

    with LoopbackServer() as running:
        # Two resources that a server names alike: pkg.tgz.
        running.route("/one/pkg.tgz", serving(ONE))
        running.route("/two/pkg.tgz", serving(TWO))
        yield running


def leave_alone(path: Path) -> None:
    """Do nothing to the download: the store as it is."""


class InterferedStore(HTTPSimpleStore):
    """The real store, with another writer acting on ``dest`` right after the
    download is published and before the store keeps it: the window a
    concurrent writer has, made certain."""

    interfere: Callable[[Path], None] = staticmethod(leave_alone)

    @override
    def download_resource_content(
        self, metadata: HTTPSimpleStoreResourceInfo, dest: str
    ) -> str:
        path = super().download_resource_content(metadata, dest)
        type(self).interfere(Path(path))
        return path


def make_store(
    cache_dir: Path, trust: bool, kind: type[HTTPSimpleStore] = HTTPSimpleStore
) -> HTTPSimpleStore:
    return kind(
        {"progress": False},
        FileCache({"cache_dir": str(cache_dir)}),
        options=StoreOptions(trust_unchanged_files=trust),
    )


def fetch(store: HTTPSimpleStore, url: str, sha256: str, dest: Path) -> bytes:
    info = store.get_resource_metadata({"url": url, "sha256": sha256})
    return Path(store.fetch_resource(info, str(dest))).read_bytes()


@pytest.fixture
def interfering() -> Iterator[type[InterferedStore]]:
    yield InterferedStore
    InterferedStore.interfere = staticmethod(leave_alone)


def replacing_with(content: bytes) -> Callable[[Path], None]:
    """What another writer does: put a file of *content* at the path, by a
    rename, as a download does."""

    def replace(path: Path) -> None:
        other = path.with_name(".other")
        other.write_bytes(content)
        os.replace(other, path)

    return replace


@pytest.mark.parametrize("trust", [True, False], ids=["trusted", "verified"])
def test_a_file_put_in_the_downloads_place_is_not_kept(
    server: LoopbackServer,
    tmp_path: Path,
    interfering: type[InterferedStore],
    trust: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    interfering.interfere = staticmethod(replacing_with(TWO))
    cache_dir = tmp_path / "cache"
    store = make_store(cache_dir, trust, interfering)
    with pytest.raises(DestinationError, match="replaced by another writer"):
        fetch(store, server.url("/one/pkg.tgz"), digest(ONE), tmp_path / "dest")
    # Another size: not hashed, and no download said to be corrupt.
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    info = store.get_resource_metadata(
        {"url": server.url("/one/pkg.tgz"), "sha256": digest(ONE)}
    )
    assert FileCache({"cache_dir": str(cache_dir)}).get(info.uid) is None
    assert not (cache_dir / "resources" / info.uid).exists()
    # Nothing of the other file is served as the resource: fetched again.
    plain = make_store(cache_dir, trust)
    assert fetch(plain, server.url("/one/pkg.tgz"), digest(ONE), tmp_path / "d2") == ONE
    assert len(server.requests("/one/pkg.tgz")) == 2


def test_the_same_resource_put_in_the_downloads_place_is_kept_unstamped(
    server: LoopbackServer, tmp_path: Path, interfering: type[InterferedStore]
) -> None:
    # The same resource fetched into dest at once through another cache: the
    # file found is not the one verified, but it is the resource.
    interfering.interfere = staticmethod(replacing_with(ONE))
    cache_dir = tmp_path / "cache"
    store = make_store(cache_dir, True, interfering)
    assert fetch(store, server.url("/one/pkg.tgz"), digest(ONE), tmp_path / "d") == ONE
    assert not list(cache_dir.rglob("stamp.json"))  # checked, not as published
    plain = make_store(cache_dir, True)
    assert fetch(plain, server.url("/one/pkg.tgz"), digest(ONE), tmp_path / "d2") == ONE
    assert len(server.requests("/one/pkg.tgz")) == 1  # a hit


def test_a_write_into_the_download_before_it_is_kept_is_not_trusted(
    server: LoopbackServer, tmp_path: Path, interfering: type[InterferedStore]
) -> None:
    def append(path: Path) -> None:
        with path.open("ab") as stream:  # the same file, changed
            stream.write(b"appended by another writer")

    interfering.interfere = staticmethod(append)
    cache_dir = tmp_path / "cache"
    store = make_store(cache_dir, True, interfering)
    fetch(store, server.url("/one/pkg.tgz"), digest(ONE), tmp_path / "dest")
    assert not list(cache_dir.rglob("stamp.json"))  # its state is not the verified one
    # So the next hit hashes the copy, finds it changed, and fetches again.
    plain = make_store(cache_dir, True)
    assert fetch(plain, server.url("/one/pkg.tgz"), digest(ONE), tmp_path / "d2") == ONE
    assert len(server.requests("/one/pkg.tgz")) == 2


def test_the_stores_own_download_is_stamped_as_it_is_kept(
    server: LoopbackServer, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    store = make_store(cache_dir, True)
    fetch(store, server.url("/one/pkg.tgz"), digest(ONE), tmp_path / "dest")
    # The file published is the one the digest was checked on: no hash pass
    # is needed at its first hit.
    assert len(list(cache_dir.rglob("stamp.json"))) == 1


def test_two_resources_of_one_name_fetched_at_once_keep_their_own_bytes(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # Two threads, one dest, one file name, two uids: each uid's lock lets the
    # other download run. Whatever dest ends with, each kept copy must be its
    # own resource's.
    expected = {"/one/pkg.tgz": ONE, "/two/pkg.tgz": TWO}
    failures: list[BaseException] = []

    def run(
        path: str, store: HTTPSimpleStore, dest: Path, start: threading.Barrier
    ) -> None:
        start.wait()
        try:
            fetch(store, server.url(path), digest(expected[path]), dest)
        except DestinationError:
            pass  # the other fetch's file took the name: said, not kept
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    for round_ in range(25):
        cache_dir = tmp_path / f"cache{round_}"
        store = make_store(cache_dir, True)
        start = threading.Barrier(2)
        threads = [
            threading.Thread(
                target=run, args=(path, store, tmp_path / f"dest{round_}", start)
            )
            for path in expected
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == []
        for path, content in expected.items():
            again = make_store(cache_dir, True)
            got = fetch(again, server.url(path), digest(content), tmp_path / "check")
            assert got == content, f"round {round_}: {path} served other bytes"


@contextmanager
def descriptors_run_out_in(function: str) -> Generator[None]:
    """While *function* runs in this thread, no file descriptor is left: the
    process's limit is lowered, and every free one is taken when it is called
    and given back when it returns. The system's own EMFILE, no stand-in."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = [int(name) for name in os.listdir("/proc/self/fd")]
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(in_use) + 32, hard))
    taken: list[int] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if frame.f_code.co_name != function:
            return
        if event == "call":
            try:
                while True:
                    taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
        elif event == "return":
            while taken:
                os.close(taken.pop())

    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(None)
        while taken:
            os.close(taken.pop())
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_descriptor_left_to_check_a_hit_keeps_the_entry(
    server: LoopbackServer, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    url = server.url("/one/pkg.tgz")
    fetch(make_store(cache_dir, False), url, digest(ONE), tmp_path / "dest")
    offline = HTTPSimpleStore(
        {"progress": False},
        FileCache({"cache_dir": str(cache_dir)}),
        options=StoreOptions(offline=True),
    )
    with (
        descriptors_run_out_in("file_digest"),
        pytest.raises(
            OfflineError,
            match=(
                r"its cached copy cannot be used now: cannot verify it now: "
                r"\[Errno 24\] Too many open files"
            ),
        ),
    ):
        fetch(offline, url, digest(ONE), tmp_path / "d2")
    # Running out of descriptors says nothing against the copy: it is served
    # once there are some again, offline too.
    assert fetch(offline, url, digest(ONE), tmp_path / "d3") == ONE
    assert len(server.requests("/one/pkg.tgz")) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="unnamed files: Linux")
def test_a_dest_too_deep_for_the_files_path_is_a_destination_error(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # Each directory's name fits; the whole path with the file's does not
    # (PATH_MAX, 4096 bytes). The file must not appear where no path reaches.
    dest = tmp_path
    while len(os.fsencode(dest)) + 201 < 3990:
        dest = dest / ("d" * 200)
    dest = dest / ("e" * (3990 - len(os.fsencode(dest)) - 1))
    dest.mkdir(parents=True)
    assert len(os.fsencode(dest)) == 3990
    name = "n" * 200 + ".tgz"
    server.route(f"/{name}", lambda exchange: exchange.respond(200, ONE))
    store = make_store(tmp_path / "cache", False)
    with pytest.raises(DestinationError, match="File name too long"):
        fetch(store, server.url(f"/{name}"), digest(ONE), dest)
    assert os.listdir(dest) == []
