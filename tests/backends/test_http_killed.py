"""A process killed in the middle of a download leaves nothing in ``dest``.

A real process, killed with SIGKILL (no handler, no ``finally`` runs) while
the body streams: on Linux the file it was writing has no name until it is
whole (``O_TMPFILE``), so the kill leaves neither a partial file nor a
temporary one in the user's directory, and nothing in the cache. The next
fetch downloads the resource whole.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
from e3_typed_store.cache.backends.filecache import FileCache
from tests.httpserver import Exchange, LoopbackServer

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="unnamed files (O_TMPFILE) and /proc are Linux's"
)

PAYLOAD = os.urandom(1 << 20)
SENT_BEFORE_STALL = 300_000
CHILD = textwrap.dedent(
    """
    import sys
    from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
    from e3_typed_store.cache.backends.filecache import FileCache

    url, sha256, dest, cache_dir = sys.argv[1:]
    store = HTTPSimpleStore(
        {"progress": False, "deadline": 60.0, "read_timeout": 60.0},
        FileCache({"cache_dir": cache_dir}),
    )
    query = {"url": url, "sha256": sha256}
    store.fetch_resource(store.get_resource_metadata(query), dest)
    """
)


def stall_midway(exchange: Exchange) -> None:
    exchange.send_head(200, {"Content-Length": str(len(PAYLOAD))})
    exchange.send(PAYLOAD[:SENT_BEFORE_STALL])
    exchange.sleep(60)  # until the server stops


def bytes_written_into(pid: int, dest: Path) -> int:
    """The size of the file *pid* has open in *dest*, 0 if none yet."""
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
            if target.startswith(f"{dest}/"):
                return os.stat(fd_dir / fd).st_size
        except OSError:
            continue  # closed meanwhile
    return 0


def test_a_killed_download_leaves_nothing_and_the_next_one_is_whole(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "dest"
    cache_dir = tmp_path / "cache"
    sha256 = hashlib.sha256(PAYLOAD).hexdigest()
    with LoopbackServer() as server:
        server.route("/stalls.bin", stall_midway)
        url = server.url("/stalls.bin")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, sha256, str(dest), str(cache_dir)]
        )
        try:
            limit = time.monotonic() + 30
            while bytes_written_into(child.pid, dest) < SENT_BEFORE_STALL:
                assert child.poll() is None, "the child ended before the kill"
                assert time.monotonic() < limit, "the child never wrote the bytes"
                time.sleep(0.02)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        assert os.listdir(dest) == []
        assert not (cache_dir / "entries").exists() or not os.listdir(
            cache_dir / "entries"
        )

        server.route("/stalls.bin", lambda exchange: exchange.respond(200, PAYLOAD))
        store = HTTPSimpleStore(
            {"progress": False}, FileCache({"cache_dir": str(cache_dir)})
        )
        path = store.fetch_resource(
            store.get_resource_metadata({"url": url, "sha256": sha256}), str(dest)
        )
        assert Path(path).read_bytes() == PAYLOAD
        assert sorted(os.listdir(dest)) == [os.path.basename(path)]
