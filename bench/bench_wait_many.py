"""S8: collecting many children, ``pidproc.as_completed`` against a polling loop.

The children are bench/stamp.c (see bench_wait.py): each sleeps until an
absolute CLOCK_MONOTONIC deadline, writes "PID NOW_NS" and exits, so the
parent knows when each exit happened.

S8a  N children with staggered exits, collected as each finishes:
     ``for p in pidproc.as_completed(procs)`` (one epoll set over the pidfds,
     each ready child reaped through its Popen) against the loop one writes
     with the stdlib (``for p in pending: p.poll()``, then a 1 ms nap).
     Measured: the delay between each exit and its collection (the mean is
     compared), plus the CPU the collector burnt.
S8b  the cost of a wake-up with many watched: M long-lived children are
     watched along with K that exit 5 ms apart; ``as_completed`` over all of
     them against the same stdlib loop (whose every pass costs one waitpid
     per watched child).  Measured: how late each of the K exits is noticed.
S8c  the same with one exit and ``pidproc.wait_any(all)``, which sets up and
     tears down its watch of the M+1 pidfds in every call (poll(2): one scan
     more at the wake-up; see _waitmany.py for why not epoll).  No target:
     a single wait is O(M) whichever way it is done.

With benchmarks disabled (the normal test run) each side runs once at small
sizes and every result is checked: exit codes, each child collected once,
never before it exited.
"""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import _compare
import pytest
from _compare import Batch, Scenario, Side, Target, compare
from _staggered import poll_loop, staggered

import pidproc


@pytest.fixture(scope="module")
def stamp() -> str:
    exe, why = _compare.c_helper("stamp")
    if exe is None:
        pytest.skip(f"bench/stamp.c could not be built: {why}")
    return exe


def collect_as_completed(procs: list[Any], noticed: dict[int, int]) -> None:
    for p in pidproc.as_completed(procs, timeout=60):
        noticed[p.pid] = time.monotonic_ns()
        assert p.returncode is not None


def test_s8a_as_completed_staggered(benchmark: Any, stamp: str) -> None:
    if _compare.quick(benchmark):
        count, spacing = 20, 1_000_000
    else:
        count, spacing = 300, 2_000_000
    lead = 100_000_000 + count * 2_000_000  # every spawn is done before the first exit
    args = (stamp, count, spacing, lead, 8)  # the last: the exit order's seed
    compare(
        benchmark,
        Scenario(
            "S8a",
            f"{count} children, staggered exits, collected with as_completed",
            "delay between a child's exit and its collection, in seconds (mean compared)",
            [
                staggered("pidproc (as_completed)", pidproc, collect_as_completed, *args),
                staggered("stdlib (poll loop, 1 ms nap)", subprocess, poll_loop(0.001), *args),
            ],
            [Target.faster("stdlib (poll loop, 1 ms nap)", 2.0)],
            rounds=8,
            per_round=1,
            quick_per_round=1,
            stat="mean",
            note=f"exits {spacing / 1e6:g} ms apart in shuffled order, the first "
            f"{lead / 1e6:g} ms after the round starts",
        ),
    )


class Sleepers:
    """M long-lived children per module (pidproc's and the stdlib's), shared
    by every round of S8b/S8c and killed at the end."""

    def __init__(self, mod: ModuleType, m: int) -> None:
        self.procs = [mod.Popen(["sleep", "3600"]) for _ in range(m)]

    def close(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


@pytest.fixture(scope="module")
def sleepers(request: pytest.FixtureRequest) -> Iterator[dict[str, Sleepers]]:
    m = 10 if _compare.quick_config(request.config) else 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * m + 256
    if soft < need and (hard == resource.RLIM_INFINITY or hard >= need):
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    made = {"pidproc": Sleepers(pidproc, m), "stdlib": Sleepers(subprocess, m)}
    try:
        yield made
    finally:
        for s in made.values():
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def first_k_as_completed(procs: list[Any], kids: set[int], noticed: dict[int, int]) -> None:
    it = pidproc.as_completed(procs, timeout=60)
    for p in it:
        noticed[p.pid] = time.monotonic_ns()
        assert id(p) in kids, "a watched sleeper was reported"
        if len(noticed) == len(kids):
            it.close()  # the sleepers stay watched until here; teardown not timed
            return


def first_k_polling(procs: list[Any], kids: set[int], noticed: dict[int, int]) -> None:
    pending = procs
    while True:
        still = []
        for p in pending:
            if p.poll() is None:
                still.append(p)
            else:
                noticed[p.pid] = time.monotonic_ns()
                assert id(p) in kids, "a watched sleeper was reported"
        if len(noticed) == len(kids):
            return
        pending = still
        time.sleep(0.001)


def among_many(
    name: str,
    mod: ModuleType,
    watched: list[Any],
    collect: Callable[[list[Any], set[int], dict[int, int]], None],
    stamp: str,
    k: int,
    spacing_ns: int,
) -> Side:
    def run(n: int) -> Batch:
        assert n == 1
        base = time.monotonic_ns() + 50_000_000 + k * 2_000_000
        kids = [
            mod.Popen([stamp, str(base + i * spacing_ns), "7"], stdout=subprocess.PIPE)
            for i in range(k)
        ]
        noticed: dict[int, int] = {}
        cpu = time.process_time()
        collect([*watched, *kids], {id(p) for p in kids}, noticed)
        cpu = time.process_time() - cpu
        out = []
        for p in kids:
            assert p.returncode == 7 and p.stdout is not None
            with p.stdout:
                pid, exited = map(int, p.stdout.read().split())
            assert pid == p.pid and noticed[pid] >= exited
            out.append((noticed[pid] - exited) / 1e9)
        return Batch(out, {"collector CPU s": cpu})

    return Side(name, run)


def test_s8b_wake_ups_among_many(benchmark: Any, stamp: str, sleepers: dict[str, Sleepers]) -> None:
    m = len(sleepers["pidproc"].procs)
    k = 5 if _compare.quick(benchmark) else 20
    spacing = 5_000_000
    compare(
        benchmark,
        Scenario(
            "S8b",
            f"{k} exits 5 ms apart among {m + k} watched children",
            "lateness: the exit noticed minus the child exited, in seconds",
            [
                among_many(
                    "pidproc (as_completed)",
                    pidproc,
                    sleepers["pidproc"].procs,
                    first_k_as_completed,
                    stamp,
                    k,
                    spacing,
                ),
                among_many(
                    "stdlib (poll loop, 1 ms nap)",
                    subprocess,
                    sleepers["stdlib"].procs,
                    first_k_polling,
                    stamp,
                    k,
                    spacing,
                ),
            ],
            [Target.faster("stdlib (poll loop, 1 ms nap)", 5.0)],
            rounds=15,
            per_round=1,
            quick_per_round=1,
            note=f"{m} children sleep throughout and are watched too",
        ),
    )
    # The watched ones were left alone: none was reaped.
    assert all(p.returncode is None for s in sleepers.values() for p in s.procs)


def one_among_many(
    name: str, mod: ModuleType, watched: list[Any], wait: Callable[[list[Any]], Any], stamp: str
) -> Side:
    def run(n: int) -> Batch:
        out = []
        cpu = 0.0
        for _ in range(n):
            deadline = time.monotonic_ns() + 20_000_000
            child = mod.Popen([stamp, str(deadline), "7"], stdout=subprocess.PIPE)
            cpu -= time.process_time()
            done = wait([*watched, child])
            noticed = time.monotonic_ns()
            cpu += time.process_time()
            assert done is child and child.returncode == 7, (done, child.returncode)
            assert child.stdout is not None
            with child.stdout:
                pid, exited = map(int, child.stdout.read().split())
            assert pid == child.pid and noticed >= exited
            out.append((noticed - exited) / 1e9)
        return Batch(out, {"CPU s per wait": cpu / n})

    return Side(name, run)


def poll_loop_first(procs: list[Any]) -> Any:
    while True:
        for p in procs:
            if p.poll() is not None:
                return p
        time.sleep(0.001)


def test_s8c_wait_any_among_many(benchmark: Any, stamp: str, sleepers: dict[str, Sleepers]) -> None:
    m = len(sleepers["pidproc"].procs)
    compare(
        benchmark,
        Scenario(
            "S8c",
            f"one exit among {m + 1} watched children, wait_any",
            "lateness: the wait returned minus the child exited, in seconds",
            [
                one_among_many(
                    "pidproc (wait_any)",
                    pidproc,
                    sleepers["pidproc"].procs,
                    lambda ps: pidproc.wait_any(ps, timeout=10),
                    stamp,
                ),
                one_among_many(
                    "stdlib (poll loop, 1 ms nap)",
                    subprocess,
                    sleepers["stdlib"].procs,
                    poll_loop_first,
                    stamp,
                ),
            ],
            [],
            rounds=30,
            per_round=3,
            quick_per_round=2,
            note=f"{m} children sleep throughout; one more exits 20 ms after its spawn; "
            "no target was set for S8c",
        ),
    )
    assert all(p.returncode is None for s in sleepers.values() for p in s.procs)
