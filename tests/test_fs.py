"""place_in: a file appears whole under its name, linked when possible;
create_unnamed and publish: a file written has no name until it is whole."""

from __future__ import annotations

import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest

from e3_typed_store import _fs as fs_module
from e3_typed_store._faults import call_with_file_size_limit
from e3_typed_store._fs import (
    MAX_NAME_BYTES,
    SparseWriter,
    create_unnamed,
    place_in,
    publish,
    remove_temp,
    unique_temp_name,
)


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


def test_the_same_file_placed_meanwhile_leaves_no_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process places the same cached file under that name while this
    # one links a temporary name to it: rename(2) of one link over another of
    # the same file does nothing. The other process is stood in for at the
    # one moment it matters, which real processes hit only now and then.
    source = tmp_path / "source"
    source.write_bytes(b"new")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "name").write_bytes(b"old")
    choose_name = fs_module.unique_temp_name

    def meanwhile(directory: str, base: str) -> str:
        os.link(source, dest / "other-process")
        os.replace(dest / "other-process", dest / "name")
        return choose_name(directory, base)

    monkeypatch.setattr(fs_module, "unique_temp_name", meanwhile)
    placed = place_in(str(source), str(dest), "name")
    assert os.path.samefile(placed, source)
    assert sorted(os.listdir(dest)) == ["name"]


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unnamed_files_here(directory: Path) -> bool:
    """Whether this system and the filesystem of *directory* have O_TMPFILE."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        os.close(os.open(directory, os.O_WRONLY | flag, 0o600))
    except OSError:
        return False
    return True


def test_a_file_being_written_has_no_name_until_published(tmp_path: Path) -> None:
    if not _unnamed_files_here(tmp_path):
        pytest.skip("no O_TMPFILE on this system or filesystem")
    fd, temp = create_unnamed(str(tmp_path), "stem", os.O_WRONLY)
    assert temp is None
    os.write(fd, b"content")
    assert os.listdir(tmp_path) == []  # a process killed now leaves nothing
    publish(fd, temp, str(tmp_path / "name"))
    assert sorted(os.listdir(tmp_path)) == ["name"]
    assert (tmp_path / "name").read_bytes() == b"content"
    assert os.stat(tmp_path / "name").st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # publish closed it


@pytest.fixture(params=[True, False], ids=["unnamed", "named"])
def unnamed(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> bool:
    """Each way of making a file: unnamed where this system can, then named."""
    wanted: bool = request.param
    if wanted and not _unnamed_files_here(tmp_path):
        pytest.skip("no O_TMPFILE on this system or filesystem")
    if not wanted:
        # Not a mock of a fault: the module's own switch for systems without
        # O_TMPFILE (macOS, Windows), to run that path on this one.
        monkeypatch.setattr("e3_typed_store._fs._O_TMPFILE", 0)
    return wanted


def test_publish_replaces_a_file_of_that_name(tmp_path: Path, unnamed: bool) -> None:
    (tmp_path / "name").write_bytes(b"old")
    reader = (tmp_path / "name").open("rb")  # one who opened the old file
    fd, temp = create_unnamed(str(tmp_path), "stem", os.O_WRONLY)
    assert (temp is None) == unnamed
    os.write(fd, b"new")
    publish(fd, temp, str(tmp_path / "name"))
    assert (tmp_path / "name").read_bytes() == b"new"
    assert reader.read() == b"old"  # replaced, not rewritten in place
    reader.close()
    assert sorted(os.listdir(tmp_path)) == ["name"]  # no temporary name left


def test_a_directory_in_the_way_fails_and_leaves_nothing(
    tmp_path: Path, unnamed: bool
) -> None:
    (tmp_path / "name").mkdir()
    fd, temp = create_unnamed(str(tmp_path), "stem", os.O_WRONLY)
    assert (temp is None) == unnamed
    os.write(fd, b"new")
    with pytest.raises(IsADirectoryError):
        publish(fd, temp, str(tmp_path / "name"))
    remove_temp(temp)  # what a caller does when publishing fails
    assert sorted(os.listdir(tmp_path)) == ["name"]
    assert os.listdir(tmp_path / "name") == []
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_a_missing_directory_is_a_file_not_found_error(tmp_path: Path) -> None:
    # The callers create the directory on this error, then try again.
    with pytest.raises(FileNotFoundError):
        create_unnamed(str(tmp_path / "absent"), "stem", os.O_WRONLY)


def test_a_copy_across_filesystems_into_a_new_name(tmp_path: Path) -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    payload = os.urandom((5 << 20) // 2)  # several chunks of the copy
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm and the test directory share a filesystem")
        source = Path(other) / "source"
        source.write_bytes(payload)
        placed = place_in(str(source), str(tmp_path / "new"), "name")
        assert Path(placed).read_bytes() == payload
        assert not os.path.samefile(placed, source)
        assert sorted(os.listdir(tmp_path / "new")) == ["name"]


def _place_reporting(source: str, directory: str, name: str) -> str:
    """place_in, its error (a name and a message) returned rather than raised."""
    try:
        return place_in(source, directory, name)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE and fork are POSIX")
def test_a_copy_the_disk_refuses_leaves_nothing(tmp_path: Path, unnamed: bool) -> None:
    # A real refusal: a file-size limit in a forked child makes the kernel
    # refuse the copy's writes past it (EFBIG), as a full disk would.
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm and the test directory share a filesystem")
        source = Path(other) / "source"
        source.write_bytes(os.urandom(1 << 20))
        (tmp_path / "name").write_bytes(b"old")
        outcome = call_with_file_size_limit(
            64 << 10, partial(_place_reporting, str(source), str(tmp_path), "name")
        )
    assert outcome == "OSError: [Errno 27] File too large"
    assert sorted(os.listdir(tmp_path)) == ["name"]  # no partial copy left
    assert (tmp_path / "name").read_bytes() == b"old"


def test_the_current_directory_is_named_by_an_empty_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    fd, temp = create_unnamed("", "stem", os.O_WRONLY)
    os.write(fd, b"here")
    publish(fd, temp, "name")
    assert (tmp_path / "name").read_bytes() == b"here"
    assert sorted(os.listdir(tmp_path)) == ["name"]


# The longest name the package accepts from outside (safe_file_name), with
# characters of two bytes: a temporary name built on it must still fit.
_LONGEST_NAME = "\u00e9" * 125 + "a.tgz"


def test_the_longest_name_is_the_limit() -> None:
    assert len(_LONGEST_NAME.encode("utf-8")) == MAX_NAME_BYTES


def test_a_temporary_name_always_fits(tmp_path: Path) -> None:
    for base in (_LONGEST_NAME, "n" * 400, "stem"):
        temp = unique_temp_name(str(tmp_path), base)
        name = os.path.basename(temp)
        assert os.path.dirname(temp) == str(tmp_path)
        assert len(os.fsencode(name)) <= 255
        stem, pid, unique, suffix = name[1:].rsplit(".", 3)
        assert name.startswith(".") and suffix == "tmp"
        assert (pid, len(unique)) == (str(os.getpid()), 32)
        assert base.startswith(stem) and stem  # readable: the start of base
        Path(temp).write_bytes(b"")  # the filesystem takes it
    assert os.path.basename(unique_temp_name("", "stem")).startswith(".stem.")
    assert unique_temp_name("", "a") != unique_temp_name("", "a")


def test_a_file_of_the_longest_name_is_replaced_by_a_link(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"new")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / _LONGEST_NAME).write_bytes(b"old")
    placed = place_in(str(source), str(dest), _LONGEST_NAME)
    assert placed == str(dest / _LONGEST_NAME)
    assert os.path.samefile(placed, source)
    assert os.listdir(dest) == [_LONGEST_NAME]  # no temporary name left


def test_publish_replaces_a_file_of_the_longest_name(
    tmp_path: Path, unnamed: bool
) -> None:
    target = tmp_path / _LONGEST_NAME
    target.write_bytes(b"old")
    fd, temp = create_unnamed(str(tmp_path), _LONGEST_NAME, os.O_WRONLY)
    assert (temp is None) == unnamed
    os.write(fd, b"new")
    publish(fd, temp, str(target))
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == [_LONGEST_NAME]


def test_a_copy_replaces_a_file_of_the_longest_name(
    tmp_path: Path, unnamed: bool
) -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm and the test directory share a filesystem")
        source = Path(other) / "source"
        source.write_bytes(b"new")
        (tmp_path / _LONGEST_NAME).write_bytes(b"old")
        placed = place_in(str(source), str(tmp_path), _LONGEST_NAME)
        assert Path(placed).read_bytes() == b"new"
        assert not os.path.samefile(placed, source)
    assert os.listdir(tmp_path) == [_LONGEST_NAME]


def make_sparse(path: Path, size: int, data_at: list[int]) -> None:
    """A file of *size* bytes, holes but for a few bytes at *data_at*."""
    with open(path, "wb") as stream:
        stream.truncate(size)
        for offset in data_at:
            stream.seek(offset)
            stream.write(b"data")


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


@pytest.mark.skipif(not hasattr(os.stat_result, "st_blocks"), reason="st_blocks")
@pytest.mark.parametrize(
    "tail", [True, False], ids=["data-at-the-end", "hole-at-the-end"]
)
def test_a_copy_of_a_sparse_file_stays_sparse(tmp_path: Path, tail: bool) -> None:
    # A copy to another filesystem (a hit placed there, say) used to write
    # every zero: a sparse gigabyte filled a gigabyte.
    size = 96 << 20
    source = tmp_path / "sparse.img"
    make_sparse(source, size, [0, size - 4] if tail else [0, 1 << 20])
    if allocated(source) > 1 << 20:
        pytest.skip("this filesystem makes no holes")
    other = (
        Path(tempfile.mkdtemp(dir="/dev/shm")) if os.path.isdir("/dev/shm") else None
    )
    if other is None or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no other filesystem to copy to")
    try:
        placed = Path(place_in(str(source), str(other), "copy.img"))
        assert not os.path.samefile(placed, source)  # a copy, not a link
        assert placed.stat().st_size == size
        assert placed.read_bytes() == source.read_bytes()
        assert allocated(placed) <= 4 << 20  # the chunks with data, not 96 MiB
    finally:
        for leftover in other.iterdir():
            leftover.unlink()
        other.rmdir()


@pytest.mark.skipif(not hasattr(os.stat_result, "st_blocks"), reason="st_blocks")
@pytest.mark.parametrize("chunk", [65537, 100_000, 1 << 20])
def test_a_run_of_zeros_is_a_hole_whatever_the_chunks_sizes(
    tmp_path: Path, chunk: int
) -> None:
    # 64 KiB of data, 256 KiB of zeros, 64 KiB of data, handed over in chunks
    # that do not line up with 64 KiB: the whole pieces of zeros in the middle
    # are a hole all the same.
    piece = 64 << 10
    content = b"d" * piece + bytes(4 * piece) + b"e" * piece
    target = tmp_path / "copy"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        writer = SparseWriter(fd)
        view = memoryview(content)
        for start in range(0, len(content), chunk):
            writer.write(view[start : start + chunk])
        writer.finish()
    finally:
        os.close(fd)
    assert target.read_bytes() == content
    probe = tmp_path / "probe"
    make_sparse(probe, 1 << 20, [0])
    if allocated(probe) > 256 << 10:
        pytest.skip("this filesystem makes no holes")
    assert allocated(target) <= len(content) - 4 * piece + (16 << 10)
