"""The content store: which files are its kept copies, and their stamps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e3_typed_store._content import ContentStore


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
    kept = content.keep("uid", str(download), verified=True)
    assert content.holds(kept)
    assert Path(kept).read_bytes() == b"payload"


def test_files_outside_the_store_are_not_held(
    content: ContentStore, download: Path, tmp_path: Path
) -> None:
    content.keep("uid", str(download), verified=True)
    assert not content.holds(str(download))
    # Shaped like a kept copy, but climbing out of the store.
    escape = os.path.join(content.root, "..", "payload", "res.bin")
    assert not content.holds(escape)
    beside = os.path.join(str(tmp_path), "elsewhere", "uid", "payload", "res.bin")
    assert not content.holds(beside)


def test_a_kept_copy_reached_through_a_link_is_held(
    content: ContentStore, download: Path, tmp_path: Path
) -> None:
    kept = content.keep("uid", str(download), verified=True)
    alias = tmp_path / "alias"
    alias.symlink_to(content.root)
    assert content.holds(str(alias / os.path.relpath(kept, content.root)))


def test_a_stamp_holds_while_the_file_is_unchanged(
    content: ContentStore, download: Path
) -> None:
    kept = content.keep("uid", str(download), verified=True)
    assert content.unchanged("uid", kept)
    os.utime(kept, ns=(1, 1))
    assert not content.unchanged("uid", kept)
    content.stamp("uid", kept)
    assert content.unchanged("uid", kept)
    assert not content.unchanged("other", kept)  # no stamp
    assert not content.unchanged("uid", str(download) + ".absent")


def test_a_corrupt_stamp_is_no_stamp(content: ContentStore, download: Path) -> None:
    kept = content.keep("uid", str(download), verified=True)
    stamp = Path(kept).parent.parent / "stamp.json"
    assert stamp.exists()
    for corrupt in (b"{", b"[]", b"\xff\xfe", b'{"path": 1}'):
        stamp.write_bytes(corrupt)
        assert not content.unchanged("uid", kept)
