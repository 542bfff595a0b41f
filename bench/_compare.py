"""The harness: pidproc and what it is compared with, interleaved in one process.

Why not pytest-benchmark alone
    pytest-benchmark times one function for many rounds, then the next
    function.  On this shared two-core machine the load changes from one
    minute to the next (another helper may be running CPython's test suite),
    so "pidproc for a minute, then the stdlib for a minute" measures the
    neighbours as much as the code.  Comparisons here are made inside one
    round, a few milliseconds apart.

The design
    A *scenario* is a list of *sides*.  The first side is always pidproc; the
    others are what it is compared with (the stdlib, the C floor, a variant).
    A side is a function ``run(n)`` that performs ``n`` operations and returns
    their measurements in seconds, one per operation (or one per child, for
    S5), or in the scenario's own unit where it names one (MiB for S6d).
    Each side times itself with the same code; the pidproc and stdlib sides
    of a scenario are built by one factory that takes the module
    (``pidproc`` or ``subprocess``), so only the module differs.

    ``compare(benchmark, scenario)`` runs rounds.  In each round every side
    runs one batch: the other sides first, in an order that rotates from round
    to round, then pidproc.  The sequence is S P S P ... (S F P F S P ... with
    three sides), so every pidproc batch sits between batches of the others
    and a burst of noise lands on both.  The rounds are driven by
    pytest-benchmark's pedantic mode: pidproc's batch is its timed ``target``,
    the other sides run in its untimed ``setup``.  pytest-benchmark thus keeps
    its usual statistics of pidproc's batches (``--benchmark-json``,
    ``--benchmark-compare`` work as usual) while this harness keeps every
    sample of every side for the report (``bench/_report.py``).

    Ratios are paired: per round, speed-up = statistic(other side's batch) /
    statistic(pidproc's batch), the statistic being the median (the mean for
    S5).  The headline is the median of the per-round speed-ups with a
    distribution-free 95 % interval from order statistics: a slow patch of the
    machine slows both batches of a round and cancels in their ratio.  A
    target is "met" when the headline satisfies it, "within noise" when only
    the interval reaches it, "missed" otherwise.  A scenario may also name
    pairs of other sides for context (S1: the stdlib against the C floor).

    With benchmarks disabled (the normal test run, ``--benchmark-disable`` in
    pyproject.toml) pedantic calls setup and target once: one round at the
    quick sizes, every side's assertions checked.  So the benchmark files
    double as correctness tests; targets are evaluated only in ``nox -s bench``.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent

Stat = Literal["median", "mean"]


@dataclass
class Batch:
    """What one side's ``run(n)`` may return instead of a plain list: the
    samples plus per-batch extras (for example CPU seconds used)."""

    samples: list[float]
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Side:
    name: str
    run: Callable[[int], Sequence[float] | Batch]


@dataclass
class Target:
    """What pidproc must reach against one side (or on its own)."""

    kind: Literal["faster", "at_most", "within", "at_most_plus"]
    value: float
    other: str | None = None
    quantity: str = "time"  # what at_most compares: "time", "peak RSS"

    @classmethod
    def faster(cls, other: str, by: float) -> Target:
        """pidproc at least ``by`` times faster than ``other``."""
        return cls("faster", by, other)

    @classmethod
    def at_most(cls, other: str, times: float, quantity: str = "time") -> Target:
        """pidproc's time (or other quantity) at most ``times`` that of ``other``."""
        return cls("at_most", times, other, quantity)

    @classmethod
    def at_most_plus(cls, other: str, seconds: float) -> Target:
        """pidproc's time at most ``other``'s plus ``seconds`` (a fixed cost,
        such as an import, where a ratio says little)."""
        return cls("at_most_plus", seconds, other)

    @classmethod
    def within(cls, seconds: float) -> Target:
        """pidproc's own statistic at most ``seconds``."""
        return cls("within", seconds)

    def describe(self) -> str:
        if self.kind == "faster":
            return f"pidproc >= {self.value:g}x faster than {self.other}"
        if self.kind == "at_most":
            return f"pidproc's {self.quantity} <= {self.value:.2f}x {self.other}'s"
        if self.kind == "at_most_plus":
            return f"pidproc's time <= {self.other}'s + {fmt_seconds(self.value)}"
        return f"pidproc <= {fmt_seconds(self.value)}"


@dataclass
class Scenario:
    key: str  # "S1"
    title: str
    measures: str  # what one sample is, for the report
    sides: list[Side]
    targets: list[Target]
    rounds: int
    per_round: int
    quick_per_round: int = 1
    stat: Stat = "median"
    note: str = ""
    # Pairs of other sides whose paired time ratio is reported for context,
    # e.g. ("stdlib", "C floor"): how far the stdlib itself is from the floor.
    context: list[tuple[str, str]] = field(default_factory=list)
    # What a sample is in: "s" (seconds, the default) or another unit
    # ("MiB"); ratios are the same either way: other side's / pidproc's.
    unit: str = "s"


@dataclass
class SideResult:
    name: str
    rounds: list[list[float]] = field(default_factory=list)
    extra: list[dict[str, float]] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        return [x for r in self.rounds for x in r]


@dataclass
class Interval:
    point: float
    low: float
    high: float


@dataclass
class Verdict:
    target: Target
    measured: Interval | None
    status: Literal["met", "within noise", "missed", "not measured"]
    text: str


@dataclass
class Result:
    scenario: Scenario
    sides: list[SideResult]
    quick: bool
    elapsed: float

    def side(self, name: str) -> SideResult:
        return next(s for s in self.sides if s.name == name)

    def statistic(self, values: Sequence[float]) -> float:
        if self.scenario.stat == "mean":
            return statistics.fmean(values)
        return statistics.median(values)

    def speedup(self, other: str) -> Interval:
        """Paired per-round speed-ups of pidproc over ``other`` (>1: pidproc faster)."""
        return self.paired(self.sides[0].name, other)

    def paired(self, a: str, b: str) -> Interval:
        """Median over rounds of statistic(b's batch) / statistic(a's batch)."""
        ratios = [
            self.statistic(tb) / self.statistic(ta)
            for ta, tb in zip(self.side(a).rounds, self.side(b).rounds, strict=True)
            if self.statistic(ta) > 0
        ]
        return median_interval(ratios)

    def difference(self, a: str, b: str) -> Interval:
        """Median over rounds of statistic(a's batch) - statistic(b's batch)."""
        return median_interval(
            [
                self.statistic(ta) - self.statistic(tb)
                for ta, tb in zip(self.side(a).rounds, self.side(b).rounds, strict=True)
            ]
        )

    def verdicts(self) -> list[Verdict]:
        out = []
        names = {s.name for s in self.sides}
        for t in self.scenario.targets:
            if t.other is not None and t.other not in names:
                out.append(Verdict(t, None, "not measured", f"{t.other} was not run here"))
                continue
            if t.kind == "within":
                # The median of pidproc's samples (no "within" target uses a mean).
                iv = median_interval(self.sides[0].samples)
                ok_point, ok_any = iv.point <= t.value, iv.low <= t.value
                low, high = fmt_seconds(iv.low), fmt_seconds(iv.high)
                text = f"median {fmt_seconds(iv.point)} (95 % CI {low} .. {high})"
            elif t.kind == "at_most_plus":
                assert t.other is not None
                iv = self.difference(self.sides[0].name, t.other)
                ok_point, ok_any = iv.point <= t.value, iv.low <= t.value
                low, high = fmt_seconds(iv.low), fmt_seconds(iv.high)
                text = f"{fmt_seconds(iv.point)} more (95 % CI {low} .. {high}), paired per round"
            else:
                assert t.other is not None
                iv = self.speedup(t.other)
                need = t.value if t.kind == "faster" else 1 / t.value
                ok_point, ok_any = iv.point >= need, iv.high >= need
                if t.kind == "faster":
                    text = f"{iv.point:.2f}x faster (95 % CI {iv.low:.2f} .. {iv.high:.2f})"
                else:
                    text = (
                        f"{t.quantity} ratio {1 / iv.point:.3f} "
                        f"(95 % CI {1 / iv.high:.3f} .. {1 / iv.low:.3f})"
                    )
            status: Literal["met", "within noise", "missed"]
            status = "met" if ok_point else ("within noise" if ok_any else "missed")
            out.append(Verdict(t, iv, status, text))
        return out


def median_interval(values: Sequence[float]) -> Interval:
    """The median with a distribution-free ~95 % confidence interval: order
    statistics n/2 -/+ 0.98 sqrt(n) (the normal approximation of the
    binomial; with few values the interval is simply wide)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    half = 0.98 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return Interval(statistics.median(xs), xs[lo], xs[hi])


def fmt_value(x: float, unit: str) -> str:
    """A sample in its scenario's unit."""
    if unit == "s":
        return fmt_seconds(x)
    return f"{x:.4g} {unit}"


def fmt_seconds(s: float) -> str:
    if math.isnan(s):
        return "n/a"
    a = abs(s)
    if a >= 1:
        return f"{s:.3g} s"
    if a >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


# Filled by compare(); bench/conftest.py turns it into the report.
RESULTS: list[Result] = []


def _write_stderr(text: str) -> None:
    if sys.__stderr__ is not None:
        sys.__stderr__.write(text)
        sys.__stderr__.flush()


# bench/conftest.py replaces this with a writer that gets past pytest's capture.
progress_writer: Callable[[str], None] = _write_stderr


class Progress:
    """A status line per round on a terminal, every fifth of the rounds otherwise."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.tty = bool(sys.__stderr__ is not None and sys.__stderr__.isatty())
        self.start = time.monotonic()
        self.every = max(1, scenario.rounds // 5)

    def update(self, done: int, sides: list[SideResult]) -> None:
        total = self.scenario.rounds
        if not self.tty and done % self.every and done != total:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        parts = []
        for s in sides:
            if s.rounds:
                unit = self.scenario.unit
                parts.append(f"{s.name} {fmt_value(statistics.median(s.samples), unit)}")
        line = (
            f"[{self.scenario.key}] round {done}/{total}  "
            + "  ".join(parts)
            + f"  ({elapsed:.0f} s, ~{eta:.0f} s left)"
        )
        if self.tty:
            lead = "\n" if done == 1 else "\r\x1b[K"
            progress_writer(lead + line + ("\n" if done == total else ""))
        else:
            progress_writer(("\n" if done <= self.every else "") + line + "\n")


def quick(benchmark: Any) -> bool:
    """True in the normal test run (benchmarks disabled): use small sizes."""
    return bool(benchmark.disabled)


def quick_config(config: Any) -> bool:
    """quick() for module-scoped fixtures, which cannot use ``benchmark``:
    pytest-benchmark's own rule (BenchmarkSession.disabled)."""
    return bool(
        config.getoption("benchmark_disable", False)
        and not config.getoption("benchmark_enable", False)
    )


def _samples(out: Sequence[float] | Batch) -> tuple[list[float], dict[str, float]]:
    if isinstance(out, Batch):
        return list(out.samples), dict(out.extra)
    return list(out), {}


def compare(benchmark: Any, scenario: Scenario) -> Result:
    """Run the scenario interleaved (see the module docstring); return and record it."""
    is_quick = quick(benchmark)
    n = scenario.quick_per_round if is_quick else scenario.per_round
    results = [SideResult(s.name) for s in scenario.sides]
    mine, others = scenario.sides[0], list(enumerate(scenario.sides))[1:]
    progress = None if is_quick else Progress(scenario)
    state = {"round": 0}

    def record(i: int, side: Side) -> None:
        samples, extra = _samples(side.run(n))
        assert samples, f"{side.name} returned no measurement"
        results[i].rounds.append(samples)
        results[i].extra.append(extra)

    def setup() -> None:
        r = state["round"]
        order = others[r % len(others) :] + others[: r % len(others)] if others else []
        for i, side in order:
            record(i, side)

    def target() -> None:
        record(0, mine)
        state["round"] += 1
        if progress is not None:
            progress.update(state["round"], results)

    benchmark.group = f"{scenario.key} {scenario.title}"
    start = time.monotonic()
    if not is_quick:
        # Warm-up, not recorded: probes, page cache, first imports.
        for side in scenario.sides:
            side.run(max(1, n // 4))
    benchmark.pedantic(target, setup=setup, rounds=scenario.rounds, iterations=1)
    result = Result(scenario, results, is_quick, time.monotonic() - start)
    for s in results:
        benchmark.extra_info[f"{s.name} {scenario.stat} s"] = result.statistic(s.samples)
    if not is_quick:
        for v in result.verdicts():
            benchmark.extra_info[v.target.describe()] = f"{v.status}: {v.text}"
    RESULTS.append(result)
    return result


def timed(op: Callable[[], object]) -> Callable[[int], list[float]]:
    """A side whose operation is timed as a whole with perf_counter."""

    def run(n: int, _clock: Callable[[], float] = time.perf_counter) -> list[float]:
        out = []
        for _ in range(n):
            t0 = _clock()
            op()
            out.append(_clock() - t0)
        return out

    return run


# ---- C helpers, compiled at run time ---------------------------------------

_build_dir: str | None = None


def _cleanup() -> None:
    if _build_dir is not None:
        shutil.rmtree(_build_dir, ignore_errors=True)


@functools.cache
def c_helper(name: str) -> tuple[str | None, str]:
    """Compile bench/<name>.c with gcc into a temp dir: (path, "") or
    (None, the reason it could not be built)."""
    global _build_dir
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None, "no C compiler (gcc/cc) on PATH"
    if _build_dir is None:
        _build_dir = tempfile.mkdtemp(prefix="pidproc-bench-")
        atexit.register(_cleanup)
    exe = os.path.join(_build_dir, name)
    proc = subprocess.run(
        [gcc, "-O2", "-o", exe, str(HERE / f"{name}.c")], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None, f"{gcc} failed on bench/{name}.c: {proc.stderr.strip()}"
    return exe, ""
