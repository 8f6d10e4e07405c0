"""FileStore against real directories: queries, roots, hostile paths, odd files."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from typing_extensions import override

from e3_typed_store import load_store
from e3_typed_store._faults import call_with_file_size_limit
from e3_typed_store.backends.base import CachedResource, StoreError
from e3_typed_store.backends.file_store import (
    FileStore,
    FileStoreQuery,
    FileStoreResourceInfo,
    FileStoreSettings,
)
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.errors import (
    DestinationError,
    DownloadError,
    IntegrityError,
    InvalidConfigurationError,
    InvalidQueryError,
)

PAYLOAD = b"mirror payload\n" * 1000
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file kinds")


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    (root / "tools").mkdir(parents=True)
    (root / "tools" / "x.tgz").write_bytes(PAYLOAD)
    return root


@pytest.fixture
def store(mirror: Path, tmp_path: Path) -> FileStore:
    cache = FileCache({"cache_dir": str(tmp_path / "cache")})
    return FileStore({"root": str(mirror), "chunk_size": 4096}, cache)


def call_unchecked(function: object, argument: object) -> object:
    """Call *function* with what its signature refuses: input from outside."""
    assert callable(function)
    return function(argument)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


# Queries


def test_relative_path_resolves_against_the_root(
    store: FileStore, mirror: Path
) -> None:
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    assert info.path == str(mirror / "tools" / "x.tgz")
    assert info.uid == SHA256
    assert info.algorithm == "sha256"
    assert info.file_name == "x.tgz"


def test_absolute_path_and_file_url_inside_the_root(
    store: FileStore, mirror: Path
) -> None:
    target = mirror / "tools" / "x.tgz"
    by_path = store.get_resource_metadata({"path": str(target), "sha": SHA1.upper()})
    by_url = store.get_resource_metadata({"url": target.as_uri(), "sha": SHA1})
    assert by_path == by_url
    assert by_path.uid == SHA1
    localhost = store.get_resource_metadata(
        {"url": "file://localhost" + str(target), "sha": SHA1}
    )
    assert localhost.path == str(target)


def test_same_uid_as_the_http_store(store: FileStore) -> None:
    from e3_typed_store.backends.http_simple_store import HTTPSimpleStore

    http = HTTPSimpleStore({}, None).get_resource_metadata(
        {"url": "http://127.0.0.1/x.tgz", "sha256": SHA256}
    )
    local = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    assert http.uid == local.uid


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ({"sha256": SHA256}, "path"),
        ({"path": "tools/x.tgz"}, "sha"),
        ({"path": "tools/x.tgz", "url": "file:///x", "sha256": SHA256}, "url"),
        ({"path": "tools/x.tgz", "sha": SHA1, "sha256": SHA256}, "sha256"),
        ({"path": "tools/x.tgz", "sha256": SHA256, "extra": 1}, "extra"),
        ({"path": 42, "sha256": SHA256}, "path"),
        ({"path": "", "sha256": SHA256}, "path"),
        ({"path": "tools/x.tgz", "sha256": "zz" * 32}, "sha256"),
        ({"path": "tools/x.tgz", "sha256": SHA1}, "sha256"),
        ({"path": "../escape", "sha256": SHA256}, "path"),
        ({"path": "tools/../../escape", "sha256": SHA256}, "path"),
        ({"path": "/etc/passwd", "sha256": SHA256}, "path"),
        ({"path": "a\0b", "sha256": SHA256}, "path"),
        ({"url": "http://127.0.0.1/x.tgz", "sha256": SHA256}, "url"),
        ({"url": "file://otherhost/x.tgz", "sha256": SHA256}, "url"),
        ({"url": "file:///x.tgz?q=1", "sha256": SHA256}, "url"),
        ({"url": "file:///%ff", "sha256": SHA256}, "url"),
        ({"url": "file:///x%00y", "sha256": SHA256}, "url"),
        ({"url": "file:///etc/passwd", "sha256": SHA256}, "url"),
    ],
)
def test_bad_queries_name_the_key(
    store: FileStore, query: dict[str, object], key: str
) -> None:
    with pytest.raises(InvalidQueryError) as raised:
        call_unchecked(store.get_resource_metadata, query)
    assert raised.value.key == key


def test_without_root_a_path_must_be_absolute(tmp_path: Path, mirror: Path) -> None:
    store = FileStore(None, None)
    with pytest.raises(InvalidQueryError, match="relative path needs a configured"):
        store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    info = store.get_resource_metadata(
        {"path": str(mirror / "tools" / "x.tgz"), "sha256": SHA256}
    )
    path = store.fetch_resource(info, str(tmp_path / "dest"))
    assert Path(path).read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("configuration", "key"),
    [
        ({"root": 3}, "root"),
        ({"root": ""}, "root"),
        ({"reflink": "yes"}, "reflink"),
        ({"chunk_size": 1}, "chunk_size"),
        ({"chunk_size": True}, "chunk_size"),
        ({"mirrors": []}, "mirrors"),
    ],
)
def test_bad_configuration(configuration: dict[str, object], key: str) -> None:
    with pytest.raises(InvalidConfigurationError) as raised:
        call_unchecked(FileStoreSettings.from_configuration, configuration)
    assert raised.value.key == key


def test_settings_root_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = FileStoreSettings.from_configuration({"root": "sub/../mirror"})
    assert settings.root == str(tmp_path / "mirror")


# Downloads


@pytest.mark.parametrize("reflink", [True, False])
def test_copy_is_verified_and_cached(
    mirror: Path, tmp_path: Path, reflink: bool
) -> None:
    cache = FileCache({"cache_dir": str(tmp_path / "cache")})
    store = FileStore({"root": str(mirror), "reflink": reflink}, cache)
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    dest = tmp_path / "dest"
    path = store.fetch_resource(info, str(dest))
    assert path == str(dest / "x.tgz")
    assert Path(path).read_bytes() == PAYLOAD
    assert listing(dest) == ["x.tgz"]
    entry = cache.get(info.uid)
    assert isinstance(entry, CachedResource)
    # The uid is the content's digest, so the entry lives for ever (a century).
    (listed,) = cache.iter_entries()
    assert listed.expiry > time.time() + 99 * 365 * 24 * 3600
    # Hit: served although the mirror's file is gone.
    (mirror / "tools" / "x.tgz").unlink()
    again = store.fetch_resource(info, str(tmp_path / "other"))
    assert Path(again).read_bytes() == PAYLOAD


def test_copy_is_not_a_hard_link_to_the_mirror(
    store: FileStore, tmp_path: Path
) -> None:
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    path = store.fetch_resource(info, str(tmp_path / "dest"))
    assert not os.path.samefile(path, info.path)
    # A later change on the mirror does not reach the copy.
    Path(info.path).write_bytes(b"changed")
    assert Path(path).read_bytes() == PAYLOAD


def test_mismatch_leaves_nothing(store: FileStore, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"other").hexdigest()
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": wrong})
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError) as raised:
        store.fetch_resource(info, str(dest))
    assert raised.value.expected == wrong
    assert raised.value.actual == SHA256
    assert raised.value.url == "tools/x.tgz"
    assert listing(dest) == []
    assert store.download_resource(info, str(dest)) is None
    assert listing(dest) == []


def test_missing_file_is_a_download_error(store: FileStore, tmp_path: Path) -> None:
    info = store.get_resource_metadata({"path": "tools/none.tgz", "sha256": SHA256})
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="no such file"):
        store.download_resource_content(info, str(dest))
    assert listing(dest) == []


def test_directory_instead_of_a_file(store: FileStore, tmp_path: Path) -> None:
    info = store.get_resource_metadata({"path": "tools", "sha256": SHA256})
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="a directory"):
        store.download_resource_content(info, str(dest))
    assert listing(dest) == []


@posix_only
def test_fifo_is_refused_without_blocking(
    store: FileStore, mirror: Path, tmp_path: Path
) -> None:
    os.mkfifo(mirror / "tools" / "pipe")
    info = store.get_resource_metadata({"path": "tools/pipe", "sha256": SHA256})
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="a FIFO"):
        store.download_resource_content(info, str(dest))
    assert listing(dest) == []


@posix_only
def test_symlink_escaping_the_root(
    store: FileStore, mirror: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(PAYLOAD)
    (mirror / "tools" / "link.tgz").symlink_to(outside)
    (mirror / "dirlink").symlink_to(tmp_path)
    dest = tmp_path / "dest"
    for path in ("tools/link.tgz", "dirlink/secret"):
        info = store.get_resource_metadata({"path": path, "sha256": SHA256})
        with pytest.raises(DownloadError, match="outside the root"):
            store.download_resource_content(info, str(dest))
    assert listing(dest) == []


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc/self/fd names the file"
)
def test_a_directory_swapped_for_a_link_after_resolution_is_caught(
    store: FileStore, mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process swaps a directory of the path for a link out of the
    # root between its resolution and the open (a probe won that race in
    # under 20 s); stood in for at that moment, as real processes meet it
    # only now and then.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.tgz").write_bytes(PAYLOAD)
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    resolve = os.path.realpath

    def then_swapped(path: str | os.PathLike[str], *, strict: bool = False) -> str:
        resolved = resolve(path, strict=strict)
        if os.fspath(path) == info.path:
            os.rename(mirror / "tools", tmp_path / "moved")
            (mirror / "tools").symlink_to(outside)
        return resolved

    monkeypatch.setattr(os.path, "realpath", then_swapped)
    with pytest.raises(DownloadError, match="outside the root"):
        store.download_resource_content(info, str(tmp_path / "dest"))
    assert listing(tmp_path / "dest") == []


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o755, 0o4755, 0o2755, 0o1755])
def test_a_copy_has_the_source_s_permission_bits(
    mirror: Path, tmp_path: Path, mode: int
) -> None:
    # A file only its owner may read is no world-readable copy in a shared
    # cache; a tool stays executable. As cp: less the umask, and never set-ID
    # (a mirror's setuid file fetched by root was a setuid-root binary).
    (mirror / "tools" / "x.tgz").chmod(mode)
    cache = FileCache({"cache_dir": str(tmp_path / "cache")})
    store = FileStore({"root": str(mirror)}, cache)
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    umask = os.umask(0o022)
    try:
        placed = Path(store.fetch_resource(info, str(tmp_path / "dest")))
        again = Path(store.fetch_resource(info, "/dev/shm"))  # another filesystem
    finally:
        os.umask(umask)
    try:
        kept = cache.get(info.uid)
        assert isinstance(kept, CachedResource)
        for copy in (placed, Path(kept.local_path), again):
            assert stat.S_IMODE(copy.stat().st_mode) == mode & 0o777 & ~0o022, copy
    finally:
        again.unlink()


@pytest.mark.parametrize("latin_1", [False, True], ids=["host", "latin-1"])
def test_file_urls_a_careful_user_writes(
    mirror: Path, tmp_path: Path, latin_1: bool
) -> None:
    # A host of localhost in capitals; a name in no UTF-8, percent-encoded.
    name = os.fsdecode(b"caf\xe9.tgz") if latin_1 else "x.tgz"
    (mirror / name).write_bytes(PAYLOAD)
    path = os.fsencode(mirror / name)
    quoted = "".join(f"%{byte:02X}" if byte > 0x7E else chr(byte) for byte in path)
    url = f"file://{quoted}" if latin_1 else f"file://LOCALHOST{quoted}"
    store = FileStore({"root": str(mirror)}, None)
    info = store.get_resource_metadata({"url": url, "sha256": SHA256})
    placed = store.download_resource_content(info, str(tmp_path / "dest"))
    assert Path(placed).read_bytes() == PAYLOAD


@posix_only
def test_symlink_inside_the_root_is_followed(
    store: FileStore, mirror: Path, tmp_path: Path
) -> None:
    (mirror / "latest.tgz").symlink_to(mirror / "tools" / "x.tgz")
    info = store.get_resource_metadata({"path": "latest.tgz", "sha256": SHA256})
    path = store.download_resource_content(info, str(tmp_path / "dest"))
    assert Path(path).read_bytes() == PAYLOAD
    assert not Path(path).is_symlink()


@posix_only
def test_unreadable_file(store: FileStore, mirror: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    source = mirror / "tools" / "x.tgz"
    source.chmod(0)
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    with pytest.raises(DownloadError, match="cannot open"):
        store.download_resource_content(info, str(tmp_path / "dest"))


@posix_only
def test_a_symlink_loop_cannot_be_opened(
    store: FileStore, mirror: Path, tmp_path: Path
) -> None:
    (mirror / "tools" / "loop").symlink_to(mirror / "tools" / "loop")
    info = store.get_resource_metadata({"path": "tools/loop", "sha256": SHA256})
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="cannot open"):
        store.download_resource_content(info, str(dest))
    assert listing(dest) == []


@posix_only
def test_a_socket_or_a_device_is_refused(
    store: FileStore, mirror: Path, tmp_path: Path
) -> None:
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(mirror / "tools" / "sock"))
        info = store.get_resource_metadata({"path": "tools/sock", "sha256": SHA256})
        # Linux refuses to open a socket at all (ENXIO).
        with pytest.raises(DownloadError, match=r"cannot open .*: .*No such device"):
            store.download_resource_content(info, str(tmp_path / "dest"))
    finally:
        listener.close()
    rootless = FileStore(None, None)
    device = rootless.get_resource_metadata({"path": os.devnull, "sha256": SHA256})
    with pytest.raises(DownloadError, match="not a regular file: a device"):
        rootless.download_resource_content(device, str(tmp_path / "dest"))
    assert listing(tmp_path / "dest") == []


def copy_and_report(root: str, dest: str) -> tuple[str, str, list[str]]:
    """Copy tools/x.tgz with a FileStore; say what was raised and what was left."""
    store = FileStore({"root": root}, None)
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    try:
        store.download_resource_content(info, dest)
    except DownloadError as exc:
        return type(exc).__name__, str(exc), listing(Path(dest))
    return "", "", listing(Path(dest))


@posix_only
def test_a_write_refused_by_the_disk_is_a_destination_error(
    mirror: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    outcome = call_with_file_size_limit(
        len(PAYLOAD) // 2, partial(copy_and_report, str(mirror), str(dest))
    )
    assert outcome == (
        "DestinationError",
        f"cannot download tools/x.tgz: cannot copy it into {dest}: "
        "[Errno 27] File too large",
        [],
    )
    roomy = call_with_file_size_limit(
        len(PAYLOAD), partial(copy_and_report, str(mirror), str(dest))
    )
    assert roomy == ("", "", ["x.tgz"])


def test_an_unusable_destination_is_a_destination_error(
    store: FileStore, tmp_path: Path
) -> None:
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    (tmp_path / "plain").write_bytes(b"a file")
    with pytest.raises(DestinationError, match="cannot write into"):
        store.download_resource_content(info, str(tmp_path / "plain" / "dest"))
    dest = tmp_path / "dest"
    (dest / "x.tgz").mkdir(parents=True)
    with pytest.raises(DestinationError, match="cannot move the copy to"):
        store.download_resource_content(info, str(dest))
    assert listing(dest) == ["x.tgz"]  # no temporary file left
    assert (dest / "x.tgz").is_dir()
    with pytest.raises(DestinationError, match="a NUL byte in the path"):
        store.download_resource_content(info, str(tmp_path / "a\0b"))


class GrowingInfo(FileStoreResourceInfo):
    """Metadata whose file grows while the store copies it: the mirror being
    rewritten under the reader. The growth happens on the first ``file_name``
    read, which the store makes after opening the source."""

    grown = False

    @property
    @override
    def file_name(self) -> str:
        if not self.grown:
            self.grown = True
            with open(self.path, "ab") as stream:
                stream.write(b"appended during the copy")
        return super().file_name


def test_source_changing_during_the_copy(
    store: FileStore, mirror: Path, tmp_path: Path
) -> None:
    source = mirror / "tools" / "x.tgz"
    info = GrowingInfo("tools/x.tgz", str(source), SHA256)
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError):
        store.download_resource_content(info, str(dest))
    assert info.grown
    assert listing(dest) == []


def test_unsafe_base_name_becomes_the_digest(
    store: FileStore, mirror: Path, tmp_path: Path
) -> None:
    (mirror / " spaced ").write_bytes(PAYLOAD)
    info = store.get_resource_metadata({"path": " spaced ", "sha256": SHA256})
    assert info.file_name == SHA256
    path = store.download_resource_content(info, str(tmp_path / "dest"))
    assert path == str(tmp_path / "dest" / SHA256)


def test_no_cache(mirror: Path, tmp_path: Path) -> None:
    store = FileStore({"root": str(mirror)}, None)
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha512": "0" * 128})
    assert store.download_resource(info, str(tmp_path / "dest")) is None


def test_loaded_by_name(mirror: Path, tmp_path: Path) -> None:
    store = load_store(
        "file-store", {"root": str(mirror)}, MemoryCache(), expect=FileStore
    )
    info = store.get_resource_metadata({"path": "tools/x.tgz", "sha256": SHA256})
    assert store.fetch_resource(info, str(tmp_path / "d")).endswith("x.tgz")


def test_registered_in_e3_namespace() -> None:
    from importlib.metadata import entry_points

    names = {entry.name for entry in entry_points(group="e3.store")}
    assert "typed-file-store" in names


def test_store_error_from_download_resource_is_logged(
    store: FileStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    info = store.get_resource_metadata({"path": "tools/none", "sha256": SHA256})
    assert store.download_resource(info, str(tmp_path / "dest")) is None
    assert "no such file" in caplog.text
    with pytest.raises(StoreError):
        store.fetch_resource(info, str(tmp_path / "dest"))


def test_query_type_accepts_url_form() -> None:
    query: FileStoreQuery = {"url": "file:///m/x", "sha": SHA1}
    store = FileStore({}, None)
    assert store.get_resource_metadata(query).path == "/m/x"


def test_offline_from_the_configuration(tmp_path: Path) -> None:
    # As for every store: the keys of StoreOptions in the configuration mapping.
    store = FileStore({"offline": True, "trust_unchanged_files": True}, None)
    assert store.options.is_offline() and store.options.trust_unchanged_files
    with pytest.raises(InvalidConfigurationError, match="lock_timeout"):
        FileStore({"lock_timeout": -1}, None)


@pytest.mark.skipif(not hasattr(os.stat_result, "st_blocks"), reason="st_blocks")
@pytest.mark.parametrize("chunk_size", [32 << 10, 1 << 20])
def test_a_sparse_file_is_copied_sparse(
    mirror: Path, tmp_path: Path, chunk_size: int
) -> None:
    # A sparse gigabyte with a few kilobytes of data filled a gigabyte of
    # dest (and failed on a small disk); cp leaves the holes.
    size = 96 << 20
    source = mirror / "tools" / "disk.img"
    with open(source, "wb") as stream:
        stream.truncate(size)
        stream.write(b"boot")
    if source.stat().st_blocks * 512 > 1 << 20:
        pytest.skip("this filesystem makes no holes")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    store = FileStore(
        {"root": str(mirror), "reflink": False, "chunk_size": chunk_size}, None
    )
    info = store.get_resource_metadata({"path": "tools/disk.img", "sha256": digest})
    copy = Path(store.download_resource_content(info, str(tmp_path / "dest")))
    assert copy.stat().st_size == size
    assert copy.stat().st_blocks * 512 <= 1 << 20  # not 96 MiB
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
