"""cProfile listings of what missed its target, for the page."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import shutil
import sys
import tempfile
from collections.abc import Callable

from bench import fetch as f
from bench import procs
from bench.data import DataFile
from bench.phases import cold_phases
from bench.report import Results
from bench.server import Server

__all__ = ["profile_misses"]

# Enough calls that a small payload's fixed costs show up in the listing.
_SMALL_CALLS = 50
_SMALL = 16 << 20


def _clean(text: str) -> str:
    text = text[text.find("   ncalls") :] if "   ncalls" in text else text
    prefixes = {os.path.dirname(p) for p in sys.path if p} | {
        p for p in sys.path if p.endswith("site-packages")
    }
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix + os.sep, "")
    return re.sub(r"\{method '([^']+)' of '([^']+)' objects\}", r"{\2.\1}", text)


def _profile(
    title: str,
    call: Callable[[int], object],
    calls: int,
    prepare: Callable[[int], None] = lambda i: None,
    top: int = 15,
) -> tuple[str, str]:
    """Profile *calls* calls of *call* (each after an unprofiled *prepare*)."""
    prepare(-1)  # a first call, unprofiled: imports and caches warm up
    call(-1)
    profiler = cProfile.Profile()
    for i in range(calls):
        prepare(i)
        profiler.enable()
        try:
            call(i)
        finally:
            profiler.disable()
    sections = []
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(top)
        sections.append(f"-- sorted by {key}\n" + _clean(out.getvalue()).rstrip())
    heading = title if calls == 1 else f"{title}, {calls} calls"
    return heading, "\n\n".join(sections)


def _fetches(
    url: str, work: str, data: DataFile, kind: str
) -> tuple[Callable[[int], object], Callable[[int], None]]:
    """(call, prepare) for a cold fetch (ours, e3) or a hit (verified, trusted)."""
    root = tempfile.mkdtemp(prefix=f"profile-{kind}.", dir=work)
    if kind in ("verified", "trusted"):
        # The verified hit as the target compares it: SHA-1, as e3-core's.
        fetch = f.ours_fetcher(
            os.path.join(root, "cache"),
            trust=kind == "trusted",
            sha1=kind == "verified",
        )
        fetch(url, data, os.path.join(root, "first"))
        fetch(url, data, os.path.join(root, "second"))
        return (lambda i: fetch(url, data, os.path.join(root, f"hit{i}"))), (
            lambda i: None
        )

    def prepare(i: int) -> None:
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(os.path.join(root, "dest"))

    def call(i: int) -> object:
        cache = os.path.join(root, "cache")
        dest = os.path.join(root, "dest")
        if kind == "ours":
            return f.ours_fetcher(cache, trust=False)(url, data, dest)
        return f.e3_fetcher(cache)(url, data, dest)

    return call, prepare


def _cache_ops(work: str, op: str) -> Callable[[int], object]:
    from e3_typed_store.backends.base import CachedResource
    from e3_typed_store.cache.backends.filecache import FileCache

    cache = FileCache({"cache_dir": tempfile.mkdtemp(prefix="profile.", dir=work)})
    uids = [f"{i:040x}" for i in range(2000)]
    for uid in uids:
        cache.set(uid, CachedResource(uid, "/x"))
    if op == "get":
        return lambda i: cache.get(uids[i])
    return lambda i: cache.set(uids[i], CachedResource(uids[i], "/x"))


def profile_misses(results: Results, server: Server, work: str) -> None:
    """Append a profile to *results* for each target this run missed."""
    missed = {t.text: t for t in results.targets if t.met is False}
    by_label = {d.label: d for d in results.files}
    wanted: list[tuple[str, DataFile, list[str]]] = []
    for text, kinds in (
        ("cold fetch <= 1.25x raw transfer", ["ours", "e3"]),
        ("cold fetch <= 0.75x e3-core cold", ["ours", "e3"]),
        ("verified warm hit <= 1.10x e3-core hit (both SHA-1)", ["verified"]),
    ):
        target = missed.get(text)
        if target is None:
            continue
        for label in target.where:
            wanted.append((text, by_label[label], kinds))
    largest = results.files[-1]
    if any(t.startswith("stat-trusted hit") for t in missed):
        wanted.append(("stat-trusted hit", largest, ["trusted"]))
    done: set[tuple[str, str]] = set()
    for _, data, kinds in wanted:
        if "ours" in kinds and ("phases", data.label) not in done:
            done.add(("phases", data.label))
            results.profiles.append(
                (
                    f"e3-typed-store cold fetch, {data.label}: wall time by phase",
                    cold_phases(server.url(data.name), work, data, server.process.pid),
                )
            )
        for kind in kinds:
            if (kind, data.label) in done:
                continue
            done.add((kind, data.label))
            calls = (
                1 if data.size >= _SMALL and kind in ("ours", "e3") else _SMALL_CALLS
            )
            call, prepare = _fetches(server.url(data.name), work, data, kind)
            title = {
                "ours": "e3-typed-store cold fetch",
                "e3": "e3-core cold fetch (for comparison)",
                "verified": "e3-typed-store verified hit (SHA-1 query)",
                "trusted": "e3-typed-store stat-trusted hit",
            }[kind]
            results.profiles.append(
                _profile(f"{title}, {data.label}", call, calls, prepare)
            )
    for op in ("get", "set"):
        if f"FileCache {op} no slower than e3-core's" in missed:
            results.profiles.append(
                _profile(f"e3-typed-store FileCache.{op}", _cache_ops(work, op), 2000)
            )
    if "base import <= 0.5x e3-core's" in missed:
        top = procs.importtime_top(procs.OURS_MODULE)
        text = "self us  cumulative us  module\n" + "\n".join(
            f"{s:>7}  {c:>13}  {name}" for name, s, c in top
        )
        results.profiles.append(
            (f"import {procs.OURS_MODULE}: largest self times (-X importtime)", text)
        )
