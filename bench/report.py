"""The results: a text table for the terminal, docs/performance.md, a PNG plot."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.data import DataFile
from bench.procs import ConcurrencyResult
from bench.timing import Sample, median

__all__ = [
    "Results",
    "Target",
    "fmt_time",
    "load",
    "plot",
    "render_markdown",
    "render_text",
    "save",
]


@dataclass
class Target:
    """A stated target and how this run did against it."""

    source: str
    text: str
    value: str
    met: bool | None  # None: could not be measured in this run
    detail: str = ""
    #: The payload sizes (labels) where it missed, for per-size targets.
    where: list[str] = field(default_factory=list)


@dataclass
class Results:
    smoke: bool
    reps: int
    command: str
    machine: dict[str, str]
    server: str
    files: list[DataFile]
    fetch: dict[str, dict[str, Sample]] = field(default_factory=dict)
    cache_ops: dict[str, Sample] = field(default_factory=dict)
    cache_op_count: int = 0
    imports: dict[str, Sample] = field(default_factory=dict)
    concurrency: dict[str, ConcurrencyResult] = field(default_factory=dict)
    concurrency_label: str = ""
    concurrency_procs: int = 8
    checks: dict[str, Sample] = field(default_factory=dict)
    check_ops: int = 0
    http_stack: dict[str, object] = field(default_factory=dict)
    cli: dict[str, Sample] = field(default_factory=dict)
    ratios: list[tuple[str, str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def save(results: Results, path: str) -> None:
    """Write *results* as JSON, so the page can be rendered again without
    measuring (``python -m bench --render-only``).
    """
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(dataclasses.asdict(results), stream, indent=1, ensure_ascii=False)
        stream.write("\n")


def load(path: str) -> Results:
    """Read results written by :func:`save`."""
    with open(path, encoding="utf-8") as stream:
        raw: dict[str, Any] = json.load(stream)

    def samples(found: dict[str, dict[str, Any]]) -> dict[str, Sample]:
        return {name: Sample(**value) for name, value in found.items()}

    results = Results(**raw)
    results.files = [DataFile(**value) for value in raw["files"]]
    results.fetch = {label: samples(value) for label, value in raw["fetch"].items()}
    results.cache_ops = samples(raw["cache_ops"])
    results.imports = samples(raw["imports"])
    results.checks = samples(raw["checks"])
    results.concurrency = {
        impl: ConcurrencyResult(**value) for impl, value in raw["concurrency"].items()
    }
    results.cli = samples(raw["cli"])
    results.ratios = [(a, b) for a, b in raw["ratios"]]
    results.targets = [Target(**value) for value in raw["targets"]]
    results.profiles = [(a, b) for a, b in raw["profiles"]]
    return results


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def _spread(sample: Sample) -> str:
    if not sample.seconds:
        return "-"
    return f"{fmt_time(min(sample.seconds))} .. {fmt_time(max(sample.seconds))}"


def _rows(samples: dict[str, Sample], size: int | None) -> list[list[str]]:
    rows: list[list[str]] = []
    for sample in samples.values():
        if sample.skipped is not None and not sample.seconds:
            rows.append([sample.name, sample.skipped, "", "", ""])
            continue
        value = sample.median
        rate = ""
        if size is not None and value:
            rate = f"{size / value / (1 << 20):,.0f}"
        rows.append(
            [
                sample.name + (f" [{sample.skipped}]" if sample.skipped else ""),
                fmt_time(value),
                _spread(sample),
                rate,
                str(len(sample.seconds)),
            ]
        )
    return rows


def _concurrency_rows(results: Results) -> list[list[str]]:
    from bench.procs import CONCURRENT_NAMES

    rows: list[list[str]] = []
    for impl, name in CONCURRENT_NAMES.items():
        found = results.concurrency.get(impl)
        if found is None or not found.seconds:
            why = found.skipped if found and found.skipped else "not measured"
            rows.append([name, why, "", "", "", ""])
            continue
        # The run of median total time: when each process had its file.
        ranked = sorted(range(len(found.seconds)), key=found.seconds.__getitem__)
        typical = found.finish[ranked[len(ranked) // 2]] if found.finish else []
        rows.append(
            [
                name,
                fmt_time(median(found.seconds)),
                f"GETs per run {sorted(set(found.gets))}",
                f"bad results {sum(found.bad)}",
                " ".join(f"{1e3 * t:.0f}" for t in typical),
                str(len(found.seconds)),
            ]
        )
    return rows


def _sections(results: Results) -> list[tuple[str, list[str], list[list[str]]]]:
    head = ["contender", "median", "min .. max", "MiB/s", "n"]
    sections: list[tuple[str, list[str], list[list[str]]]] = []
    for data in results.files:
        sections.append(
            (
                f"Fetch {data.label} (wall time per fetch)",
                head,
                _rows(results.fetch.get(data.label, {}), data.size),
            )
        )
    sections.append(
        (
            "Cache backends, time per operation"
            f" ({results.cache_op_count} ops per sample)",
            ["backend: operation", "median", "min .. max", "", "n"],
            _rows(results.cache_ops, None),
        )
    )
    sections.append(
        (
            "Import time (fresh interpreter each)",
            ["what", "median", "min .. max", "", "n"],
            _rows(results.imports, None),
        )
    )
    sections.append(
        (
            f"{results.concurrency_procs} processes fetching one"
            f" {results.concurrency_label} resource at once, fresh shared cache"
            " (GETs counted in the server's access log)",
            [
                "contender",
                "median total",
                "GETs",
                "integrity",
                "each process done at (ms, median run)",
                "n",
            ],
            _concurrency_rows(results),
        )
    )
    sections.append(
        (
            f"Runtime checks: stat-trusted cache hit loop ({results.check_ops} hits per"
            " sample, fresh store object per hit)",
            ["contender", "median per hit", "min .. max", "", "n"],
            _rows(results.checks, None),
        )
    )
    if results.cli:
        sections.append(
            (
                "Command line: one cache hit in a fresh process",
                ["contender", "median", "min .. max", "", "n"],
                _rows(results.cli, None),
            )
        )
    return sections


def _text_table(head: list[str], rows: Sequence[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    out = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(head)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]
    return out


def _verdict(target: Target) -> str:
    verdict = {True: "met", False: "MISSED", None: "not measured"}[target.met]
    if target.met is False and target.where:
        verdict += " at " + ", ".join(target.where)
    return verdict


def render_text(results: Results) -> str:
    lines = [f"server: {results.server}", f"repetitions: {results.reps}"]
    lines += [f"note: {note}" for note in results.notes]
    for title, head, rows in _sections(results):
        lines += ["", f"== {title}", *_text_table(head, rows)]
    lines += ["", "== Ratios (same run, same machine)"]
    lines += _text_table(["ratio", "value"], [list(r) for r in results.ratios])
    lines += ["", "== Targets"]
    lines += _text_table(
        ["source", "target", "this run", "verdict"],
        [[t.source, t.text, t.value, _verdict(t)] for t in results.targets],
    )
    http = results.http_stack
    if http:
        lines += ["", f"== HTTP stack in a process doing a cache hit: {http}"]
    return "\n".join(lines) + "\n"


def _md_table(head: list[str], rows: Sequence[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(cell(h) for h in head) + " |"]
    out.append("|" + "|".join(" --- " for _ in head) + "|")
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


_HEADER = """\
# Performance

Measured by the repository's benchmark. To reproduce (a few minutes; it
installs nginx, curl and openssl, and gcc and libssl-dev for the native bound,
with apt when they are missing):

```sh
.venv/bin/pip install '.[bench]'    # matplotlib, pooch, diskcache: optional peers
.venv/bin/python -m bench           # rewrites this page and performance.png
.venv/bin/python -m bench --smoke   # seconds: tiny sizes, 1 repetition, temp dir
```

Every figure below comes from one run, `{command}`, on {date}: payloads of
{sizes}, the median of {reps} repetitions per figure or more (payloads under
16 MiB are fetched up to 8 times as often: the column n says). Contenders alternate
repetition by repetition (round-robin, in an order shuffled anew for each
repetition by a seeded generator, so that no contender always runs right after
the same other one), and every ratio compares figures of that same run on the
same machine. Times are wall times;
the server and the clients share the machine's {cores} cores.
"""

_SERVER = """\
Server: {server}, on 127.0.0.1, with its own configuration in a temporary
directory (in the foreground, its own pid file and access log, `sendfile on`),
serving deterministic payloads (seeded PRNG bytes; digests computed once).
"""

_HTTP_STACK = """\
## Does a cache hit import the HTTP stack?

A fresh interpreter imports the store base and `FileCache`, then the HTTP
driver, builds a store (offline mode, so that a miss would fail) and serves one
hit. The modules `requests`, `urllib3` and `http.client` found in
`sys.modules` at each step:
"""

_METHOD = """\
## Method

- *raw transfer*: `requests` streams the body to a file in 1 MiB chunks, no
  hash: the in-process bound of a cold fetch. Like this library, it keeps one
  `requests.Session` for the whole run, so its connection to the server stays
  open between repetitions; e3-core and pooch open a connection per download,
  as they do in use. *curl | openssl*:
  `curl -s URL | openssl dgst -sha256` in a shell, process starts included: the
  external one-pass bound (it writes no file). *raw transfer + sha256 inline*:
  the same loop hashing each chunk before writing it: what one pass costs when
  the hash does not overlap the transfer.
- *native bound* (`bench/native/fetch_bound.c`, built for the run with the
  machine's C compiler and OpenSSL): the cold fetch's design in C, with no
  Python, HTTP library or cache. One thread receives the body into a ring of
  16 buffers of 1 MiB (a read of up to 1 MiB at a time) and writes each to a
  file; a second hashes them with
  OpenSSL's SHA-256, as this library's digest worker does. It keeps one
  connection for the whole run, as the raw transfer does, and times itself
  from its request to its file closed and its digest final (leaving out the
  pipe to the benchmark's process, about 0.1 ms per request). *native raw
  transfer*: the same without the hash. *native inline fetch*: the same
  with the receiving thread hashing each buffer once written, and no second
  thread (this library hashes bodies of up to 8 MiB in its reading thread
  too, each buffer just before writing it). The overlapped fetch
  says what any implementation of this design reaches on this machine in this
  run; the raw one, that the Python raw transfer is not slower than the
  machine; the two fetches against the native raw transfer, how a client in C
  does against the cold-fetch target.
- *hash pass*: hashlib over the served file (in the page cache), 1 MiB reads:
  what one verification pass costs at hashlib speed. *sha256 in memory*: one
  `hashlib.sha256` over the payload already in memory, no file: the floor of
  any cold fetch with a SHA-256 query, which must hash every byte in order,
  on one core. *write pass*: the
  payload's size written from memory into a new file beside the downloads, in
  1 MiB writes as the raw transfer writes, no network: what the file system and
  the memory cost alone, which both the raw transfer and a cold fetch pay.
- *over HTTPS*: the same raw transfer and cold fetch from the same server on
  a second port, over TLS with a self-signed certificate for 127.0.0.1 made
  for the run (`openssl req -x509`, an EC P-256 key), which the clients trust
  through `REQUESTS_CA_BUNDLE`; a kept connection makes no handshake after the
  first repetition. No target: these rows show what TLS costs each.
- Payloads and every file the contenders write live in tmpfs when it has room
  (the notes above say where): a cold fetch is then the network, the hash and
  page writes, not the disk. Before each timed run, untimed, `os.sync()`: no run
  pays for write-back of what was written before it, on this machine.
- *cold*: a fresh store object, an empty cache directory and an empty
  destination each repetition. *warm*: a cache filled once before the
  repetitions; each repetition builds a fresh store object and asks for the
  resource into a new empty directory. e3-core's hit verifies SHA-1 (its only
  digest); this library's verifies the digest of the query (SHA-256, and SHA-1
  in the row that says so).
- pooch runs with its defaults (`pooch.retrieve`, whose downloader reads 1 KiB
  chunks).
- cache backends: a sample is N calls on a fresh directory (get and miss on a
  directory holding the N entries); the figure is the time per call.
- import time: `python -X importtime -c 'import M'`, the cumulative time of the
  imports that `python -c pass` does not do; the wall rows time the whole
  interpreter run, and the ratio subtracts the bare start.
- 8 processes: each imports everything, then waits for a go line on stdin; the
  time runs from the go to the last result. GETs are counted in the server's
  access log; every returned file is hashed afterwards.
- runtime checks: the same loop in a subprocess with and without
  `E3_TYPED_STORE_RUNTIME_CHECKS=1`; every other figure runs with checks off.
- verdicts: a ratio target divides the medians of the two contenders. For a
  miss, the page also gives the ratio repetition by repetition (the i-th
  measurements of two contenders come from the same repetition): its middle
  half, and in how many repetitions it was within the limit.
- profiles, for a missed target only: cProfile listings of the contender that
  missed (and of e3-core's, for comparison); for a missed cold fetch, also a
  table by phase (`bench/phases.py`): cold fetches alternating with raw
  transfers in one loop, each fetch's own files removed before the next, with
  the median wall time of each phase of the library (functions wrapped with
  `time.perf_counter`) and the mean CPU time of this process (all its threads)
  and of the server's processes (read from `/proc`).
"""


def _md_targets(results: Results) -> list[str]:
    lines = _md_table(
        ["source", "target", "this run", "verdict"],
        [
            [
                t.source,
                t.text,
                t.value,
                f"**{_verdict(t)}**" if t.met is False else _verdict(t),
            ]
            for t in results.targets
        ],
    )
    missed = [t for t in results.targets if t.met is False and t.detail]
    if missed:
        lines += ["", "Where a target is missed, by how much:", ""]
        lines += [f"- **{t.text}**: {t.detail}" for t in missed]
    return lines


def render_markdown(
    results: Results, plot_name: str | None, analysis: str | None
) -> str:
    m = results.machine
    lines = [
        _HEADER.format(
            command=results.command,
            date=m["date"],
            sizes=", ".join(d.label for d in results.files),
            reps=results.reps,
            cores=m["cores"],
        ),
        "## Machine",
        "",
        *_md_table(["", ""], [[k, v] for k, v in m.items()]),
        "",
        _SERVER.format(server=results.server),
    ]
    lines += [f"Note: {note}\n" for note in results.notes]
    lines += ["## Targets", "", *_md_targets(results)]
    if analysis:
        lines += ["", analysis.strip()]
    lines += ["", "## Ratios", ""]
    lines += _md_table(["ratio", "value"], [list(r) for r in results.ratios])
    if plot_name:
        alt = "cold fetches relative to the raw transfer; cache hits"
        lines += ["", f"![{alt}]({plot_name})"]
    for title, head, rows in _sections(results):
        lines += ["", f"## {title}", ""]
        lines += _md_table(head, rows)
    http = results.http_stack
    if http:
        rows = [[k, str(v)] for k, v in http.items() if k != "path"]
        lines += ["", _HTTP_STACK, *_md_table(["step", "HTTP modules loaded"], rows)]
    if results.profiles:
        lines += ["", "## Profiles", ""]
        for title, text in results.profiles:
            lines += [f"### {title}", "", "```", text.rstrip(), "```", ""]
    lines += ["", _METHOD]
    return "\n".join(lines).rstrip() + "\n"


def plot(results: Results, path: str) -> str | None:
    """Write the PNG; return why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "no plot: matplotlib not installed (pip install '.[bench]')"
    from bench import fetch as f

    labels = [d.label for d in results.files]
    cold = [f.RAW_SHA256, f.CURL, f.OURS_COLD, f.E3_COLD, f.POOCH_COLD]
    warm = [f.OURS_WARM, f.OURS_TRUSTED, f.E3_WARM, f.POOCH_WARM]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.8 / len(cold)
    for i, name in enumerate(cold):
        values = []
        for label in labels:
            samples = results.fetch.get(label, {})
            raw, mine = samples.get(f.RAW), samples.get(name)
            r = raw.median if raw else None
            v = mine.median if mine else None
            values.append(v / r if r and v else 0.0)
        left.bar([x + i * width for x in range(len(labels))], values, width, label=name)
    left.set_yscale("log")
    left.axhline(1.0, color="black", linewidth=0.8)
    left.axhline(
        1.25, color="red", linestyle="--", linewidth=0.8, label="target 1.25x raw"
    )
    left.set_xticks(
        [x + width * (len(cold) - 1) / 2 for x in range(len(labels))], labels
    )
    left.set_ylabel("time / raw transfer (log scale; lower is better)")
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    left.set_title("Cold fetch, relative to the raw transfer")
    left.legend(fontsize=7)
    width = 0.8 / len(warm)
    for i, name in enumerate(warm):
        values = []
        for label in labels:
            sample = results.fetch.get(label, {}).get(name)
            values.append((sample.median or 0.0) * 1e3 if sample else 0.0)
        right.bar(
            [x + i * width for x in range(len(labels))], values, width, label=name
        )
    right.set_yscale("log")
    right.set_xticks(
        [x + width * (len(warm) - 1) / 2 for x in range(len(labels))], labels
    )
    right.set_ylabel("ms per hit (log scale)")
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    right.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    right.set_title("Cache hit")
    right.legend(fontsize=7)
    figure.suptitle(f"e3-typed-store benchmark, {results.machine['date']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    os.chmod(path, 0o644)
    return None
