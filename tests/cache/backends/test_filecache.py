"""FileCache: the e3 cache API on JSON files, hardened against what it finds there."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import e3.store.backends.base as e3_base
import pytest
from e3.store.cache.backends.filecache import FileCache as E3FileCache
from typing_extensions import override

from e3_typed_store._faults import call_with_file_size_limit
from e3_typed_store._fs import unique_temp_name
from e3_typed_store.backends.base import CachedResource
from e3_typed_store.cache.backends import filecache as filecache_module
from e3_typed_store.cache.backends.base import DEFAULT_TIMEOUT, CacheProtocol
from e3_typed_store.cache.backends.filecache import (
    FileCache,
    FileCacheConfiguration,
    FileCacheEntry,
)
from e3_typed_store.errors import CacheError, InvalidConfigurationError
from tests.backends.drivers import CopyConfig, CopyStore, sha256_of

ENTRY = CachedResource(uid="u", local_path="/p")
LOGGER = "e3.store.cache"
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cache(cache_dir: Path) -> FileCache:
    return FileCache({"cache_dir": str(cache_dir)})


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if not path.is_dir())


def entry_document(uid: str, value: CachedResource, expiry: float) -> dict[str, object]:
    return {
        "format": "e3-typed-store.cache-entry",
        "version": 1,
        "uid": uid,
        "expiry": expiry,
        "value": {"uid": value.uid, "local_path": value.local_path},
    }


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


# -- configuration and API ---------------------------------------------------


def test_configuration_is_kept(cache_dir: Path) -> None:
    config: FileCacheConfiguration = {"cache_dir": str(cache_dir)}
    cache = FileCache(config)
    assert cache.cache_dir == str(cache_dir)
    assert cache.cache_configuration == config
    assert cache.entries_dir == str(cache_dir / "entries")
    assert repr(cache) == f"FileCache({{'cache_dir': {str(cache_dir)!r}}})"
    assert not cache_dir.exists()  # nothing is created before the first set


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{}", "required key is missing"),
        ('{"cache_dir": 3}', "expected a string, got int"),
        ('{"cache_dir": ""}', "must not be empty"),
        ('{"cache_dir": "a\\u0000b"}', "holds a NUL byte"),
    ],
)
def test_bad_configuration_is_a_clear_error(raw: str, reason: str) -> None:
    # json.loads: a configuration of the wrong shape, as a config file gives it.
    with pytest.raises(InvalidConfigurationError, match=reason) as caught:
        FileCache(json.loads(raw))
    assert caught.value.key == "cache_dir"


def test_miss_returns_default(cache: FileCache) -> None:
    assert cache.get("u") is None
    assert cache.get("u", ENTRY) == ENTRY
    assert "u" not in cache
    assert not cache.has_resource("u")


def test_set_get_delete(cache: FileCache) -> None:
    assert cache.set("u", ENTRY) is True
    found = cache.get("u")
    assert found == ENTRY and type(found) is CachedResource
    assert "u" in cache and cache.has_resource("u")
    cache.delete("u")
    assert cache.get("u") is None
    cache.delete("u")  # a missing entry: a no-op
    cache.delete("never-set")


def test_set_replaces(cache: FileCache) -> None:
    cache.set("u", ENTRY)
    cache.set("u", CachedResource("u", "/q"))
    assert cache.get("u") == CachedResource("u", "/q")
    assert len(os.listdir(cache.entries_dir)) == 1


def test_close_keeps_entries(cache: FileCache, cache_dir: Path) -> None:
    cache.set("u", ENTRY)
    cache.close()
    assert cache.get("u") == ENTRY
    assert FileCache({"cache_dir": str(cache_dir)}).get("u") == ENTRY


def test_satisfies_the_protocol(cache: FileCache) -> None:
    assert isinstance(cache, CacheProtocol)


def test_all_is_sorted_and_complete() -> None:
    exported = filecache_module.__all__
    assert exported == sorted(exported)
    defined = {
        name
        for name, value in vars(filecache_module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == filecache_module.__name__
    }
    assert defined == set(exported)


# -- layout on disk ----------------------------------------------------------


def test_entry_is_json_in_its_subdirectory(cache: FileCache, cache_dir: Path) -> None:
    before = time.time()
    assert cache.set("res-1.tar.gz", ENTRY, timeout=60)
    after = time.time()
    path = cache_dir / "entries" / "res-1.tar.gz.json"
    assert files_under(cache_dir) == [path]
    assert cache.uid_to_file("res-1.tar.gz") == str(path)
    document = json.loads(path.read_text("ascii"))
    assert document == entry_document("res-1.tar.gz", ENTRY, document["expiry"])
    assert before + 60 <= document["expiry"] <= after + 60


def test_default_timeout_is_e3s(cache: FileCache, cache_dir: Path) -> None:
    before = time.time()
    cache.set("u", ENTRY)
    document = json.loads(Path(cache.uid_to_file("u")).read_text("ascii"))
    assert (
        before + DEFAULT_TIMEOUT <= document["expiry"] <= time.time() + DEFAULT_TIMEOUT
    )


@pytest.mark.parametrize(
    "uid",
    [
        "../x",
        "../../etc/passwd",
        "/abs/path",
        "a/b",
        "nul\x00byte",
        "",
        ".",
        "..",
        ".hidden",
        "-dash",
        "x" * 129,  # one past the longest safe name
        "x" * 5000,
        "é",
        "\udcff",  # a lone surrogate, as surrogateescape decoding makes
        "A",  # upper case: one file with "a" on a case-insensitive filesystem
        "Tool-1.2.tgz",
        "con",  # Windows device names, with any extension, are no files there
        "nul.txt",
        "com0",
        "lpt9.tar.gz",
    ],
)
def test_unsafe_uids_get_a_hashed_name_inside(
    cache: FileCache, tmp_path: Path, uid: str
) -> None:
    value = CachedResource(uid=uid, local_path="/p/kept")
    assert cache.set(uid, value)
    assert cache.get(uid) == value
    (created,) = files_under(tmp_path)
    assert created.parent == Path(cache.entries_dir)
    assert created.name.startswith("_") and created.name.endswith(".json")
    assert str(created) == cache.uid_to_file(uid)
    cache.delete(uid)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("uid", ["a", "a.b_c-d", "0" * 127 + "z", "u.cache", "x.json"])
def test_safe_names_are_kept_as_is(cache: FileCache, uid: str) -> None:
    path = cache.uid_to_file(uid)
    assert os.path.basename(path) == uid + ".json"  # never ending in .cache
    assert cache.set(uid, ENTRY)
    assert os.listdir(cache.entries_dir) == [uid + ".json"]


@pytest.mark.parametrize(
    ("one", "other"), [("Foo", "foo"), ("ABC", "abc"), ("a.B", "a.b"), ("X", "x")]
)
def test_uids_that_differ_in_case_differ_in_name_whatever_the_case(
    cache: FileCache, one: str, other: str
) -> None:
    # On macOS's and Windows' default filesystems, names that differ only in
    # case are one file.
    assert cache.uid_to_file(one).lower() != cache.uid_to_file(other).lower()


def test_no_two_uids_share_a_file(cache: FileCache) -> None:
    uids = ["a", "a.json", "_a", "../a", "a/", "A", "x" * 128, "x" * 129]
    paths = {cache.uid_to_file(uid) for uid in uids}
    assert len(paths) == len(uids)
    for uid in uids:
        cache.set(uid, CachedResource(uid, "/" + uid))
    for uid in uids:
        assert cache.get(uid) == CachedResource(uid, "/" + uid)


def test_an_entry_under_another_uids_name_is_a_miss(
    cache: FileCache, caplog: pytest.LogCaptureFixture
) -> None:
    # A file renamed, or two names one on a case-insensitive filesystem.
    cache.set("a", ENTRY)
    os.replace(cache.uid_to_file("a"), cache.uid_to_file("b"))
    assert cache.get("b") is None
    assert not os.path.exists(cache.uid_to_file("b"))
    assert any("records the uid 'a'" in message for message in warnings_of(caplog))


# -- expiry ------------------------------------------------------------------


def test_expired_entry_is_a_miss_and_removed(cache: FileCache) -> None:
    assert cache.set("u", ENTRY, timeout=-1)
    assert os.path.exists(cache.uid_to_file("u"))
    assert cache.get("u", ENTRY) == ENTRY  # the default, not the entry
    assert cache.get("u") is None
    assert not os.path.exists(cache.uid_to_file("u"))
    assert "u" not in cache


def test_expiry_is_read_from_the_file(cache: FileCache) -> None:
    path = Path(cache.uid_to_file("u"))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(entry_document("u", ENTRY, time.time() + 3600)))
    assert cache.get("u") == ENTRY
    path.write_text(json.dumps(entry_document("u", ENTRY, time.time() - 1)))
    assert cache.get("u") is None
    assert not path.exists()


def test_a_timeout_beyond_any_date_is_refused(
    cache: FileCache, caplog: pytest.LogCaptureFixture
) -> None:
    assert cache.set("u", ENTRY, timeout=10**400) is False
    assert any("out of range" in message for message in warnings_of(caplog))
    assert cache.set("u", ENTRY, timeout=10**300) is True
    assert cache.get("u") == ENTRY


# -- bad files ---------------------------------------------------------------

NOW = time.time()
GOOD = entry_document("u", ENTRY, NOW + 3600)


def variant(**changes: object) -> bytes:
    document = dict(GOOD)
    document.update(changes)
    return json.dumps(document).encode()


def without(key: str) -> bytes:
    document = dict(GOOD)
    del document[key]
    return json.dumps(document).encode()


CORRUPT = {
    "empty": b"",
    "truncated": json.dumps(GOOD).encode()[:-7],
    "not utf-8": b'{"uid": "\xff\xfe"}',
    "utf-16": json.dumps(GOOD).encode("utf-16"),
    "garbage": bytes(range(256)),
    "list": b"[1, 2]",
    "null": b"null",
    "string": b'"u"',
    "nan": b"NaN",
    "missing uid": without("uid"),
    "missing expiry": without("expiry"),
    "missing value": without("value"),
    "extra key": variant(extra=1),
    "other format": variant(format="pickle"),
    "other version": variant(version=2),
    "version true": variant(version=True),
    "version float": variant(version=1.0),
    "uid mismatch": variant(uid="v"),
    "uid not str": variant(uid=7),
    "expiry str": variant(expiry="tomorrow"),
    "expiry bool": variant(expiry=True),
    "expiry null": variant(expiry=None),
    "expiry infinite": variant(expiry=math.inf),
    "expiry nan": variant(expiry=math.nan),
    "expiry huge int": variant(expiry=10**400),
    "value list": variant(value=["u", "/p"]),
    "value str": variant(value="/p"),
    "value missing path": variant(value={"uid": "u"}),
    "value extra key": variant(value={"uid": "u", "local_path": "/p", "x": 1}),
    "value path not str": variant(value={"uid": "u", "local_path": 3}),
    "value uid null": variant(value={"uid": None, "local_path": "/p"}),
    "path with a NUL": variant(value={"uid": "u", "local_path": "/p\u0000x"}),
    "path with a lone surrogate": variant(value={"uid": "u", "local_path": "/p\ud800"}),
    "duplicate key": json.dumps(GOOD).encode()[:-1] + b', "uid": "u"}',
    "data after the object": json.dumps(GOOD).encode() + b"\n{}\n",
    "two objects": json.dumps(GOOD).encode() * 2,
    "too large": variant(value={"uid": "u", "local_path": "/" * (2 << 20)}),
    "deeply nested": b"[" * 200_000,
    "e3 pickle": pickle.dumps(NOW + 3600)
    + pickle.dumps(e3_base.CachedResource("u", "/p")),
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=list(CORRUPT))
def test_a_bad_entry_is_a_logged_miss_and_removed(
    cache: FileCache, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = Path(cache.uid_to_file("u"))
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert cache.get("u", ENTRY) is ENTRY
    assert not path.exists()
    assert any("invalid cache entry 'u'" in message for message in warnings_of(caplog))
    assert cache.set("u", ENTRY)  # and the entry can be written again
    assert cache.get("u") == ENTRY


def test_the_good_document_reads_back(cache: FileCache) -> None:
    # The control for the table above: only the changes make those entries bad.
    path = Path(cache.uid_to_file("u"))
    path.parent.mkdir(parents=True)
    path.write_bytes(json.dumps(GOOD).encode())
    assert cache.get("u") == ENTRY
    path.write_bytes(json.dumps(GOOD, indent=2).encode("utf-8"))
    assert cache.get("u") == ENTRY
    # JSON allows whitespace around the document, whatever set() writes.
    path.write_bytes(b" \r\n\t" + json.dumps(GOOD).encode() + b"\n\n \t")
    assert cache.get("u") == ENTRY


def make_marker(marker: str) -> None:
    """Create *marker*: what the planted pickle calls when it is loaded."""
    Path(marker).touch()


class Exploit:
    """Unpickling this calls make_marker: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    @override
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (make_marker, (self.marker,))


def test_a_planted_pickle_is_never_loaded(
    cache: FileCache, cache_dir: Path, tmp_path: Path
) -> None:
    uid = "victim"
    payload = pickle.dumps(Exploit(tmp_path / "marker")) * 2
    # The control: e3-core's FileCache does run the payload.
    proof_dir = tmp_path / "proof"
    proof_dir.mkdir()
    (proof_dir / f"{uid}.cache").write_bytes(
        pickle.dumps(Exploit(tmp_path / "proof-marker")) * 2
    )
    E3FileCache({"cache_dir": str(proof_dir)}).get(uid)
    assert (tmp_path / "proof-marker").exists()

    # Plant it where e3-core looks, and where this cache looks.
    cache_dir.mkdir()
    (cache_dir / f"{uid}.cache").write_bytes(payload)
    own = Path(cache.uid_to_file(uid))
    own.parent.mkdir()
    own.write_bytes(payload)

    assert cache.get(uid) is None
    assert cache.get(uid, ENTRY) is ENTRY
    assert list(cache.iter_entries()) == []
    assert not (tmp_path / "marker").exists()
    assert not own.exists()  # garbage at its own path is removed
    assert (cache_dir / f"{uid}.cache").read_bytes() == payload  # not its file


def test_a_planted_symlink_is_not_followed(
    cache: FileCache, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(GOOD))
    own = Path(cache.uid_to_file("u"))
    own.parent.mkdir(parents=True)
    own.symlink_to(outside)
    assert cache.get("u") is None
    assert not own.is_symlink() and not own.exists()
    assert outside.read_text() == json.dumps(GOOD)
    assert any("symlink" in message for message in warnings_of(caplog))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_planted_fifo_does_not_block(cache: FileCache) -> None:
    own = Path(cache.uid_to_file("u"))
    own.parent.mkdir(parents=True)
    os.mkfifo(own)
    assert cache.get("u") is None  # a blocking open would hang here
    assert not own.exists()


def test_a_directory_at_an_entry_path(
    cache: FileCache, caplog: pytest.LogCaptureFixture
) -> None:
    own = Path(cache.uid_to_file("u"))
    own.mkdir(parents=True)
    (own / "keep").write_text("not the cache's to remove")
    assert cache.get("u") is None
    assert cache.set("u", ENTRY) is False
    with pytest.raises(CacheError, match="cannot remove") as caught:
        cache.delete("u")
    assert caught.value.uid == "u"
    # The path once, then why: not again in the system error's own words.
    reason = caught.value.reason
    assert reason.startswith(f"cannot remove {own}: ") and reason.count(str(own)) == 1
    cache.clear()
    assert (own / "keep").exists()
    assert len(warnings_of(caplog)) >= 2
    assert os.listdir(cache.entries_dir) == ["u.json"]  # no temp file left


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr")
def test_clear_names_every_entry_it_could_not_remove_once(cache: FileCache) -> None:
    # Immutable entry files stop root too.
    for uid in ("u", "v", "w"):
        assert cache.set(uid, ENTRY)
    stuck = [cache.uid_to_file(uid) for uid in ("u", "v")]
    if subprocess.run(["chattr", "+i", *stuck], check=False).returncode:
        pytest.skip("this file system has no immutable flag")
    try:
        with pytest.raises(CacheError) as caught:
            cache.clear()
    finally:
        subprocess.run(["chattr", "-i", *stuck], check=True)
    assert caught.value.uid == "*"  # every entry, not a count or a path
    reason = caught.value.reason
    assert reason.startswith("cannot remove ")
    for path in stuck:
        assert reason.count(path) == 1
    assert cache.get("w") is None  # the others went first


# -- failures to write -------------------------------------------------------


def test_cache_dir_is_a_regular_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("plain file")
    cache = FileCache({"cache_dir": str(not_a_dir)})
    assert cache.set("u", ENTRY) is False
    assert any("cannot cache 'u'" in message for message in warnings_of(caplog))
    assert cache.get("u") is None
    cache.delete("u")
    cache.clear()
    assert list(cache.iter_entries()) == []
    assert not_a_dir.read_text() == "plain file"


def test_unwritable_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Tests run as root, whom chmod does not stop: a directory under a regular
    # file is one nobody can create.
    (tmp_path / "file").write_text("plain file")
    cache = FileCache({"cache_dir": str(tmp_path / "file" / "cache")})
    assert cache.set("u", ENTRY) is False
    (message,) = warnings_of(caplog)
    assert "cannot cache 'u'" in message and "Not a directory" in message


class FullDiskOutcome(NamedTuple):
    stored: bool
    warnings: list[str]
    entries: list[str]
    kept: object


class Collected(logging.Handler):
    """The messages of the warnings logged, in a child where caplog is not."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    @override
    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def set_on_a_full_disk(cache_dir: str) -> FullDiskOutcome:
    """In a child whose files cannot grow: replace entry ``u``, report."""
    collected = Collected()
    logging.getLogger(LOGGER).addHandler(collected)
    cache = FileCache({"cache_dir": cache_dir})
    stored = cache.set("u", CachedResource("u", "/new"))
    return FullDiskOutcome(
        stored,
        collected.messages,
        sorted(os.listdir(cache.entries_dir)),
        cache.get("u"),
    )


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_disk_full_keeps_the_previous_entry(cache: FileCache, cache_dir: Path) -> None:
    assert cache.set("u", ENTRY)
    # No byte may be written: the kernel refuses the new entry's first write
    # (EFBIG, as a full disk refuses one with ENOSPC).
    outcome = call_with_file_size_limit(0, partial(set_on_a_full_disk, str(cache_dir)))
    assert isinstance(outcome, FullDiskOutcome)
    assert outcome.stored is False
    assert any("File too large" in message for message in outcome.warnings)
    assert outcome.entries == ["u.json"]  # the temp file is gone
    assert outcome.kept == ENTRY
    assert cache.get("u") == ENTRY


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only by a read-only bind mount of itself (no
    permission bit stops root); unmounted after the test."""
    mounted: list[Path] = []

    def freeze(directory: Path) -> None:
        if not sys.platform.startswith("linux") or os.geteuid() != 0:
            pytest.skip("a bind mount needs Linux and root")
        for command in (
            ["mount", "--bind", str(directory), str(directory)],
            ["mount", "-o", "remount,ro,bind", str(directory)],
        ):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                if mounted:
                    subprocess.run(["umount", str(directory)], check=False)
                pytest.skip(f"cannot mount here: {done.stderr.strip()}")
            mounted[:] = [directory]

    yield freeze
    for directory in mounted:
        subprocess.run(["umount", str(directory)], check=True)


def test_a_read_only_cache_refuses_an_entry_with_one_warning(
    cache: FileCache,
    cache_dir: Path,
    caplog: pytest.LogCaptureFixture,
    read_only: Callable[[Path], None],
) -> None:
    assert cache.set("u", ENTRY)
    read_only(cache_dir)
    assert cache.set("v", CachedResource("v", "/v")) is False
    # The write is refused, and said once: no word of removing a temporary
    # file that was never made.
    refused = [m for m in warnings_of(caplog) if "Read-only file system" in m]
    assert len(refused) == 1 and refused[0].startswith("cannot cache"), refused
    assert cache.get("u") == ENTRY


def test_an_entry_too_large_is_refused(
    cache: FileCache, caplog: pytest.LogCaptureFixture
) -> None:
    assert cache.set("u", CachedResource("u", "/" * (2 << 20))) is False
    assert any("exceed" in message for message in warnings_of(caplog))
    assert not os.path.exists(cache.entries_dir)


@pytest.mark.parametrize("path", ["/p\0x", "/p\ud800"], ids=["NUL", "surrogate"])
def test_a_path_that_names_no_file_is_refused(
    cache: FileCache, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert cache.set("u", CachedResource("u", path)) is False
    assert any("local_path" in message for message in warnings_of(caplog))
    assert cache.get("u") is None


# -- clear and iter_entries --------------------------------------------------


def test_clear_removes_only_its_own_files(cache: FileCache, cache_dir: Path) -> None:
    for uid in ["a", "../b", "c.cache"]:
        cache.set(uid, CachedResource(uid, "/p"))
    entries = Path(cache.entries_dir)
    leftover = Path(unique_temp_name(cache.entries_dir, "a.json"))
    leftover.write_text("interrupted write")
    foreign = [
        cache_dir / "x.cache",
        cache_dir / "notes.txt",
        cache_dir / "resources" / "u" / "payload.bin",
        cache_dir / "locks" / "u.lock",
        entries / "x.cache",
        entries / "notes.txt",
        entries / ".notes.txt.1.0123456789abcdef0123456789abcdef.tmp",
        entries / "a.json.bak",
    ]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not the cache's")
    cache.clear()
    assert files_under(cache_dir) == sorted(foreign)
    assert cache.get("a") is None
    cache.clear()  # nothing left: still fine


def test_clear_removes_a_planted_symlink_not_its_target(
    cache: FileCache, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    link = Path(cache.uid_to_file("u"))
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    cache.clear()
    assert not link.is_symlink()
    assert target.read_text() == "keep"


def test_clear_of_a_cache_never_written(cache: FileCache, cache_dir: Path) -> None:
    cache.clear()
    assert not cache_dir.exists()


def test_iter_entries_lists_valid_unexpired_entries(
    cache: FileCache, caplog: pytest.LogCaptureFixture
) -> None:
    assert list(cache.iter_entries()) == []  # no directory yet
    before = time.time()
    cache.set("b", CachedResource("b", "/b"), timeout=100)
    cache.set("a", CachedResource("a", "/a"), timeout=200)
    cache.set("/abs", CachedResource("/abs", "/c"))
    cache.set("old", CachedResource("old", "/o"), timeout=-1)
    Path(cache.uid_to_file("bad")).write_bytes(b"garbage")
    Path(cache.entries_dir, "notes.txt").write_text("ignored")
    after = time.time()

    listed = list(cache.iter_entries())

    assert all(type(entry) is FileCacheEntry for entry in listed)
    assert [(uid, value) for uid, value, _ in listed] == [
        ("/abs", CachedResource("/abs", "/c")),  # its _<sha256> name sorts first
        ("a", CachedResource("a", "/a")),
        ("b", CachedResource("b", "/b")),
    ]
    assert before + 200 <= listed[1].expiry <= after + 200
    assert before + 100 <= listed[2].expiry <= after + 100
    # The expired and the garbage entries were removed as met; foreign kept.
    assert sorted(os.listdir(cache.entries_dir)) == sorted(
        [os.path.basename(cache.uid_to_file(uid)) for uid in ["/abs", "a", "b"]]
        + ["notes.txt"]
    )
    assert any("invalid cache entry bad.json" in m for m in warnings_of(caplog))


def test_iter_entries_skips_an_entry_under_another_name(cache: FileCache) -> None:
    cache.set("a", ENTRY)
    os.link(cache.uid_to_file("a"), cache.uid_to_file("b"))
    assert [entry.uid for entry in cache.iter_entries()] == ["a"]
    assert not os.path.exists(cache.uid_to_file("b"))


# -- sharing a directory with e3-core ----------------------------------------


def test_shares_a_directory_with_e3_filecache(cache_dir: Path) -> None:
    theirs = E3FileCache({"cache_dir": str(cache_dir)})
    ours = FileCache({"cache_dir": str(cache_dir)})
    their_entry = e3_base.CachedResource("shared", "/theirs")
    our_entry = CachedResource("shared", "/ours")
    assert theirs.set("shared", their_entry)
    assert ours.set("shared", our_entry)
    assert theirs.set("entries", e3_base.CachedResource("entries", "/e"))
    assert ours.set("x.cache", CachedResource("x.cache", "/x"))

    assert theirs.get("shared") == their_entry
    assert ours.get("shared") == our_entry
    assert theirs.get("x") is None  # our x.cache entry is not their x
    assert ours.get("entries") is None

    theirs.clear()
    assert theirs.get("shared") is None
    assert ours.get("shared") == our_entry
    assert ours.get("x.cache") == CachedResource("x.cache", "/x")

    theirs.set("shared", their_entry)
    ours.clear()
    assert ours.get("shared") is None
    assert theirs.get("shared") == their_entry
    assert not any(path.suffix == ".cache" for path in Path(ours.entries_dir).iterdir())


def test_without_runtime_checks_e3s_cached_resource_is_accepted(
    tmp_path: Path,
) -> None:
    code = textwrap.dedent(
        """
        import sys
        import e3.store.backends.base as e3_base
        from e3_typed_store.cache.backends.filecache import FileCache
        from e3_typed_store.backends.base import CachedResource
        cache = FileCache({"cache_dir": sys.argv[1]})
        print(cache.set("u", e3_base.CachedResource("u", "/p")))
        print(type(cache.get("u")) is CachedResource, cache.get("u") == ("u", "/p"))
        try:
            cache.set("u", "/just/a/path")
        except TypeError as exc:
            print("TypeError", exc)
        """
    )
    env = dict(os.environ)
    env.pop("E3_TYPED_STORE_RUNTIME_CHECKS", None)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cache")],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "True",
        "True True",
        "TypeError a FileCache stores CachedResource values, not '/just/a/path'",
    ]


# -- use by a store ----------------------------------------------------------


def test_a_store_serves_hits_from_it(tmp_path: Path) -> None:
    payload = b"payload\n" * 64
    source = tmp_path / "source"
    source.mkdir()
    (source / "res.bin").write_bytes(payload)
    cache = FileCache({"cache_dir": str(tmp_path / "cache")})
    store = CopyStore(CopyConfig(source_dir=str(source)), cache)
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(payload)}
    )

    first = store.download_resource(info, str(tmp_path / "dest"))
    again = CopyStore(CopyConfig(source_dir=str(source)), cache)
    second = again.download_resource(info, str(tmp_path / "dest"))

    assert first is not None and first == second
    assert (store.downloads, again.downloads) == (1, 0)
    recorded = cache.get(info.uid)
    assert recorded is not None and recorded.uid == info.uid
    assert Path(recorded.local_path).read_bytes() == payload


# -- concurrency -------------------------------------------------------------

WORKER = """
import os, re, sys, time
from e3_typed_store.backends.base import CachedResource
from e3_typed_store.cache.backends.filecache import FileCache

cache_dir, barrier, worker, workers, cycles = sys.argv[1:6]
cache = FileCache({"cache_dir": cache_dir})
open(os.path.join(barrier, worker), "w").close()
while len(os.listdir(barrier)) < int(workers):  # start together
    time.sleep(0.001)
bad = misses = 0
for cycle in range(int(cycles)):
    if not cache.set("shared", CachedResource("shared", f"/p/{worker}/{cycle}")):
        bad += 1
    got = cache.get("shared")
    if got is None:
        misses += 1
    elif type(got) is not CachedResource or got.uid != "shared" or not re.fullmatch(
        r"/p/[0-9]+/[0-9]+", got.local_path
    ):
        bad += 1
print(bad, misses)
"""


def test_processes_sharing_an_entry_never_see_a_partial_one(tmp_path: Path) -> None:
    workers, cycles = 4, 300
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    cache_dir = tmp_path / "cache"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                *(str(arg) for arg in (cache_dir, barrier, worker, workers, cycles)),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(workers)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        # Once written, the entry always exists: every get is a whole entry.
        assert stdout.split() == ["0", "0"], stderr
        assert "invalid cache entry" not in stderr
    assert os.listdir(cache_dir / "entries") == ["shared.json"]
    final = FileCache({"cache_dir": str(cache_dir)}).get("shared")
    assert final is not None and final.local_path.endswith(f"/{cycles - 1}")


class SteppedCache(FileCache):
    """A FileCache whose removal step a test can call on its own."""

    def discard(self, path: str, read: os.stat_result | None) -> None:
        self._discard(path, read)


def test_a_reader_never_removes_an_entry_written_after_its_read(
    cache_dir: Path,
) -> None:
    # The race of a get that found an expired or bad entry while a writer
    # replaced it: replayed step by step through the removal step, since no
    # scheduler makes the interleaving happen on demand.
    cache = SteppedCache({"cache_dir": str(cache_dir)})
    cache.set("u", ENTRY, timeout=-1)
    path = cache.uid_to_file("u")
    fd = os.open(path, os.O_RDONLY)  # what the reader holds open
    try:
        read = os.fstat(fd)
        cache.set("u", CachedResource("u", "/fresh"))
        cache.discard(path, read)
        assert cache.get("u") == CachedResource("u", "/fresh")
        cache.discard(path, None)  # None stands for a symlink: this is none
        assert cache.get("u") == CachedResource("u", "/fresh")
        cache.discard(path, os.stat(path))
        assert not os.path.exists(path)  # the file read is the one removed
    finally:
        os.close(fd)


def test_entry_file_modes_are_plain(cache: FileCache) -> None:
    cache.set("u", ENTRY)
    mode = os.stat(cache.uid_to_file("u")).st_mode
    assert stat.S_ISREG(mode)
    assert mode & 0o600 == 0o600
