"""Round-robin timing: contenders alternate repetition by repetition."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["ORDER_SEED", "Contender", "Sample", "median", "round_robin"]

#: The seed of the generator that shuffles the contenders' order.
ORDER_SEED = 20261126


@dataclass
class Contender:
    """One thing to time.

    ``prepare`` runs untimed before each repetition, ``run`` is timed,
    ``check`` runs untimed after the first repetition (is the result right?),
    ``cleanup`` untimed after each repetition. ``run`` may return its own
    measurement in seconds (per operation, say) instead of being wall-timed.
    """

    name: str
    run: Callable[[], float | None]
    prepare: Callable[[], None] = field(default=lambda: None)
    check: Callable[[], None] = field(default=lambda: None)
    cleanup: Callable[[], None] = field(default=lambda: None)
    skipped: str | None = None


@dataclass
class Sample:
    """The measurements of one contender."""

    name: str
    seconds: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median(self) -> float | None:
        return median(self.seconds)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def round_robin(
    contenders: Sequence[Contender],
    reps: int,
    progress: Callable[[str], None],
    warmup: bool = True,
    settle: Callable[[], None] | None = None,
    seed: int = ORDER_SEED,
) -> dict[str, Sample]:
    """Time every contender *reps* times, alternating: rep 1 of each, then rep 2...

    The order is shuffled anew for each repetition (a generator seeded with
    *seed*, so a run can be repeated), so no contender always runs right
    after the same other one: whatever a predecessor leaves behind (warm or
    cold vCPUs, freed pages) falls on every contender alike. A rotation of one
    fixed order would not do: it keeps each contender's predecessor. *settle*,
    when given, runs untimed right before each timed run (``os.sync``: every
    run starts with no dirty pages of an earlier one waiting to be written
    back).
    """
    samples = {c.name: Sample(c.name, skipped=c.skipped) for c in contenders}
    active = [c for c in contenders if c.skipped is None]
    if warmup:
        # One untimed round: imports, connection pools and the page cache warm
        # up here rather than in the first timed repetition.
        for contender in active:
            try:
                contender.prepare()
                try:
                    contender.run()
                finally:
                    contender.cleanup()
            except Exception as exc:  # noqa: BLE001 - reported, the others go on
                samples[contender.name].skipped = f"FAILED: {type(exc).__name__}: {exc}"
                progress(f"{contender.name}: {samples[contender.name].skipped}")
    orders = random.Random(seed)
    for rep in range(reps):
        order = list(active)
        orders.shuffle(order)
        for contender in order:
            sample = samples[contender.name]
            if sample.skipped is not None:
                continue
            try:
                contender.prepare()
                if settle is not None:
                    settle()
                try:
                    start = time.perf_counter()
                    own = contender.run()
                    elapsed = time.perf_counter() - start
                    if rep == 0:
                        contender.check()
                finally:
                    contender.cleanup()
            except Exception as exc:  # noqa: BLE001 - reported, the others go on
                sample.skipped = f"FAILED: {type(exc).__name__}: {exc}"
                progress(f"{contender.name}: {sample.skipped}")
                continue
            sample.seconds.append(elapsed if own is None else own)
        progress(f"rep {rep + 1}/{reps} done")
    return samples
