"""Ratios against the peers of the same run, and the stated targets."""

from __future__ import annotations

import statistics

from bench import fetch as f
from bench import procs
from bench.cacheops import BACKENDS, op_name
from bench.data import DataFile
from bench.native import NATIVE_FETCH, NATIVE_INLINE, NATIVE_RAW
from bench.report import Results, Target, fmt_time
from bench.timing import Sample, median

__all__ = ["analyse"]

_FETCH_RATIOS = [
    ("e3-typed-store cold / raw transfer", f.OURS_COLD, f.RAW),
    ("e3-typed-store cold / raw + sha256 inline", f.OURS_COLD, f.RAW_SHA256),
    ("e3-typed-store cold / curl | openssl", f.OURS_COLD, f.CURL),
    ("e3-typed-store cold / e3-core cold", f.OURS_COLD, f.E3_COLD),
    ("e3-typed-store cold / pooch cold", f.OURS_COLD, f.POOCH_COLD),
    ("e3-typed-store cold / native overlapped fetch (C)", f.OURS_COLD, NATIVE_FETCH),
    ("native overlapped fetch (C) / raw transfer", NATIVE_FETCH, f.RAW),
    ("native raw transfer (C) / raw transfer", NATIVE_RAW, f.RAW),
    ("native inline fetch (C) / raw transfer", NATIVE_INLINE, f.RAW),
    ("native overlapped fetch (C) / native raw (C)", NATIVE_FETCH, NATIVE_RAW),
    ("native inline fetch (C) / native raw (C)", NATIVE_INLINE, NATIVE_RAW),
    ("sha256 in memory / raw transfer", f.HASH_MEMORY, f.RAW),
    ("e3-core cold / raw transfer", f.E3_COLD, f.RAW),
    ("raw transfer / write pass", f.RAW, f.WRITE),
    ("sha256 hash pass / write pass", f.HASH_SHA256, f.WRITE),
    ("pooch cold / raw transfer", f.POOCH_COLD, f.RAW),
    ("e3-typed-store verified hit / e3-core hit", f.OURS_WARM, f.E3_WARM),
    ("e3-typed-store verified hit / pooch hit", f.OURS_WARM, f.POOCH_WARM),
    (
        "e3-typed-store verified hit (sha1 query) / e3-core hit",
        f.OURS_WARM_SHA1,
        f.E3_WARM,
    ),
    ("e3-typed-store verified hit / sha256 hash pass", f.OURS_WARM, f.HASH_SHA256),
    ("e3-core hit / sha1 hash pass", f.E3_WARM, f.HASH_SHA1),
    ("e3-typed-store stat-trusted hit / e3-core hit", f.OURS_TRUSTED, f.E3_WARM),
    ("HTTPS: e3-typed-store cold / raw transfer", f.OURS_COLD_TLS, f.RAW_TLS),
    ("HTTPS / HTTP: e3-typed-store cold", f.OURS_COLD_TLS, f.OURS_COLD),
    ("HTTPS / HTTP: raw transfer", f.RAW_TLS, f.RAW),
]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _med(sample: Sample | None) -> float | None:
    return sample.median if sample is not None else None


def _best(sample: Sample | None) -> float | None:
    return min(sample.seconds) if sample is not None and sample.seconds else None


def _paired(a: Sample | None, b: Sample | None) -> list[float]:
    """The ratios a/b repetition by repetition.

    Contenders alternate, so the i-th measurements of two contenders come
    from the same repetition, minutes apart at most; none when either failed.
    """
    if a is None or b is None or not a.seconds or len(a.seconds) != len(b.seconds):
        return []
    return [x / y for x, y in zip(a.seconds, b.seconds, strict=True) if y > 0]


def _spread(ratios: list[float], limit: float) -> str:
    """How a ratio moved within the run, for a missed target."""
    if len(ratios) < 4:
        return ""
    low, _, high = statistics.quantiles(ratios, n=4)
    within = sum(1 for r in ratios if r <= limit)
    return (
        f" (repetition by repetition: middle half {low:.2f}-{high:.2f}x,"
        f" within the limit in {within} of {len(ratios)})"
    )


def _per_size(
    source: str,
    text: str,
    values: list[tuple[str, float | None]],
    limit: float,
    paired: dict[str, list[float]] | None = None,
) -> Target:
    known = [(label, v) for label, v in values if v is not None]
    shown = ", ".join(f"{label}: {v:.2f}x" for label, v in known) or "-"
    if not known:
        return Target(source, text, shown, None)
    misses = [(label, v) for label, v in known if v > limit]
    detail = "; ".join(
        f"{label} at {v:.3f}x, {100 * (v / limit - 1):.1f}% over the limit"
        + _spread((paired or {}).get(label, []), limit)
        for label, v in misses
    )
    return Target(source, text, shown, not misses, detail, [lb for lb, _ in misses])


def _fetch(results: Results, largest: DataFile) -> None:
    def ratio_of(label: str, a: str, b: str) -> float | None:
        samples = results.fetch.get(label, {})
        return _ratio(_med(samples.get(a)), _med(samples.get(b)))

    labels = [d.label for d in results.files]
    for label in labels:
        for text, a, b in _FETCH_RATIOS:
            results.ratios.append((f"{label}: {text}", _x(ratio_of(label, a, b))))
        trusted = _med(results.fetch.get(label, {}).get(f.OURS_TRUSTED))
        results.ratios.append(
            (f"{label}: stat-trusted hit, absolute", fmt_time(trusted))
        )
    for source, text, a, b, limit in (
        ("issue 4", "cold fetch <= 1.25x raw transfer", f.OURS_COLD, f.RAW, 1.25),
        ("issue 4", "cold fetch <= 0.75x e3-core cold", f.OURS_COLD, f.E3_COLD, 0.75),
        (
            # Like for like: e3-core verifies SHA-1 only, and so does this
            # library on e3-core's query key ``sha``. The SHA-256 hit is in
            # the ratios, beside the two hash passes that price the algorithm.
            "issue 4",
            "verified warm hit <= 1.10x e3-core hit (both SHA-1)",
            f.OURS_WARM_SHA1,
            f.E3_WARM,
            1.10,
        ),
        (
            "DESIGN §8",
            "cold fetch within 10% of curl | openssl",
            f.OURS_COLD,
            f.CURL,
            1.1,
        ),
    ):
        values = [(label, ratio_of(label, a, b)) for label in labels]
        paired = {
            label: _paired(
                results.fetch.get(label, {}).get(a), results.fetch.get(label, {}).get(b)
            )
            for label in labels
        }
        target = _per_size(source, text, values, limit, paired)
        if b == f.RAW and target.where:
            target.detail += _what_the_machine_allows(results, target.where)
        results.targets.append(target)
    trusted = _med(results.fetch.get(largest.label, {}).get(f.OURS_TRUSTED))
    results.targets.append(
        Target(
            "issue 4",
            f"stat-trusted hit of {largest.label} < 1 ms",
            fmt_time(trusted),
            None if trusted is None else trusted < 1e-3,
            "" if trusted is None else f"{trusted / 1e-3:.1f}x the limit",
        )
    )


def _what_the_machine_allows(results: Results, labels: list[str]) -> str:
    """For a cold fetch slower than its limit against the raw transfer: how the
    native bound of the same design (C, bench/native.py) and a bare SHA-256
    pass in memory did against the same raw transfer, at the sizes missed, and
    how the bound's fetches, overlapped and inline, did against its own raw
    transfer (the same target, for a client in C).
    """
    parts = []
    for label in labels:
        samples = results.fetch.get(label, {})
        raw = _med(samples.get(f.RAW))
        native = _ratio(_med(samples.get(NATIVE_FETCH)), raw)
        memory = _ratio(_med(samples.get(f.HASH_MEMORY)), raw)
        native_raw = _med(samples.get(NATIVE_RAW))
        own = _ratio(_med(samples.get(NATIVE_FETCH)), native_raw)
        own_inline = _ratio(_med(samples.get(NATIVE_INLINE)), native_raw)
        shown = [
            f"{what} {value:.2f}x"
            for what, value in (
                ("the native bound", native),
                ("a sha256 pass in memory alone", memory),
            )
            if value is not None
        ]
        against_own = [
            f"{what} {value:.2f}x"
            for what, value in (("overlapped", own), ("inline", own_inline))
            if value is not None
        ]
        if against_own:
            shown.append(
                "the native bound against its own raw transfer: "
                + ", ".join(against_own)
            )
        if shown:
            parts.append(f"{label}: {', '.join(shown)}")
    return f". Against the same raw transfer: {'; '.join(parts)}" if parts else ""


def _imports(results: Results) -> None:
    imports = results.imports
    names = procs.IMPORT_NAMES
    it_ratio = _ratio(
        _med(imports.get(names["ours_it"])), _med(imports.get(names["e3_it"]))
    )
    bare = _med(imports.get(procs.IMPORT_BARE))
    ours_wall = _med(imports.get(names["ours_wall"]))
    e3_wall = _med(imports.get(names["e3_wall"]))
    wall_ratio = None
    if bare is not None and ours_wall is not None and e3_wall is not None:
        wall_ratio = _ratio(ours_wall - bare, e3_wall - bare)
    results.ratios.append(
        ("import base: e3-typed-store / e3-core (-X importtime)", _x(it_ratio))
    )
    results.ratios.append(
        (
            "import base: e3-typed-store / e3-core (wall - interpreter start)",
            _x(wall_ratio),
        )
    )
    over = (
        ""
        if it_ratio is None
        else f"{it_ratio:.2f}x, {100 * (it_ratio / 0.5 - 1):.0f}% over"
    )
    results.targets.append(
        Target(
            "issue 4",
            "base import <= 0.5x e3-core's",
            f"{_x(it_ratio)} (importtime), {_x(wall_ratio)} (wall)",
            None if it_ratio is None else it_ratio <= 0.5,
            over,
        )
    )


def _http_stack(results: Results) -> None:
    http = results.http_stack
    text = "a cache hit does not import the HTTP stack"
    if not http or "error" in http:
        results.targets.append(
            Target("DESIGN §8", text, str(http.get("error", "not measured")), None)
        )
        return
    loaded = http.get("after_hit")
    by_hit = http.get("imported_by_hit")
    by_driver = http.get("after_driver_import")
    if by_hit:
        detail = f"the hit itself imported {by_hit}"
    else:
        detail = (
            f"{loaded} are loaded by importing the driver module"
            f" (loaded after that import: {by_driver}); the hit itself imports none"
        )
    results.targets.append(
        Target(
            "DESIGN §8",
            text,
            f"imported by the hit: {by_hit or 'none'};"
            f" loaded in the process: {loaded or 'none'}",
            not loaded,
            detail,
        )
    )


def _cache_ops(results: Results) -> None:
    for op in ("get", "set", "miss"):
        ours = _med(results.cache_ops.get(op_name(BACKENDS[0], op)))
        theirs = _med(results.cache_ops.get(op_name(BACKENDS[1], op)))
        dc = _med(results.cache_ops.get(op_name(BACKENDS[2], op)))
        value = _ratio(ours, theirs)
        results.ratios.append((f"FileCache {op}: e3-typed-store / e3-core", _x(value)))
        results.ratios.append(
            (f"FileCache {op}: e3-typed-store / diskcache", _x(_ratio(ours, dc)))
        )
        if op == "miss":
            continue
        best = _ratio(
            _best(results.cache_ops.get(op_name(BACKENDS[0], op))),
            _best(results.cache_ops.get(op_name(BACKENDS[1], op))),
        )
        detail = ""
        if value is not None:
            slower = 100 * (value - 1)
            detail = f"{value:.2f}x, {slower:.0f}% slower (best of each: {_x(best)})"
        results.targets.append(
            Target(
                "issue 4",
                f"FileCache {op} no slower than e3-core's",
                f"{_x(value)} ({fmt_time(ours)} vs {fmt_time(theirs)};"
                f" best of each {_x(best)})",
                None if value is None else value <= 1.0,
                detail,
            )
        )


def _concurrency(results: Results) -> None:
    ours = results.concurrency.get("ours")
    theirs = results.concurrency.get("e3")
    n = results.concurrency_procs
    text = f"{n} processes -> 1 download (e3-core: {n})"
    if ours is None or not ours.gets:
        why = ours.skipped if ours is not None and ours.skipped else "not measured"
        results.targets.append(Target("issue 4", text, str(why), None))
        return
    value = f"e3-typed-store: GETs {sorted(set(ours.gets))}, bad files {sum(ours.bad)}"
    if theirs is not None and theirs.gets:
        value += (
            f"; e3-core: GETs {sorted(set(theirs.gets))}, bad files {sum(theirs.bad)}"
        )
        results.ratios.append(
            (
                f"{n} processes, total time: e3-typed-store / e3-core",
                _x(_ratio(median(ours.seconds), median(theirs.seconds))),
            )
        )
    met = all(g == 1 for g in ours.gets) and not any(ours.bad)
    detail = (
        f"GETs per run {ours.gets}, bad results {ours.bad}, errors {ours.errors[:3]}"
    )
    results.targets.append(Target("issue 4", text, value, met, detail))


def _checks(results: Results) -> None:
    on = _med(results.checks.get(procs.BEARTYPE_ON))
    off = _med(results.checks.get(procs.BEARTYPE_OFF))
    results.ratios.append(
        ("stat-trusted hit loop: beartype on / off", _x(_ratio(on, off)))
    )
    _cli(results)


def _cli(results: Results) -> None:
    ours = _med(results.cli.get(procs.CLI_NAMES["ours"]))
    fast = _med(results.cli.get(procs.CLI_NAMES["ours_fast"]))
    e3 = _med(results.cli.get(procs.CLI_NAMES["e3"]))
    bare = _med(results.cli.get(procs.CLI_NAMES["bare"]))
    results.ratios.append(
        ("CLI hit process: e3-typed-store / e3-core one-liner", _x(_ratio(ours, e3)))
    )
    results.ratios.append(
        (
            "CLI hit process, --trust-unchanged: e3-typed-store / e3-core one-liner",
            _x(_ratio(fast, e3)),
        )
    )
    results.ratios.append(
        (
            "CLI hit process above interpreter start: e3-typed-store / e3-core",
            _x(_ratio(_minus(ours, bare), _minus(e3, bare))),
        )
    )


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def analyse(results: Results, largest: DataFile) -> None:
    """Fill ``results.ratios`` and ``results.targets`` (anew)."""
    results.ratios.clear()
    results.targets.clear()
    _fetch(results, largest)
    _imports(results)
    _http_stack(results)
    _cache_ops(results)
    _concurrency(results)
    _checks(results)
