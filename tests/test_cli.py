"""The command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import ast
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e3_typed_store._cli import (
    CACHE_DIR_VARIABLE,
    EXIT_BAD_QUERY,
    EXIT_CORRUPTED,
    EXIT_DESTINATION,
    EXIT_INTEGRITY,
    EXIT_NETWORK,
    EXIT_OFFLINE,
    EXIT_PLUGIN,
    EXIT_USAGE,
    main,
)
from e3_typed_store._demo import DemoServer
from tests.backends.test_http_hostile import partial
from tests.httpserver import Exchange, LoopbackServer

PAYLOAD = b"cli payload\n" * 4096
OTHER = b"another payload\n" * 1024
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()
SHA512 = hashlib.sha512(PAYLOAD).hexdigest()
PYTHON_CLI = (sys.executable, "-m", "e3_typed_store")
# The same, with SIGHUP and SIGINT at their defaults whatever the tests
# inherited: under nohup, or in a background job of a shell script (SIGINT
# ignored), the command would rightly keep ignoring them (see the nohup
# test), and a shell cannot undo an ignored signal (POSIX): Python does, then
# execs the command.
PYTHON_CLI_SIGNALS_DEFAULT = (
    sys.executable,
    "-c",
    "import os, signal, sys\n"
    "for name in ('SIGHUP', 'SIGINT'):\n"
    "    if hasattr(signal, name):\n"
    "        signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'e3_typed_store', *sys.argv[1:]])",
)


@pytest.fixture
def server() -> Iterator[DemoServer]:
    served = DemoServer({"payload.bin": PAYLOAD, "other.bin": OTHER})
    yield served
    served.stop()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e3_typed_store", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def fetch(
    server: DemoServer,
    cache_dir: Path | None,
    dest: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Fetch payload.bin into *dest*; the default cache directory for None."""
    chosen = () if cache_dir is None else ("--cache-dir", str(cache_dir))
    return cli(
        "fetch",
        server.url("payload.bin"),
        "--sha256",
        SHA256,
        "--dest",
        str(dest),
        *chosen,
        *extra,
        env=env,
        cwd=cwd,
    )


def test_help_everywhere() -> None:
    for args in ([], ["fetch"], ["cache"], ["cache", "prune"], ["drivers"], ["demo"]):
        result = cli(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: e3-typed-store" in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "e3-typed-store"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "fetch" in result.stdout


def test_fetch_then_hit(server: DemoServer, cache_dir: Path, tmp_path: Path) -> None:
    first = fetch(server, cache_dir, tmp_path / "one")
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path.parent == tmp_path / "one" and path.read_bytes() == PAYLOAD
    second = fetch(server, cache_dir, tmp_path / "two", "--trust-unchanged")
    assert second.returncode == 0, second.stderr
    assert Path(second.stdout.strip()).read_bytes() == PAYLOAD
    assert server.count("payload.bin") == 1


@pytest.mark.skipif(os.name != "posix", reason="a symbolic link: POSIX")
@pytest.mark.parametrize("kind", ["dangling link", "regular file"])
def test_a_cache_that_records_nothing_is_said_so(
    server: DemoServer, tmp_path: Path, kind: str
) -> None:
    cache_dir = tmp_path / "cache"
    if kind == "dangling link":
        cache_dir.symlink_to(tmp_path / "unmounted")
    else:
        cache_dir.write_text("not a directory")
    for attempt in (1, 2):
        result = fetch(server, cache_dir, tmp_path / f"dest{attempt}")
        assert result.returncode == 0, result.stderr
        assert Path(result.stdout.strip()).read_bytes() == PAYLOAD
        assert result.stderr == WARNING.format(cache_dir)
        assert server.count("payload.bin") == attempt  # as the warning says
    verbose = cli(
        "-v",
        "fetch",
        server.url("payload.bin"),
        "--sha256",
        SHA256,
        "--dest",
        str(tmp_path / "dest3"),
        "--cache-dir",
        str(cache_dir),
    )
    assert verbose.returncode == 0, verbose.stderr
    assert f"WARNING: cannot cache '{SHA256}'" in verbose.stderr  # the why


WARNING = (
    "e3-typed-store: warning: {}: the cache could not keep a copy of it"
    " (e3-typed-store -v says why, run when it cannot); a later fetch"
    " may download it again\n"
)


@pytest.mark.parametrize("dest_in_cache", [False, True])
def test_a_cache_that_records_only_the_file_in_dest_is_said_so(
    server: DemoServer, tmp_path: Path, dest_in_cache: bool
) -> None:
    # No room for the kept copy (a file where its directory goes, as a full
    # disk would do): the entry names the file in dest, which the user may
    # remove or change at any time; also when dest lies in the cache directory.
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "resources").write_text("in the way")
    base = cache_dir if dest_in_cache else tmp_path
    first = fetch(server, cache_dir, base / "one")
    assert (first.returncode, first.stderr) == (0, WARNING.format(cache_dir))
    second = fetch(server, cache_dir, base / "two")  # served from one/
    assert (second.returncode, second.stderr) == (0, WARNING.format(cache_dir))
    assert server.count("payload.bin") == 1
    Path(first.stdout.strip()).unlink()
    third = fetch(server, cache_dir, base / "three")
    assert (third.returncode, third.stderr) == (0, WARNING.format(cache_dir))
    assert server.count("payload.bin") == 2  # as the warning says


def test_a_cache_that_records_the_fetch_says_nothing(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    for dest in ("one", "two"):  # a download, then a hit
        result = fetch(server, cache_dir, tmp_path / dest)
        assert (result.returncode, result.stderr) == (0, "")
    assert server.count("payload.bin") == 1


@pytest.mark.parametrize(
    ("option", "digest"), [("--sha1", SHA1), ("--sha512", SHA512.upper())]
)
def test_other_digests(
    server: DemoServer, cache_dir: Path, tmp_path: Path, option: str, digest: str
) -> None:
    result = cli(
        "fetch",
        server.url("payload.bin"),
        option,
        digest,
        "--dest",
        str(tmp_path),
        "--cache-dir",
        str(cache_dir),
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == PAYLOAD


def test_cache_dir_from_the_environment(server: DemoServer, tmp_path: Path) -> None:
    env_cache = tmp_path / "env-cache"
    result = fetch(
        server, None, tmp_path / "d", env={"E3_TYPED_STORE_CACHE_DIR": str(env_cache)}
    )
    assert result.returncode == 0, result.stderr
    assert (env_cache / "resources").is_dir()


def test_missing_digest_is_a_usage_error(server: DemoServer) -> None:
    result = cli("fetch", server.url("payload.bin"))
    assert result.returncode == EXIT_USAGE
    assert "one of --sha1, --sha256, --sha512" in result.stderr
    # The usage shown is fetch's, which names the options.
    assert result.stderr.startswith("usage: e3-typed-store fetch [-h] [--sha1 HEX]")


def test_two_digests_is_a_usage_error(server: DemoServer) -> None:
    result = cli("fetch", server.url("payload.bin"), "--sha1", SHA1, "--sha256", SHA256)
    assert result.returncode == EXIT_USAGE


def test_unknown_command_is_a_usage_error() -> None:
    assert cli("frobnicate").returncode == EXIT_USAGE


@pytest.mark.parametrize(
    ("url", "digest", "shown"),
    [
        ("http://127.0.0.1:1/x", "zz", "'zz'"),
        ("http://127.0.0.1:1/x", SHA256[:-1], SHA256[:-1]),
        ("ftp://127.0.0.1/x", SHA256, "ftp://127.0.0.1/x"),
    ],
)
def test_bad_query(url: str, digest: str, shown: str, cache_dir: Path) -> None:
    result = cli("fetch", url, "--sha256", digest, "--cache-dir", str(cache_dir))
    assert result.returncode == EXIT_BAD_QUERY, result.stderr
    assert shown in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_unreachable_url(cache_dir: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}/x"
    result = cli(
        "fetch",
        url,
        "--sha256",
        SHA256,
        "--dest",
        str(tmp_path / "d"),
        "--cache-dir",
        str(cache_dir),
    )
    assert result.returncode == EXIT_NETWORK, result.stderr
    assert url in result.stderr
    assert result.stderr.startswith("e3-typed-store: error:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_integrity_error(server: DemoServer, cache_dir: Path, tmp_path: Path) -> None:
    other = hashlib.sha256(OTHER).hexdigest()
    result = cli(
        "fetch",
        server.url("payload.bin"),
        "--sha256",
        other,
        "--dest",
        str(tmp_path / "d"),
        "--cache-dir",
        str(cache_dir),
    )
    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert other in result.stderr and SHA256 in result.stderr
    # One line: not also the CRITICAL line the digest check logs (e3-core's).
    assert len(result.stderr.splitlines()) == 1, result.stderr
    # Nothing left: not even the directory the fetch made for the file.
    assert not (tmp_path / "d").exists()


def test_a_destination_that_cannot_take_the_file(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    # A directory where the file should go: not a network error, its own status.
    (tmp_path / "d" / "payload.bin").mkdir(parents=True)
    result = fetch(server, cache_dir, tmp_path / "d")
    assert result.returncode == EXIT_DESTINATION, result.stderr
    assert f"cannot move the download to {tmp_path / 'd' / 'payload.bin'}" in (
        result.stderr
    )
    assert sorted(os.listdir(tmp_path / "d")) == ["payload.bin"]
    assert (tmp_path / "d" / "payload.bin").is_dir()
    # A directory that cannot be made (under a file), on a miss and on a hit.
    (tmp_path / "file").write_bytes(b"a file")
    for _ in ("miss", "hit"):
        result = fetch(server, cache_dir, tmp_path / "file" / "sub")
        assert result.returncode == EXIT_DESTINATION, result.stderr
        assert fetch(server, cache_dir, tmp_path / "ok").returncode == 0
    assert server.count("payload.bin") == 2  # the first test's, and "ok"'s


def test_offline_miss(server: DemoServer, cache_dir: Path, tmp_path: Path) -> None:
    result = fetch(server, cache_dir, tmp_path / "d", "--offline")
    assert result.returncode == EXIT_OFFLINE
    assert "offline" in result.stderr
    assert server.count("payload.bin") == 0


def test_verbose_says_what_the_store_does(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    common = ["fetch", server.url("payload.bin"), "--sha256", SHA256]
    common += ["--cache-dir", str(cache_dir)]
    first = cli("-v", *common, "--dest", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    assert f"{SHA256}: not in the cache, downloading" in first.stderr
    assert f"{SHA256}: downloaded: " in first.stderr
    second = cli("-v", *common, "--dest", str(tmp_path / "b"))
    assert f"{SHA256}: from the cache: " in second.stderr
    quiet = cli(*common, "--dest", str(tmp_path / "c"))
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_an_offline_variable_saying_neither_on_nor_off_is_warned_of_without_v(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    # Meant as on, maybe: the fetch goes to the network, and says so on
    # stderr even without -v (which shows the store's other warnings).
    result = fetch(
        server, cache_dir, tmp_path / "d", env={"E3_TYPED_STORE_OFFLINE": "enabled"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "e3-typed-store: WARNING: E3_TYPED_STORE_OFFLINE='enabled' is neither on"
        " (1, true, yes, on) nor off (0, false, no, off): offline mode is off\n"
    )
    quiet = fetch(
        server, cache_dir, tmp_path / "e", env={"E3_TYPED_STORE_OFFLINE": "no"}
    )
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_offline_hit(server: DemoServer, cache_dir: Path, tmp_path: Path) -> None:
    assert fetch(server, cache_dir, tmp_path / "a").returncode == 0
    result = fetch(server, cache_dir, tmp_path / "b", "--offline")
    assert result.returncode == 0, result.stderr
    assert server.count("payload.bin") == 1


def test_cache_list_verify_clear(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    assert fetch(server, cache_dir, tmp_path / "a").returncode == 0
    listing = cli("cache", "--cache-dir", str(cache_dir), "list")
    assert listing.returncode == 0
    assert SHA256 in listing.stdout and "KiB" in listing.stdout
    assert "1 entries" in listing.stderr

    verify = cli("cache", "--cache-dir", str(cache_dir), "verify")
    assert verify.returncode == 0 and f"{SHA256}\tok" in verify.stdout

    kept = next((cache_dir / "resources").rglob("payload.bin"))
    os.unlink(tmp_path / "a" / "payload.bin")
    kept.write_bytes(b"rotten")
    verify = cli("cache", "--cache-dir", str(cache_dir), "verify")
    assert verify.returncode == EXIT_CORRUPTED
    assert f"{SHA256}\tcorrupted" in verify.stdout
    verify = cli("cache", "--cache-dir", str(cache_dir), "verify", "--remove")
    assert verify.returncode == 0 and "removed" in verify.stdout
    assert SHA256 not in cli("cache", "--cache-dir", str(cache_dir), "list").stdout
    # The removed entry's lock file went with it.
    assert list((cache_dir / "locks").iterdir()) == []

    assert fetch(server, cache_dir, tmp_path / "b").returncode == 0
    clear = cli("cache", "--cache-dir", str(cache_dir), "clear")
    assert clear.returncode == 0 and "removed 1 entries" in clear.stderr
    assert not any((cache_dir / "resources").iterdir())
    assert not any((cache_dir / "locks").iterdir())


def test_cache_list_and_verify_report_missing_and_unverifiable_entries(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    from e3_typed_store.backends.base import CachedResource
    from e3_typed_store.cache.backends.filecache import FileCache

    assert fetch(server, cache_dir, tmp_path / "a").returncode == 0
    os.unlink(tmp_path / "a" / "payload.bin")
    os.unlink(next((cache_dir / "resources").rglob("payload.bin")))
    # An entry whose uid is no digest: nothing to check its file against.
    named = tmp_path / "named.txt"
    named.write_bytes(b"recorded by another driver")
    cache = FileCache({"cache_dir": str(cache_dir)})
    assert cache.set("tool-1.2", CachedResource("tool-1.2", str(named)))

    listing = cli("cache", "--cache-dir", str(cache_dir), "list")
    assert listing.returncode == 0
    lines = dict(line.split("\t", 1) for line in listing.stdout.splitlines())
    assert lines[SHA256].startswith("missing\t-\t")  # no size, no age
    assert lines["tool-1.2"].startswith("26 B\t")
    assert "2 entries, 26 B" in listing.stderr

    verify = cli("cache", "--cache-dir", str(cache_dir), "verify")
    assert verify.returncode == EXIT_CORRUPTED
    assert f"{SHA256}\tmissing" in verify.stdout
    assert "tool-1.2\tunverifiable" in verify.stdout
    removed = cli("cache", "--cache-dir", str(cache_dir), "verify", "--remove")
    assert removed.returncode == 0
    assert f"{SHA256}\tmissing, removed" in removed.stdout
    # An unverifiable entry is not a bad one: it stays.
    after = cli("cache", "--cache-dir", str(cache_dir), "list").stdout
    assert SHA256 not in after and "tool-1.2" in after
    assert named.read_bytes() == b"recorded by another driver"


def test_cache_prune(server: DemoServer, cache_dir: Path, tmp_path: Path) -> None:
    assert fetch(server, cache_dir, tmp_path / "a").returncode == 0
    other = cli(
        "fetch",
        server.url("other.bin"),
        "--sha256",
        hashlib.sha256(OTHER).hexdigest(),
        "--dest",
        str(tmp_path / "a"),
        "--cache-dir",
        str(cache_dir),
    )
    assert other.returncode == 0, other.stderr
    # Make payload.bin the one used longer ago: its copy and the directory
    # whose time records its last use.
    kept = next((cache_dir / "resources").rglob("payload.bin"))
    for path in (kept, kept.parent.parent):
        os.utime(path, (1_000_000, 1_000_000))
    pruned = cli(
        "cache", "--cache-dir", str(cache_dir), "prune", "--max-size", f"{len(OTHER)}"
    )
    assert pruned.returncode == 0, pruned.stderr
    assert f"evicted\t{SHA256}" in pruned.stdout
    listing = cli("cache", "--cache-dir", str(cache_dir), "list").stdout
    assert SHA256 not in listing and hashlib.sha256(OTHER).hexdigest() in listing
    # The evicted entry's lock file went with it; the kept one's stays.
    locks = [path.name for path in (cache_dir / "locks").iterdir()]
    assert locks == [hashlib.sha256(OTHER).hexdigest() + ".lock"]
    aged = cli("cache", "--cache-dir", str(cache_dir), "prune", "--older-than", "0s")
    assert aged.returncode == 0 and "evicted" in aged.stdout
    assert "0 entries" in cli("cache", "--cache-dir", str(cache_dir), "list").stderr


def test_prune_evicts_the_least_recently_used_first(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    # payload.bin was downloaded first, but served since: other.bin goes.
    other_sha = hashlib.sha256(OTHER).hexdigest()
    assert fetch(server, cache_dir, tmp_path / "a").returncode == 0
    other = cli(
        "fetch", server.url("other.bin"), "--sha256", other_sha,
        "--dest", str(tmp_path / "a"), "--cache-dir", str(cache_dir),
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    for uid, when in ((SHA256, 1_000_000), (other_sha, 2_000_000)):
        used = cache_dir / "resources" / uid
        for path in (used, *used.rglob("*.bin")):
            os.utime(path, (when, when))
    assert fetch(server, cache_dir, tmp_path / "b").returncode == 0  # a hit
    assert server.count("payload.bin") == 1
    listed = cli("cache", "--cache-dir", str(cache_dir), "list").stdout
    assert [line.split("\t")[0] for line in listed.splitlines()] == [other_sha, SHA256]
    pruned = cli(
        "cache", "--cache-dir", str(cache_dir), "prune", "--max-size", f"{len(PAYLOAD)}"
    )
    assert pruned.stdout.startswith(f"evicted\t{other_sha}"), pruned.stdout
    aged = cli("cache", "--cache-dir", str(cache_dir), "prune", "--older-than", "1d")
    assert aged.stdout == ""  # used just now


@pytest.mark.parametrize("bad", ["--max-size=lots", "--older-than=soon"])
def test_prune_bad_bounds(bad: str, cache_dir: Path) -> None:
    result = cli("cache", "--cache-dir", str(cache_dir), "prune", bad)
    assert result.returncode == EXIT_USAGE
    assert "not a" in result.stderr


def test_prune_needs_a_bound(cache_dir: Path) -> None:
    result = cli("cache", "--cache-dir", str(cache_dir), "prune")
    assert result.returncode == EXIT_USAGE


def test_drivers_lists_both_namespaces() -> None:
    result = cli("drivers")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("e3_typed_store.store\thttp-simple-store\t") and "ok" in line
        for line in lines
    )
    assert any(line.startswith("e3.store\ttyped-http-simple-store\t") for line in lines)
    assert any(line.startswith("e3.store\thttp-simple-store\t") for line in lines)
    assert any(line.startswith("e3_typed_store.cache\tfile-cache\t") for line in lines)


def test_check_driver() -> None:
    ok = cli("check-driver", "http-simple-store")
    assert ok.returncode == 0 and "conforms to the store API" in ok.stdout
    ok = cli("check-driver", "e3_typed_store.cache.backends.memory:MemoryCache")
    assert ok.returncode == 0 and "cache API" in ok.stdout
    bad = cli("check-driver", "e3_typed_store.backends.base:Store")
    assert bad.returncode == EXIT_PLUGIN
    assert "abstract methods not implemented" in bad.stdout
    missing = cli("check-driver", "no-such-driver")
    assert missing.returncode == EXIT_PLUGIN and "no such driver" in missing.stderr
    # Every namespace looked in is named, e3-core's too.
    for namespace in ("e3_typed_store.store", "e3.store", "e3.store.cache.backend"):
        assert namespace in missing.stderr
    unimportable = cli("check-driver", "no_such_module:Thing")
    assert unimportable.returncode == EXIT_PLUGIN
    for malformed in (":", ".relative:Thing", "e3_typed_store:"):
        refused = cli("check-driver", malformed)
        assert refused.returncode == EXIT_PLUGIN, refused.stderr
        assert "cannot be imported" in refused.stderr
        assert "Traceback" not in refused.stderr
    not_a_class = cli("check-driver", "e3_typed_store.backends.base:logger")
    assert not_a_class.returncode == EXIT_PLUGIN
    assert "is not a class" in not_a_class.stderr
    # A store checked against the cache API, as asked: it does not conform.
    as_cache = cli(
        "check-driver",
        "e3_typed_store.backends.http_simple_store:HTTPSimpleStore",
        "--kind",
        "cache",
    )
    assert as_cache.returncode == EXIT_PLUGIN
    assert "HTTPSimpleStore: missing method set()" in as_cache.stdout


@pytest.mark.parametrize("count", ["0", "-2", "many"])
def test_demo_needs_a_positive_number_of_processes(count: str) -> None:
    result = cli("demo", "--processes", count)
    assert result.returncode == EXIT_USAGE
    assert "--processes" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="byte file names: Linux")
def test_a_path_in_no_encoding_is_printed_as_its_bytes(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    # A directory named by bytes that are no UTF-8, on a strict UTF-8 output:
    # the fetch is done, and its path printed as the bytes it is.
    dest = os.fsdecode(bytes(tmp_path) + b"/d\xff")
    command = ["fetch", server.url("payload.bin"), "--sha256", SHA256]
    command += ["--dest", dest, "--cache-dir", str(cache_dir)]
    result = subprocess.run(
        [sys.executable, "-m", "e3_typed_store", *command],
        capture_output=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip(b"\n") == os.fsencode(dest) + b"/payload.bin"
    listed = cli(
        "cache",
        "--cache-dir",
        str(cache_dir),
        "list",
        env={"PYTHONIOENCODING": "utf-8"},
    )
    assert listed.returncode == 0, listed.stderr


def test_demo_runs_and_every_step_holds() -> None:
    result = cli("demo", "--processes", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo OK" in result.stdout
    assert result.stdout.count("[ok]") == 6


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_cache_verify_does_not_hang_on_a_fifo(tmp_path: Path) -> None:
    # An entry whose file was replaced by a FIFO: reading it would wait for a
    # writer for ever; it is reported as missing instead.
    from e3_typed_store.backends.base import CachedResource
    from e3_typed_store.cache.backends.filecache import FileCache

    cache_dir = tmp_path / "cache"
    fifo = tmp_path / "payload.bin"
    os.mkfifo(fifo)
    uid = hashlib.sha256(b"anything").hexdigest()
    assert FileCache({"cache_dir": str(cache_dir)}).set(
        uid, CachedResource(uid, str(fifo))
    )
    verify = cli("cache", "--cache-dir", str(cache_dir), "verify")
    assert verify.returncode == EXIT_CORRUPTED
    assert f"{uid}\tmissing" in verify.stdout


def make_entries(cache_dir: Path, target: Path, uids: list[str]) -> None:
    from e3_typed_store.backends.base import CachedResource
    from e3_typed_store.cache.backends.filecache import FileCache

    cache = FileCache({"cache_dir": str(cache_dir)})
    for uid in uids:
        assert cache.set(uid, CachedResource(uid, str(target)))


def fields(line: str) -> list[str]:
    """Split a line of `cache list` and read its quoted fields back."""
    return [
        ast.literal_eval(field) if field.startswith(("'", '"')) else field
        for field in line.split("\t")
    ]


ODD_UIDS = [
    "two\nlines",
    "a\tb",
    "esc\x1b[31mRED\x1b[0m",
    "\u202eevil",
    "lone \ud800 surrogate",
    "'quoted'",
]


def test_cache_commands_print_an_odd_uid_as_a_literal(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    target = tmp_path / "file\x1b[2Jname"
    target.write_bytes(b"x")
    make_entries(cache_dir, target, [*ODD_UIDS, "tool-1.2"])
    utf8 = {"PYTHONIOENCODING": "utf-8"}

    listing = cli("cache", "--cache-dir", str(cache_dir), "list", env=utf8)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == len(ODD_UIDS) + 1 and "7 entries" in listing.stderr
    # No escape sequence, no override reaches a terminal.
    assert all(field.isprintable() for line in lines for field in line.split("\t"))
    rows = {row[0]: row for row in map(fields, lines)}
    assert sorted(rows) == sorted([*ODD_UIDS, "tool-1.2"])
    assert all(len(row) == 4 and row[3] == str(target) for row in rows.values())
    # An ordinary uid is printed as it is.
    assert any(line.startswith("tool-1.2\t1 B\t") for line in lines)

    verify = cli("cache", "--cache-dir", str(cache_dir), "verify", env=utf8)
    assert verify.returncode == 0, verify.stderr
    verified = [fields(line) for line in verify.stdout.splitlines()]
    assert sorted(row[0] for row in verified) == sorted([*ODD_UIDS, "tool-1.2"])
    assert all(row[1:] == ["unverifiable", str(target)] for row in verified)

    pruned = cli(
        "cache", "--cache-dir", str(cache_dir), "prune", "--older-than", "0s", env=utf8
    )
    assert pruned.returncode == 0, pruned.stderr
    evicted = [fields(line) for line in pruned.stdout.splitlines()]
    assert sorted(row[1] for row in evicted) == sorted([*ODD_UIDS, "tool-1.2"])


@pytest.mark.skipif(sys.platform == "win32", reason="non-ASCII file names")
def test_an_ascii_output_takes_any_uid_and_path(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    ascii_output = {"PYTHONIOENCODING": "ascii"}
    dest = tmp_path / "d\u00e9"
    fetched = fetch(server, cache_dir, dest, env=ascii_output)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(dest / "payload.bin").replace(
        "\u00e9", "\\xe9"
    )
    assert (dest / "payload.bin").read_bytes() == PAYLOAD

    target = tmp_path / "\u00e9t\u00e9"
    target.write_bytes(b"x")
    make_entries(cache_dir, target, ["h\u00e9llo", "lone \ud800"])
    for action in ("list", "verify"):
        result = cli("cache", "--cache-dir", str(cache_dir), action, env=ascii_output)
        assert result.returncode == 0, result.stderr
        assert result.stdout.isascii()
        rows = [fields(line) for line in result.stdout.splitlines()]
        assert ["h\u00e9llo", str(target)] in [[row[0], row[-1]] for row in rows]
        assert "lone \ud800" in [row[0] for row in rows]


def test_demo_refuses_more_than_64_processes() -> None:
    result = cli("demo", "--processes", "65")
    assert result.returncode == EXIT_USAGE, result.stdout
    assert "--processes: must be at most 64, not 65" in result.stderr
    assert result.stdout == ""  # refused before anything started


def test_a_leading_tilde_is_the_home_directory(
    server: DemoServer, tmp_path: Path
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    at_home = {"HOME": str(home), "USERPROFILE": str(home)}
    result = cli(
        "fetch",
        server.url("payload.bin"),
        "--sha256",
        SHA256,
        "--dest=~/d",
        env={**at_home, "E3_TYPED_STORE_CACHE_DIR": "~/env-cache"},
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == home / "d" / "payload.bin"
    assert (home / "env-cache" / "resources").is_dir()
    assert list(work.iterdir()) == []  # no directory named "~"
    listing = cli("cache", "--cache-dir=~/env-cache", "list", env=at_home, cwd=work)
    assert listing.returncode == 0 and SHA256 in listing.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_CACHE_HOME: Linux")
@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_a_blank_cache_dir_variable_is_not_set(
    value: str, server: DemoServer, tmp_path: Path
) -> None:
    # A CI variable left blank, or holding a stray space: the default, not
    # a directory named by white space in the current directory.
    work, default = tmp_path / "work", tmp_path / "xdg" / "e3-typed-store"
    work.mkdir()
    result = fetch(
        server,
        None,
        tmp_path / "d",
        env={"XDG_CACHE_HOME": str(tmp_path / "xdg"), CACHE_DIR_VARIABLE: value},
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    assert (default / "resources").is_dir()
    assert list(work.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="a directory named by an escape")
def test_a_verbose_log_line_escapes_control_characters(tmp_path: Path) -> None:
    # A cache directory whose name holds a terminal escape, and whose
    # entries are a link elsewhere: -v warns, naming it.
    cache_dir = tmp_path / "c\x1b[31mred"
    cache_dir.mkdir()
    (cache_dir / "entries").symlink_to(tmp_path / "elsewhere")
    result = cli("-v", "cache", "--cache-dir", str(cache_dir), "clear")
    assert result.returncode == 0, result.stderr
    assert "c\\x1b[31mred" in result.stderr  # shown as its escape
    assert "\x1b" not in result.stderr  # never sent to the terminal


def test_the_cache_directory_may_follow_the_cache_action(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    # As fetch takes it after its URL: `cache list --cache-dir DIR`.
    assert fetch(server, cache_dir, tmp_path / "dest").returncode == 0
    listed = cli("cache", "list", "--cache-dir", str(cache_dir))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(SHA256)
    # Given twice, the one after the action is the one used.
    other = tmp_path / "other"
    both = cli("cache", f"--cache-dir={other}", "list", f"--cache-dir={cache_dir}")
    assert both.stdout.startswith(SHA256)
    assert cli("cache", "--cache-dir", str(other), "list").stdout == ""
    verified = cli("cache", "verify", "--remove", "--cache-dir", str(cache_dir))
    assert verified.returncode == 0 and "\tok\t" in verified.stdout
    cleared = cli("cache", "clear", "--cache-dir", str(cache_dir))
    assert cleared.stderr == "removed 1 entries\n"
    assert cli("cache", "list", "--cache-dir", str(cache_dir)).stdout == ""


def test_an_empty_directory_name_is_a_usage_error(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    fetch_command = ["fetch", server.url("payload.bin"), "--sha256", SHA256]
    for command in (
        [*fetch_command, "--dest", "", "--cache-dir", str(cache_dir)],
        [*fetch_command, "--dest", str(tmp_path / "d"), "--cache-dir", ""],
        ["cache", "--cache-dir", "", "list"],
    ):
        result = cli(*command, cwd=tmp_path)
        assert result.returncode == EXIT_USAGE, result.stderr
        assert "an empty path" in result.stderr
    assert server.count("payload.bin") == 0
    assert sorted(os.listdir(tmp_path)) == []


def test_a_failed_fetch_removes_only_the_empty_directories_it_made(
    cache_dir: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{unused_port()}/payload.bin"
    made = tmp_path / "new" / "deeper" / "dest"
    existing = tmp_path / "existing"
    existing.mkdir()
    for dest in (made, existing, existing / "sub"):
        result = cli(
            "fetch",
            url,
            "--sha256",
            SHA256,
            "--dest",
            str(dest),
            "--cache-dir",
            str(cache_dir),
        )
        assert result.returncode == EXIT_NETWORK, result.stderr
    assert not (tmp_path / "new").exists()
    assert existing.is_dir() and list(existing.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="directory locks: POSIX")
def test_a_failed_fetch_leaves_the_directories_another_fetch_downloads_into(
    tmp_path: Path,
) -> None:
    # Two fetches into one new directory, as a parallel build runs them: the
    # first made it, the second downloads into it, then the first fails. It
    # found the directory empty (a download has no name until it is whole)
    # and removed it, and the second, whose download was good, failed to name
    # its file there.
    made = tmp_path / "new" / "dest"
    second_started, first_failed = threading.Event(), threading.Event()

    def failing_late(exchange: Exchange) -> None:
        second_started.wait(60)
        exchange.respond(404, b"no such file")

    def held(exchange: Exchange) -> None:
        exchange.send_head(200, {"Content-Length": str(len(PAYLOAD))})
        exchange.send(PAYLOAD[:1000])
        second_started.set()
        first_failed.wait(60)
        exchange.send(PAYLOAD[1000:])

    def fetch_into_made(url: str, cache: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*PYTHON_CLI, "fetch", url, "--sha256", SHA256, "--dest", str(made),
             "--cache-dir", str(tmp_path / cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    with LoopbackServer() as server:
        server.route("/missing.bin", failing_late)
        server.route("/held.bin", held)
        first = fetch_into_made(server.url("/missing.bin"), "c1")
        children = [first]
        try:
            deadline = time.monotonic() + 60
            while not server.requests("/missing.bin"):  # it made the directory
                assert time.monotonic() < deadline and first.poll() is None
                time.sleep(0.01)
            second = fetch_into_made(server.url("/held.bin"), "c2")
            children.append(second)
            _, first_stderr = first.communicate(timeout=120)
            first_failed.set()
            stdout, stderr = second.communicate(timeout=120)
        finally:
            second_started.set()
            first_failed.set()
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.communicate()
    assert first.returncode != 0 and "404" in first_stderr
    assert second.returncode == 0, stderr
    assert Path(stdout.strip()) == made / "held.bin"
    assert (made / "held.bin").read_bytes() == PAYLOAD


def test_a_failed_fetch_removes_the_directories_of_a_dest_with_dot_dot(
    cache_dir: Path, tmp_path: Path
) -> None:
    # The path as written makes `a` and `b` beside it: both go again. A
    # directory `../kept`, there before, stays (it was not made).
    (tmp_path / "kept").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    url = f"http://127.0.0.1:{unused_port()}/payload.bin"
    for dest in ("a/../b/dest", "c/../../kept"):
        result = cli(
            "fetch", url, "--sha256", SHA256, "--dest", dest,
            "--cache-dir", str(cache_dir), cwd=work,
        )  # fmt: skip
        assert result.returncode == EXIT_NETWORK, result.stderr
    assert sorted(os.listdir(work)) == []
    assert (tmp_path / "kept").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="flock: POSIX")
def test_lock_timeout_bounds_the_wait_for_another_process(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    import fcntl

    locks = cache_dir / "locks"
    locks.mkdir(parents=True)
    fd = os.open(locks / f"{SHA256}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = fetch(server, cache_dir, tmp_path / "d", "--lock-timeout", "0.5")
        waited = fetch(server, cache_dir, tmp_path / "d", "--lock-timeout", "2.5")
    finally:
        os.close(fd)
    assert result.returncode == 1, result.stderr
    assert f"held the lock of {SHA256} for over 0.5 s" in result.stderr
    assert "waiting" not in result.stderr  # no word before 2 s
    # A longer wait says so without -v: the command does not seem to hang.
    assert waited.returncode == 1
    assert f"waiting for {SHA256}, locked by another process" in waited.stderr
    assert server.count("payload.bin") == 0
    # Released: a fetch that may wait for ever goes through.
    again = fetch(server, cache_dir, tmp_path / "d", "--lock-timeout", "inf")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be more than 0"),
        ("-1", "must be more than 0"),
        ("nan", "must be more than 0"),
        ("soon", "not a number of seconds"),
        ("1_0", "not a number of seconds"),
        ("\uff11", "not a number of seconds"),  # a fullwidth 1
    ],
)
def test_a_bad_lock_timeout_is_a_usage_error(
    value: str, message: str, cache_dir: Path
) -> None:
    result = cli(
        "fetch",
        "http://127.0.0.1:1/x",
        "--sha256",
        SHA256,
        "--cache-dir",
        str(cache_dir),
        f"--lock-timeout={value}",
    )
    assert result.returncode == EXIT_USAGE
    assert f"argument --lock-timeout: {message}" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is no signal to catch")
@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", signal.SIGTERM)],
)
def test_a_fetch_ended_by_a_signal_leaves_nothing(
    tmp_path: Path, signum: signal.Signals
) -> None:
    # What `timeout`, `kill` and a cancelled CI job send (SIGTERM) cleans up as
    # Ctrl-C (SIGINT) does: the directories the fetch made go again.
    with LoopbackServer() as server:
        server.route("/slow.bin", trickling)
        made = tmp_path / "new" / "dest"
        child = subprocess.Popen(
            [
                *PYTHON_CLI_SIGNALS_DEFAULT,
                "fetch",
                server.url("/slow.bin"),
                "--sha256",
                SHA256,
                "--dest",
                str(made),
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_the_body(server, child)
            child.send_signal(signum)
            _, stderr = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    expected = {
        signal.SIGTERM: (143, "terminated"),
        signal.SIGINT: (130, "interrupted"),
        getattr(signal, "SIGHUP", signal.SIGTERM): (129, "hung up"),  # terminal
    }[signum]
    assert (child.returncode, stderr.strip().rsplit(": ", 1)[-1]) == expected
    assert not (tmp_path / "new").exists()


def wait_for_the_body(
    server: LoopbackServer, child: subprocess.Popen[str], seconds: float = 60
) -> None:
    """Wait until *server* has sent body bytes to *child*, still running."""
    deadline = time.monotonic() + seconds
    while not any(e.body_sent for e in server.exchanges):
        assert time.monotonic() < deadline, "the body never started"
        assert child.poll() is None, child.communicate()
        time.sleep(0.01)


def trickling(exchange: Exchange) -> None:
    exchange.send_head(200, {"Content-Length": str(len(PAYLOAD))})
    exchange.trickle(PAYLOAD, every=0.05)


def test_cache_list_shows_a_size_just_under_a_mebibyte_as_one(tmp_path: Path) -> None:
    # 1,048,575 bytes round to 1024.0 KiB: shown as the MiB it rounds to.
    content = b"x" * ((1 << 20) - 1)
    served = DemoServer({"almost.bin": content})
    try:
        fetched = cli(
            "fetch",
            served.url("almost.bin"),
            "--sha256",
            hashlib.sha256(content).hexdigest(),
            "--dest",
            str(tmp_path / "dest"),
            "--cache-dir",
            str(tmp_path / "cache"),
        )
    finally:
        served.stop()
    assert fetched.returncode == 0, fetched.stderr
    listing = cli("cache", "--cache-dir", str(tmp_path / "cache"), "list")
    assert "1.0 MiB" in listing.stdout and "1024.0 KiB" not in listing.stdout


def cut_then_resumed(exchange: Exchange) -> None:
    """The first answer stops after a quarter of PAYLOAD, once its bar is
    drawn; a Range request gets the rest."""
    if partial(exchange, PAYLOAD):
        return
    exchange.send_head(
        200,
        {"Content-Length": str(len(PAYLOAD)), "Accept-Ranges": "bytes", "ETag": '"v1"'},
    )
    exchange.send(PAYLOAD[: len(PAYLOAD) // 4])
    exchange.sleep(0.5)


def screen_lines(drawn: str) -> list[str]:
    """The lines a terminal shows of *drawn*: a carriage return goes back to
    the start of the line, and what follows writes over it."""
    lines: list[list[str]] = [[]]
    column = 0
    for character in drawn:
        if character == "\n":
            lines.append([])
            column = 0
        elif character == "\r":
            column = 0
        else:
            line = lines[-1]
            if column < len(line):
                line[column] = character
            else:
                line.append(character)
            column += 1
    return ["".join(line).rstrip() for line in lines]


@pytest.mark.skipif(sys.platform == "win32", reason="no pseudo-terminals")
def test_verbose_log_lines_are_not_written_after_the_progress_bar(
    tmp_path: Path,
) -> None:
    fcntl = pytest.importorskip("fcntl")
    termios = pytest.importorskip("termios")
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    drawn: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal side is closed and drained
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        with LoopbackServer() as server:
            server.route("/payload.bin", cut_then_resumed)
            result = subprocess.run(
                [
                    *PYTHON_CLI,
                    "-v",
                    "fetch",
                    server.url("/payload.bin"),
                    "--sha256",
                    SHA256,
                    "--dest",
                    str(tmp_path / "dest"),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                ],
                stdout=subprocess.PIPE,
                stderr=terminal,
                text=True,
                timeout=120,
                check=False,
            )
    finally:
        os.close(terminal)
        reader.join(60)
        os.close(controller)
    assert result.returncode == 0
    lines = screen_lines(b"".join(drawn).decode("utf-8", "replace"))
    logged = [line for line in lines if "e3-typed-store: " in line]
    assert any("WARNING: " in line and "retry 1 of" in line for line in logged)
    assert any("INFO: resuming" in line for line in logged)
    assert any("payload.bin: 100%" in line for line in lines)  # the bar was drawn
    # Each log line starts a line of its own: none is drawn after a bar.
    assert all(line.startswith("e3-typed-store: ") for line in logged), lines


def in_shell(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command line from a shell that applies *redirect* to it
    (``>&-`` closes its stdout, ``2>&-`` its stderr)."""
    return subprocess.run(
        ["sh", "-c", f'exec "$0" "$@" {redirect}', *PYTHON_CLI, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def fetch_in_shell(
    redirect: str, server: DemoServer, cache_dir: Path, dest: Path
) -> subprocess.CompletedProcess[str]:
    """Fetch payload.bin into *dest* from a shell that applies *redirect*."""
    return in_shell(
        redirect,
        "fetch", server.url("payload.bin"), "--sha256", SHA256,
        "--cache-dir", str(cache_dir), "--dest", str(dest),
    )  # fmt: skip


def test_with_stderr_closed_stdout_holds_results_only(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    # `path=$(e3-typed-store fetch ... 2>&-)` must not read an error as a path.
    refused = in_shell("2>&-", "fetch", server.url("payload.bin"), "--sha256", "00")
    assert (refused.returncode, refused.stdout) == (EXIT_BAD_QUERY, "")
    # A usage error too: argparse wrote its usage on stdout.
    for usage_error in (["fetch", server.url("payload.bin")], ["cache", "nope"], []):
        misused = in_shell("2>&-", *usage_error)
        assert (misused.returncode, misused.stdout) == (EXIT_USAGE, ""), usage_error
    common = ["--cache-dir", str(cache_dir)]
    fetched = fetch_in_shell("2>&-", server, cache_dir, tmp_path / "dest")
    assert fetched.returncode == 0
    assert fetched.stdout == f"{tmp_path / 'dest' / 'payload.bin'}\n"
    listed = in_shell("2>&-", "cache", *common, "list")
    assert listed.returncode == 0
    assert len(listed.stdout.splitlines()) == 1  # the entry; not the total
    cleared = in_shell("2>&-", "cache", *common, "clear")
    assert (cleared.returncode, cleared.stdout) == (0, "")


def test_output_whose_reader_went_away_ends_quietly(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    assert fetch(server, cache_dir, tmp_path / "dest").returncode == 0
    child = subprocess.Popen(
        [*PYTHON_CLI, "cache", "--cache-dir", str(cache_dir), "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.close()  # as `| head -0` does, before the listing is written
    _, stderr = child.communicate(timeout=120)
    # As a shell reports a process that SIGPIPE ended; nothing said.
    assert (child.returncode, stderr) == (141, "")


def test_output_that_cannot_be_written_is_an_error_that_says_so(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [
                *PYTHON_CLI,
                "fetch",
                server.url("payload.bin"),
                "--sha256",
                SHA256,
                "--cache-dir",
                str(cache_dir),
                "--dest",
                str(tmp_path / "dest"),
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr == (
        "e3-typed-store: error: cannot write the output:"
        " [Errno 28] No space left on device\n"
    )
    # The fetch itself was done: the resource is in place.
    assert (tmp_path / "dest" / "payload.bin").read_bytes() == PAYLOAD


@pytest.mark.skipif(os.name != "posix", reason="a shell closes stdout")
def test_a_closed_stdout_is_an_error_when_there_is_a_result(
    server: DemoServer, cache_dir: Path, tmp_path: Path
) -> None:
    # `e3-typed-store fetch ... >&-`: the path printed is lost, and the
    # command says so as a shell's own `echo` does, instead of exiting 0.
    common = ["--cache-dir", str(cache_dir)]
    fetched = fetch_in_shell(">&-", server, cache_dir, tmp_path / "dest")
    assert fetched.returncode == 1
    assert fetched.stderr == (
        "e3-typed-store: error: cannot write the output:"
        " [Errno 9] standard output is closed\n"
    )
    assert (tmp_path / "dest" / "payload.bin").read_bytes() == PAYLOAD  # done
    # Every entry is verified and the bad ones removed all the same: the
    # first result lost does not stop the work.
    other = in_shell(
        ">&-",
        "fetch", server.url("other.bin"), "--sha256", hashlib.sha256(OTHER).hexdigest(),
        *common, "--dest", str(tmp_path / "dest"),
    )  # fmt: skip
    assert other.returncode == 1
    for copy in (cache_dir / "resources").glob("*/payload/*.bin"):
        copy.write_bytes(b"corrupted")
    verified = in_shell(">&-", "cache", *common, "verify", "--remove")
    assert verified.returncode == 1
    assert "standard output is closed" in verified.stderr
    assert cli("cache", *common, "list").stdout == ""  # both removed
    # A command whose results go to stderr (its totals) has nothing to lose.
    assert fetch(server, cache_dir, tmp_path / "again").returncode == 0
    cleared = in_shell(">&-", "cache", *common, "clear")
    assert (cleared.returncode, cleared.stderr) == (0, "removed 1 entries\n")


@pytest.mark.skipif(os.name != "posix", reason="a shell closes stdout")
def test_the_demo_with_a_closed_stdout_says_its_report_was_lost() -> None:
    done = in_shell(">&-", "demo", "--processes", "1")
    assert (done.returncode, done.stderr) == (
        1,
        "e3-typed-store: error: cannot write the output:"
        " [Errno 9] standard output is closed\n",
    )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is *pid* (from /proc)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def ignores_sigint(pid: int) -> bool:
    """Whether process *pid* ignores SIGINT (its SigIgn mask, from /proc)."""
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_ctrl_c_during_the_demos_processes_is_one_line() -> None:
    # Ctrl-C reaches the whole process group of a terminal: the demo and its
    # workers. The demo says it was interrupted; the workers say nothing.
    demo = subprocess.Popen(
        [*PYTHON_CLI_SIGNALS_DEFAULT, "demo", "--processes", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(workers := children_of(demo.pid)) < 8:
            assert demo.poll() is None, demo.communicate()
            assert time.monotonic() < deadline, "the demo started no workers"
            time.sleep(0.01)
        # Each ignores SIGINT from its start: none can print anything for it.
        assert all(ignores_sigint(worker) for worker in workers)
        # Past the milliseconds in which the demo starts them, and ignores
        # Ctrl-C itself.
        time.sleep(0.2)
        os.killpg(demo.pid, signal.SIGINT)
        _, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate()  # reaped, its pipes closed
    assert demo.returncode == 130
    assert stderr == "e3-typed-store: error: interrupted\n"


def pausing(exchange: Exchange) -> None:
    exchange.send_head(200, {"Content-Length": str(len(PAYLOAD))})
    exchange.send(PAYLOAD[:1000])
    exchange.sleep(1.0)
    exchange.send(PAYLOAD[1000:])


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP")
def test_a_fetch_under_nohup_goes_on_past_a_hangup(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        server.route("/paused.bin", pausing)
        child = subprocess.Popen(
            [
                *("sh", "-c", 'trap "" HUP; exec "$0" "$@"', *PYTHON_CLI, "fetch"),
                *(server.url("/paused.bin"), "--sha256", SHA256),
                *("--dest", str(tmp_path / "dest"), "--cache-dir", str(tmp_path / "c")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_the_body(server, child)
            child.send_signal(signal.SIGHUP)
            stdout, stderr = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert child.returncode == 0, stderr
    assert Path(stdout.strip()).read_bytes() == PAYLOAD


def test_an_error_is_reported_by_its_status_when_stderr_cannot_be_written(
    tmp_path: Path,
) -> None:
    # stderr on a full disk (or a terminal gone, EIO): the message is lost,
    # the exit status is not.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*PYTHON_CLI, "fetch", "http://127.0.0.1:1/x", "--sha256", "00"],
            stdout=subprocess.PIPE,
            stderr=full,
            text=True,
            check=False,
            timeout=120,
            cwd=tmp_path,
        )
    assert (result.returncode, result.stdout) == (EXIT_BAD_QUERY, "")


def test_a_fetch_interrupted_while_making_its_dest_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for a signal that lands between two of the directories made
    # (a window of microseconds, wider on a slow file system): Ctrl-C before
    # the third.
    real_mkdir = os.mkdir
    made: list[str] = []

    def mkdir_then_interrupted(path: str, *args: int) -> None:
        if len(made) == 2:
            raise KeyboardInterrupt
        real_mkdir(path, *args)
        made.append(path)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "mkdir", mkdir_then_interrupted)
    cache = str(tmp_path / "cache")
    url = "http://127.0.0.1:1/x"
    code = main(
        ["fetch", url, "--sha256", SHA256, "--dest", "a/b/c", "--cache-dir", cache]
    )
    assert code == 130
    assert made == ["a", "a/b"]
    assert not (tmp_path / "a").exists()


def fetch_from(
    url: str, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return cli(
        "fetch",
        url,
        "--sha256",
        SHA256,
        "--dest",
        str(tmp_path / "dest"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        *extra,
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--retries=-1", "argument --retries: must be at least 0, not -1"),
        ("--retries=x", "argument --retries: not a whole number: 'x'"),
        ("--retries=1_0", "argument --retries: not a whole number: '1_0'"),
        ("--retries=\u0663", "argument --retries: not a whole number: '\u0663'"),
        ("--deadline=6_0", "argument --deadline: not a number of seconds: '6_0'"),
        ("--retries=101", "argument --retries: 101: must be in [0, 100]"),
        ("--deadline=0", "argument --deadline: must be more than 0, not '0'"),
        ("--deadline=inf", "argument --deadline: must be finite, not 'inf'"),
        ("--deadline=Infinity", "argument --deadline: must be finite, not 'Infinity'"),
        (
            "--mirror=ftp://m.example/",
            "argument --mirror: 'ftp://m.example/': expected an http or https URL",
        ),
        (
            "--mirror=http://user:secret@[::1/",
            "argument --mirror: 'http://user:***@[::1/': malformed URL",
        ),
    ],
)
def test_a_bad_transfer_option_is_a_usage_error(
    option: str, message: str, tmp_path: Path
) -> None:
    result = fetch_from("http://127.0.0.1:1/x", tmp_path, option)
    assert result.returncode == EXIT_USAGE
    assert f"e3-typed-store fetch: error: {message}" in result.stderr
    assert "secret" not in result.stderr
    assert not (tmp_path / "cache").exists()


def failing_once(exchanges: list[Exchange]) -> Callable[[Exchange], None]:
    """A handler that answers 503 the first time, then the payload."""

    def handle(exchange: Exchange) -> None:
        exchanges.append(exchange)
        if len(exchanges) == 1:
            exchange.respond(503, b"busy\n")
        else:
            exchange.respond(200, PAYLOAD)

    return handle


@pytest.mark.parametrize(("retries", "code"), [("0", EXIT_NETWORK), ("1", 0)])
def test_retries_bounds_the_attempts_after_a_transient_failure(
    tmp_path: Path, retries: str, code: int
) -> None:
    seen: list[Exchange] = []
    with LoopbackServer() as server:
        server.route("/payload.bin", failing_once(seen))
        result = fetch_from(server.url("/payload.bin"), tmp_path, "--retries", retries)
    assert result.returncode == code, result.stderr
    assert len(seen) == int(retries) + 1
    if code:
        assert "HTTP status 503" in result.stderr
    else:
        assert (tmp_path / "dest" / "payload.bin").read_bytes() == PAYLOAD


def test_deadline_bounds_a_download_that_trickles(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        server.route("/payload.bin", trickling)  # 40 minutes of it
        result = fetch_from(server.url("/payload.bin"), tmp_path, "--deadline", "1")
    assert result.returncode == EXIT_NETWORK, result.stderr
    assert "not complete within the 1 s deadline" in result.stderr
    assert not (tmp_path / "dest").exists()  # made for the fetch, removed with it


def test_mirrors_are_tried_in_order_before_the_url(tmp_path: Path) -> None:
    empty = DemoServer({})
    mirror = DemoServer({"payload.bin": PAYLOAD})
    origin = DemoServer({"payload.bin": PAYLOAD})
    try:
        result = fetch_from(
            origin.url("payload.bin"),
            tmp_path,
            "--mirror",
            empty.url(""),
            "--mirror",
            mirror.url(""),
        )
        assert result.returncode == 0, result.stderr
        assert Path(result.stdout.strip()).read_bytes() == PAYLOAD
        assert (empty.count("payload.bin"), mirror.count("payload.bin")) == (1, 1)
        assert origin.count("payload.bin") == 0
    finally:
        for server in (empty, mirror, origin):
            server.stop()


def test_an_error_shows_a_path_as_it_is_with_no_control_character(
    server: DemoServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    # An escape sequence would reach the terminal; two spaces are the path's.
    dest = blocker / "red\x1b[31m  two\u202eowt"
    result = fetch(server, tmp_path / "cache", dest)
    assert result.returncode == EXIT_DESTINATION, result.stderr
    assert result.stderr.count("\n") == 1
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    assert f"{blocker}{os.sep}red\\x1b[31m  two\\u202eowt" in result.stderr
