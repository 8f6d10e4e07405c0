"""The benchmark's verdicts: a missed ratio says how it moved within the run.

The contenders alternate, so the i-th measurements of two of them come from
the same repetition; a miss reports the ratio repetition by repetition (its
middle half, and how often it was within the limit), so that a reader can
tell a steady miss from a noisy one.
"""

from __future__ import annotations

from bench import fetch as f
from bench.analyse import analyse
from bench.data import DataFile
from bench.native import NATIVE_FETCH, NATIVE_INLINE, NATIVE_RAW
from bench.report import Results, Target
from bench.timing import Sample

SIZE = DataFile("data-64MiB.bin", 64 << 20, "/nowhere", "0" * 64, "0" * 40)


def cold_fetch_target(
    ours: list[float], raw: list[float], **others: list[float]
) -> Target:
    """The cold-fetch target of a run of these measurements; *others* maps
    further contenders' names to theirs.
    """
    results = Results(False, len(raw), "test", {}, "none", [SIZE])
    results.fetch[SIZE.label] = {
        f.OURS_COLD: Sample(f.OURS_COLD, ours),
        f.RAW: Sample(f.RAW, raw),
        **{name: Sample(name, seconds) for name, seconds in others.items()},
    }
    analyse(results, SIZE)
    (target,) = [t for t in results.targets if t.text.endswith("raw transfer")]
    return target


def test_a_miss_says_how_the_ratio_moved_repetition_by_repetition() -> None:
    # The verdict divides the medians (3.5 / 1.5); repetition by repetition,
    # the ratios are 1.0, 2.0, 3.0 and 4.0: within 1.25x once.
    target = cold_fetch_target([1.0, 4.0, 3.0, 8.0], [1.0, 2.0, 1.0, 2.0])
    assert target.met is False
    assert target.where == ["64 MiB"]
    assert "64 MiB at 2.333x" in target.detail
    assert "middle half 1.25-3.75x" in target.detail
    assert "within the limit in 1 of 4" in target.detail


def test_the_ratios_pair_measurements_of_the_same_repetition() -> None:
    # Sorted apart, the two lists would give ratios near 1; paired, every
    # repetition but one is a miss.
    target = cold_fetch_target([2.0, 4.0, 6.0, 8.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert "within the limit in 1 of 5" in target.detail


def test_without_a_pairing_the_miss_is_reported_alone() -> None:
    # A contender that failed partway has fewer measurements: no pairing.
    target = cold_fetch_target([3.0, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0])
    assert target.met is False
    assert "repetition by repetition" not in target.detail


def test_a_met_target_has_no_detail() -> None:
    target = cold_fetch_target([1.0, 1.1, 1.2, 1.0], [1.0, 1.0, 1.0, 1.0])
    assert target.met is True
    assert target.detail == ""


def test_a_miss_says_what_the_native_bound_and_a_bare_hash_took() -> None:
    # Against the raw transfer's median 1.0: the native bound of the same
    # design took 1.4x, a SHA-256 pass in memory 1.3x. The reader sees that
    # the limit was out of any implementation's reach in this run.
    target = cold_fetch_target(
        [1.5, 1.5, 1.5, 1.5],
        [1.0, 1.0, 1.0, 1.0],
        **{NATIVE_FETCH: [1.4] * 4, f.HASH_MEMORY: [1.3] * 4},
    )
    assert target.met is False
    assert target.detail.endswith(
        ". Against the same raw transfer: 64 MiB: the native bound 1.40x,"
        " a sha256 pass in memory alone 1.30x"
    )


def test_a_miss_says_how_the_native_bound_did_against_its_own_raw_transfer() -> None:
    # The same target for a client in C: its fetches, overlapped (1.6) and
    # inline (1.5), against its raw transfer (0.8): 2.00x and 1.88x.
    target = cold_fetch_target(
        [1.5] * 4,
        [1.0] * 4,
        **{NATIVE_RAW: [0.8] * 4, NATIVE_FETCH: [1.6] * 4, NATIVE_INLINE: [1.5] * 4},
    )
    assert target.detail.endswith(
        "64 MiB: the native bound 1.60x, the native bound against its own raw"
        " transfer: overlapped 2.00x, inline 1.88x"
    )


def test_a_miss_without_the_bounds_says_nothing_of_them() -> None:
    target = cold_fetch_target([1.5] * 4, [1.0] * 4)
    assert "native" not in target.detail
    assert "in memory" not in target.detail
