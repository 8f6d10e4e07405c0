"""FileStore's clone path, on a real copy-on-write filesystem.

A Btrfs image is made with ``mkfs.btrfs`` and loop-mounted for these tests
(Linux, root, btrfs-progs: scripts/setup installs it where it can), so that
``FICLONE`` can work. Whether a copy shares the mirror's blocks is read from
the flags of its extents (``filefrag -v``, e2fsprogs), not from the library.
Where any of this is missing the tests are skipped, saying why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3_typed_store.backends.file_store import FileStore
from e3_typed_store.errors import IntegrityError

PAYLOAD = hashlib.sha256(b"seed").digest() * (64 * 1024)  # 2 MiB
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def cow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on a freshly made, loop-mounted Btrfs; unmounted after."""
    if not sys.platform.startswith("linux"):
        pytest.skip("FICLONE is Linux's")
    if os.geteuid() != 0:
        pytest.skip("mounting an image needs root")
    mkfs = shutil.which("mkfs.btrfs")
    if mkfs is None or shutil.which("filefrag") is None:
        pytest.skip("mkfs.btrfs (btrfs-progs) or filefrag (e2fsprogs) is missing")
    base = tmp_path_factory.mktemp("btrfs")
    image = base / "image"
    with open(image, "wb") as stream:
        stream.truncate(256 << 20)  # sparse: takes no room on the host
    made = _run(mkfs, "-q", str(image))
    if made.returncode != 0:
        pytest.skip(f"mkfs.btrfs failed: {made.stderr.strip()}")
    mount = base / "mnt"
    mount.mkdir()
    mounted = _run("mount", "-o", "loop", str(image), str(mount))
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an image here: {mounted.stderr.strip()}")
    try:
        mirror = mount / "mirror"
        mirror.mkdir()
        (mirror / "x.bin").write_bytes(PAYLOAD)
        yield mount
    finally:
        unmounted = _run("umount", str(mount))
        if unmounted.returncode != 0:  # busy: detach it as soon as it is not
            _run("umount", "-l", str(mount))


def shares_blocks(path: Path) -> bool:
    """Tell whether any extent of *path* is shared with another file."""
    os.sync()  # extents of data still in memory have no flags yet
    report = _run("filefrag", "-v", str(path))
    assert report.returncode == 0, report.stderr
    return "shared" in report.stdout


def test_a_copy_on_a_cow_filesystem_is_a_clone(cow: Path) -> None:
    store = FileStore({"root": str(cow / "mirror"), "reflink": True}, None)
    info = store.get_resource_metadata({"path": "x.bin", "sha256": SHA256})
    copy = Path(store.download_resource_content(info, str(cow / "cloned")))
    assert copy.read_bytes() == PAYLOAD
    assert shares_blocks(copy)
    # Copy-on-write: a change on the mirror leaves the copy as it was.
    with open(cow / "mirror" / "x.bin", "r+b") as mirror:
        mirror.write(b"rewritten")
    try:
        assert copy.read_bytes() == PAYLOAD
    finally:
        (cow / "mirror" / "x.bin").write_bytes(PAYLOAD)


def test_without_reflink_the_copy_shares_nothing(cow: Path) -> None:
    store = FileStore({"root": str(cow / "mirror"), "reflink": False}, None)
    info = store.get_resource_metadata({"path": "x.bin", "sha256": SHA256})
    copy = Path(store.download_resource_content(info, str(cow / "copied")))
    assert copy.read_bytes() == PAYLOAD
    assert not shares_blocks(copy)


def test_a_clone_of_other_content_is_an_integrity_error(cow: Path) -> None:
    store = FileStore({"root": str(cow / "mirror"), "reflink": True}, None)
    wrong = hashlib.sha256(b"other").hexdigest()
    info = store.get_resource_metadata({"path": "x.bin", "sha256": wrong})
    dest = cow / "wrong"
    with pytest.raises(IntegrityError) as raised:
        store.download_resource_content(info, str(dest))
    assert raised.value.actual == SHA256  # the clone was hashed in full
    assert os.listdir(dest) == []


def test_across_filesystems_the_clone_falls_back_to_a_copy(
    cow: Path, tmp_path: Path
) -> None:
    # The mirror on the host's filesystem, the destination on the Btrfs:
    # FICLONE fails with EXDEV, and the content is copied instead.
    (tmp_path / "x.bin").write_bytes(PAYLOAD)
    store = FileStore({"root": str(tmp_path), "reflink": True}, None)
    info = store.get_resource_metadata({"path": "x.bin", "sha256": SHA256})
    copy = Path(store.download_resource_content(info, str(cow / "crossed")))
    assert copy.read_bytes() == PAYLOAD
    assert not shares_blocks(copy)
