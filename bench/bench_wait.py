"""S3, S5: how late a wait notices an exit.

The children are bench/stamp.c: each sleeps until an absolute CLOCK_MONOTONIC
deadline, writes "PID NOW_NS" and exits at once, so the parent knows when the
exit happened to within the few microseconds of process teardown.

S3  one child exits after 35 ms; ``wait(timeout=10)``.  Lateness = the
    instant wait() returned minus the instant the child exited.  The stdlib
    (3.10-3.14) sleeps 0.5, 1, 2, ... 32 ms between polls and notices at about
    63.5 ms; pidproc polls the pidfd.
S5  200 children with staggered lifetimes, collected as each finishes:
    pidproc's way (one ``select.poll`` over every ``Popen.pidfd``, then
    ``poll()`` the ready one) against the stdlib's obvious loop
    (``for p in procs: p.poll()`` then a nap of 1 ms or 10 ms).  Measured:
    the delay between each exit and its collection (the mean is compared),
    plus the CPU the collecting loop burnt.
"""

from __future__ import annotations

import select
import subprocess
import time
from types import ModuleType
from typing import Any

import _compare
import pytest
from _compare import Scenario, Side, Target, compare
from _staggered import poll_loop, staggered

import pidproc


@pytest.fixture(scope="module")
def stamp() -> str:
    exe, why = _compare.c_helper("stamp")
    if exe is None:
        pytest.skip(f"bench/stamp.c could not be built: {why}")
    return exe


def wait_lateness(mod: ModuleType, stamp: str, after_ns: int) -> Side:
    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            deadline = time.monotonic_ns() + after_ns
            p = mod.Popen([stamp, str(deadline), "3"], stdout=subprocess.PIPE)
            rc = p.wait(timeout=10)
            noticed = time.monotonic_ns()
            assert p.stdout is not None
            with p.stdout:
                pid, exited = map(int, p.stdout.read().split())
            assert rc == 3 and pid == p.pid, (rc, pid, p.pid)
            assert exited >= deadline
            assert noticed >= exited, "wait() returned before the child exited"
            out.append((noticed - exited) / 1e9)
        return out

    return Side("pidproc" if mod is pidproc else "stdlib", run)


def test_s3_wait_timeout_lateness(benchmark: Any, stamp: str) -> None:
    after = 35_000_000
    result = compare(
        benchmark,
        Scenario(
            "S3",
            "child exits after 35 ms, wait(timeout=10)",
            "lateness: wait() returned minus child exited, in seconds",
            [wait_lateness(pidproc, stamp, after), wait_lateness(subprocess, stamp, after)],
            [Target.within(1e-3)],
            rounds=80,
            per_round=1,
            quick_per_round=3,
        ),
    )
    # Correctness only: wait() returned after the child exited, every time.
    # How late it was is a benchmark figure (the report judges the 1 ms
    # target); a timed assertion would fail whenever the shared machine is busy.
    assert all(s >= 0 for s in result.sides[0].samples), result.sides[0].samples


def _collect_pidfds(procs: list[Any], noticed: dict[int, int]) -> None:
    """pidproc's way: one poll() over every pidfd, then reap the ready ones."""
    poller = select.poll()
    by_fd = {}
    for p in procs:
        assert p.pidfd is not None, f"no pidfd (backend {p.backend})"
        poller.register(p.pidfd, select.POLLIN)
        by_fd[p.pidfd] = p
    while by_fd:
        events = poller.poll(10_000)
        assert events, "no pidfd turned readable within 10 s"
        for fd, _ in events:
            p = by_fd.pop(fd)
            poller.unregister(fd)
            rc = p.poll()
            noticed[p.pid] = time.monotonic_ns()
            assert rc is not None, "pidfd readable but the child not reaped"


def test_s5_collect_as_they_finish(benchmark: Any, stamp: str) -> None:
    if _compare.quick(benchmark):
        count, spacing, lead = 50, 1_000_000, 100_000_000
    else:
        count, spacing, lead = 200, 2_000_000, 300_000_000
    args = (stamp, count, spacing, lead, 5)  # the last: the exit order's seed
    compare(
        benchmark,
        Scenario(
            "S5",
            f"{count} children, staggered exits, collected as each finishes",
            "delay between a child's exit and its collection, in seconds (mean compared)",
            [
                staggered("pidproc (poll on pidfds)", pidproc, _collect_pidfds, *args),
                staggered("stdlib (poll loop, 1 ms nap)", subprocess, poll_loop(0.001), *args),
                staggered("stdlib (poll loop, 10 ms nap)", subprocess, poll_loop(0.01), *args),
            ],
            [],
            rounds=10,
            per_round=1,
            quick_per_round=1,
            stat="mean",
            note=f"exits {spacing / 1e6:g} ms apart, the first {lead / 1e6:g} ms after the "
            "round starts (after every spawn); no target was set for S5",
        ),
    )
