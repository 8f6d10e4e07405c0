"""What stands where the store's directories go: ``entries``, ``resources``,
``locks`` as symbolic links or files, a directory where a lock file goes, a
``cache_dir`` that is a file. Nothing outside the cache is ever read as an
entry, written or removed; the ``cache`` commands skip what is not theirs and
go on; a fetch goes on without caching.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e3_typed_store._cli import EXIT_CORRUPTED
from e3_typed_store.cache.backends.filecache import FileCache
from tests.backends.drivers import CopyConfig, CopyStore

PAYLOAD = b"planted payload\n" * 64
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
SUBDIRS = ("entries", "resources", "locks")
COMMANDS = (
    ("list",),
    ("verify",),
    ("verify", "--remove"),
    ("prune", "--max-size", "0"),
    ("clear",),
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="symbolic links: POSIX")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e3_typed_store", "-v", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def store_of(tmp_path: Path, cache_dir: Path) -> CopyStore:
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    (source / "res.bin").write_bytes(PAYLOAD)
    return CopyStore(CopyConfig(str(source)), FileCache({"cache_dir": str(cache_dir)}))


def fetch(tmp_path: Path, cache_dir: Path, dest: str) -> str:
    store = store_of(tmp_path, cache_dir)
    info = store.get_resource_metadata({"name": "res.bin", "sha256": SHA256})
    return store.fetch_resource(info, str(tmp_path / dest))


def project(tmp_path: Path) -> Path:
    """A directory of someone's files, of the names the cache would take as its
    own: entries (``*.json``), lock files, a directory named as a uid's, and
    those of the resource fetched."""
    root = tmp_path / "project"
    (root / "abc").mkdir(parents=True)
    (root / "abc" / "main.rs").write_text("fn main() {}", encoding="utf-8")
    (root / SHA256).mkdir()
    (root / SHA256 / "notes.txt").write_text("mine", encoding="utf-8")
    for name in ("package.json", "cargo.lock", f"{SHA256}.lock", "README.md"):
        (root / name).write_text(f"precious {name}", encoding="utf-8")
    (root / f"{SHA256}.json").write_text("{}", encoding="utf-8")
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        if path.is_file()
        else "<dir>"
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("subdir", SUBDIRS)
def test_the_commands_never_act_through_a_link_at_a_store_directory(
    tmp_path: Path, subdir: str
) -> None:
    cache_dir = tmp_path / "cache"
    fetch(tmp_path, cache_dir, "dest")
    target = project(tmp_path)
    before = snapshot(target)
    shutil.rmtree(cache_dir / subdir)
    (cache_dir / subdir).symlink_to(target)
    for command in COMMANDS:
        result = cli("cache", "--cache-dir", str(cache_dir), *command)
        assert snapshot(target) == before, (command, result.stderr)
        # verify: the entry's copy is not there for it.
        assert result.returncode in {0, EXIT_CORRUPTED}, (command, result.stderr)
    assert (cache_dir / subdir).is_symlink()
    assert (
        "not a directory of the cache"
        in cli("cache", "--cache-dir", str(cache_dir), "clear").stderr
    )


@pytest.mark.parametrize("subdir", SUBDIRS)
def test_a_fetch_writes_nothing_through_a_link_at_a_store_directory(
    tmp_path: Path, subdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    target = project(tmp_path)
    before = snapshot(target)
    (cache_dir / subdir).symlink_to(target)
    with caplog.at_level(logging.WARNING):
        for dest in ("one", "two"):
            path = fetch(tmp_path, cache_dir, dest)
            assert Path(path).read_bytes() == PAYLOAD
            assert Path(path).parent == tmp_path / dest
    assert snapshot(target) == before
    assert any("not a directory of the cache" in r.getMessage() for r in caplog.records)


ODD = ("file at locks", "file at resources", "directory at the lock file")


def plant(cache_dir: Path, odd: str) -> Path:
    """Put the odd object in place; return its path."""
    if odd == "directory at the lock file":
        path = cache_dir / "locks" / f"{SHA256}.lock"
        path.unlink()
        path.mkdir()
        (path / "inside").write_text("mine", encoding="utf-8")
        return path
    path = cache_dir / odd.rsplit(" ", 1)[1]
    shutil.rmtree(path)
    path.write_text("mine", encoding="utf-8")
    return path


# verify --remove of a sound entry removes nothing: only with resources gone
# does it meet the odd object.
CASES = [
    (odd, command)
    for command in COMMANDS[2:]
    for odd in ODD
    if command != ("verify", "--remove") or odd == "file at resources"
]


@pytest.mark.parametrize(
    ("odd", "command"), CASES, ids=[f"{' '.join(c)}-{o}" for o, c in CASES]
)
def test_the_commands_skip_an_odd_object_and_go_on(
    tmp_path: Path, odd: str, command: tuple[str, ...]
) -> None:
    cache_dir = tmp_path / "cache"
    fetch(tmp_path, cache_dir, "dest")
    kept = cache_dir / "resources" / SHA256
    assert kept.is_dir()
    planted = plant(cache_dir, odd)
    result = cli("cache", "--cache-dir", str(cache_dir), *command)
    assert result.returncode == 0, result.stderr
    if planted.is_dir():
        assert (planted / "inside").read_text(encoding="utf-8") == "mine"
    else:
        assert planted.read_text(encoding="utf-8") == "mine"
    # Past the odd object, which a warning names, the entry and its copy go.
    assert str(planted) in result.stderr
    assert not (cache_dir / "entries" / f"{SHA256}.json").exists()
    assert not kept.exists()
    # A fetch after it works.
    assert Path(fetch(tmp_path, cache_dir, "again")).read_bytes() == PAYLOAD


def test_a_cache_dir_that_is_a_file_is_one_error_for_every_command(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache"
    path.write_text("mine", encoding="utf-8")
    for command in COMMANDS:
        result = cli("cache", "--cache-dir", str(path), *command)
        assert result.returncode == 1, command
        assert result.stderr.strip().endswith(
            f"error: [Errno 20] the cache directory is not a directory: '{path}'"
        ), (command, result.stderr)
    assert path.read_text(encoding="utf-8") == "mine"
