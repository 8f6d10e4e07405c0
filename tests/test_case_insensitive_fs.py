"""The cache on a case-insensitive filesystem, as macOS and Windows have by default.

A real one: a FAT image mounted through FUSE (fusefat), where ``Foo`` and
``foo`` name one file and hard links do not exist. Linux, root, and the tools
that ``scripts/setup`` installs where it can; skipped otherwise, saying why.
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

from e3_typed_store._content import ContentStore
from e3_typed_store._demo import DemoServer
from e3_typed_store._fs import create_unnamed, place_in, publish
from e3_typed_store._types import CachedResource
from e3_typed_store.backends.base import StoreOptions
from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
from e3_typed_store.cache.backends.filecache import FileCache


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "FUSE mounts need Linux here"
    if os.geteuid() != 0:
        return "mounting needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    for tool in ("fusefat", "mkfs.vfat"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup installs it as root)"
    return None


@pytest.fixture
def fat(tmp_path: Path) -> Iterator[Path]:
    """A directory on a freshly made FAT filesystem, unmounted afterwards."""
    why_not = _why_not()
    if why_not is not None:
        pytest.skip(why_not)
    image = tmp_path / "fat.img"
    with image.open("wb") as stream:
        stream.truncate(32 << 20)
    subprocess.run(["mkfs.vfat", str(image)], check=True, capture_output=True)
    mount = tmp_path / "fat"
    mount.mkdir()
    started = subprocess.run(
        ["fusefat", "-o", "rw+", str(image), str(mount)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if started.returncode != 0 or not os.path.ismount(mount):
        pytest.skip(f"fusefat could not mount: {started.stderr!r}")
    try:
        # The premise of every test here.
        (mount / "Probe").write_bytes(b"")
        assert (mount / "PROBE").exists()
        (mount / "Probe").unlink()
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


def test_uids_that_differ_only_in_case_keep_their_own_entries(fat: Path) -> None:
    cache = FileCache({"cache_dir": str(fat / "cache")})
    uids = ["Foo", "foo", "FOO", "tool-1.2", "Tool-1.2"]
    for uid in uids:
        assert cache.set(uid, CachedResource(uid, f"/{uid}"))
    for uid in uids:
        assert cache.get(uid) == CachedResource(uid, f"/{uid}")
    assert len(os.listdir(fat / "cache" / "entries")) == len(uids)


def test_kept_copies_of_uids_that_differ_only_in_case_stay_apart(fat: Path) -> None:
    content = ContentStore(str(fat / "cache"))
    kept: dict[str, str] = {}
    for index, uid in enumerate(("Res", "res")):
        download = fat / f"download-{index}"
        download.mkdir()
        (download / "res.bin").write_bytes(uid.encode())
        kept[uid] = content.keep(uid, str(download / "res.bin")).path
    assert kept["Res"] != kept["res"]
    assert Path(kept["Res"]).read_bytes() == b"Res"
    assert Path(kept["res"]).read_bytes() == b"res"


def test_a_store_on_it_fetches_once_then_hits_without_hard_links(
    fat: Path,
) -> None:
    payload = os.urandom(300_000)
    server = DemoServer({"Res.bin": payload})
    try:
        for trust in (False, True):
            store = HTTPSimpleStore(
                {"progress": False},
                FileCache({"cache_dir": str(fat / f"cache-{trust}")}),
                options=StoreOptions(trust_unchanged_files=trust),
            )
            info = store.get_resource_metadata(
                {
                    "url": server.url("Res.bin"),
                    "sha256": hashlib.sha256(payload).hexdigest(),
                }
            )
            first = store.fetch_resource(info, str(fat / f"first-{trust}"))
            second = store.fetch_resource(info, str(fat / f"second-{trust}"))
            assert Path(first).read_bytes() == Path(second).read_bytes() == payload
        assert server.count("Res.bin") == 2  # one per cache
    finally:
        server.stop()


def test_files_are_written_under_a_temporary_name_where_none_can_be_unnamed(
    fat: Path,
) -> None:
    # FAT has no unnamed files (O_TMPFILE): the portable way, a unique name.
    fd, temp = create_unnamed(str(fat), "stem", os.O_WRONLY)
    assert temp is not None
    assert os.path.dirname(temp) == str(fat)
    os.write(fd, b"content")
    publish(fd, temp, str(fat / "name"))
    assert (fat / "name").read_bytes() == b"content"
    assert os.listdir(fat) == ["name"]


def test_a_copy_ending_in_zeros_is_whole_where_sizes_cannot_be_set(
    fat: Path, tmp_path: Path
) -> None:
    # fusefat refuses ftruncate: the copy's final run of zeros is written.
    source = tmp_path / "image.bin"
    content = b"data" + bytes(300 << 10)
    source.write_bytes(content)
    placed = place_in(str(source), str(fat / "dest"), "image.bin")
    assert Path(placed).read_bytes() == content
