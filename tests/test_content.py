"""The content store: which files are its kept copies, and their stamps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

import pytest

from e3_typed_store._content import ContentStore

UID = "a" * 64  # a SHA-256 digest's shape


@pytest.fixture
def content(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path / "cache"))


@pytest.fixture
def download(tmp_path: Path) -> Path:
    path = tmp_path / "dest" / "res.bin"
    path.parent.mkdir()
    path.write_bytes(b"payload")
    return path


def test_a_kept_copy_is_held(content: ContentStore, download: Path) -> None:
    kept, same_file = content.keep("uid", str(download))
    assert same_file  # a hard link: the download's verification holds for it
    assert os.path.samefile(kept, download)
    assert content.holds(kept)
    assert Path(kept).read_bytes() == b"payload"


def test_files_outside_the_store_are_not_held(
    content: ContentStore, download: Path, tmp_path: Path
) -> None:
    content.keep("uid", str(download))
    assert not content.holds(str(download))
    # Shaped like a kept copy, but climbing out of the store.
    escape = os.path.join(content.root, "..", "payload", "res.bin")
    assert not content.holds(escape)
    beside = os.path.join(str(tmp_path), "elsewhere", "uid", "payload", "res.bin")
    assert not content.holds(beside)


def test_a_kept_copy_reached_through_a_link_is_held(
    content: ContentStore, download: Path, tmp_path: Path
) -> None:
    kept = content.keep("uid", str(download)).path
    alias = tmp_path / "alias"
    alias.symlink_to(content.root)
    assert content.holds(str(alias / os.path.relpath(kept, content.root)))


def test_a_stamp_holds_while_the_file_is_unchanged(
    content: ContentStore, download: Path
) -> None:
    kept = content.keep("uid", str(download)).path
    assert not content.unchanged("uid", kept)  # kept, not stamped
    content.stamp("uid", kept)
    assert content.unchanged("uid", kept)
    os.utime(kept, ns=(1, 1))
    assert not content.unchanged("uid", kept)
    content.stamp("uid", kept)
    assert content.unchanged("uid", kept)
    assert not content.unchanged("other", kept)  # no stamp
    assert not content.unchanged("uid", str(download) + ".absent")


def test_a_corrupt_stamp_is_no_stamp(content: ContentStore, download: Path) -> None:
    kept = content.keep("uid", str(download)).path
    content.stamp("uid", kept)
    stamp = Path(kept).parent.parent / "stamp.json"
    assert stamp.exists()
    for corrupt in (b"{", b"[]", b"\xff\xfe", b'{"path": 1}'):
        stamp.write_bytes(corrupt)
        assert not content.unchanged("uid", kept)


def test_keeping_a_new_copy_drops_the_old_stamp(
    content: ContentStore, download: Path
) -> None:
    kept = content.keep("uid", str(download)).path
    content.stamp("uid", kept)
    assert content.unchanged("uid", kept)
    renamed = download.with_name("renamed.bin")
    renamed.write_bytes(b"new payload")
    again = content.keep("uid", str(renamed))
    assert again.same_file
    assert not content.unchanged("uid", again.path)  # no stamp until one is written
    assert os.listdir(os.path.dirname(again.path)) == ["renamed.bin"]


posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs and links: POSIX")


@posix_only
@pytest.mark.parametrize("kind", ["fifo", "link", "directory", "big"])
def test_a_stamp_that_is_no_stamp_file_is_no_stamp(
    kind: str, content: ContentStore, download: Path, tmp_path: Path
) -> None:
    kept = content.keep("uid", str(download)).path
    content.stamp("uid", kept)
    stamp = Path(kept).parent.parent / "stamp.json"
    real = stamp.read_bytes()
    stamp.unlink()
    if kind == "fifo":
        os.mkfifo(stamp)  # opening it for reading would block
    elif kind == "link":
        (tmp_path / "forged.json").write_bytes(real)
        stamp.symlink_to(tmp_path / "forged.json")
    elif kind == "directory":
        stamp.mkdir()
    else:
        stamp.write_bytes(real + b" " * (64 << 10))
    assert not content.unchanged("uid", kept)


@posix_only
def test_a_link_in_place_of_a_uid_directory_is_not_followed(
    content: ContentStore, download: Path, tmp_path: Path
) -> None:
    # Another directory, linked where the store keeps a uid's copy: keeping,
    # stamping, removing and clearing touch the link, never that directory.
    victim = tmp_path / "victim"
    (victim / "payload").mkdir(parents=True)
    (victim / "payload" / "precious.txt").write_text("mine", encoding="utf-8")
    os.makedirs(content.root)
    uid_dir = Path(content.root) / "uid"
    uid_dir.symlink_to(victim)
    kept = content.keep("uid", str(download)).path
    assert not uid_dir.is_symlink()
    assert Path(kept).read_bytes() == b"payload"
    assert os.listdir(victim / "payload") == ["precious.txt"]
    # The same for the payload directory, and through remove() and clear().
    content.remove("uid")
    uid_dir.mkdir()
    (uid_dir / "payload").symlink_to(victim / "payload")
    content.stamp("uid", str(download))
    kept = content.keep("uid", str(download)).path
    assert not (uid_dir / "payload").is_symlink()
    assert os.listdir(victim / "payload") == ["precious.txt"]
    content.remove("uid")
    uid_dir.symlink_to(victim)
    content.remove("uid")
    assert not os.path.lexists(uid_dir)
    uid_dir.symlink_to(victim)
    content.clear()
    assert not os.path.lexists(uid_dir)
    assert os.listdir(victim / "payload") == ["precious.txt"]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links: POSIX")
def test_nothing_is_kept_or_removed_through_a_link_at_resources(
    content: ContentStore, download: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "project"
    (outside / "uid").mkdir(parents=True)
    (outside / "uid" / "stamp.json").write_text("mine", encoding="utf-8")
    (outside / "abc").mkdir()
    Path(content.root).parent.mkdir()
    Path(content.root).symlink_to(outside)
    with pytest.raises(OSError, match="not a directory of the cache"):
        content.keep("other", str(download))
    with pytest.raises(OSError, match="not a directory of the cache"):
        content.stamp("uid", str(download))
    with pytest.raises(OSError, match="not a directory of the cache"):
        content.forget_stamp("uid")
    content.remove("uid")
    content.remove_dir("abc")
    content.clear()
    assert content.dir_names() == []
    assert sorted(os.listdir(outside)) == ["abc", "uid"]
    assert (outside / "uid" / "stamp.json").read_text(encoding="utf-8") == "mine"


def test_a_copy_kept_while_its_directory_is_removed_stays(
    content: ContentStore, download: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch keeping a new copy while ``cache clear`` removes the old one:
    the directory is no longer empty when its removal gets to it."""
    content.keep("uid", str(download))
    real_rmdir = os.rmdir
    fresh: list[str] = []

    # Not a fault put in: only the moment of a real keep() is chosen, as a
    # concurrent fetch could run it; the ENOTEMPTY is the filesystem's own.
    def rmdir_after_a_keep(path: str, *, dir_fd: int | None = None) -> None:
        if not fresh:
            fresh.append(content.keep("uid", str(download)).path)
        real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", rmdir_after_a_keep)
    content.remove("uid")  # no error
    monkeypatch.undo()
    (kept,) = fresh
    assert Path(kept).read_bytes() == b"payload"
    assert content.copies_in(content.dir_name("uid")) == [kept]


@contextmanager
def tmpfs_with_inodes(where: Path, inodes: int) -> Generator[Path]:
    """A small tmpfs of *inodes* inodes mounted at *where*; unmounted after."""
    where.mkdir()
    done = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size=1m,nr_inodes={inodes}",
            "tmpfs",
            str(where),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="mounting a tmpfs needs Linux and root",
)
def test_no_inode_left_for_the_digest_file_costs_it_not_the_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # However many inodes there are, a copy is kept whole with its digest
    # file, or kept without it (said in the log), or not kept at all: never
    # linked into the cache and then given up, orphaned there.
    outcomes: set[str] = set()
    for inodes in range(4, 12):
        with tmpfs_with_inodes(tmp_path / f"fs{inodes}", inodes) as fs:
            download = fs / "dl.bin"
            download.write_bytes(b"payload")
            content = ContentStore(str(fs / "cache"))
            payload = fs / "cache" / "resources" / UID / "payload" / "dl.bin"
            caplog.clear()
            try:
                kept = content.keep(UID, str(download), "sha256")
            except OSError:
                assert not payload.exists(), f"{inodes} inodes: orphaned"
                outcomes.add("not kept")
                continue
            assert kept.path == str(payload) and payload.read_bytes() == b"payload"
            if content.digest_of(UID) == "sha256":
                outcomes.add("kept")
            else:
                assert "cannot record the digest" in caplog.text
                outcomes.add("kept without its digest file")
    assert outcomes == {"not kept", "kept", "kept without its digest file"}


def test_a_use_is_recorded_at_most_once_an_hour(
    content: ContentStore, download: Path
) -> None:
    content.keep("uid", str(download))
    kept = content.last_use("uid")
    assert kept is not None
    content.note_use("uid")  # just kept: no write
    assert content.last_use("uid") == kept
    uid_dir = Path(content.root, ContentStore.dir_name("uid"))
    os.utime(uid_dir, (1_000_000, 1_000_000))
    content.note_use("uid")
    used = content.last_use("uid")
    assert used is not None and used > 2_000_000  # now, not 1970 any more
    assert content.last_use("nothing kept") is None


def test_a_use_sets_a_time_in_the_future_right(
    content: ContentStore, download: Path
) -> None:
    # A clock set wrong (a file server's) left the copy "used" ten days
    # ahead: never recorded again, it stayed the most recently used.
    content.keep("uid", str(download))
    uid_dir = Path(content.root, ContentStore.dir_name("uid"))
    ahead = time.time() + 10 * 86400
    os.utime(uid_dir, (ahead, ahead))
    content.note_use("uid")
    used = content.last_use("uid")
    assert used is not None and used < ahead - 86400


@pytest.mark.skipif(os.name != "posix", reason="symbolic links: POSIX")
def test_a_use_is_never_recorded_through_a_link(
    content: ContentStore, tmp_path: Path
) -> None:
    # A link planted where the uid's directory goes: its target's time stays.
    outside = tmp_path / "outside"
    outside.mkdir()
    os.utime(outside, (1_000_000, 1_000_000))
    Path(content.root).mkdir(parents=True, exist_ok=True)
    Path(content.root, ContentStore.dir_name("uid")).symlink_to(outside)
    content.note_use("uid")
    assert outside.stat().st_mtime == 1_000_000
    assert content.last_use("uid") is None
