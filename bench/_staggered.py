"""Children with staggered exits, and the stdlib's obvious way to collect them.

Shared by S5 (bench_wait.py) and S8a (bench_wait_many.py): each child is the
``stamp`` helper, which sleeps until its own exit time, writes
``<pid> <exit ns>`` to a shared O_APPEND log and exits with a known code; a
side's collector records when it noticed each exit.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from _compare import Batch, Side

Collector = Callable[[list[Any], dict[int, int]], None]


def poll_loop(nap: float) -> Collector:
    """The loop one writes with the stdlib: poll each, nap, again."""

    def collect(procs: list[Any], noticed: dict[int, int]) -> None:
        pending = procs
        while pending:
            still = []
            for p in pending:
                if p.poll() is None:
                    still.append(p)
                else:
                    noticed[p.pid] = time.monotonic_ns()
            pending = still
            if pending:
                time.sleep(nap)

    return collect


def staggered(
    name: str,
    mod: ModuleType,
    collect: Collector,
    stamp: str,
    count: int,
    spacing_ns: int,
    lead_ns: int,
    seed: int,
) -> Side:
    """``count`` children exiting ``spacing_ns`` apart from ``lead_ns`` after
    the round starts, in an order (fixed by ``seed``) that differs from spawn
    and list order; one sample per child: exit to collection, in seconds."""
    order = list(range(count))
    random.Random(seed).shuffle(order)

    def run(n: int) -> Batch:
        assert n == 1
        with tempfile.TemporaryFile() as log:
            # O_APPEND: each child's one write lands whole at the end.
            flags = fcntl.fcntl(log.fileno(), fcntl.F_GETFL)
            fcntl.fcntl(log.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
            spawn_start = time.monotonic_ns()
            base = spawn_start + lead_ns
            procs = [
                mod.Popen([stamp, str(base + order[i] * spacing_ns), str(1 + i % 250)], stdout=log)
                for i in range(count)
            ]
            spawned = time.monotonic_ns()
            noticed: dict[int, int] = {}
            cpu = time.process_time()
            collect(procs, noticed)
            cpu = time.process_time() - cpu
            log.seek(0)
            exited = {int(a): int(b) for a, b in (line.split() for line in log.read().splitlines())}
        assert len(exited) == count and len(noticed) == count
        delays = []
        for i, p in enumerate(procs):
            assert p.returncode == 1 + i % 250, (i, p.returncode)
            delay = noticed[p.pid] - exited[p.pid]
            assert delay >= 0, "collected before it exited"
            delays.append(delay / 1e9)
        return Batch(
            delays,
            {
                "collector CPU s": cpu,
                "spawn phase s": (spawned - spawn_start) / 1e9,
                "spawns overran the lead": spawned > base,
            },
        )

    return Side(name, run)
