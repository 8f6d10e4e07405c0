"""Host names and the deadline: a name server that never answers.

The system's resolver cannot be woken, so a new connection's host name is
resolved first in a helper thread and waited for only until the deadline.
These tests run a download in a child process with a mount namespace of its
own, where ``/etc/resolv.conf`` names a loopback name server of the test's and
``/etc/hosts`` names a loopback server: Linux and root (``unshare``,
``mount``, a socket on port 53); skipped otherwise, saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.httpserver import LoopbackServer

CONTENT = b"resolved by name\n" * 1000
SHA256 = hashlib.sha256(CONTENT).hexdigest()
NAME_SERVER = "127.0.0.77"

# Run in the child: one download, its outcome as JSON on standard output.
CHILD = """
import json, sys, time
from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
url, sha256, dest, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
store = HTTPSimpleStore({"progress": False, "retries": 0, "deadline": deadline}, None)
info = store.get_resource_metadata({"url": url, "sha256": sha256})
start = time.monotonic()
try:
    outcome = {"path": store.download_resource_content(info, dest)}
except Exception as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
outcome["seconds"] = time.monotonic() - start
print(json.dumps(outcome))
"""

#: The resolver's timeout in the child: without a bound of its own, a
#: download would wait that long for a name server that does not answer.
RESOLVER_TIMEOUT = 30


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "mount namespaces are Linux's"
    if os.geteuid() != 0:
        return "a mount namespace and port 53 need root"
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    return None


@pytest.fixture
def silent_name_server() -> Iterator[None]:
    """A name server on loopback that reads nothing and answers nothing."""
    why_not = _why_not()
    if why_not is not None:
        pytest.skip(why_not)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((NAME_SERVER, 53))
        except OSError as exc:
            pytest.skip(f"cannot listen on {NAME_SERVER}:53: {exc}")
        yield


def download(
    tmp_path: Path, url: str, hosts: str, name_server: str, deadline: float
) -> dict[str, str | float]:
    """Run one download in a child whose /etc/hosts and resolver are these."""
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(hosts, encoding="utf-8")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        f"nameserver {name_server}\noptions timeout:{RESOLVER_TIMEOUT} attempts:1\n",
        encoding="utf-8",
    )
    script = (
        f"mount --bind {hosts_file} /etc/hosts"
        f" && mount --bind {resolv} /etc/resolv.conf"
        ' && exec "$0" -c "$1" "$2" "$3" "$4" "$5"'
    )
    dest = tmp_path / "dest"
    child = subprocess.run(
        [
            *("unshare", "--mount", "sh", "-c", script, sys.executable, CHILD),
            *(url, SHA256, str(dest), str(deadline)),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if child.returncode != 0 and "mount" in child.stderr:
        pytest.skip(f"cannot make a mount namespace: {child.stderr.strip()}")
    assert child.returncode == 0, child.stderr
    outcome: dict[str, str | float] = json.loads(child.stdout.strip().splitlines()[-1])
    return outcome


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        running.route("/r.bin", lambda exchange: exchange.respond(200, CONTENT))
        yield running


@pytest.mark.usefixtures("silent_name_server")
def test_a_name_server_that_never_answers_ends_at_the_deadline(
    tmp_path: Path, server: LoopbackServer
) -> None:
    port = server.port
    outcome = download(
        tmp_path,
        f"http://unanswered.test:{port}/r.bin",
        hosts="127.0.0.1 localhost\n",
        name_server=NAME_SERVER,
        deadline=1.0,
    )
    assert outcome.get("error") == "DeadlineExceededError", outcome
    # Cut near the deadline (1 s), not when the resolver gave up: the error
    # would be a DeadlineExceededError then too, the deadline being long past.
    seconds = outcome["seconds"]
    assert isinstance(seconds, float) and seconds < RESOLVER_TIMEOUT / 2, outcome
    assert server.requests() == []
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


@pytest.mark.usefixtures("silent_name_server")
def test_a_name_resolved_in_time_is_downloaded_from(
    tmp_path: Path, server: LoopbackServer
) -> None:
    # Resolved by /etc/hosts: the helper thread's answer comes back at once,
    # and the connection's own resolution finds the same.
    port = server.port
    outcome = download(
        tmp_path,
        f"http://mirror.test:{port}/r.bin",
        hosts="127.0.0.1 localhost mirror.test\n",
        name_server=NAME_SERVER,
        deadline=30.0,
    )
    path = outcome.get("path")
    assert isinstance(path, str), outcome
    assert Path(path).read_bytes() == CONTENT
    (request,) = server.requests("/r.bin")
    assert request.headers["host"] == f"mirror.test:{port}"


def test_a_name_that_cannot_be_resolved_fails_at_once_not_at_the_deadline(
    tmp_path: Path,
) -> None:
    why_not = _why_not()
    if why_not is not None:
        pytest.skip(why_not)
    # Nothing listens on this name server: the resolver is refused at once.
    outcome = download(
        tmp_path,
        "http://nowhere.test:8/r.bin",
        hosts="127.0.0.1 localhost\n",
        name_server="127.0.0.78",
        deadline=60.0,
    )
    assert outcome.get("error") == "DownloadError", outcome
    assert "nowhere.test" in str(outcome["message"])
