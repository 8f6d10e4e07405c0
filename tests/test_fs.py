"""place_in: a file appears whole under its name, linked when possible."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from e3_typed_store._fs import place_in


def test_a_new_name_is_a_hard_link(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"content")
    dest = tmp_path / "dest"
    dest.mkdir()
    placed = place_in(str(source), str(dest), "name")
    assert placed == str(dest / "name")
    assert os.path.samefile(placed, source)
    assert sorted(os.listdir(dest)) == ["name"]


def test_a_missing_directory_is_created(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"content")
    placed = place_in(str(source), str(tmp_path / "a" / "b"), "name")
    assert Path(placed).read_bytes() == b"content"
    assert os.path.samefile(placed, source)  # linked there too, not copied
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["name"]


def test_another_file_of_that_name_is_replaced(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"new")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "name").write_bytes(b"old")
    placed = place_in(str(source), str(dest), "name")
    assert Path(placed).read_bytes() == b"new"
    assert sorted(os.listdir(dest)) == ["name"]  # no temporary file left


def test_the_same_file_is_left_as_it_is(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"content")
    dest = tmp_path / "dest"
    dest.mkdir()
    os.link(source, dest / "name")
    before = os.stat(dest / "name").st_ino
    assert place_in(str(source), str(dest), "name") == str(dest / "name")
    assert os.stat(dest / "name").st_ino == before
    assert sorted(os.listdir(dest)) == ["name"]


def test_a_missing_source_raises_and_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(FileNotFoundError):
        place_in(str(tmp_path / "absent"), str(dest), "name")
    assert not dest.exists() or os.listdir(dest) == []


def test_across_filesystems_the_file_is_copied(tmp_path: Path) -> None:
    # /dev/shm is a tmpfs: a hard link from there into tmp_path fails (EXDEV)
    # unless both lie on one filesystem.
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        source = Path(other) / "source"
        source.write_bytes(b"content")
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm and the test directory share a filesystem")
        (tmp_path / "name").write_bytes(b"old")
        placed = place_in(str(source), str(tmp_path), "name")
        assert Path(placed).read_bytes() == b"content"
        assert not os.path.samefile(placed, source)
        assert sorted(os.listdir(tmp_path)) == ["name"]
