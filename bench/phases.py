"""Where the wall time of a cold fetch goes, phase by phase, for the page.

cProfile inflates Python-heavy code and cannot see time spent waiting on the
other thread; this wraps a few functions of the library with
``time.perf_counter`` instead and reports the median time of each phase over
many fetches, next to the raw transfer timed in the same loop.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench import fetch as f
from bench.data import DataFile
from bench.timing import Contender
from e3_typed_store._http import INLINE_DIGEST_BYTES

__all__ = ["cold_phases"]

_WARM_UP = 2

# (owner path, attribute, label); nested phases are indented in the label.
# Bodies up to this size are hashed as they are read, larger ones by a worker.
_INLINE_MIB = INLINE_DIGEST_BYTES >> 20
_PHASES: list[tuple[str, str, str]] = [
    (
        "e3_typed_store.backends.http_simple_store:HTTPSimpleStore",
        "__init__",
        "store and settings built",
    ),
    (
        "e3_typed_store.backends.http_simple_store:HTTPSimpleStore",
        "get_resource_metadata",
        "query checked",
    ),
    (
        "e3_typed_store.backends.base:Store",
        "_verified_cache_hit",
        "cache asked (a miss)",
    ),
    ("e3_typed_store.backends.base:Store", "_locked", "uid lock taken"),
    (
        "e3_typed_store.backends.base:Store",
        "_has_entry",
        "cache asked again, under the lock",
    ),
    ("e3_typed_store._http", "download", "download (all of it)"),
    ("e3_typed_store._http:_PartFile", "__init__", "  temporary file created"),
    ("e3_typed_store._http", "_open", "  request sent, headers received"),
    (
        "e3_typed_store._http",
        "_stream_body",
        f"  body read, written, hashed (to {_INLINE_MIB} MiB) or handed over",
    ),
    (
        "e3_typed_store._http:_PartFile",
        "finish",
        f"  digest finished (waiting for a worker past {_INLINE_MIB} MiB)",
    ),
    ("e3_typed_store._http:_PartFile", "commit", "  file named in dest"),
    (
        "e3_typed_store.backends.base:Store",
        "_record",
        "copy kept and cache entry written",
    ),
]


def _owner(path: str) -> object:
    import importlib

    module_name, _, class_name = path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name) if class_name else module


@contextmanager
def _timed(times: dict[str, list[float]]) -> Iterator[None]:
    """Wrap the phases' functions for the life of the block, then restore them."""
    saved: list[tuple[object, str, object]] = []
    for path, name, label in _PHASES:
        owner = _owner(path)
        original = getattr(owner, name)
        saved.append((owner, name, original))
        setattr(owner, name, _wrap(original, times[label]))
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def _wrap(function: Callable[..., object], into: list[float]) -> Callable[..., object]:
    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - start)

    return wrapper


@dataclass
class _Cost:
    """Wall time, and CPU time of this process and of the server, per run."""

    wall: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    #: CPU time of the whole machine: every process, and the kernel's own
    #: work charged to none (network interrupts handled in ksoftirqd...).
    machine_cpu: list[float] = field(default_factory=list)

    @contextmanager
    def measure(self, server_group: int | None) -> Iterator[None]:
        # Reading /proc takes a millisecond: outside the timed span.
        served = 0.0 if server_group is None else _group_cpu(server_group)
        busy = _machine_cpu() if server_group is not None else None
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        wall_end, cpu_end = time.perf_counter(), time.process_time()
        self.wall.append(wall_end - wall)
        self.client_cpu.append(cpu_end - cpu)
        if busy is not None:
            self.machine_cpu.append(_machine_cpu() - busy)
        if server_group is not None:
            self.server_cpu.append(_group_cpu(server_group) - served)

    def drop(self) -> None:
        self.wall.clear()
        self.client_cpu.clear()
        self.server_cpu.clear()
        self.machine_cpu.clear()

    def row(self, label: str) -> str:
        # CPU times are counted in clock ticks: their mean over all the runs
        # says more than a median of a few ticks.
        server = (
            f"{statistics.mean(self.server_cpu) * 1e3:11.3f}"
            if self.server_cpu
            else f"{'-':>11}"
        )
        machine = (
            f"{statistics.mean(self.machine_cpu) * 1e3:13.3f}"
            if self.machine_cpu
            else f"{'-':>13}"
        )
        return (
            f"{label:<28}{statistics.median(self.wall) * 1e3:9.3f}"
            f"{statistics.mean(self.client_cpu) * 1e3:12.3f}{server}{machine}"
        )


def _cpu_floor(ours: _Cost, raw: _Cost) -> list[str]:
    """What the CPU time of the cold fetch allows on this machine's cores.

    Client and server together used so many CPU-seconds per fetch; spread
    perfectly over every core, they cannot take less wall time than that
    divided by the cores. The lines say that floor against the raw transfer
    and how close the fetch came to it.
    """
    cores = os.cpu_count() or 1
    if not ours.wall or not raw.wall:
        return []
    server = statistics.mean(ours.server_cpu) if ours.server_cpu else 0.0
    floor = (statistics.mean(ours.client_cpu) + server) / cores
    wall = statistics.median(ours.wall)
    raw_wall = statistics.median(raw.wall)
    lines = [
        "",
        f"CPU floor of the cold fetch on {cores} cores: {floor * 1e3:.3f} ms,"
        f" {floor / raw_wall:.2f}x the raw transfer; the fetch, at"
        f" {wall / raw_wall:.2f}x, reaches {floor / wall:.0%} of it",
    ]
    if ours.machine_cpu:
        machine = statistics.mean(ours.machine_cpu) / cores
        lines.append(
            f"counting the whole machine's CPU time (the kernel's network work"
            f" included): {machine * 1e3:.3f} ms, {machine / raw_wall:.2f}x the"
            f" raw transfer; the fetch reaches {machine / wall:.0%} of it"
        )
    return lines


def _machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (Linux ``/proc/stat``):
    user, nice, system, interrupt and soft interrupt time of every core."""
    with open("/proc/stat", encoding="ascii") as stream:
        ticks = [int(value) for value in stream.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _group_cpu(group: int) -> float:
    """CPU seconds (user and system) used so far by the processes of *group*."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stream:
                fields = stream.read().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        # After the command: state ppid pgrp ... utime (12th) stime (13th).
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _run(contender: Contender, cost: _Cost, server_group: int | None) -> None:
    contender.prepare()
    try:
        with cost.measure(server_group):
            contender.run()
    finally:
        contender.cleanup()


def cold_phases(
    url: str, work: str, data: DataFile, server_group: int | None, fetches: int = 0
) -> str:
    """A table: median wall time of each phase of a cold fetch of *data*.

    Beside it, the wall and CPU time of the whole fetch and of the raw
    transfers timed in the same loop: this process's CPU time counts every
    thread (the digest worker's too), the server's every process of its
    *server_group* (Linux ``/proc``; None to leave it out). Wall times are
    medians; CPU times, counted in clock ticks, are means.

    :param fetches: how many fetches to time; 0 for 60 of a small payload
        and 7 of a large one
    """
    if fetches <= 0:
        fetches = 60 if data.size < 16 << 20 else 7
    if not os.path.isdir("/proc"):
        server_group = None
    raw = f.raw_contender(url, work, data, hashed=False)
    hashed = f.raw_contender(url, work, data, hashed=True)
    times: dict[str, list[float]] = defaultdict(list)
    ours, raw_cost, hashed_cost = _Cost(), _Cost(), _Cost()
    root = tempfile.mkdtemp(prefix="phases.", dir=work)
    try:
        with _timed(times):
            for index in range(fetches + _WARM_UP):
                cache = os.path.join(root, f"cache{index}")
                dest = os.path.join(root, f"dest{index}")
                os.makedirs(dest)
                fetch = f.ours_fetcher(cache, trust=False)
                with ours.measure(server_group):
                    fetch(url, data, dest)
                # Only one fetch's files at a time: tmpfs is memory.
                shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(dest, ignore_errors=True)
                _run(raw, raw_cost, server_group)
                _run(hashed, hashed_cost, server_group)
                if index < _WARM_UP:  # imports, first connections
                    for values in times.values():
                        values.clear()
                    for cost in (ours, raw_cost, hashed_cost):
                        cost.drop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [(label, statistics.median(times[label])) for _, _, label in _PHASES]
    width = max(len(label) for label, _ in rows)
    lines = [
        f"{fetches} fetches of {data.label}, alternating with the raw transfers;"
        " wall: median, CPU: mean",
        "",
        f"{'':<28}{'wall ms':>9}{'client CPU':>12}{'server CPU':>11}"
        f"{'machine CPU':>13}",
        ours.row("cold fetch"),
        raw_cost.row("raw transfer"),
        hashed_cost.row("raw transfer + sha256 inline"),
        *_cpu_floor(ours, raw_cost),
        "",
        "the cold fetch by phase, each timed on its own (the download holds the"
        " five phases below it)",
        "",
        f"{'phase':<{width}}  wall ms",
    ]
    lines += [f"{label:<{width}}  {seconds * 1e3:7.3f}" for label, seconds in rows]
    return "\n".join(lines)
