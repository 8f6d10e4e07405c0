"""Orchestration: ``python -m bench [--smoke] [--reps N] [--out DIR] ...``."""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from types import FrameType

from bench import fetch as f
from bench import native as native_bound
from bench import procs
from bench.analyse import analyse
from bench.cacheops import cache_contenders
from bench.data import make_files
from bench.profiles import profile_misses
from bench.report import Results, load, plot, render_markdown, render_text, save
from bench.server import Server, ensure_tools, start_server
from bench.timing import round_robin

__all__ = ["main"]

REPO = procs.REPO
MiB = 1 << 20


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one repetition, no installs, output to a temp dir (< 30 s)",
    )
    parser.add_argument(
        "--reps", type=int, help="repetitions per figure (default 5; smoke 1)"
    )
    parser.add_argument(
        "--sizes", help="payload sizes in MiB, comma-separated (default 1,64,256)"
    )
    parser.add_argument(
        "--out", help="where to write performance.md and .png (default docs/)"
    )
    parser.add_argument(
        "--server",
        choices=["auto", "nginx", "python"],
        default="auto",
        help="nginx (installed with apt if missing, outside smoke mode), the Python"
        " fallback, or auto: nginx when it can be had",
    )
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument(
        "--cache-ops", type=int, help="calls per cache sample (default 2000)"
    )
    parser.add_argument(
        "--tmp-dir",
        help="scratch directory for payloads and downloads (default: /dev/shm"
        " when it has room, else the system's temporary directory)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: render the page again from the saved results"
        " (bench/results.json, or --results)",
    )
    parser.add_argument(
        "--results",
        help="where the results JSON goes (default bench/results.json; smoke: --out)",
    )
    return parser.parse_args(argv)


def _machine(server: str) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    memory = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("MemTotal"):
                    memory = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                    break
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    commit = (
        subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
        or "?"
    )
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "e3-typed-store": f"{version('e3-typed-store')} (git {commit})",
        "e3-core": version("e3-core"),
        "requests": version("requests"),
        "urllib3": version("urllib3"),
        "server": server,
        "curl": _first_line(["curl", "--version"]),
        "openssl": _first_line(["openssl", "version"]),
        "C compiler (native bound)": _first_line(["cc", "--version"]),
        "pooch": version("pooch"),
        "diskcache": version("diskcache"),
        "beartype": version("beartype"),
        "load average at start (1, 5, 15 min)": _load(),
    }


def _scratch(asked: str | None, payload_bytes: int) -> tuple[str | None, str]:
    """Where the payloads and every file the contenders write go, and a note.

    tmpfs when there is room: the figures are then network, hashing and page
    writes, not the disk's write-back (which, on this kind of virtual disk,
    throttles a fast writer now and then and makes a run's figures bimodal).
    """
    if asked is not None:
        return asked, f"payloads and downloads in {asked} (asked for)."
    shm = "/dev/shm"
    # Room for the payloads, five warm copies of each, and the cold runs.
    needed = 8 * payload_bytes + (1 << 30)
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        if shutil.disk_usage(shm).free > needed:
            return shm, (
                "payloads and downloads in tmpfs (/dev/shm): the figures measure"
                " the network, hashing and page writes, not the disk."
            )
    default = tempfile.gettempdir()
    return None, f"payloads and downloads on the disk ({default}): no room in tmpfs."


def _load() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=10
    )
    return (
        (done.stdout or done.stderr).strip().splitlines()[0]
        if done.returncode == 0
        else "?"
    )


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


_HERE = os.path.dirname(os.path.abspath(__file__))
_RESULTS = os.path.join(_HERE, "results.json")
_ANALYSIS = os.path.join(_HERE, "analysis.md")


def _fetch_reps(reps: int, size: int, smoke: bool) -> int:
    """Repetitions of the fetches of a payload of *size* bytes.

    A small payload's fetch takes milliseconds, and its ratios move the most
    from run to run: up to 8 times *reps* repetitions, as many as keep its
    round about as long as one of 16 MiB.
    """
    if smoke:
        return reps
    return reps * max(1, min(8, (16 << 20) // max(size, 1)))


def _analysis(results: Results) -> str | None:
    """The hand-written findings, for the run they were written about.

    Its first line names that run (``<!-- run: DATE -->``); for another run the
    page says the findings may not match the figures.
    """
    if results.smoke or not os.path.exists(_ANALYSIS):
        return None
    with open(_ANALYSIS, encoding="utf-8") as stream:
        text = stream.read()
    first, _, rest = text.partition("\n")
    stamp = first.removeprefix("<!-- run:").removesuffix("-->").strip()
    if stamp == results.machine["date"]:
        return rest
    return (
        f"> These findings were written for the run of {stamp}; the figures above"
        " come from a later run and may tell otherwise.\n\n" + rest
    )


def _write(results: Results, out_dir: str) -> None:
    print(render_text(results))
    os.makedirs(out_dir, exist_ok=True)
    plot_path = os.path.join(out_dir, "performance.png")
    why_not = plot(results, plot_path)
    if why_not:
        results.notes.append(why_not)
        print(why_not, file=sys.stderr)
    page = os.path.join(out_dir, "performance.md")
    with open(page, "w", encoding="utf-8") as stream:
        stream.write(
            render_markdown(
                results, None if why_not else "performance.png", _analysis(results)
            )
        )
    print(f"wrote {page}" + ("" if why_not else f" and {plot_path}"))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    smoke: bool = args.smoke
    reps: int = args.reps or (1 if smoke else 5)
    if args.sizes:
        sizes = [int(float(s) * MiB) for s in args.sizes.split(",")]
    else:
        sizes = [64 << 10, 1 * MiB] if smoke else [1 * MiB, 64 * MiB, 256 * MiB]
    cache_ops: int = args.cache_ops or (50 if smoke else 2000)
    out_dir: str = args.out or (
        tempfile.mkdtemp(prefix="bench-smoke-out.")
        if smoke
        else os.path.join(REPO, "docs")
    )
    command = "python -m bench" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )

    # A SIGTERM/SIGHUP still runs the finally blocks and atexit hooks below.
    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)

    results_path: str = args.results or (
        os.path.join(out_dir, "results.json") if smoke else _RESULTS
    )
    if args.render_only:
        saved = load(results_path)
        analyse(saved, saved.files[-1])  # ratios and verdicts as this code states them
        _write(saved, out_dir)
        return 0

    started = time.perf_counter()
    notes: list[str] = []
    ensure_tools(install=not smoke and not args.no_install, log=notes)
    for note in notes:
        print(f"setup: {note}", file=sys.stderr)

    base, where = _scratch(args.tmp_dir, sum(sizes))
    tmp = tempfile.mkdtemp(prefix="e3-typed-store-bench.", dir=base)
    atexit.register(shutil.rmtree, tmp, True)
    notes.append(where)
    server: Server | None = None
    native: native_bound.NativeClient | str = "skipped: not started"
    try:
        data_dir = os.path.join(tmp, "www")
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        files = make_files(data_dir, sizes)
        server = start_server(data_dir, tmp, args.server)
        print(f"server: {server.kind} at {server.base_url}", file=sys.stderr)
        no_https = server.tls if isinstance(server.tls, str) else ""
        if isinstance(server.tls, tuple):
            # Trusted as a user trusts a private authority; plain HTTP
            # contenders never read it.
            os.environ["REQUESTS_CA_BUNDLE"] = server.tls[1].path
        else:
            notes.append(f"no HTTPS rows: {no_https}")
        # Built in the system's temporary directory, not in the scratch one:
        # /dev/shm may be mounted noexec.
        built = tempfile.mkdtemp(prefix="e3-typed-store-native.")
        atexit.register(shutil.rmtree, built, True)
        native = native_bound.start(built, server.base_url)
        if isinstance(native, str):
            notes.append(f"native bound {native}")
        results = Results(
            smoke, reps, command, _machine(server.kind), server.kind, files, notes=notes
        )

        for data in files:
            fetch_reps = _fetch_reps(reps, data.size, smoke)
            print(f"fetch {data.label} x {fetch_reps}", file=sys.stderr)
            contenders = f.fetch_contenders(
                server.url(data.name),
                work,
                data,
                server.https_url(data.name),
                no_https,
                native,
            )
            results.fetch[data.label] = round_robin(
                contenders, fetch_reps, _progress, settle=os.sync
            )
        print(f"cache backends, {cache_ops} ops x {reps}", file=sys.stderr)
        results.cache_op_count = cache_ops
        results.cache_ops = round_robin(
            cache_contenders(work, cache_ops), reps, _progress, settle=os.sync
        )
        print("import time", file=sys.stderr)
        # A fresh interpreter per sample is cheap and noisy: many more samples.
        results.imports = procs.import_times(
            1 if smoke else max(3 * reps, 21), _progress
        )
        conc = next((d for d in files if d.size == 64 * MiB), files[-1])
        results.concurrency_label = conc.label
        print(f"8 processes, {conc.label}", file=sys.stderr)
        results.concurrency = procs.concurrency(server, conc, work, reps, 8, _progress)
        print("runtime checks", file=sys.stderr)
        hit_data = files[0]
        results.check_ops = 30 if smoke else 300
        results.checks = procs.runtime_checks(
            server, hit_data, work, reps, results.check_ops, _progress
        )
        results.http_stack = procs.http_stack(server, hit_data, work)
        print("command line: whole-process cache hits", file=sys.stderr)
        results.cli = procs.cli_hit(server, hit_data, work, reps, _progress)
        analyse(results, files[-1])
        profile_misses(results, server, work)
        results.machine["load average at end (1, 5, 15 min)"] = _load()
    finally:
        if not isinstance(native, str):
            native.close()
        if server is not None:
            server.stop()

    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    save(results, results_path)
    _write(results, out_dir)
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0
