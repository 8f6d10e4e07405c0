"""Sizes and ages as the command line reads them; what clearing removes."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import pickle
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e3.store.cache.backends.filecache import FileCache as E3FileCache
from typing_extensions import override

from e3_typed_store._cache_admin import (
    clear_cache,
    identity_of,
    list_items,
    parse_age,
    parse_size,
    prune,
    remove_item_if_unchanged,
    verify_item,
)
from e3_typed_store._cli import main
from e3_typed_store._content import ContentStore
from e3_typed_store._locking import uid_lock
from e3_typed_store._types import CachedResource
from e3_typed_store.cache.backends.filecache import FileCache
from tests.backends.drivers import (
    CopyConfig,
    CopyInfo,
    CopyStore,
    DigestInfo,
    HashedNameInfo,
    sha256_of,
)

PAYLOAD = b"kept payload\n" * 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("1k", 1024),
        ("500M", 500 << 20),
        ("2G", 2 << 30),
        ("1.5GiB", 3 << 29),
        ("10 MB", 10 << 20),
        ("1t", 1 << 40),
        ("512b", 512),
        ("9007199254740993", 9007199254740993),  # exact past a float's 2**53
        ("4.0000000001G", (4 << 30) + 0),  # a fraction of a byte is no byte
        ("0.5k", 512),
        ("2Gi", 2 << 30),
        ("5ki", 5 << 10),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3600", 3600.0),
        ("90m", 5400.0),
        ("12h", 43200.0),
        ("30d", 2592000.0),
        ("2w", 1209600.0),
        ("1.5s", 1.5),
    ],
)
def test_ages(text: str, expected: float) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lots",
        "-1",
        "1x",
        "1.2.3",
        "G",
        "9" * 400,
        "9" * 300 + "T",
        "5i",
        "5ib",
        "1." + "0" * 5000,
    ],
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["", "soon", "-5d", "3y", "d"])
def test_bad_ages(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def test_clearing_removes_every_kept_copy_and_only_the_packages_files(
    tmp_path: Path,
) -> None:
    cache_dir = tmp_path / "cache"
    cache = FileCache({"cache_dir": str(cache_dir)})
    content = ContentStore(str(cache_dir))
    download = tmp_path / "download.bin"
    download.write_bytes(b"payload")
    for uid in ("listed", "orphan"):
        kept = content.keep(uid, str(download)).path
        assert cache.set(uid, CachedResource(uid, kept))
    cache.delete("orphan")  # its copy stays, named by no entry
    # An entry and a copy as version 0.1.0 named them: upper case kept.
    old = cache_dir / "resources" / "Tool" / "payload" / "tool.bin"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    entry = {"uid": "Tool", "local_path": str(old)}
    (cache_dir / "entries" / "Tool.json").write_text(
        json.dumps(
            {
                "format": "e3-typed-store.cache-entry",
                "version": 1,
                "uid": "Tool",
                "expiry": 4e9,
                "value": entry,
            }
        ),
        encoding="utf-8",
    )
    # Not the package's: left alone.
    (cache_dir / "resources" / "README").write_text("mine", encoding="utf-8")
    (cache_dir / "resources" / ".hidden").mkdir()
    (cache_dir / "e3-core.cache").write_bytes(b"pickle")

    assert clear_cache(cache) == 1  # the one valid entry
    assert sorted(p.name for p in (cache_dir / "resources").iterdir()) == [
        ".hidden",
        "README",
    ]
    assert list((cache_dir / "entries").iterdir()) == []
    assert (cache_dir / "e3-core.cache").read_bytes() == b"pickle"
    assert download.read_bytes() == b"payload"


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Path, Path]:
    """A cache directory a store filled through e3-core's FileCache, and the
    source directory of that store."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "res.bin").write_bytes(PAYLOAD)
    cache_dir = tmp_path / "cache"
    store = CopyStore(
        CopyConfig(str(source)), E3FileCache({"cache_dir": str(cache_dir)})
    )
    info = store.get_resource_metadata(
        {"name": "res.bin", "sha256": sha256_of(PAYLOAD)}
    )
    store.fetch_resource(info, str(tmp_path / "dest"))
    return cache_dir, source


def e3_core_serves(cache_dir: Path, source: Path, dest: Path) -> bool:
    """Whether e3-core's own store still serves res.bin from the cache, offline
    from the source (its directory emptied)."""
    import e3.store.backends.base as e3_base

    class E3Info(e3_base.ResourceInfo):
        @property
        @override
        def uid(self) -> str:
            return sha256_of(PAYLOAD)

        @override
        def verify(self, resource_path: str) -> bool:
            return CopyInfo("res.bin", self.uid).verify(resource_path)

    class E3Copy(e3_base.Store):
        @override
        def get_resource_metadata(self, query: object) -> e3_base.ResourceInfo:
            raise NotImplementedError

        @override
        def download_resource_content(
            self, metadata: e3_base.ResourceInfo, dest: str
        ) -> str | None:
            return None  # a miss fails: only a hit succeeds

    info = E3Info()
    store = E3Copy(None, E3FileCache({"cache_dir": str(cache_dir)}))
    return store.download_resource(info, str(dest)) is not None


def test_clearing_leaves_the_copies_e3_cores_entries_name(
    shared: tuple[Path, Path], tmp_path: Path
) -> None:
    cache_dir, source = shared
    ours = FileCache({"cache_dir": str(cache_dir)})
    # One entry of our own too, whose copy goes.
    download = tmp_path / "mine.bin"
    download.write_bytes(b"mine")
    kept = ContentStore(str(cache_dir)).keep("mine", str(download)).path
    assert ours.set("mine", CachedResource("mine", kept))
    assert clear_cache(ours) == 1
    assert not Path(kept).exists()
    assert e3_core_serves(cache_dir, source, tmp_path / "after")


def test_pruning_removes_copies_no_entry_names_once_an_hour_old(
    shared: tuple[Path, Path], tmp_path: Path
) -> None:
    cache_dir, _ = shared
    ours = FileCache({"cache_dir": str(cache_dir)})
    content = ContentStore(str(cache_dir))
    download = tmp_path / "d.bin"
    download.write_bytes(b"an orphan")
    orphan = content.keep("orphan", str(download)).path  # its entry: gone
    download.with_name("e.bin").write_bytes(b"live")
    live = content.keep("live", str(download.with_name("e.bin"))).path
    assert ours.set("live", CachedResource("live", live))
    # An entry as version 0.1.0 wrote it: an upper-case uid kept as it was.
    old = cache_dir / "resources" / "Tool" / "payload" / "tool.bin"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    assert ours.set("Tool", CachedResource("Tool", str(old)))

    assert prune(ours, None, None) == []  # the orphan is too young yet
    assert Path(orphan).exists()
    evicted = prune(ours, None, None, now=time.time() + 7200)
    assert [(item.uid, item.path) for item in evicted] == [("orphan", orphan)]
    assert not Path(orphan).exists()
    assert Path(live).exists() and old.exists()
    # e3-core's entry still has its copy.
    assert len(content.copies_in(ContentStore.dir_name(sha256_of(PAYLOAD)))) == 1


def copy_store_of(tmp_path: Path, name: str) -> tuple[CopyStore, FileCache]:
    """A store copying *name* (PAYLOAD) from tmp_path/source, its FileCache in
    tmp_path/cache."""
    source = tmp_path / "source"
    source.mkdir()
    (source / name).write_bytes(PAYLOAD)
    cache = FileCache({"cache_dir": str(tmp_path / "cache")})
    return CopyStore(CopyConfig(str(source)), cache), cache


@pytest.mark.parametrize("new_name", ["b.bin", "a.bin"])
def test_verify_remove_leaves_a_copy_a_fetch_kept_while_the_old_one_was_checked(
    tmp_path: Path, new_name: str
) -> None:
    # The check of a big copy takes seconds; meanwhile a fetch of the same
    # digest found it bad and kept a good one (under another name, or the
    # same). Removing by uid took the good copy and its entry away.
    store, cache = copy_store_of(tmp_path, "a.bin")
    (tmp_path / "source" / "b.bin").write_bytes(PAYLOAD)
    old = DigestInfo("a.bin", sha256_of(PAYLOAD))
    store.fetch_resource(old, str(tmp_path / "d1"))
    (item,) = list_items(cache)
    with open(item.path, "r+b") as stream:  # corrupted in place
        stream.write(b"X")
    seen = identity_of(item.path)
    assert verify_item(cache, item) == "corrupted"
    store.fetch_resource(DigestInfo(new_name, sha256_of(PAYLOAD)), str(tmp_path / "d2"))
    assert not remove_item_if_unchanged(cache, item, seen)
    (now,) = list_items(cache)
    assert verify_item(cache, now) == "ok"
    # Unchanged, the bad copy goes.
    with open(now.path, "r+b") as stream:
        stream.write(b"X")
    seen = identity_of(now.path)
    assert verify_item(cache, now) == "corrupted"
    assert remove_item_if_unchanged(cache, now, seen)
    assert list_items(cache) == []


def test_verify_remove_leaves_an_entry_whose_lock_a_fetch_holds(
    tmp_path: Path,
) -> None:
    # A fetch records its copy under the uid's lock: the entry may be
    # changing, even if it looked the same a moment ago.
    store, cache = copy_store_of(tmp_path, "a.bin")
    store.fetch_resource(DigestInfo("a.bin", sha256_of(PAYLOAD)), str(tmp_path / "d"))
    (item,) = list_items(cache)
    with open(item.path, "r+b") as stream:
        stream.write(b"X")
    seen = identity_of(item.path)
    assert verify_item(cache, item) == "corrupted"
    lock_dir = tmp_path / "cache" / "locks"
    held = threading.Event()
    done = threading.Event()

    def fetch_holding_the_lock() -> None:
        with uid_lock(str(lock_dir), item.uid, 10):
            held.set()
            done.wait(30)

    fetching = threading.Thread(target=fetch_holding_the_lock)
    fetching.start()
    try:
        assert held.wait(30)
        assert not remove_item_if_unchanged(cache, item, seen)
    finally:
        done.set()
        fetching.join(30)
    assert [listed.uid for listed in list_items(cache)] == [item.uid]
    assert remove_item_if_unchanged(cache, item, seen)
    assert list_items(cache) == []
    assert list(lock_dir.iterdir()) == []  # its lock file went once released


def test_pruning_removes_the_lock_files_of_failed_fetches_once_an_hour_old(
    tmp_path: Path,
) -> None:
    # A fetch that fails leaves its lock file and no entry: without prune, a
    # worker meeting one bad digest after another would add a file for each.
    store, cache = copy_store_of(tmp_path, "good.bin")
    cache_dir = tmp_path / "cache"
    good = store.get_resource_metadata(
        {"name": "good.bin", "sha256": sha256_of(PAYLOAD)}
    )
    store.fetch_resource(good, str(tmp_path / "dest"))
    for missing in ("gone.bin", "lost.bin"):
        info = store.get_resource_metadata(
            {"name": missing, "sha256": sha256_of(b"x" + missing.encode())}
        )
        assert store.download_resource(info, str(tmp_path / "dest")) is None
    locks = cache_dir / "locks"
    assert len(list(locks.iterdir())) == 3

    prune(cache, None, None)
    assert len(list(locks.iterdir())) == 3  # too young yet
    prune(cache, None, None, now=time.time() + 7200)
    assert [path.name for path in locks.iterdir()] == [
        ContentStore.dir_name(good.uid) + ".lock"
    ]
    assert store.fetch_resource(good, str(tmp_path / "again"))  # a hit still


# -- what another user's files do to the commands ------------------------------


@pytest.fixture
def shared_cache() -> Iterator[tuple[Path, list[str]]]:
    """A cache of three resources out of pytest's directory (only root may
    enter that one), everything in it the user nobody's when tests run as
    root; and the uids, in order."""
    base = Path(tempfile.mkdtemp(prefix="e3-typed-store-admin-"))
    base.chmod(0o755)
    try:
        source = base / "source"
        source.mkdir()
        cache_dir = base / "cache"
        store = CopyStore(
            CopyConfig(str(source)), FileCache({"cache_dir": str(cache_dir)})
        )
        uids: list[str] = []
        for number in range(3):
            data = bytes([65 + number]) * 1000
            (source / f"r{number}.bin").write_bytes(data)
            uids.append(sha256_of(data))
            info = store.get_resource_metadata(
                {"name": f"r{number}.bin", "sha256": uids[-1]}
            )
            store.fetch_resource(info, str(base / "dest"))
        if os.geteuid() == 0:
            for path in (cache_dir, *cache_dir.rglob("*")):
                os.chown(path, NOBODY, NOBODY)
        yield cache_dir, uids
    finally:
        for path in base.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)


NOBODY = 65534


def cli_as_a_user(*args: str) -> tuple[int, str, str]:
    """Run the command line as a user whom file modes stop: nobody, in a
    forked child, when tests run as root; this process otherwise."""
    if os.geteuid() != 0:
        return run_cli(list(args))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code, out, err = run_cli(list(args))
            os.write(write_end, json.dumps([code, out, err]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream:
        answer: object = json.loads(stream.read() or b"null")
    _, status = os.waitpid(pid, 0)
    assert status == 0
    match answer:
        case [int() as code, str() as out, str() as err]:
            return code, out, err
        case _:
            raise AssertionError(f"the child answered {answer!r}")


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.skipif(os.name != "posix", reason="file modes: POSIX")
def test_clear_names_the_full_path_of_what_it_cannot_remove_and_goes_on(
    shared_cache: tuple[Path, list[str]],
) -> None:
    cache_dir, uids = shared_cache
    stuck = cache_dir / "resources" / uids[0] / "payload"
    stuck.chmod(0o555)  # its file cannot be removed
    code, _, err = cli_as_a_user("cache", "--cache-dir", str(cache_dir), "clear")
    assert code == 1
    denied = f"[Errno 13] Permission denied: '{stuck / 'r0.bin'}'"
    assert err == f"e3-typed-store: error: {denied}\n"
    # The others are gone all the same.
    assert sorted(os.listdir(cache_dir / "resources")) == [uids[0]]
    assert os.listdir(cache_dir / "entries") == []
    assert os.listdir(cache_dir / "locks") == []


@pytest.mark.skipif(os.name != "posix", reason="file modes: POSIX")
def test_an_unreadable_copy_is_reported_so_and_kept(
    shared_cache: tuple[Path, list[str]],
) -> None:
    cache_dir, uids = shared_cache
    unreadable = cache_dir / "resources" / uids[1] / "payload" / "r1.bin"
    unreadable.chmod(0)
    code, out, _ = cli_as_a_user(
        "cache", "--cache-dir", str(cache_dir), "verify", "--remove"
    )
    assert code == 0
    assert f"{uids[1]}\tunreadable\t{unreadable}\n" in out
    assert "missing" not in out
    unreadable.chmod(0o644)
    assert unreadable.read_bytes() == b"B" * 1000
    assert (cache_dir / "entries" / f"{uids[1]}.json").is_file()


@pytest.mark.skipif(os.name != "posix", reason="file modes: POSIX")
def test_verify_remove_goes_on_past_an_entry_it_cannot_remove(
    shared_cache: tuple[Path, list[str]],
) -> None:
    cache_dir, uids = shared_cache
    for number in (0, 2):
        (cache_dir / "resources" / uids[number] / "payload" / f"r{number}.bin").unlink()
    (cache_dir / "resources" / uids[0]).chmod(0o555)  # its payload stays
    code, out, err = cli_as_a_user(
        "cache", "--cache-dir", str(cache_dir), "verify", "--remove"
    )
    assert code == 1
    assert f"{uids[0]}\tmissing, not removed: " in out
    assert f"{uids[2]}\tmissing, removed\t" in out
    assert err == "e3-typed-store: error: 1 bad entries could not be removed\n"


@pytest.mark.skipif(os.name != "posix", reason="file modes: POSIX")
def test_verify_remove_keeps_one_line_per_entry_whatever_its_error_says(
    shared_cache: tuple[Path, list[str]],
) -> None:
    # The cache named through a link whose name holds a tab and a newline:
    # the error of a removal names paths below it.
    cache_dir, uids = shared_cache
    named = cache_dir.parent / "c\tx\ny"
    named.symlink_to(cache_dir)
    (cache_dir / "resources" / uids[0] / "payload" / "r0.bin").unlink()
    (cache_dir / "entries").chmod(0o555)  # its entry stays
    code, out, _ = cli_as_a_user(
        "cache", "--cache-dir", str(named), "verify", "--remove"
    )
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(line.count("\t") == 2 for line in lines), lines
    (status,) = [line.split("\t")[1] for line in lines if line.startswith(uids[0])]
    # A literal, which ast.literal_eval reads back.
    shown = ast.literal_eval(status)
    assert isinstance(shown, str)
    assert shown.startswith("missing, not removed: ")
    assert f"{named}/entries/{uids[0]}.json" in shown


@pytest.mark.skipif(os.name != "posix", reason="file modes: POSIX")
def test_clear_lists_the_removals_that_failed_in_one_list(
    shared_cache: tuple[Path, list[str]],
) -> None:
    cache_dir, uids = shared_cache
    # Neither an entry nor its kept copy can go: two failures per entry.
    (cache_dir / "entries").chmod(0o555)
    for uid in uids:
        (cache_dir / "resources" / uid).chmod(0o555)
    code, _, err = cli_as_a_user("cache", "--cache-dir", str(cache_dir), "clear")
    assert code == 1
    assert err.startswith("e3-typed-store: error: ")
    assert err.count("removals failed") == 1  # one list, not lists in a list
    # Each path that stayed is named once, with why: not once by the
    # entry's removal and again by the sweep of the whole cache.
    for uid in uids:
        entry = f"{os.sep}entries{os.sep}{uid}.json"
        assert err.count(entry) == err.count(f"{entry}: Permission denied") == 1
        payload = f"{os.sep}resources{os.sep}{uid}{os.sep}payload"
        assert err.count(payload) == 1
    assert "3 entries" not in err


def test_verify_takes_a_uid_for_a_digest_only_when_the_metadata_said_so(
    tmp_path: Path,
) -> None:
    # A driver keying on the SHA-256 of a name: its uid looks like a digest
    # of the content, and `verify --remove` deleted its valid entries.
    store, cache = copy_store_of(tmp_path, "res.bin")
    cache_dir = tmp_path / "cache"
    said = DigestInfo("res.bin", sha256_of(PAYLOAD))
    unsaid = HashedNameInfo("res.bin", sha256_of(PAYLOAD))
    store.fetch_resource(said, str(tmp_path / "a"))
    store.fetch_resource(unsaid, str(tmp_path / "b"))

    def verify(*options: str) -> tuple[int, dict[str, str]]:
        code, out, _ = run_cli(
            ["cache", "--cache-dir", str(cache_dir), "verify", *options]
        )
        return code, dict(line.split("\t")[:2] for line in out.splitlines())

    assert verify("--remove") == (0, {said.uid: "ok", unsaid.uid: "unverifiable"})
    assert cache.get(unsaid.uid) is not None
    kept = cache.get(said.uid)
    assert isinstance(kept, CachedResource)
    Path(kept.local_path).write_bytes(PAYLOAD.upper())
    assert verify() == (8, {said.uid: "corrupted", unsaid.uid: "unverifiable"})


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr")
def test_the_error_of_failed_removals_survives_a_pickle(
    shared_cache: tuple[Path, list[str]],
) -> None:
    # As a process pool hands it back to its caller. An immutable directory
    # stops root too.
    cache_dir, uids = shared_cache
    # The entries and a kept copy stay: two removals failed.
    stuck = [cache_dir / "entries", cache_dir / "resources" / uids[0] / "payload"]
    if subprocess.run(["chattr", "+i", *map(str, stuck)], check=False).returncode:
        pytest.skip("this file system has no immutable flag")
    try:
        with pytest.raises(OSError) as raised:
            clear_cache(FileCache({"cache_dir": str(cache_dir)}))
    finally:
        subprocess.run(["chattr", "-i", *map(str, stuck)], check=True)
    assert "removals failed" in str(raised.value)
    again = pickle.loads(pickle.dumps(raised.value))
    assert type(again) is type(raised.value)
    assert str(again) == str(raised.value)


def assert_no_payload_in_place_of_the_kept_copy(
    tmp_path: Path, replace: Callable[[str], None]
) -> None:
    """Fetch res.bin, have *replace* put something in place of its kept copy,
    then check that `list` and `verify` call it missing and `prune` evicts it."""
    store, cache = copy_store_of(tmp_path, "res.bin")
    info = DigestInfo("res.bin", sha256_of(PAYLOAD))
    store.fetch_resource(info, str(tmp_path / "a"))
    kept = cache.get(info.uid)
    assert isinstance(kept, CachedResource)
    os.unlink(kept.local_path)
    replace(kept.local_path)
    common = ["cache", "--cache-dir", str(tmp_path / "cache")]
    _, listed, _ = run_cli([*common, "list"])
    status, verified, _ = run_cli([*common, "verify"])
    assert listed.split("\t")[1] == verified.split("\t")[1] == "missing"
    assert status != 0
    assert run_cli([*common, "prune", "--max-size", "1G"])[0] == 0
    assert cache.get(info.uid) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_list_and_verify_agree_that_a_fifo_is_no_payload(tmp_path: Path) -> None:
    # A FIFO in place of a kept copy: `verify` calls it missing, and so
    # must `list` (it showed "0 B", an empty file), and `prune` evicts it.
    assert_no_payload_in_place_of_the_kept_copy(tmp_path, os.mkfifo)


def test_list_and_verify_call_a_symbolic_link_at_a_kept_copy_missing(
    tmp_path: Path,
) -> None:
    # A fetch drops such an entry (the link would show whatever its target
    # holds later): `list` and `verify` followed the link and said ok.
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(PAYLOAD)
    assert_no_payload_in_place_of_the_kept_copy(
        tmp_path, lambda path: os.symlink(target, path)
    )
    assert target.read_bytes() == PAYLOAD  # what the link named stays


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr")
def test_clear_names_every_lock_file_it_could_not_remove(
    shared_cache: tuple[Path, list[str]],
) -> None:
    # An immutable lock directory stops root too: no lock file can go.
    cache_dir, uids = shared_cache
    locks = cache_dir / "locks"
    locked = sorted(locks.iterdir())
    assert len(locked) == len(uids)
    if subprocess.run(["chattr", "+i", str(locks)], check=False).returncode:
        pytest.skip("this file system has no immutable flag")
    try:
        with pytest.raises(OSError) as raised:
            clear_cache(FileCache({"cache_dir": str(cache_dir)}))
    finally:
        subprocess.run(["chattr", "-i", str(locks)], check=True)
    for path in locked:
        assert str(raised.value).count(str(path)) == 1
    assert not (cache_dir / "resources" / uids[0]).exists()  # the rest went
