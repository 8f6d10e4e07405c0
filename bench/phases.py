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

from bench import fetch as f
from bench.data import DataFile
from bench.timing import Contender

__all__ = ["cold_phases"]

_WARM_UP = 2

# (owner path, attribute, label); nested phases are indented in the label.
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
        "  body read and written, chunks handed to the digest",
    ),
    (
        "e3_typed_store._http:_PartFile",
        "finish",
        "  digest finished (waiting for the worker)",
    ),
    ("e3_typed_store._http:_PartFile", "commit", "  file renamed into dest"),
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


def _run(contender: Contender) -> float:
    contender.prepare()
    try:
        start = time.perf_counter()
        contender.run()
        return time.perf_counter() - start
    finally:
        contender.cleanup()


def cold_phases(url: str, work: str, data: DataFile, fetches: int = 0) -> str:
    """A table: median wall time of each phase of a cold fetch of *data*.

    :param fetches: how many fetches to time; 0 for 60 of a small payload
        and 7 of a large one
    """
    if fetches <= 0:
        fetches = 60 if data.size < 16 << 20 else 7
    raw = f.raw_contender(url, work, data, hashed=False)
    hashed = f.raw_contender(url, work, data, hashed=True)
    times: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    raws: list[float] = []
    raws_hashed: list[float] = []
    root = tempfile.mkdtemp(prefix="phases.", dir=work)
    try:
        with _timed(times):
            for index in range(fetches + _WARM_UP):
                cache = os.path.join(root, f"cache{index}")
                dest = os.path.join(root, f"dest{index}")
                os.makedirs(dest)
                fetch = f.ours_fetcher(cache, trust=False)
                start = time.perf_counter()
                fetch(url, data, dest)
                elapsed = time.perf_counter() - start
                # Only one fetch's files at a time: tmpfs is memory.
                shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(dest, ignore_errors=True)
                raw_elapsed = _run(raw)
                hashed_elapsed = _run(hashed)
                if index < _WARM_UP:  # imports, first connections
                    for values in times.values():
                        values.clear()
                    continue
                totals.append(elapsed)
                raws.append(raw_elapsed)
                raws_hashed.append(hashed_elapsed)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        ("cold fetch, whole", statistics.median(totals)),
        ("raw transfer, same loop", statistics.median(raws)),
        ("raw transfer + sha256 inline, same loop", statistics.median(raws_hashed)),
    ]
    rows += [(label, statistics.median(times[label])) for _, _, label in _PHASES]
    width = max(len(label) for label, _ in rows)
    lines = [
        f"median of {fetches} fetches of {data.label}, each phase timed on its own "
        "(phases overlap: the download holds the five below it)",
        "",
        f"{'phase':<{width}}  ms",
    ]
    lines += [f"{label:<{width}}  {seconds * 1e3:6.3f}" for label, seconds in rows]
    return "\n".join(lines)
