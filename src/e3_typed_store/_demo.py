"""``e3-typed-store demo``: an offline end-to-end run against a loopback server.

Every step states what must hold and checks it; the run succeeds only if all
of them held. Nothing leaves 127.0.0.1 and everything is written to a
temporary directory that is removed at the end.
"""

from __future__ import annotations

import hashlib
import http.server
import multiprocessing
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field

from e3_typed_store._types import override

__all__ = ["DemoServer", "run_demo"]

_PAYLOAD_SIZE = 8 << 20

#: The most processes the demo runs at once: each is a Python interpreter of
#: its own, and the point (one download for all) shows with a handful.
MAX_PROCESSES = 64


@dataclass
class DemoServer:
    """A threaded HTTP server on 127.0.0.1 serving a few named payloads.

    ``hostile`` payloads are sent with ``Content-Disposition`` file names that
    try to escape the destination directory.
    """

    payloads: dict[str, bytes]
    hostile_names: dict[str, str] = field(default_factory=dict[str, str])
    gets: dict[str, int] = field(default_factory=dict[str, int])

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                with server._lock:
                    server.gets[name] = server.gets.get(name, 0) + 1
                body = server.payloads.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                hostile = server.hostile_names.get(name)
                if hostile is not None:
                    self.send_header(
                        "Content-Disposition", f'attachment; filename="{hostile}"'
                    )
                self.end_headers()
                self.wfile.write(body)

            @override
            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        """Return the URL of payload *name*."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/{name}"

    def count(self, name: str) -> int:
        """Return how many GETs payload *name* received."""
        with self._lock:
            return self.gets.get(name, 0)

    def stop(self) -> None:
        """Stop serving and release the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _fetch(
    url: str, sha256: str, cache_dir: str, dest: str, offline: bool = False
) -> str:
    from e3_typed_store.backends.base import StoreOptions
    from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
    from e3_typed_store.cache.backends.filecache import FileCache

    store = HTTPSimpleStore(
        {"progress": False},
        FileCache({"cache_dir": cache_dir}),
        options=StoreOptions(offline=offline),
    )
    return store.fetch_resource(
        store.get_resource_metadata({"url": url, "sha256": sha256}), dest
    )


class _Steps:
    """Run and report steps; remember whether each held."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.failed: list[str] = []
        self.out = out

    def run(self, title: str, step: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            outcome = step()
            held = True
        except AssertionError as exc:
            outcome, held = f"FAILED: {exc}", False
        except Exception as exc:  # noqa: BLE001 - a demo reports, it does not crash
            outcome, held = f"FAILED: {type(exc).__name__}: {exc}", False
        elapsed = (time.perf_counter() - start) * 1000
        self.out(
            f"[{'ok' if held else 'FAIL'}] {title} ({elapsed:.1f} ms)\n      {outcome}"
        )
        if not held:
            self.failed.append(title)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def run_demo(processes: int = 4, out: Callable[[str], None] = print) -> int:
    """Run the demo, print what happened; return 0 only if every step held.

    :param processes: how many processes fetch one resource at once, from 1
        to :data:`MAX_PROCESSES`
    :param out: what writes each line of the report
    :raises ValueError: *processes* is out of that range (checked before
        anything starts)
    """
    from e3_typed_store.errors import OfflineError

    if isinstance(processes, bool) or not 1 <= processes <= MAX_PROCESSES:
        raise ValueError(f"processes: expected 1 to {MAX_PROCESSES}, not {processes!r}")

    rng = random.Random(1)
    payload = rng.randbytes(_PAYLOAD_SIZE)
    shared = rng.randbytes(_PAYLOAD_SIZE // 4)
    hostile = b"a payload served with a hostile file name\n"
    server = DemoServer(
        {"payload.bin": payload, "shared.bin": shared, "download": hostile},
        hostile_names={"download": "../../escaped.sh"},
    )
    work = tempfile.mkdtemp(prefix="e3-typed-store-demo-")
    cache_dir = os.path.join(work, "cache")
    digest = hashlib.sha256(payload).hexdigest()
    url = server.url("payload.bin")
    steps = _Steps(out)
    out(f"loopback server at {url.rsplit('/', 1)[0]}, working in {work}")
    try:

        def cold() -> str:
            path = _fetch(url, digest, cache_dir, os.path.join(work, "dest1"))
            _check(server.count("payload.bin") == 1, "expected one GET")
            _check(_read(path) == payload, "content differs")
            return f"downloaded {len(payload) >> 20} MiB to {path}"

        def hit() -> str:
            path = _fetch(url, digest, cache_dir, os.path.join(work, "dest2"))
            _check(server.count("payload.bin") == 1, "the server was asked again")
            return f"served from the cache into {path}, no request"

        def corrupted() -> str:
            kept = _kept_copy(cache_dir, digest)
            os.unlink(os.path.join(work, "dest1", os.path.basename(kept)))
            os.unlink(os.path.join(work, "dest2", os.path.basename(kept)))
            with open(kept, "r+b") as stream:
                stream.write(b"corrupted!")
            path = _fetch(url, digest, cache_dir, os.path.join(work, "dest3"))
            _check(server.count("payload.bin") == 2, "expected a second GET")
            _check(_read(path) == payload, "content differs")
            return "a corrupted cached copy was detected, discarded and re-fetched"

        def hostile_name() -> str:
            sha = hashlib.sha256(hostile).hexdigest()
            dest = os.path.join(work, "dest4")
            path = _fetch(server.url("download"), sha, cache_dir, dest)
            _check(os.path.dirname(path) == dest, f"{path} is not inside {dest}")
            _check(
                not os.path.exists(os.path.join(work, "escaped.sh")),
                "a file escaped",
            )
            return f"'../../escaped.sh' was saved as {os.path.basename(path)!r} in dest"

        def together() -> str:
            sha = hashlib.sha256(shared).hexdigest()
            context = multiprocessing.get_context("spawn")
            with _workers_deaf_to_ctrl_c():
                # The workers start here; the demo itself hears Ctrl-C again
                # while it waits for them.
                pool = context.Pool(processes)
            with pool:
                jobs = [
                    pool.apply_async(
                        _fetch,
                        (
                            server.url("shared.bin"),
                            sha,
                            cache_dir,
                            os.path.join(work, f"proc{index}"),
                        ),
                    )
                    for index in range(processes)
                ]
                paths = [job.get(timeout=300) for job in jobs]
            _check(server.count("shared.bin") == 1, "downloaded more than once")
            for path in paths:
                _check(_read(path) == shared, f"{path} differs")
            return f"{processes} processes, 1 download, {processes} intact files"

        def offline_miss() -> str:
            missing = hashlib.sha256(b"never served").hexdigest()
            try:
                _fetch(url, missing, cache_dir, os.path.join(work, "dest5"), True)
            except OfflineError as exc:
                _check(server.count("payload.bin") == 2, "the network was used")
                return f"refused without a request: {exc}"
            raise AssertionError("an offline miss did not fail")

        steps.run("cold fetch", cold)
        steps.run("cache hit", hit)
        steps.run("corrupted cached copy", corrupted)
        steps.run("hostile Content-Disposition", hostile_name)
        steps.run(f"{processes} processes fetching at once", together)
        steps.run("offline miss", offline_miss)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if steps.failed:
        out(f"demo FAILED: {', '.join(steps.failed)}")
        return 1
    out("demo OK: every step held")
    return 0


@contextmanager
def _workers_deaf_to_ctrl_c() -> Generator[None]:
    """Start processes that ignore SIGINT within the block.

    Ctrl-C reaches every process of the terminal's group: the workers would
    each print a traceback (while they start, a fatal error), where the demo
    itself says it was interrupted in one line and stops them. An ignored
    signal stays ignored across the exec of a spawned process, and Python then
    installs no handler of its own. (A signal mask would not do: the spawned
    process starts with none.) A Ctrl-C during the block, while the workers
    start (milliseconds each, about a second for 64), is ignored by the demo
    too.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _kept_copy(cache_dir: str, uid: str) -> str:
    payload_dir = os.path.join(cache_dir, "resources", uid, "payload")
    names = [name for name in os.listdir(payload_dir) if not name.startswith(".")]
    _check(len(names) == 1, f"expected one kept copy in {payload_dir}")
    return os.path.join(payload_dir, names[0])
