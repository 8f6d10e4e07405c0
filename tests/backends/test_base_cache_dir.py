"""A store whose cache has a cache_dir: kept copies, locks, fast hits, offline."""

from __future__ import annotations

import errno
import logging
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e3.store.backends.base import CachedResource as E3CachedResource
from e3.store.cache.backends.filecache import FileCache as E3FileCache
from typing_extensions import override

from e3_typed_store._content import ContentStore
from e3_typed_store._fs import place_in
from e3_typed_store.backends import base as base_module
from e3_typed_store.backends.base import OFFLINE_VARIABLE, CachedResource, StoreOptions
from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
from e3_typed_store.cache.backends.base import DEFAULT_TIMEOUT
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.errors import (
    DestinationError,
    InvalidConfigurationError,
    OfflineError,
    StoreError,
)
from tests.backends.drivers import (
    CopyConfig,
    CopyInfo,
    CopyStore,
    CountingCopyInfo,
    DigestInfo,
    HashedNameInfo,
    fetch_in_child,
    sha256_of,
)

PAYLOAD = b"kept payload\n" * 1000


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "source"
    directory.mkdir()
    (directory / "res.bin").write_bytes(PAYLOAD)
    return directory


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def make_store(
    source: Path, cache_dir: Path, options: StoreOptions | None = None
) -> tuple[CopyStore, CopyInfo]:
    store = CopyStore(
        CopyConfig(str(source)),
        E3FileCache({"cache_dir": str(cache_dir)}),
        options=options,
    )
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    return store, info


def test_the_cache_keeps_its_own_copy(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)
    first = tmp_path / "first"
    path = store.fetch_resource(info, str(first))
    entry = store.cache_backend.get(info.uid) if store.cache_backend else None
    assert isinstance(entry, E3CachedResource)  # e3-core's cache: its own class
    assert entry.local_path.startswith(str(cache_dir / "resources"))
    assert Path(entry.local_path).read_bytes() == PAYLOAD
    assert os.path.samefile(entry.local_path, path)  # a hard link, not a second copy


def test_a_hit_survives_deletion_of_the_first_dest(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)
    first = tmp_path / "first"
    store.fetch_resource(info, str(first))
    shutil.rmtree(first)
    second = tmp_path / "second"
    path = store.fetch_resource(info, str(second))
    assert path == str(second / "res.bin")
    assert Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 1


def test_a_hit_lands_in_the_requested_dest(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)
    store.fetch_resource(info, str(tmp_path / "one"))
    for name in ("two", "three"):
        path = store.fetch_resource(info, str(tmp_path / name))
        assert Path(path).parent == tmp_path / name
    assert store.downloads == 1


def test_a_dest_that_is_a_file_is_a_store_error(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(StoreError):  # a miss
        store.fetch_resource(info, str(blocker))
    with pytest.raises(DestinationError) as raised:  # one that cannot be made
        store.fetch_resource(info, str(blocker / "sub"))
    assert raised.value.dest == str(blocker / "sub")
    store.fetch_resource(info, str(tmp_path / "one"))
    with pytest.raises(StoreError):  # a hit
        store.fetch_resource(info, str(blocker))
    assert blocker.read_bytes() == b"not a directory"
    assert store.fetch_resource(info, str(tmp_path / "two"))
    assert store.downloads == 1


def test_a_hit_that_dest_cannot_take_is_a_destination_error(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    # As a miss's is: a directory where the file goes.
    store, info = make_store(source, cache_dir)
    store.fetch_resource(info, str(tmp_path / "one"))
    dest = tmp_path / "dest"
    (dest / "res.bin").mkdir(parents=True)
    with pytest.raises(DestinationError) as raised:
        store.fetch_resource(info, str(dest))
    assert raised.value.dest == str(dest)
    assert "cannot place" in str(raised.value)
    assert os.listdir(dest) == ["res.bin"] and (dest / "res.bin").is_dir()
    assert store.downloads == 1


class RemovedAfterCheckInfo(CopyInfo):
    """Metadata whose check of a kept copy is followed by its removal, as a
    ``cache clear`` in another process may do between the two steps."""

    @override
    def verify(self, resource_path: str) -> bool:
        verified = super().verify(resource_path)
        if f"{os.sep}resources{os.sep}" in resource_path:
            os.unlink(resource_path)
        return verified


def test_a_hit_removed_after_its_check_is_a_miss(
    source: Path, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, info = make_store(source, cache_dir)
    store.fetch_resource(info, str(tmp_path / "one"))
    os.unlink(tmp_path / "one" / "res.bin")  # the kept copy's one other link
    removed = RemovedAfterCheckInfo(info.name, info.sha256)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        path = store.fetch_resource(removed, str(tmp_path / "two"))
    assert Path(path).read_bytes() == PAYLOAD
    assert "removed before it was placed" in caplog.text
    assert store.downloads == 2


def test_a_hit_creates_missing_dest_directories(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)
    store.fetch_resource(info, str(tmp_path / "one"))
    path = store.fetch_resource(info, str(tmp_path / "a" / "b" / "c"))
    assert Path(path).read_bytes() == PAYLOAD
    assert Path(path).parent == tmp_path / "a" / "b" / "c"
    assert store.downloads == 1


def test_a_corrupted_kept_copy_is_refetched(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)
    path = store.fetch_resource(info, str(tmp_path / "one"))
    os.unlink(path)  # break the hard link, then corrupt the kept copy
    kept = next((cache_dir / "resources").rglob("res.bin"))
    kept.write_bytes(b"bad")
    again = store.fetch_resource(info, str(tmp_path / "one"))
    assert Path(again).read_bytes() == PAYLOAD
    assert store.downloads == 2


def test_fast_hit_skips_the_hash_while_the_file_is_unchanged(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(
        source, cache_dir, StoreOptions(trust_unchanged_files=True)
    )
    store.fetch_resource(info, str(tmp_path / "one"))
    info = CountingCopyInfo(info.name, info.sha256)
    verified = info.verified
    # This driver's download is not known to be the file it verified (it is
    # not published by the package's own stores): its first hit hashes it.
    store.fetch_resource(info, str(tmp_path / "two"))
    assert len(verified) == 1
    store.fetch_resource(info, str(tmp_path / "three"))
    store.fetch_resource(info, str(tmp_path / "four"))
    assert len(verified) == 1
    kept = next((cache_dir / "resources").rglob("res.bin"))
    os.utime(kept, ns=(1, 1))  # changed since verified: hash again
    store.fetch_resource(info, str(tmp_path / "five"))
    assert len(verified) == 2
    store.fetch_resource(info, str(tmp_path / "six"))  # re-stamped by that verify
    assert len(verified) == 2


class WrittenWhileVerified(CopyInfo):
    """Metadata whose file another process rewrites in place, same size, while
    it is verified: the verification a hash pass of a big file takes a while
    for, stood in for by writing at its start."""

    @override
    def verify(self, resource_path: str) -> bool:
        with open(resource_path, "r+b") as stream:
            stream.write(b"EVIL")
        return True  # what it read first was right


def test_a_copy_written_while_verified_is_not_stamped(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(
        source, cache_dir, StoreOptions(trust_unchanged_files=True)
    )
    store.fetch_resource(info, str(tmp_path / "one"))
    kept = next((cache_dir / "resources").rglob("res.bin"))
    os.utime(kept, ns=(1, 1))  # changed since stamped: the next hit verifies
    store.fetch_resource(
        WrittenWhileVerified(info.name, info.sha256), str(tmp_path / "two")
    )
    # Not trusted: verified again, found changed, fetched anew.
    counting = CountingCopyInfo(info.name, info.sha256)
    again = store.fetch_resource(counting, str(tmp_path / "three"))
    assert counting.verified[:1] == [str(kept)]
    assert Path(again).read_bytes() == PAYLOAD


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and links: POSIX")
def test_planted_files_in_the_cache_neither_hang_nor_escape_it(
    source: Path,
    cache_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, info = make_store(
        source, cache_dir, StoreOptions(trust_unchanged_files=True, lock_timeout=5.0)
    )
    store.fetch_resource(info, str(tmp_path / "one"))
    store.fetch_resource(info, str(tmp_path / "one-hit"))  # verified, stamped
    uid_dir = next((cache_dir / "resources").iterdir())
    # A FIFO for a stamp: opening it would block the hit for ever.
    (uid_dir / "stamp.json").unlink()
    os.mkfifo(uid_dir / "stamp.json")
    path = store.fetch_resource(info, str(tmp_path / "two"))  # verified instead
    assert Path(path).read_bytes() == PAYLOAD
    # A link for the lock file: the miss goes on unlocked, creating nothing
    # where the link points.
    lock = cache_dir / "locks" / (info.uid + ".lock")
    lock.unlink()
    lock.symlink_to(tmp_path / "outside")
    shutil.rmtree(cache_dir / "resources")
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        path = store.fetch_resource(info, str(tmp_path / "three"))
    assert Path(path).read_bytes() == PAYLOAD
    assert "going on unlocked" in caplog.text
    assert not (tmp_path / "outside").exists()
    assert store.downloads == 2


def test_fast_hits_on_a_cache_filled_without_them_verify_once(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    # A download made without fast hits writes no stamp: the first fast hit
    # hashes the copy, stamps it, and the next ones trust it.
    plain, plain_info = make_store(source, cache_dir)
    plain.fetch_resource(plain_info, str(tmp_path / "one"))
    assert not list((cache_dir / "resources").rglob("stamp.json"))
    fast, info = make_store(source, cache_dir, StoreOptions(trust_unchanged_files=True))
    info = CountingCopyInfo(info.name, info.sha256)
    fast.fetch_resource(info, str(tmp_path / "two"))
    fast.fetch_resource(info, str(tmp_path / "three"))
    assert len(info.verified) == 1
    assert fast.downloads == 0


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """Make a directory immutable (``chattr +i``: not even root adds a file to
    it), for a write the kernel refuses; undone after the test."""
    frozen: list[Path] = []

    def freeze(directory: Path) -> None:
        chattr = shutil.which("chattr")
        if chattr is None:
            pytest.skip("chattr is not installed")
        done = subprocess.run(
            [chattr, "+i", str(directory)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"chattr +i is refused here: {done.stderr.strip()}")
        frozen.append(directory)

    yield freeze
    for directory in frozen:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_a_stamp_that_cannot_be_written_costs_the_fast_hit_not_the_copy(
    source: Path,
    cache_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    immutable: Callable[[Path], None],
) -> None:
    store, info = make_store(
        source, cache_dir, StoreOptions(trust_unchanged_files=True)
    )
    uid_dir = cache_dir / "resources" / info.uid
    (uid_dir / "payload").mkdir(parents=True)
    immutable(uid_dir)  # the payload goes in; no stamp can be made beside it
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        store.fetch_resource(info, str(tmp_path / "one"))
    assert "cannot keep a copy" not in caplog.text
    entry = store.cache_backend.get(info.uid) if store.cache_backend else None
    assert isinstance(entry, E3CachedResource)  # e3-core's cache: its own class
    assert entry.local_path == str(uid_dir / "payload" / "res.bin")
    shutil.rmtree(tmp_path / "one")  # the kept copy outlives the first dest
    counting = CountingCopyInfo(info.name, info.sha256)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        again = store.fetch_resource(counting, str(tmp_path / "two"))
    assert "cannot stamp" in caplog.text  # by the hit that verified it
    assert Path(again).read_bytes() == PAYLOAD
    store.fetch_resource(counting, str(tmp_path / "three"))
    assert store.downloads == 1
    assert len(counting.verified) == 2  # no stamp: hashed, not trusted


def test_a_stamp_that_cannot_be_removed_is_logged_and_the_fetch_goes_on(
    source: Path, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, info = make_store(source, cache_dir)
    path = store.fetch_resource(info, str(tmp_path / "one"))
    os.unlink(path)
    kept = cache_dir / "resources" / info.uid / "payload" / "res.bin"
    kept.write_bytes(b"corrupted")
    # A directory where the stamp goes: unlink() refuses it.
    (kept.parent.parent / "stamp.json" / "inside").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        again = store.fetch_resource(info, str(tmp_path / "two"))
    assert Path(again).read_bytes() == PAYLOAD
    assert store.downloads == 2
    assert "cannot remove the stamp" in caplog.text
    # A stale stamp may not be left beside a new copy: the download itself
    # is recorded instead, and it is verified on every hit.
    assert "cannot keep a copy" in caplog.text
    entry = store.cache_backend.get(info.uid) if store.cache_backend else None
    assert isinstance(entry, E3CachedResource)  # e3-core's cache: its own class
    assert entry.local_path == again


def test_default_verifies_every_hit(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)
    store.fetch_resource(info, str(tmp_path / "one"))
    kept = next((cache_dir / "resources").rglob("res.bin"))
    # Same size, same mtime, other bytes: only a hash can tell.
    stat = kept.stat()
    os.unlink(tmp_path / "one" / "res.bin")
    kept.write_bytes(PAYLOAD[:-1] + b"X")
    os.utime(kept, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    path = store.fetch_resource(info, str(tmp_path / "two"))
    assert Path(path).read_bytes() == PAYLOAD
    assert store.downloads == 2


def test_offline_serves_hits(source: Path, cache_dir: Path, tmp_path: Path) -> None:
    online, info = make_store(source, cache_dir)
    online.fetch_resource(info, str(tmp_path / "one"))
    offline, info = make_store(source, cache_dir, StoreOptions(offline=True))
    assert (
        Path(offline.fetch_resource(info, str(tmp_path / "two"))).read_bytes()
        == PAYLOAD
    )
    assert offline.downloads == 0


@pytest.mark.parametrize("ours", [True, False], ids=["FileCache", "e3 FileCache"])
def test_a_relative_cache_dir_serves_from_another_working_directory(
    ours: bool, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def store_on(cache_dir: str, offline: bool = False) -> CopyStore:
        cache = (
            FileCache({"cache_dir": cache_dir})
            if ours
            else E3FileCache({"cache_dir": cache_dir})
        )
        return CopyStore(CopyConfig(str(source)), cache, options=StoreOptions(offline))

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    store = store_on("cache")
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    store.fetch_resource(info, "dest")
    monkeypatch.chdir(tmp_path / "b")
    # The same cache, named from elsewhere, serves offline: the entry names
    # the kept copy by an absolute path.
    offline = store_on(str(tmp_path / "a" / "cache"), offline=True)
    path = offline.fetch_resource(info, str(tmp_path / "two"))
    assert Path(path).read_bytes() == PAYLOAD
    if ours:
        # And the first cache still names a/cache (e3-core's would now read
        # b/cache: its cache_dir stays relative).
        assert store.fetch_resource(info, "dest") == os.path.join("dest", "res.bin")
        assert store.downloads == 1
        assert not (tmp_path / "b" / "cache").exists()


def test_offline_miss_fails_without_touching_the_source(
    source: Path, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, info = make_store(source, cache_dir, StoreOptions(offline=True))
    with pytest.raises(OfflineError) as raised:
        store.fetch_resource(info, str(tmp_path / "dest"))
    assert raised.value.uid == info.uid
    assert store.downloads == 0
    with caplog.at_level(logging.ERROR, logger="e3.store"):
        assert store.download_resource(info, str(tmp_path / "dest")) is None
    assert "offline mode" in caplog.text


def test_offline_from_the_environment(
    source: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, info = make_store(source, cache_dir)
    monkeypatch.setenv(OFFLINE_VARIABLE, "1")
    with pytest.raises(OfflineError):
        store.fetch_resource(info, str(tmp_path / "dest"))
    # An explicit option wins over the environment.
    store, info = make_store(source, cache_dir, StoreOptions(offline=False))
    assert store.fetch_resource(info, str(tmp_path / "dest"))


def test_a_value_of_the_offline_variable_that_says_neither_is_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    options = StoreOptions()
    for value, offline in (("Yes", True), (" off ", False), ("0", False)):
        monkeypatch.setenv(OFFLINE_VARIABLE, value)
        assert options.is_offline() is offline
    assert caplog.text == ""
    monkeypatch.setenv(OFFLINE_VARIABLE, "enabled-for-ci")
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        assert options.is_offline() is False
        assert options.is_offline() is False
    assert caplog.text.count("'enabled-for-ci' is neither on") == 1


def test_lock_timeout_is_a_store_error(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    from filelock import FileLock

    from e3_typed_store._fs import safe_component

    _, info = make_store(source, cache_dir)
    (cache_dir / "locks").mkdir(parents=True)
    holder = FileLock(str(cache_dir / "locks" / (safe_component(info.uid) + ".lock")))
    with holder:
        # filelock locks are per process and re-entrant by path within it: use a child.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            result = pool.apply_async(
                fetch_in_child_expecting_error,
                (
                    CopyConfig(str(source)),
                    str(cache_dir),
                    str(tmp_path / "d"),
                    info.sha256,
                ),
            )
            assert "held the lock" in result.get(timeout=60)


def fetch_in_child_expecting_error(
    config: CopyConfig, cache_dir: str, dest: str, sha256: str
) -> str:
    from e3.store.cache.backends.filecache import FileCache

    from e3_typed_store.backends.base import StoreOptions as Options

    store = CopyStore(
        config, FileCache({"cache_dir": cache_dir}), options=Options(lock_timeout=0.2)
    )
    info = store.get_resource_metadata({"name": "res.bin", "sha256": sha256})
    try:
        store.fetch_resource(info, dest)
    except StoreError as exc:
        return str(exc)
    return "no error"


def test_eight_processes_download_once(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "downloads.log"
    config = CopyConfig(str(source), log_path=str(log), delay=0.5)
    sha256 = sha256_of(PAYLOAD)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        jobs = [
            pool.apply_async(
                fetch_in_child,
                (config, str(cache_dir), str(tmp_path / f"dest{i}"), sha256),
            )
            for i in range(8)
        ]
        paths = [job.get(timeout=120) for job in jobs]
    assert len(log.read_text().splitlines()) == 1
    for i, path in enumerate(paths):
        assert path == str(tmp_path / f"dest{i}" / "res.bin")
        assert Path(path).read_bytes() == PAYLOAD


class UnreadableCopyInfo(CopyInfo):
    """Metadata whose check may not read the file of the inode written in the
    file *blocked*: a copy this process has no permission to read."""

    def __init__(self, name: str, sha256: str, blocked: str) -> None:
        super().__init__(name, sha256)
        self.blocked = blocked

    @override
    def verify(self, resource_path: str) -> bool:
        if str(os.stat(resource_path).st_ino) == Path(self.blocked).read_text():
            raise PermissionError(errno.EACCES, "Permission denied", resource_path)
        return super().verify(resource_path)


def fetch_unreadable_in_child(
    config: CopyConfig, cache_dir: str, dest: str, sha256: str, blocked: str
) -> str:
    store = CopyStore(config, FileCache({"cache_dir": cache_dir}))
    return store.fetch_resource(UnreadableCopyInfo("res.bin", sha256, blocked), dest)


def test_processes_meeting_a_copy_they_cannot_read_download_once(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    # Each finds the entry, waits for the lock, and cannot read the copy
    # (root without its powers, a copy of another user's): the first one
    # downloads under the lock and keeps a copy the others can read. Before,
    # each downloaded, the lock released for a check that found nothing.
    cache = FileCache({"cache_dir": str(cache_dir)})
    sha256 = sha256_of(PAYLOAD)
    CopyStore(CopyConfig(str(source)), cache).fetch_resource(
        CopyInfo("res.bin", sha256), str(tmp_path / "first")
    )
    entry = cache.get(sha256)
    assert entry is not None
    blocked = tmp_path / "blocked-inode"
    blocked.write_text(str(os.stat(entry.local_path).st_ino))
    log = tmp_path / "downloads.log"
    config = CopyConfig(str(source), log_path=str(log), delay=1.0)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        jobs = [
            pool.apply_async(
                fetch_unreadable_in_child,
                (config, str(cache_dir), str(tmp_path / f"d{i}"), sha256, str(blocked)),
            )
            for i in range(4)
        ]
        paths = [job.get(timeout=120) for job in jobs]
    assert len(log.read_text().splitlines()) == 1
    assert all(Path(path).read_bytes() == PAYLOAD for path in paths)


class NamedInfo(CopyInfo):
    """Metadata whose uid is a name, not a digest (a moving "latest", say)."""

    @property
    @override
    def uid(self) -> str:
        return "named-" + self.name


_FOR_EVER = 100 * 365 * 24 * 3600


class UpperDigestInfo(DigestInfo):
    """Says its digest in upper case: the same digest."""

    @property
    @override
    def digest(self) -> str:
        return self.sha256.upper()


class RaisingDigestInfo(DigestInfo):
    """A driver's property that raises: says nothing."""

    @property
    @override
    def digest(self) -> str:
        raise ValueError("no digest here")


class NotHexInfo(DigestInfo):
    """A uid of 64 characters, equal to its digest, that is no hex."""

    @property
    @override
    def uid(self) -> str:
        return "z" * 64

    @property
    @override
    def digest(self) -> str:
        return "z" * 64


@pytest.mark.parametrize(
    ("options", "kind", "lifetime"),
    [
        (StoreOptions(), DigestInfo, _FOR_EVER),
        (StoreOptions(), UpperDigestInfo, _FOR_EVER),
        (StoreOptions(), CopyInfo, DEFAULT_TIMEOUT),  # a digest, unsaid
        (StoreOptions(), HashedNameInfo, DEFAULT_TIMEOUT),
        (StoreOptions(), RaisingDigestInfo, DEFAULT_TIMEOUT),
        (StoreOptions(), NotHexInfo, DEFAULT_TIMEOUT),
        (StoreOptions(), NamedInfo, DEFAULT_TIMEOUT),  # a name: e3-core's day
        (StoreOptions(cache_timeout=60), DigestInfo, 60),
        (StoreOptions(cache_timeout=60), NamedInfo, 60),
    ],
    ids=[
        "digest",
        "upper-case-digest",
        "unsaid",
        "hashed-name",
        "raising-property",
        "not-hex",
        "name",
        "digest-60s",
        "name-60s",
    ],
)
def test_how_long_an_entry_lives(
    options: StoreOptions,
    kind: type[CopyInfo],
    lifetime: int,
    source: Path,
    cache_dir: Path,
) -> None:
    # A hit whose uid is its content's digest is checked against it: it never
    # goes stale, and offline mode must not lose it after a day, as it would
    # in e3-core. A uid that only looks like one is given e3-core's day.
    cache = FileCache({"cache_dir": str(cache_dir)})
    store = CopyStore(CopyConfig(str(source)), cache, options=options)
    info = kind("res.bin", sha256_of(PAYLOAD))
    before = time.time()
    store.fetch_resource(info, str(cache_dir.parent / "dest"))
    (entry,) = cache.iter_entries()
    assert entry.uid == info.uid
    assert before + lifetime <= entry.expiry <= time.time() + lifetime


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "60"])
def test_a_bad_cache_timeout_is_refused(value: object) -> None:
    with pytest.raises(InvalidConfigurationError, match="cache_timeout"):
        StoreOptions.from_configuration({"cache_timeout": value})


def test_options_from_a_configuration_mapping() -> None:
    options = StoreOptions.from_configuration(
        {"offline": True, "trust_unchanged_files": True, "lock_timeout": 5, "x": 1}
    )
    assert options == StoreOptions(
        offline=True, trust_unchanged_files=True, lock_timeout=5.0
    )
    assert StoreOptions.from_configuration({}) == StoreOptions()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("offline", "yes"),
        ("trust_unchanged_files", 1),
        ("lock_timeout", 0),
        ("lock_timeout", True),
        ("lock_timeout", "10"),
    ],
)
def test_bad_options_in_a_configuration(key: str, value: object) -> None:
    with pytest.raises(InvalidConfigurationError) as raised:
        StoreOptions.from_configuration({key: value})
    assert raised.value.key == key and raised.value.value == value


@pytest.mark.parametrize("value", [0.0, -0.5, math.nan, -math.inf])
def test_bad_lock_timeouts_given_directly(value: float) -> None:
    # Not only through a configuration mapping: a NaN or a negative wait
    # would fail deep in a lock.
    with pytest.raises(InvalidConfigurationError, match="lock_timeout"):
        StoreOptions(lock_timeout=value)


@pytest.mark.parametrize("value", [math.inf, 1e300])
def test_a_lock_timeout_without_end_waits_as_long_as_it_takes(
    value: float, source: Path, tmp_path: Path
) -> None:
    # Longer than a thread can wait at once: no OverflowError, for the lock
    # file of a cache directory and for the in-process lock of a memory cache.
    options = StoreOptions.from_configuration({"lock_timeout": value})
    for cache in (FileCache({"cache_dir": str(tmp_path / "cache")}), MemoryCache()):
        store = CopyStore(CopyConfig(str(source)), cache, options=options)
        info = store.get_resource_metadata(
            {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
        )
        path = store.fetch_resource(info, str(tmp_path / type(cache).__name__))
        assert Path(path).read_bytes() == PAYLOAD


def test_a_store_reads_its_options_from_a_configuration_mapping(
    source: Path, tmp_path: Path
) -> None:
    from tests.backends.drivers import NoneStore

    # NoneStore's configuration type is None: no mapping, the defaults.
    assert NoneStore(None, None).options == StoreOptions()
    assert CopyStore(CopyConfig(str(source)), None).options == StoreOptions()
    # An explicit options= wins over the mapping.
    store = HTTPSimpleStore({"offline": True}, None, options=StoreOptions())
    assert store.options == StoreOptions()
    assert HTTPSimpleStore({"offline": True}, None).options.offline is True


def test_a_cache_backend_set_later_gets_the_kept_copies(
    source: Path, tmp_path: Path
) -> None:
    # e3-core's Store has cache_backend as a plain attribute, and code sets it.
    first, second = tmp_path / "first", tmp_path / "second"
    store, info = make_store(source, first)
    store.cache_backend = FileCache({"cache_dir": str(second)})
    placed = store.fetch_resource(info, str(tmp_path / "dest"))
    entry = FileCache({"cache_dir": str(second)}).get(info.uid)
    assert isinstance(entry, CachedResource)
    assert Path(entry.local_path).is_relative_to(second)
    assert Path(entry.local_path).read_bytes() == Path(placed).read_bytes() == PAYLOAD
    assert not first.exists() or not any(first.rglob("*.bin"))
    store.cache_backend = None  # no cache: nothing kept, nothing recorded
    again = Path(store.fetch_resource(info, str(tmp_path / "again")))
    assert again.parent == tmp_path / "again" and again.read_bytes() == PAYLOAD
    assert sorted(p.name for p in second.rglob("*.bin")) == [Path(placed).name]


def test_a_hit_removed_and_kept_again_while_placed_is_a_miss(
    source: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cache clear` in another process removes the kept copy as this one
    # links it into dest, and a third process keeps it again at once: the
    # copy is there again when the failed link is looked into. Real processes
    # meet at that moment a few times in 100,000 hits, so the two others are
    # stood in for around the real placing.
    store, info = make_store(source, cache_dir)
    assert store.fetch_resource(info, str(tmp_path / "first")) is not None

    def raced(kept: str, directory: str, name: str) -> str:
        os.unlink(kept)
        try:
            return place_in(kept, directory, name)
        finally:
            Path(kept).write_bytes(PAYLOAD)

    monkeypatch.setattr(base_module, "place_in", raced)
    placed = store.fetch_resource(info, str(tmp_path / "second"))
    assert Path(placed).read_bytes() == PAYLOAD
    assert Path(placed).parent == tmp_path / "second"


E3_CORE_ALONE = """
import sys
sys.modules["e3_typed_store"] = None  # e3-core code, this package not installed
from e3.store.cache.backends.filecache import FileCache
entry = FileCache({"cache_dir": sys.argv[1]}).get(sys.argv[2])
print(type(entry).__module__, entry.uid == sys.argv[2], open(entry.local_path).read())
"""


def test_e3_core_code_alone_reads_what_a_store_recorded_in_its_cache(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    store, info = make_store(source, cache_dir)  # e3-core's pickling FileCache
    store.fetch_resource(info, str(tmp_path / "dest"))
    read = subprocess.run(
        [sys.executable, "-c", E3_CORE_ALONE, str(cache_dir), info.uid],
        capture_output=True,
        text=True,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout == f"e3.store.backends.base True {PAYLOAD.decode()}\n"


@pytest.mark.parametrize(
    "inside",
    ["resources", "resources/uid/payload", "locks", "entries/x", "", "//resources"],
)
def test_a_dest_among_the_caches_own_files_is_refused(
    source: Path, cache_dir: Path, tmp_path: Path, inside: str
) -> None:
    # A download named `digest` or `stamp.json` placed in a kept copy's
    # directory overwrote the store's own file, or was removed by it; one
    # named `resources` in the cache directory itself took its place. A
    # leading // (kept by POSIX) does not get past it.
    store, info = make_store(source, cache_dir)
    kept_dir = cache_dir / "resources" / ContentStore.dir_name(info.uid)
    store.fetch_resource(info, str(tmp_path / "first"))
    name = inside.replace("uid", ContentStore.dir_name(info.uid))
    dest = str(cache_dir / name.lstrip("/"))
    if name.startswith("//"):
        dest = "/" + dest
    with pytest.raises(DestinationError, match="the cache's own files"):
        store.fetch_resource(info, dest)
    assert sorted(p.name for p in kept_dir.rglob("*")) == ["payload", "res.bin"]
    # A directory of its own beside them in the cache directory is fine.
    placed = store.fetch_resource(info, str(cache_dir / "downloads"))
    assert Path(placed).read_bytes() == PAYLOAD


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and links: POSIX")
@pytest.mark.parametrize("planted", ["fifo", "link", "directory"])
def test_whatever_stands_at_the_digest_file_is_replaced(
    source: Path, cache_dir: Path, tmp_path: Path, planted: str
) -> None:
    # A FIFO there hung the next download for ever (opened to be written); a
    # link or a directory kept the copy out of the cache for good.
    cache = FileCache({"cache_dir": str(cache_dir)})
    store = CopyStore(CopyConfig(str(source)), cache)
    info = DigestInfo("res.bin", sha256_of(PAYLOAD))
    store.fetch_resource(info, str(tmp_path / "first"))
    marker = cache_dir / "resources" / ContentStore.dir_name(info.uid) / "digest"
    marker.unlink()
    outside = tmp_path / "outside"
    outside.write_bytes(b"not the store's")
    if planted == "fifo":
        os.mkfifo(marker)
    elif planted == "link":
        marker.symlink_to(outside)
    else:
        marker.mkdir()
    cache.delete(info.uid)  # a miss: the copy is kept anew
    done: list[str] = []
    fetching = threading.Thread(
        target=lambda: done.append(store.fetch_resource(info, str(tmp_path / "two"))),
        daemon=True,
    )
    fetching.start()
    fetching.join(30)
    assert done, "the download hangs"
    assert marker.is_file() and not marker.is_symlink()
    assert marker.read_bytes() == b"sha256"
    assert outside.read_bytes() == b"not the store's"
    assert isinstance(cache.get(info.uid), CachedResource)


def fetched_once(
    source: Path, cache_dir: Path, tmp_path: Path
) -> tuple[CopyStore, FileCache, DigestInfo, Path]:
    """A store whose cache keeps a copy of ``res.bin``, fetched once into
    ``first``; its metadata, and the path of that copy."""
    cache = FileCache({"cache_dir": str(cache_dir)})
    store = CopyStore(CopyConfig(str(source)), cache)
    info = DigestInfo("res.bin", sha256_of(PAYLOAD))
    store.fetch_resource(info, str(tmp_path / "first"))
    kept = cache.get(info.uid)
    assert isinstance(kept, CachedResource)
    return store, cache, info, Path(kept.local_path)


@pytest.mark.skipif(os.name != "posix", reason="symbolic links: POSIX")
def test_a_link_planted_at_the_kept_copy_is_never_placed(
    source: Path, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The link's target is the resource when the hit is checked; placed in
    # dest, the link would show whatever its target holds later.
    store, _, info, kept = fetched_once(source, cache_dir, tmp_path)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(PAYLOAD)
    kept.unlink()
    kept.symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        placed = Path(store.fetch_resource(info, str(tmp_path / "second")))
    assert not placed.is_symlink()
    assert store.downloads == 2  # not a hit: downloaded again
    outside.write_bytes(b"#!/bin/sh\necho changed later\n")
    assert placed.read_bytes() == PAYLOAD
    assert any("symbolic link" in r.getMessage() for r in caplog.records)
    assert not kept.is_symlink()  # the new copy replaced it


class _SwappedAfterTheCheck(DigestInfo):
    """Metadata whose check of a kept copy is followed at once by another
    writer putting a link to a file of its own in the copy's place."""

    def __init__(self, name: str, sha256: str, outside: Path) -> None:
        super().__init__(name, sha256)
        self.outside = outside
        self.swaps = 0

    @override
    def verify(self, resource_path: str) -> bool:
        verdict = super().verify(resource_path)
        if verdict and "resources" in Path(resource_path).parts and not self.swaps:
            self.swaps += 1
            os.unlink(resource_path)
            os.symlink(self.outside, resource_path)
        return verdict


@pytest.mark.skipif(os.name != "posix", reason="symbolic links: POSIX")
def test_a_link_put_in_place_of_the_kept_copy_after_its_check_is_not_placed(
    source: Path, cache_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(PAYLOAD)
    store = CopyStore(CopyConfig(str(source)), FileCache({"cache_dir": str(cache_dir)}))
    info = _SwappedAfterTheCheck("res.bin", sha256_of(PAYLOAD), outside)
    store.fetch_resource(info, str(tmp_path / "first"))
    placed = Path(store.fetch_resource(info, str(tmp_path / "second")))
    assert info.swaps == 1
    assert not placed.is_symlink()
    outside.write_bytes(b"changed later")
    assert placed.read_bytes() == PAYLOAD


@pytest.mark.parametrize("name", ["res.bin", "other.bin"])
def test_a_directory_planted_among_the_kept_copies_does_not_keep_caching_off(
    source: Path, cache_dir: Path, tmp_path: Path, name: str
) -> None:
    # At the copy's own name, or beside it: the copy could never be kept
    # again, and every fetch downloaded.
    store, cache, info, kept = fetched_once(source, cache_dir, tmp_path)
    payload_dir = kept.parent
    kept.unlink()
    (payload_dir / name / "inside").mkdir(parents=True)
    assert cache.delete(info.uid) is None  # a miss: the copy is kept anew
    store.fetch_resource(info, str(tmp_path / "second"))
    again = cache.get(info.uid)
    assert isinstance(again, CachedResource)
    assert ContentStore(str(cache_dir)).holds(again.local_path)
    assert os.listdir(payload_dir) == ["res.bin"]
    store.fetch_resource(info, str(tmp_path / "third"))
    assert store.downloads == 2  # the third is a hit
