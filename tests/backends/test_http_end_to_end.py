"""HTTPSimpleStore with FileCache end to end, against a real loopback server."""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import e3.store
import e3.store.cache
import pytest
from e3.store.cache.backends.base import Cache as E3Cache

from e3_typed_store._demo import DemoServer
from e3_typed_store.backends.base import StoreOptions
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleStore,
    HTTPSimpleStoreResourceInfo,
)
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.errors import OfflineError

PAYLOAD = bytes(range(256)) * 8192  # 2 MiB
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()


@pytest.fixture
def server() -> Iterator[DemoServer]:
    served = DemoServer({"res.bin": PAYLOAD})
    yield served
    served.stop()


def make_store(cache_dir: Path, offline: bool | None = None) -> HTTPSimpleStore:
    return HTTPSimpleStore(
        {"progress": False},
        FileCache({"cache_dir": str(cache_dir)}),
        options=StoreOptions(offline=offline),
    )


def fetch_once(url: str, cache_dir: str, dest: str) -> str:
    """Run in a child process: one fetch through a fresh store."""
    store = make_store(Path(cache_dir))
    return store.fetch_resource(
        store.get_resource_metadata({"url": url, "sha256": SHA256}), dest
    )


def test_eight_processes_one_get(server: DemoServer, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Pool(8) as pool:
        jobs = [
            pool.apply_async(
                fetch_once,
                (server.url("res.bin"), str(cache_dir), str(tmp_path / f"d{i}")),
            )
            for i in range(8)
        ]
        paths = [job.get(timeout=120) for job in jobs]
    assert server.count("res.bin") == 1
    for i, path in enumerate(paths):
        assert Path(path).parent == tmp_path / f"d{i}"
        assert Path(path).read_bytes() == PAYLOAD


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "store-each"])
def test_eight_threads_one_get(
    server: DemoServer, tmp_path: Path, shared: bool
) -> None:
    # Threads of one process exclude each other on the uid lock too (one lock
    # file opened by each), whether they share a store object or not.
    common = make_store(tmp_path / "cache")
    paths: dict[int, str] = {}
    failures: list[BaseException] = []

    def fetch(index: int) -> None:
        try:
            store = common if shared else make_store(tmp_path / "cache")
            info = store.get_resource_metadata(
                {"url": server.url("res.bin"), "sha256": SHA256}
            )
            paths[index] = store.fetch_resource(info, str(tmp_path / f"d{index}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert server.count("res.bin") == 1
    for index, path in paths.items():
        assert Path(path).parent == tmp_path / f"d{index}"
        assert Path(path).read_bytes() == PAYLOAD
    assert len(paths) == 8


def test_hit_in_another_dest_after_the_first_is_deleted(
    server: DemoServer, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "cache")
    info = store.get_resource_metadata({"url": server.url("res.bin"), "sha256": SHA256})
    first = store.fetch_resource(info, str(tmp_path / "first"))
    shutil.rmtree(tmp_path / "first")
    second = store.fetch_resource(info, str(tmp_path / "second"))
    assert Path(second).parent == tmp_path / "second"
    assert Path(second).read_bytes() == PAYLOAD
    assert Path(first).name == Path(second).name
    assert server.count("res.bin") == 1


def test_offline_hit_and_miss_never_touch_the_network(
    server: DemoServer, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    online = make_store(cache_dir)
    online.fetch_resource(
        online.get_resource_metadata({"url": server.url("res.bin"), "sha256": SHA256}),
        str(tmp_path / "a"),
    )
    offline = make_store(cache_dir, offline=True)
    hit = offline.fetch_resource(
        offline.get_resource_metadata({"url": server.url("res.bin"), "sha256": SHA256}),
        str(tmp_path / "b"),
    )
    assert Path(hit).read_bytes() == PAYLOAD
    other = hashlib.sha256(b"not cached").hexdigest()
    with pytest.raises(OfflineError):
        offline.fetch_resource(
            offline.get_resource_metadata(
                {"url": server.url("res.bin"), "sha256": other}
            ),
            str(tmp_path / "c"),
        )
    assert server.count("res.bin") == 1


def test_plain_e3_code_loads_our_store(server: DemoServer, tmp_path: Path) -> None:
    # As e3 code does it: e3-core's loaders, e3-core's cache, e3's sha1 query.
    cache = e3.store.cache.load_cache("file-cache", {"cache_dir": str(tmp_path / "c")})
    store = e3.store.load_store("typed-http-simple-store", {}, cache)
    info = store.get_resource_metadata({"url": server.url("res.bin"), "sha": SHA1})
    path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None and Path(path).read_bytes() == PAYLOAD
    loaded: object = store
    assert isinstance(loaded, HTTPSimpleStore)


def test_e3_cores_own_store_records_into_our_cache(
    server: DemoServer, tmp_path: Path
) -> None:
    # e3-core's Store hands the cache e3-core's CachedResource: the cache
    # e3-core's loader gives takes it, with the test run's runtime checks on.
    cache = e3.store.cache.load_cache("typed-file-cache", {"cache_dir": str(tmp_path)})
    store = e3.store.load_store("http-simple-store", {}, cache)
    info = store.get_resource_metadata({"url": server.url("res.bin"), "sha": SHA1})
    for dest in ("dest", "again"):  # e3-core's driver writes into an existing one
        (tmp_path / dest).mkdir()
    path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None and Path(path).read_bytes() == PAYLOAD
    assert FileCache({"cache_dir": str(tmp_path)}).get(SHA1) is not None
    assert store.download_resource(info, str(tmp_path / "again")) is not None
    assert server.count("res.bin") == 1


def test_plain_e3_code_catches_our_errors_as_its_own(tmp_path: Path) -> None:
    import e3.store.backends.base as e3_base

    from e3_typed_store.errors import DownloadError, InvalidQueryError

    cache = e3.store.cache.load_cache("typed-memory-cache", None)
    store = e3.store.load_store("typed-http-simple-store", {"retries": 0}, cache)
    with pytest.raises(e3_base.StoreError) as raised:
        store.get_resource_metadata({"url": "ftp://127.0.0.1/x", "sha": SHA1})
    error: object = raised.value
    assert isinstance(error, InvalidQueryError)  # and still ours, attributes kept
    assert error.key == "url" and error.value == "ftp://127.0.0.1/x"
    info = store.get_resource_metadata(
        {"url": "http://127.0.0.1:1/res.bin", "sha": SHA1}  # nothing listens
    )
    with pytest.raises(e3_base.StoreError) as raised:
        store.download_resource_content(info, str(tmp_path))
    assert isinstance(raised.value, DownloadError)
    # fetch_resource too, which is ours, beside e3-core's API.
    loaded: object = store
    assert isinstance(loaded, HTTPSimpleStore)
    typed = HTTPSimpleStoreResourceInfo("http://127.0.0.1:1/res.bin", SHA1)
    with pytest.raises(e3_base.StoreError) as raised:
        loaded.fetch_resource(typed, str(tmp_path))
    assert isinstance(raised.value, DownloadError)
    # The package's own loader gives the plain class.
    from e3_typed_store import load_store

    with pytest.raises(InvalidQueryError) as ours:
        load_store("http-simple-store", {}, None).get_resource_metadata(
            {"url": "ftp://127.0.0.1/x", "sha": SHA1}
        )
    assert not isinstance(ours.value, e3_base.StoreError)


def test_offline_and_fast_hits_from_the_configuration(
    server: DemoServer, tmp_path: Path
) -> None:
    # What load_store users have: a configuration mapping and no options=.
    cache = FileCache({"cache_dir": str(tmp_path / "cache")})
    store = HTTPSimpleStore({"offline": True, "progress": False}, cache)
    assert store.options.is_offline()
    info = store.get_resource_metadata({"url": server.url("res.bin"), "sha256": SHA256})
    with pytest.raises(OfflineError):
        store.fetch_resource(info, str(tmp_path / "d"))
    assert server.count("res.bin") == 0
    fast = HTTPSimpleStore({"trust_unchanged_files": True, "lock_timeout": 60}, cache)
    assert fast.options.trust_unchanged_files and fast.options.lock_timeout == 60.0


def memory() -> E3Cache:
    return e3.store.cache.load_cache("typed-memory-cache", None)


@pytest.mark.parametrize(
    "build",
    [
        lambda: e3.store.load_store(
            "typed-http-simple-store", {"timeout": 10}, memory()
        ),
        lambda: e3.store.load_store("typed-file-store", {"lock_timeout": 0}, memory()),
        lambda: e3.store.cache.load_cache("typed-file-cache", {}),
    ],
    ids=["http-unknown-key", "file-bad-lock-timeout", "cache-no-dir"],
)
def test_plain_e3_code_catches_our_configuration_errors_as_its_own(
    build: Callable[[], object],
) -> None:
    import e3.store.backends.base as e3_base

    from e3_typed_store.errors import InvalidConfigurationError

    with pytest.raises(e3_base.StoreError) as raised:
        build()
    assert isinstance(raised.value, InvalidConfigurationError)
