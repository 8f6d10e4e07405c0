"""The benchmark's round-robin: what it promises about the order of the runs.

Whatever a run leaves behind on a shared machine (warm or cold vCPUs, freed
pages) must fall on every contender alike, so the order must not give a
contender the same predecessor every time.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

from bench.timing import ORDER_SEED, Contender, round_robin

NAMES = ["raw", "ours", "e3", "hash", "pooch"]


class Recorder:
    """A contender's run: notes that it ran."""

    def __init__(self, ran: list[str], name: str) -> None:
        self.ran = ran
        self.name = name

    def __call__(self) -> None:
        self.ran.append(self.name)


def run_order(reps: int, seed: int = ORDER_SEED) -> list[list[str]]:
    """The order of each repetition, as the contenders saw it."""
    ran: list[str] = []
    contenders = [Contender(name, Recorder(ran, name)) for name in NAMES]
    samples = round_robin(
        contenders, reps, lambda _message: None, warmup=False, seed=seed
    )
    assert all(len(samples[name].seconds) == reps for name in NAMES)
    size = len(NAMES)
    return [ran[start : start + size] for start in range(0, len(ran), size)]


def test_every_contender_runs_once_per_repetition() -> None:
    for order in run_order(15):
        assert sorted(order) == sorted(NAMES)


def test_no_contender_always_follows_the_same_one() -> None:
    flat = [name for order in run_order(15) for name in order]
    predecessors: dict[str, set[str]] = defaultdict(set)
    for before, after in itertools.pairwise(flat):
        predecessors[after].add(before)
    # A rotation of one order would give each contender a single predecessor.
    assert all(len(predecessors[name]) >= 3 for name in NAMES)


def test_the_order_is_repeatable_and_follows_the_seed() -> None:
    assert run_order(6) == run_order(6)
    assert run_order(6) != run_order(6, seed=ORDER_SEED + 1)
