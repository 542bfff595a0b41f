"""S9: many short processes at once under asyncio, pidproc.asyncio against asyncio's own.

S9a  N children of /bin/true started together (``asyncio.gather`` of
     ``create_subprocess_exec`` + ``wait()``).  asyncio's own transport
     spawns with subprocess.Popen and learns of each exit from its child
     watcher (3.10/3.11: a thread per child blocked in waitpid; 3.12/3.13: a
     pidfd reader that then calls waitpid, the exit reported one loop
     iteration later); pidproc.asyncio watches each child's pidfd in the loop
     and reaps in the same callback.
S9b  the same with ``stdout=PIPE`` and ``communicate()`` on /bin/echo: three
     fds per child in the loop instead of one.

One sample: one batch's wall time divided by N, in seconds per child.  Each
side runs its batches in an event loop of its own, created for the batch
series and closed after it.  With benchmarks disabled (the normal test run)
each side runs one batch of a few children and every result is checked:
exit codes, the output, nothing left behind.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import _compare
from _compare import Scenario, Side, Target, compare

import pidproc.asyncio

TRUE = "/bin/true"
ECHO = "/bin/echo"

Create = Callable[..., Awaitable[Any]]


def _sides() -> list[tuple[str, Create]]:
    return [
        ("pidproc.asyncio", pidproc.asyncio.create_subprocess_exec),
        ("stdlib asyncio", asyncio.create_subprocess_exec),
    ]


async def _wait_batch(create: Create, count: int) -> None:
    async def one(i: int) -> None:
        p = await create(TRUE)
        rc = await p.wait()
        assert rc == 0, rc

    await asyncio.gather(*(one(i) for i in range(count)))


async def _pipe_batch(create: Create, count: int) -> None:
    async def one(i: int) -> None:
        p = await create(ECHO, str(i), stdout=asyncio.subprocess.PIPE)
        out, _ = await p.communicate()
        assert out == b"%d\n" % i and p.returncode == 0, (out, p.returncode)

    await asyncio.gather(*(one(i) for i in range(count)))


def many_at_once(
    name: str, create: Create, batch: Callable[[Create, int], Awaitable[None]], count: int
) -> Side:
    def run(n: int) -> list[float]:
        out = []
        loop = asyncio.new_event_loop()
        try:
            with warnings.catch_warnings():
                # 3.12's child-watcher deprecation, on the stdlib side.
                warnings.simplefilter("ignore", DeprecationWarning)
                for _ in range(n):
                    t0 = time.perf_counter()
                    loop.run_until_complete(batch(create, count))
                    out.append((time.perf_counter() - t0) / count)
        finally:
            loop.close()
        return out

    return Side(name, run)


def _check_nothing_left() -> None:
    """Every child reaped: none left, not even a zombie."""
    left = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                left += f.read().split()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    assert not left, f"children left behind: {left}"


def _scenario(key: str, title: str, batch: Any, count: int) -> Scenario:
    return Scenario(
        key,
        f"{count} children at once: {title}",
        "one batch's wall time / its number of children, in seconds",
        [many_at_once(name, create, batch, count) for name, create in _sides()],
        [Target.at_most("stdlib asyncio", 1.00)],
        rounds=30,
        per_round=2,
        quick_per_round=1,
    )


def test_s9a_many_true_at_once(benchmark: Any) -> None:
    count = 8 if _compare.quick(benchmark) else 200
    result = compare(
        benchmark, _scenario("S9a", "create_subprocess_exec(true) + wait()", _wait_batch, count)
    )
    assert all(s.samples for s in result.sides)
    _check_nothing_left()


def test_s9b_many_echo_at_once(benchmark: Any) -> None:
    count = 8 if _compare.quick(benchmark) else 200
    result = compare(
        benchmark,
        _scenario("S9b", "create_subprocess_exec(echo, stdout=PIPE) + communicate()",
                  _pipe_batch, count),
    )  # fmt: skip
    assert all(s.samples for s in result.sides)
    _check_nothing_left()
