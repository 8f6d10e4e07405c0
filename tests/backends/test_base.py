"""Store.download_resource and fetch_resource around a real copying driver."""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import zipfile
from pathlib import Path
from types import ModuleType

import e3.store.backends.base as e3_base
import pytest
from e3.error import E3Error
from e3.store.backends.http_simple_store import HTTPSimpleStoreResourceInfo
from e3.store.cache.backends.filecache import FileCache as E3FileCache
from typing_extensions import override

from e3_typed_store.backends.base import (
    CachedResource,
    ResourceInfo,
    ResourceInfoProtocol,
    Store,
    StoreError,
    StoreOptions,
    StoreProtocol,
    logger,
)
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.errors import IntegrityError, InvalidQueryError
from tests.backends.drivers import (
    CopyConfig,
    CopyInfo,
    CopyQuery,
    CopyStore,
    NoneStore,
    StagingStore,
    UnreadableInfo,
    sha256_of,
)

PAYLOAD = b"resource payload\n" * 100


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "source"
    directory.mkdir()
    (directory / "res.bin").write_bytes(PAYLOAD)
    return directory


@pytest.fixture
def cache() -> MemoryCache[object]:
    return MemoryCache()


@pytest.fixture
def store(source: Path, cache: MemoryCache[object]) -> CopyStore:
    return CopyStore(CopyConfig(source_dir=str(source)), cache)


@pytest.fixture
def info(store: CopyStore) -> CopyInfo:
    return store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )


def test_logger_keeps_e3_name() -> None:
    assert logger.name == "e3.store"


def test_miss_downloads_and_records(
    store: CopyStore, info: CopyInfo, cache: MemoryCache[object], tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    path = store.download_resource(info, str(dest))
    assert path is not None and path == str(dest / "res.bin")
    assert Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 1
    assert cache.get(info.uid) == CachedResource(uid=info.uid, local_path=path)


def test_dest_is_created(store: CopyStore, info: CopyInfo, tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b"
    assert store.fetch_resource(info, str(dest)) == str(dest / "res.bin")


def test_hit_is_served_without_download(
    store: CopyStore, info: CopyInfo, tmp_path: Path
) -> None:
    first = store.download_resource(info, str(tmp_path / "dest"))
    second = store.download_resource(info, str(tmp_path / "dest"))
    assert first == second
    assert store.downloads == 1


def test_hit_for_another_dest_lands_inside_it(
    store: CopyStore, info: CopyInfo, tmp_path: Path
) -> None:
    store.download_resource(info, str(tmp_path / "one"))
    other = tmp_path / "two"
    path = store.download_resource(info, str(other))
    assert path is not None and path == str(other / "res.bin")
    assert Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 1


def test_hit_recorded_below_dest_is_linked_into_dest_itself(
    store: CopyStore, info: CopyInfo, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    recorded = store.fetch_resource(info, str(dest / "sub"))
    path = store.fetch_resource(info, str(dest))
    assert path == str(dest / "res.bin")
    assert os.path.samefile(path, recorded)  # one link, not a copy
    assert Path(recorded).read_bytes() == PAYLOAD
    assert store.downloads == 1


@pytest.mark.parametrize(
    "entry",
    [
        "not a cached resource",
        ("sha", "/tmp/x"),
        {"uid": "x", "local_path": "/tmp/x"},
        CachedResource(uid="another uid", local_path="/etc/passwd"),
        42,
    ],
    ids=["str", "plain-tuple", "dict", "wrong-uid", "int"],
)
def test_invalid_entry_is_logged_discarded_and_missed(
    store: CopyStore,
    info: CopyInfo,
    cache: MemoryCache[object],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    entry: object,
) -> None:
    cache.set(info.uid, entry)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None and Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 1
    assert "invalid cache entry" in caplog.text
    assert cache.get(info.uid) == CachedResource(info.uid, path)


def test_missing_file_is_refetched(
    store: CopyStore, info: CopyInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None
    os.unlink(path)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        again = store.download_resource(info, str(tmp_path / "dest"))
    assert again == path and Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 2
    assert "is gone" in caplog.text


def test_corrupted_file_is_refetched(
    store: CopyStore, info: CopyInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None
    Path(path).write_bytes(b"tampered")
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        again = store.download_resource(info, str(tmp_path / "dest"))
    assert again is not None and Path(again).read_bytes() == PAYLOAD
    assert store.downloads == 2
    assert "corrupted cache entry" in caplog.text


def test_a_directory_recorded_as_the_file_is_a_miss(
    store: CopyStore, info: CopyInfo, cache: MemoryCache[object], tmp_path: Path
) -> None:
    # Not a regular file: discarded before any verify.
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    cache.set(info.uid, CachedResource(info.uid, str(bogus)))
    assert store.download_resource(info, str(tmp_path / "dest")) is not None
    assert store.downloads == 1


def test_a_file_that_cannot_be_verified_is_a_miss_that_keeps_the_entry(
    store: CopyStore,
    info: CopyInfo,
    cache: MemoryCache[object],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert store.download_resource(info, str(tmp_path / "one")) is not None
    unreadable = UnreadableInfo(info.name, info.sha256)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        # The resource is fetched again; the driver's own check of the
        # download fails the same way, as a StoreError.
        with pytest.raises(StoreError, match="Permission denied"):
            store.fetch_resource(unreadable, str(tmp_path / "two"))
    assert "cannot verify" in caplog.text
    assert "Permission denied" in caplog.text
    assert store.downloads == 2
    # No permission says nothing against the copy: its entry stays, and a
    # check that can read it is a hit.
    assert "corrupted cache entry" not in caplog.text
    assert cache.get(info.uid) is not None
    assert store.fetch_resource(info, str(tmp_path / "three"))
    assert store.downloads == 2


def test_a_download_left_outside_dest_is_placed_inside_it(
    source: Path, cache: MemoryCache[object], tmp_path: Path
) -> None:
    store = StagingStore(CopyConfig(str(source)), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    dest = tmp_path / "dest"
    path = store.fetch_resource(info, str(dest))
    assert path == str(dest / "res.bin")
    assert Path(path).read_bytes() == PAYLOAD
    assert os.path.samefile(path, tmp_path / "staging" / "res.bin")  # linked in
    entry = cache.get(info.uid)
    assert isinstance(entry, CachedResource)
    assert entry.local_path == path
    assert os.listdir(dest) == ["res.bin"]  # nothing half-made beside it


def test_failure_returns_none_logs_and_strict_raises(
    source: Path,
    cache: MemoryCache[object],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (source / "res.bin").write_bytes(b"not the payload")
    store = CopyStore(CopyConfig(str(source)), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    dest = tmp_path / "dest"
    with caplog.at_level(logging.ERROR, logger="e3.store"):
        assert store.download_resource(info, str(dest)) is None
    assert "expecting " + info.sha256 in caplog.text
    with pytest.raises(IntegrityError) as raised:
        store.fetch_resource(info, str(dest))
    assert raised.value.expected == info.sha256
    assert os.listdir(dest) == []
    assert cache.get(info.uid) is None


def test_driver_returning_none(
    cache: MemoryCache[object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = NoneStore(None, cache)
    info = store.get_resource_metadata({"name": "x", "sha256": "00"})
    with caplog.at_level(logging.ERROR, logger="e3.store"):
        assert store.download_resource(info, str(tmp_path)) is None
    assert "could not download 00" in caplog.text
    with pytest.raises(StoreError, match="could not download 00"):
        store.fetch_resource(info, str(tmp_path))


# A third-party driver whose code breaks the types it declares, as untyped
# code does: its download answers the path object or number given at
# construction, its metadata's check what VERDICT holds.
UNTYPED_DRIVER = """
import os, pathlib
from e3_typed_store.backends.base import Store

VERDICT = [True]

class Info:
    uid = "untyped-resource"

    def verify(self, resource_path):
        return VERDICT[0]

class UntypedStore(Store):
    downloads = 0

    def get_resource_metadata(self, query):
        return Info()

    def download_resource_content(self, metadata, dest):
        self.downloads += 1
        path = os.path.join(dest, "file.txt")
        with open(path, "wb") as stream:
            stream.write(b"content")
        return {"path": pathlib.Path(path), "number": 42, "bytes": path.encode()}[
            self.store_configuration
        ]
"""


@pytest.fixture
def untyped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The untyped driver's module, imported from a file as a plugin's is."""
    (tmp_path / "untyped_driver.py").write_text(UNTYPED_DRIVER)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "untyped_driver", raising=False)
    return importlib.import_module("untyped_driver")


def test_a_driver_answering_a_path_object_gets_a_str_path(
    untyped: ModuleType, tmp_path: Path
) -> None:
    store = untyped.UntypedStore("path", MemoryCache())
    info = store.get_resource_metadata({})
    path = store.fetch_resource(info, str(tmp_path / "dest"))
    assert path == str(tmp_path / "dest" / "file.txt") and type(path) is str
    assert store.fetch_resource(info, str(tmp_path / "dest2")) == str(
        tmp_path / "dest2" / "file.txt"
    )
    assert store.downloads == 1  # recorded, then a hit


@pytest.mark.parametrize("answer", ["number", "bytes"])
def test_a_driver_answering_no_path_is_a_store_error(
    untyped: ModuleType,
    tmp_path: Path,
    answer: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = untyped.UntypedStore(answer, MemoryCache())
    info = store.get_resource_metadata({})
    with pytest.raises(StoreError, match="which is no path"):
        store.fetch_resource(info, str(tmp_path / "dest"))
    with caplog.at_level(logging.ERROR, logger="e3.store"):
        assert store.download_resource(info, str(tmp_path / "dest")) is None
    assert "which is no path" in caplog.text


@pytest.mark.parametrize("verdict", ["no", None, 1])
def test_a_check_answering_no_bool_at_a_hit_is_a_logged_miss(
    untyped: ModuleType,
    tmp_path: Path,
    verdict: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = untyped.UntypedStore("path", MemoryCache())
    info = store.get_resource_metadata({})
    store.fetch_resource(info, str(tmp_path / "one"))
    untyped.VERDICT[0] = verdict  # the module is imported anew for each test
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        path = store.fetch_resource(info, str(tmp_path / "two"))
    assert path == str(tmp_path / "two" / "file.txt")
    assert store.downloads == 2
    assert f"answered {verdict!r}, not True or False" in caplog.text


class ArchiveInfo(CopyInfo):
    """Metadata whose check reads the file as an archive: a damaged one raises."""

    @override
    def verify(self, resource_path: str) -> bool:
        with open(resource_path, "rb") as stream:
            if not stream.read().startswith(b"resource payload"):
                raise zipfile.BadZipFile("File is not a zip file")
        return super().verify(resource_path)


def test_a_hit_whose_verify_raises_is_a_miss(
    store: CopyStore,
    info: CopyInfo,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    archive = ArchiveInfo(info.name, info.sha256)
    first = store.fetch_resource(archive, str(tmp_path / "one"))
    Path(first).write_bytes(b"damaged")  # the file the memory cache records
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        path = store.fetch_resource(archive, str(tmp_path / "two"))
    assert Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 2
    assert "cannot verify" in caplog.text and "BadZipFile" in caplog.text
    assert "corrupted cache entry" in caplog.text


class FailingStore(CopyStore):
    """A driver that fails with an error of its own, not a StoreError."""

    error: Exception = ValueError("unexpected archive layout")

    @override
    def download_resource_content(self, metadata: CopyInfo, dest: str) -> str | None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [ValueError("unexpected archive layout"), E3Error("mkdir failed", "e3.fs")],
    ids=["ValueError", "E3Error"],
)
def test_a_drivers_own_error_is_a_store_error(
    error: Exception,
    source: Path,
    cache: MemoryCache[object],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore(CopyConfig(str(source)), cache)
    store.error = error
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    dest = str(tmp_path / "dest")
    with caplog.at_level(logging.ERROR, logger="e3.store"):
        assert store.download_resource(info, dest) is None
    assert f"cannot get resource {info.uid}" in caplog.text
    assert repr(error) in caplog.text
    with pytest.raises(StoreError, match="the store failed to download") as raised:
        store.fetch_resource(info, dest)
    assert raised.value.__cause__ is error
    assert cache.get(info.uid) is None


def test_a_relative_dest_is_recorded_absolute(
    store: CopyStore,
    info: CopyInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert store.fetch_resource(info, "dest") == os.path.join("dest", "res.bin")
    monkeypatch.chdir(tmp_path / "b")
    # The entry names the file in a/dest, not b/dest: a hit.
    path = store.fetch_resource(info, str(tmp_path / "elsewhere"))
    assert Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 1


def fetch_in_threads(
    store: CopyStore, info: CopyInfo, tmp_path: Path, count: int
) -> tuple[list[str], list[BaseException]]:
    """Fetch *info* from *count* threads at once, each into a dest of its own."""
    paths: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def fetch(index: int) -> None:
        start.wait()
        try:
            paths.append(store.fetch_resource(info, str(tmp_path / f"dest{index}")))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return paths, errors


def test_threads_sharing_a_memory_cache_download_once(
    source: Path, cache: MemoryCache[object], tmp_path: Path
) -> None:
    store = CopyStore(CopyConfig(str(source), delay=0.2), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    paths, errors = fetch_in_threads(store, info, tmp_path, 8)
    assert errors == []
    assert len(paths) == 8
    assert all(Path(path).read_bytes() == PAYLOAD for path in paths)
    assert store.downloads == 1


def test_threads_of_separate_memory_caches_do_not_wait_for_each_other(
    source: Path, tmp_path: Path
) -> None:
    config = CopyConfig(str(source), delay=0.2)
    stores = [CopyStore(config, MemoryCache()) for _ in range(2)]
    info = stores[0].get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    errors: list[BaseException] = []

    def fetch(store: CopyStore, dest: str) -> None:
        try:
            store.fetch_resource(info, dest)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    # With a lock timeout shorter than a download, waiting would fail.
    for store in stores:
        store.options = StoreOptions(lock_timeout=0.05)
    threads = [
        threading.Thread(target=fetch, args=(store, str(tmp_path / f"d{i}")))
        for i, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [store.downloads for store in stores] == [1, 1]


def slow_store(
    source: Path, cache: MemoryCache[object], lock_timeout: float
) -> tuple[CopyStore, CopyInfo]:
    """A store whose downloads take a second, and the metadata of res.bin."""
    store = CopyStore(
        CopyConfig(str(source), delay=1.0),
        cache,
        options=StoreOptions(lock_timeout=lock_timeout),
    )
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    return store, info


def test_a_thread_waits_for_the_lock_no_longer_than_the_timeout(
    source: Path, cache: MemoryCache[object], tmp_path: Path
) -> None:
    store, info = slow_store(source, cache, lock_timeout=0.1)
    paths, errors = fetch_in_threads(store, info, tmp_path, 2)
    assert len(paths) == 1 and store.downloads == 1
    assert len(errors) == 1 and isinstance(errors[0], StoreError)
    assert "another thread has held the lock of" in str(errors[0])
    # The lock was let go: the next fetch is a hit.
    assert store.fetch_resource(info, str(tmp_path / "after"))
    assert store.downloads == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_wait_for_a_lock_its_parents_thread_held(
    source: Path, cache: MemoryCache[object], tmp_path: Path
) -> None:
    store, info = slow_store(source, cache, lock_timeout=5.0)
    holder = threading.Thread(
        target=store.fetch_resource, args=(info, str(tmp_path / "parent"))
    )
    holder.start()
    try:
        threading.Event().wait(0.3)  # the holder is in its download, lock held
        child = multiprocessing.get_context("fork").Process(
            target=store.fetch_resource, args=(info, str(tmp_path / "child"))
        )
        child.start()
        child.join(60)
        # The holder is no thread of the child: had the child kept the
        # parent's lock table, it would have waited 5 s and failed.
        assert child.exitcode == 0
        assert (tmp_path / "child" / "res.bin").read_bytes() == PAYLOAD
    finally:
        holder.join(60)


def test_no_cache_backend(source: Path, tmp_path: Path) -> None:
    store = CopyStore(CopyConfig(str(source)), None)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    assert store.download_resource(info, str(tmp_path / "d")) is not None
    assert store.download_resource(info, str(tmp_path / "d")) is not None
    assert store.downloads == 2


def test_refused_cache_write_still_returns_path(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # e3-core's FileCache pointed at a path under a regular file cannot write.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    cache = E3FileCache({"cache_dir": str(blocker / "cache")})
    store = CopyStore(CopyConfig(str(source)), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None and Path(path).read_bytes() == PAYLOAD
    assert "cannot record" in caplog.text


def test_e3_filecache_as_backend(source: Path, tmp_path: Path) -> None:
    cache = E3FileCache({"cache_dir": str(tmp_path / "cache")})
    store = CopyStore(CopyConfig(str(source)), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    path = store.download_resource(info, str(tmp_path / "dest"))
    assert store.download_resource(info, str(tmp_path / "dest")) == path
    assert store.downloads == 1


def test_entry_written_by_e3_core_is_served(source: Path, tmp_path: Path) -> None:
    cache = E3FileCache({"cache_dir": str(tmp_path / "cache")})
    store = CopyStore(CopyConfig(str(source)), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "res.bin").write_bytes(PAYLOAD)
    cache.set(
        info.uid, e3_base.CachedResource(uid=info.uid, local_path=str(dest / "res.bin"))
    )
    assert store.download_resource(info, str(dest)) == str(dest / "res.bin")
    assert store.downloads == 0


class NamedInfo(CopyInfo):
    """CopyInfo under a uid of the caller's choosing."""

    def __init__(self, name: str, sha256: str, uid: str) -> None:
        super().__init__(name, sha256)
        self._uid = uid

    @property
    @override
    def uid(self) -> str:
        return self._uid


@pytest.mark.parametrize("uid", ["../escaped", "a/b", "ABSOLUTE", "nul\0x"])
def test_a_uid_that_is_no_file_name_stays_out_of_e3_cores_file_cache(
    source: Path, tmp_path: Path, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    # e3-core's FileCache names its entry's file after the uid: "../escaped"
    # would write escaped.cache beside the cache directory. Such a uid is
    # fetched without the cache, every time, and said so.
    uid = uid.replace("ABSOLUTE", str(tmp_path / "elsewhere" / "x"))
    cache_dir = tmp_path / "cache"
    store = CopyStore(
        CopyConfig(str(source)), E3FileCache({"cache_dir": str(cache_dir)})
    )
    info = NamedInfo("res.bin", sha256_of(PAYLOAD), uid)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        paths = [store.fetch_resource(info, str(tmp_path / "dest")) for _ in range(2)]
    assert paths == [str(tmp_path / "dest" / "res.bin")] * 2
    assert store.downloads == 2
    assert caplog.text.count("fetched without the cache") == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "cache",
        "dest",
        "source",
    ]
    assert not list(cache_dir.rglob("*.cache"))


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"\x80\x04\x95"], ids=["empty", "garbage", "truncated"]
)
def test_e3_filecache_garbage_is_a_miss(
    source: Path, tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    cache = E3FileCache({"cache_dir": str(cache_dir)})
    store = CopyStore(CopyConfig(str(source)), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    cache_dir.mkdir()
    (cache_dir / (info.uid + ".cache")).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None and store.downloads == 1
    assert "unreadable cache entry" in caplog.text


def test_a_dest_no_file_name_can_hold_is_a_store_error(
    store: CopyStore, info: CopyInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A lone surrogate (no byte of the command line makes one) raised a bare
    # UnicodeEncodeError from os.makedirs.
    dest = str(tmp_path / "dest\ud800")
    with pytest.raises(StoreError, match="a character no file name holds"):
        store.fetch_resource(info, dest)
    with caplog.at_level(logging.ERROR, logger="e3.store"):
        assert store.download_resource(info, dest) is None
    assert "a character no file name holds" in caplog.text
    assert store.downloads == 0


def test_unwritable_dest_is_a_store_error(
    store: CopyStore, info: CopyInfo, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot place"):
        store.fetch_resource(info, str(blocker / "dest"))
    assert store.download_resource(info, str(blocker / "dest")) is None


@pytest.mark.parametrize(
    ("query", "key", "shown"),
    [
        ({"sha256": "ab"}, "name", "None"),
        ({"name": "res.bin"}, "sha256", "None"),
        ({"name": 3, "sha256": "ab"}, "name", "3"),
        ({"name": "../x", "sha256": "ab"}, "name", "'../x'"),
    ],
)
def test_bad_query_names_key_and_value(
    store: CopyStore, query: dict[str, object], key: str, shown: str
) -> None:
    # The query comes from outside, as a program reading it from a file gets it.
    bad: CopyQuery = json.loads(json.dumps(query))
    with pytest.raises(InvalidQueryError) as raised:
        store.get_resource_metadata(bad)
    assert raised.value.key == key
    assert f"{key!r}={shown}" in str(raised.value)


def test_forgotten_abstract_methods_block_instantiation() -> None:
    # check_store.py proves the static rejection; this is the runtime one.
    class NoVerify(ResourceInfo):
        @property
        @override
        def uid(self) -> str:
            return "x"

    class NoDownload(Store[CopyInfo, CopyQuery, None]):
        @override
        def get_resource_metadata(self, query: CopyQuery) -> CopyInfo:
            return CopyInfo(query["name"], query["sha256"])

    assert NoVerify.__abstractmethods__ == frozenset({"verify"})
    assert NoDownload.__abstractmethods__ == frozenset({"download_resource_content"})


def test_protocols_are_satisfied_at_runtime(store: CopyStore, info: CopyInfo) -> None:
    assert isinstance(info, ResourceInfoProtocol)
    assert isinstance(store, StoreProtocol)
    assert isinstance(HTTPSimpleStoreResourceInfo("u", "s"), ResourceInfoProtocol)
    assert not isinstance(object(), ResourceInfoProtocol)


def test_cached_resource_behaves_like_e3s() -> None:
    ours: object = CachedResource(uid="u", local_path="/p")
    theirs: object = e3_base.CachedResource(uid="u", local_path="/p")
    assert ours == theirs
    uid, local_path = CachedResource(uid="u", local_path="/p")
    assert (uid, local_path) == ("u", "/p")
    assert pickle.loads(pickle.dumps(ours)) == ours
    assert type(pickle.loads(pickle.dumps(ours))) is CachedResource


def test_store_error_is_an_e3_error() -> None:
    assert issubclass(StoreError, E3Error)
