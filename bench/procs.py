"""Measurements that need fresh processes: imports, concurrency, runtime checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.data import DataFile
from bench.fetch import file_sha256
from bench.server import Server
from bench.timing import Contender, Sample, round_robin

__all__ = [
    "BEARTYPE_OFF",
    "BEARTYPE_ON",
    "CLI_HIT",
    "CLI_NAMES",
    "CONCURRENT_NAMES",
    "IMPORT_NAMES",
    "ConcurrencyResult",
    "cli_hit",
    "concurrency",
    "http_stack",
    "import_times",
    "importtime_top",
    "runtime_checks",
    "worker_env",
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS_VARIABLE = "E3_TYPED_STORE_RUNTIME_CHECKS"

OURS_MODULE = "e3_typed_store.backends.base"
E3_MODULE = "e3.store.backends.base"
IMPORT_BARE = "python -c pass (interpreter start)"
IMPORT_NAMES = {
    "ours_wall": f"import {OURS_MODULE} (wall)",
    "e3_wall": f"import {E3_MODULE} (wall)",
    "ours_it": f"import {OURS_MODULE} (-X importtime)",
    "e3_it": f"import {E3_MODULE} (-X importtime)",
}
CONCURRENT_NAMES = {
    "ours": "8 processes, one resource: e3-typed-store",
    "e3": "8 processes, one resource: e3-core",
}
BEARTYPE_OFF = "stat-trusted hit loop, runtime checks off"
BEARTYPE_ON = "stat-trusted hit loop, beartype on"
CLI_HIT = "CLI whole-process cache hit"
CLI_NAMES = {
    "ours": f"{CLI_HIT}: e3-typed-store fetch (verified)",
    "ours_fast": f"{CLI_HIT}: e3-typed-store fetch --trust-unchanged",
    "e3": f"{CLI_HIT}: e3-core one-liner (load_store + download_resource)",
    "bare": "python -c pass (interpreter start)",
}


def worker_env(checks: bool = False) -> dict[str, str]:
    """The environment of a subprocess: this repository importable, checks as asked.

    ``PYTHONDONTWRITEBYTECODE`` is dropped: with it, a module whose bytecode
    was never cached (this repository's, in a fresh clone) is compiled from
    source in every timed process, while e3-core's installed bytecode is read,
    and the import and whole-process figures would compare a compiler with a
    loader.
    """
    dropped = {CHECKS_VARIABLE, "PYTHONDONTWRITEBYTECODE"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p
    )
    if checks:
        env[CHECKS_VARIABLE] = "1"
    return env


def _worker(
    *args: str, checks: bool = False, timeout: float = 300
) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", *args],
        capture_output=True,
        text=True,
        env=worker_env(checks),
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {args[0]} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
        )
    result: dict[str, object] = json.loads(lines[-1])
    return result


# --- import time ------------------------------------------------------------


def _parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """Return (name, level, self_us, cumulative_us) for each ``-X importtime`` line."""
    rows: list[tuple[str, int, int, int]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        first, cumulative, name = line.split("|", 2)
        self_us = first.removeprefix("import time:")
        raw = name[1:] if name.startswith(" ") else name
        level = (len(raw) - len(raw.lstrip(" "))) // 2
        rows.append((raw.strip(), level, int(self_us), int(cumulative)))
    return rows


def _python(code: str, importtime: bool) -> tuple[float, str]:
    command = [
        sys.executable,
        *(["-X", "importtime"] if importtime else []),
        "-c",
        code,
    ]
    start = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=worker_env(),
        cwd=tempfile.gettempdir(),
        timeout=60,
        check=True,
    )
    return time.perf_counter() - start, done.stderr


def _bare_top_level() -> set[str]:
    _, stderr = _python("pass", importtime=True)
    return {name for name, level, _, _ in _parse_importtime(stderr) if level == 0}


def _import_cost(module: str, bare: set[str]) -> float:
    """Seconds of cumulative import time of *module* beyond interpreter start."""
    _, stderr = _python(f"import {module}", importtime=True)
    total = sum(
        cumulative
        for name, level, _, cumulative in _parse_importtime(stderr)
        if level == 0 and name not in bare
    )
    return total / 1e6


def importtime_top(module: str, count: int = 12) -> list[tuple[str, int, int]]:
    """The modules with the largest self import time when importing *module*."""
    _, stderr = _python(f"import {module}", importtime=True)
    rows = [(name, s, c) for name, _, s, c in _parse_importtime(stderr)]
    return sorted(rows, key=lambda row: row[1], reverse=True)[:count]


def import_times(reps: int, progress: Callable[[str], None]) -> dict[str, Sample]:
    bare = _bare_top_level()
    for module in (OURS_MODULE, E3_MODULE):  # compile the bytecode, untimed
        _python(f"import {module}", importtime=False)

    def wall(code: str) -> Callable[[], float]:
        return lambda: _python(code, importtime=False)[0]

    contenders = [
        Contender(IMPORT_BARE, wall("pass")),
        Contender(IMPORT_NAMES["ours_wall"], wall(f"import {OURS_MODULE}")),
        Contender(IMPORT_NAMES["e3_wall"], wall(f"import {E3_MODULE}")),
        Contender(IMPORT_NAMES["ours_it"], lambda: _import_cost(OURS_MODULE, bare)),
        Contender(IMPORT_NAMES["e3_it"], lambda: _import_cost(E3_MODULE, bare)),
    ]
    return round_robin(contenders, reps, progress, warmup=False)


# --- eight processes, one resource ----------------------------------------------


@dataclass
class ConcurrencyResult:
    seconds: list[float] = field(default_factory=list)
    gets: list[int] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    #: For each run, when each process had its file (seconds after the go), sorted.
    finish: list[list[float]] = field(default_factory=list)


def _one_concurrent_run(
    impl: str, server: Server, data: DataFile, work: str, procs: int
) -> tuple[float, int, int, list[str], list[float]]:
    root = tempfile.mkdtemp(prefix=f"concurrent-{impl}.", dir=work)
    cache = os.path.join(root, "cache")
    url = server.url(data.name)
    workers: list[subprocess.Popen[str]] = []
    try:
        for index in range(procs):
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.worker",
                        "concurrent",
                        impl,
                        url,
                        data.sha256,
                        data.sha1,
                        cache,
                        os.path.join(root, f"dest{index}"),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=worker_env(),
                )
            )
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                worker.kill()
                _, stderr = worker.communicate(timeout=30)
                raise RuntimeError(
                    f"a {impl} worker did not start: {stderr.strip()[-300:]}"
                )
        before = server.count_gets(data.name)
        start = time.perf_counter()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results: list[dict[str, object]] = []
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            results.append(json.loads(line) if line.strip() else {"error": "no result"})
        elapsed = time.perf_counter() - start
        for worker in workers:
            worker.wait(timeout=60)
        time.sleep(0.05)  # let the server finish its log lines
        gets = server.count_gets(data.name) - before
        bad = 0
        errors: list[str] = []
        for result in results:
            path = result.get("path")
            if result.get("error"):
                errors.append(str(result["error"]))
            if not isinstance(path, str) or file_sha256(path) != data.sha256:
                bad += 1
        finish = sorted(
            float(seconds)
            for result in results
            if isinstance(seconds := result.get("seconds"), (int, float))
        )
        return elapsed, gets, bad, errors, finish
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
            for stream in (worker.stdin, worker.stdout, worker.stderr):
                if stream is not None:
                    stream.close()
        shutil.rmtree(root, ignore_errors=True)


def concurrency(
    server: Server,
    data: DataFile,
    work: str,
    reps: int,
    procs: int,
    progress: Callable[[str], None],
) -> dict[str, ConcurrencyResult]:
    """Run *procs* processes fetching *data* at once with a fresh shared cache,
    alternating implementations repetition by repetition.
    """
    results = {impl: ConcurrencyResult() for impl in ("ours", "e3")}
    for rep in range(reps):
        order = ["ours", "e3"] if rep % 2 == 0 else ["e3", "ours"]
        for impl in order:
            result = results[impl]
            if result.skipped is not None:
                continue
            try:
                elapsed, gets, bad, errors, finish = _one_concurrent_run(
                    impl, server, data, work, procs
                )
            except (
                OSError,
                ValueError,
                RuntimeError,
                subprocess.SubprocessError,
            ) as exc:
                result.skipped = f"FAILED: {exc}"
                progress(f"{CONCURRENT_NAMES[impl]}: {result.skipped}")
                continue
            result.seconds.append(elapsed)
            result.gets.append(gets)
            result.bad.append(bad)
            result.errors.extend(errors)
            result.finish.append(finish)
        progress(f"concurrency rep {rep + 1}/{reps} done")
    return results


# --- runtime checks on/off --------------------------------------------------------


def runtime_checks(
    server: Server,
    data: DataFile,
    work: str,
    reps: int,
    ops: int,
    progress: Callable[[str], None],
) -> dict[str, Sample]:
    url = server.url(data.name)

    def loop(checks: bool) -> Callable[[], float]:
        def run() -> float:
            root = tempfile.mkdtemp(prefix="hitloop.", dir=work)
            try:
                result = _worker(
                    "hit-loop",
                    url,
                    data.sha256,
                    os.path.join(root, "cache"),
                    os.path.join(root, "dest"),
                    str(ops),
                    checks=checks,
                )
            finally:
                shutil.rmtree(root, ignore_errors=True)
            if result["runtime_checks"] is not checks:
                raise RuntimeError(f"runtime checks were {result['runtime_checks']}")
            per_op = result["per_op"]
            assert isinstance(per_op, float)
            return per_op

        return run

    return round_robin(
        [Contender(BEARTYPE_OFF, loop(False)), Contender(BEARTYPE_ON, loop(True))],
        reps,
        progress,
        warmup=False,
    )


# --- does a hit import the HTTP stack? ----------------------------------------------


def http_stack(server: Server, data: DataFile, work: str) -> dict[str, object]:
    from bench.fetch import ours_fetcher

    root = tempfile.mkdtemp(prefix="httpstack.", dir=work)
    try:
        cache = os.path.join(root, "cache")
        url = server.url(data.name)
        ours_fetcher(cache, trust=False)(url, data, os.path.join(root, "first"))
        return _worker(
            "http-stack", url, data.sha256, cache, os.path.join(root, "dest")
        )
    except Exception as exc:  # noqa: BLE001 - reported in the results
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the CLI --------------------------------------------------------------------------


def _script(name: str) -> list[str]:
    """The command of a console script installed beside this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(path):
        return [path]
    return [sys.executable, "-m", name.replace("-", "_")]


def cli_hit(
    server: Server,
    data: DataFile,
    work: str,
    reps: int,
    progress: Callable[[str], None],
) -> dict[str, Sample]:
    """Whole processes serving one cache hit: the CLI against an e3-core one-liner.

    Each run is a fresh interpreter that imports what it needs, serves the
    hit (a verified one, and a stat-trusted one for the CLI) into a fresh
    destination and exits; ``python -c pass`` is the floor.
    """
    root = tempfile.mkdtemp(prefix="cli.", dir=work)
    url = server.url(data.name)
    ours_cache = os.path.join(root, "ours-cache")
    e3_cache = os.path.join(root, "e3-cache")
    counter = iter(range(1_000_000))
    cli = _script("e3-typed-store")
    e3_code = (
        "import sys\n"
        "from e3.store import load_store\n"
        "from e3.store.cache import load_cache\n"
        "cache = load_cache('file-cache', {'cache_dir': sys.argv[1]})\n"
        "store = load_store('http-simple-store', {}, cache)\n"
        "info = store.get_resource_metadata({'url': sys.argv[2], 'sha': sys.argv[3]})\n"
        "path = store.download_resource(info, sys.argv[4])\n"
        "print(path)\n"
        "sys.exit(path is None)\n"
    )

    def ours(*extra: str) -> list[str]:
        dest = os.path.join(root, f"dest{next(counter)}")
        return [
            *cli,
            "fetch",
            url,
            "--sha256",
            data.sha256,
            "--dest",
            dest,
            "--cache-dir",
            ours_cache,
            "--no-progress",
            *extra,
        ]

    def e3() -> list[str]:
        dest = os.path.join(root, f"dest{next(counter)}")
        os.makedirs(dest)  # e3-core's download wants an existing directory
        return [sys.executable, "-c", e3_code, e3_cache, url, data.sha1, dest]

    def timed(command: Callable[[], list[str]]) -> Callable[[], float | None]:
        def run() -> float | None:
            argv = command()
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=worker_env(),
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{argv[:3]} failed: {done.stderr.strip()[-400:]}")
            return None

        return run

    try:
        # Fill both caches once: every timed run is then a hit.
        timed(ours)()
        timed(e3)()
        return round_robin(
            [
                Contender(CLI_NAMES["ours"], timed(ours)),
                Contender(
                    CLI_NAMES["ours_fast"], timed(lambda: ours("--trust-unchanged"))
                ),
                Contender(CLI_NAMES["e3"], timed(e3)),
                Contender(
                    CLI_NAMES["bare"], timed(lambda: [sys.executable, "-c", "pass"])
                ),
            ],
            reps,
            progress,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
