"""S1, S2, S4: the cost of a spawn, against the stdlib and the C floor.

S1  ``Popen(["/bin/true"]).wait()``; also a C loop of vfork+execve+waitpid
    (bench/floor.c), the floor any spawner pays on this kernel.
S2  ``run(["/bin/true"], timeout=10)``: the stdlib waits with a sleep loop
    (0.5 ms first nap), pidproc with poll() on the pidfd.
S4  spawning from a parent holding 2 GiB of touched memory, run in a child
    Python (bench/_bigparent.py) so this process stays small: plain, and with
    user=/group=/extra_groups= (the stdlib forks there; pidproc never does).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import _compare
import pytest
from _compare import Scenario, Side, Target, compare, timed

import pidproc

TRUE = "/bin/true"
PIDFD_PATHS = ("stdlib", "pidfd_spawn", "clone3", "clone", "fork")


def spawn_wait(mod: ModuleType) -> Side:
    def run(n: int, _clock: Callable[[], float] = time.perf_counter) -> list[float]:
        out = []
        for _ in range(n):
            t0 = _clock()
            p = mod.Popen([TRUE])
            rc = p.wait()
            out.append(_clock() - t0)
            assert rc == 0, rc
            # pidproc's side really went through a pidfd path.
            assert getattr(p, "backend", "stdlib") in PIDFD_PATHS, p.backend
        return out

    return Side("pidproc" if mod is pidproc else "stdlib", run)


def floor_side(exe: str) -> Side:
    def run(n: int) -> list[float]:
        proc = subprocess.run([exe, str(n), TRUE], capture_output=True, text=True)
        assert proc.returncode == 0, f"floor: rc {proc.returncode} {proc.stderr}"
        took = [int(line) / 1e9 for line in proc.stdout.split()]
        assert len(took) == n
        return took

    return Side("C floor (vfork)", run)


def test_s1_spawn_wait(benchmark: Any) -> None:
    sides = [spawn_wait(pidproc), spawn_wait(subprocess)]
    floor, why = _compare.c_helper("floor")
    targets = [Target.at_most("stdlib", 1.00), Target.at_most("C floor (vfork)", 1.10)]
    if floor is not None:
        sides.append(floor_side(floor))
    compare(
        benchmark,
        Scenario(
            "S1",
            "spawn and wait /bin/true",
            "one Popen([...]).wait(), in seconds",
            sides,
            targets,
            rounds=150,
            per_round=40,
            quick_per_round=3,
            note="" if floor is not None else f"C floor not run: {why}",
            context=[("stdlib", "C floor (vfork)")],
        ),
    )


def run_timeout(mod: ModuleType) -> Side:
    def op() -> None:
        cp = mod.run([TRUE], timeout=10)
        assert cp.returncode == 0, cp

    return Side("pidproc" if mod is pidproc else "stdlib", timed(op))


def test_s2_run_timeout(benchmark: Any) -> None:
    # pidproc.run is the stdlib's function on pidproc.Popen, not the stdlib's own.
    assert pidproc.run is not subprocess.run
    compare(
        benchmark,
        Scenario(
            "S2",
            "run([...], timeout=10) on /bin/true",
            "one run([...], timeout=10), in seconds",
            [run_timeout(pidproc), run_timeout(subprocess)],
            [Target.faster("stdlib", 1.8)],
            rounds=100,
            per_round=25,
            quick_per_round=3,
        ),
    )


# ---- S4: a big parent -------------------------------------------------------


class BigParent:
    """The S4 worker process and its line protocol (see _bigparent.py)."""

    def __init__(self, size: int) -> None:
        src = os.path.dirname(os.path.dirname(os.path.abspath(pidproc.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(_compare.HERE, "_bigparent.py"), str(size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        hello = self.ask({"cmd": "hello"})
        self.rss = int(hello["rss"])

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"_bigparent.py died (rc {self.proc.poll()})"
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def side(self, module: str, label: str, kwargs: dict[str, Any]) -> Side:
        def run(n: int) -> list[float]:
            answer = self.ask({"cmd": "spawn", "module": module, "kwargs": kwargs, "n": n})
            samples: list[float] = answer["samples"]
            return samples

        return Side(label, run)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


GIB = 1 << 30


@pytest.fixture(scope="module")
def big_parent(request: pytest.FixtureRequest) -> Iterator[BigParent]:
    size = 64 << 20 if _compare.quick_config(request.config) else 2 * GIB
    parent = BigParent(size)
    # The pages were written, not merely reserved.
    assert parent.rss >= size, (parent.rss, size)
    yield parent
    parent.close()


def nobody() -> dict[str, Any]:
    pw = pwd.getpwnam("nobody")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def test_s4_big_parent_plain(benchmark: Any, big_parent: BigParent) -> None:
    compare(
        benchmark,
        Scenario(
            "S4a",
            f"spawn and wait /bin/true from a {big_parent.rss / GIB:.2g} GiB parent",
            "one Popen([...]).wait() in the big parent, in seconds",
            [big_parent.side("pidproc", "pidproc", {}), big_parent.side("stdlib", "stdlib", {})],
            [Target.at_most("stdlib", 1.00)],
            rounds=80,
            per_round=20,
            quick_per_round=2,
        ),
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="user=/group= need root (CAP_SETUID)")
def test_s4_big_parent_user_group(benchmark: Any, big_parent: BigParent) -> None:
    ids = nobody()
    # Both really switch identity: the child reports the ids it runs with.
    expect = f"{ids['user']}\n{ids['group']}\n{ids['group']}\n"
    for module in ("pidproc", "stdlib"):
        answer = big_parent.ask({"cmd": "ids", "module": module, "kwargs": ids})
        assert answer["stdout"] == expect, (module, answer)
    result = compare(
        benchmark,
        Scenario(
            "S4b",
            f"spawn with user=/group=/extra_groups= from a {big_parent.rss / GIB:.2g} GiB parent",
            "one Popen([...], user=, group=, extra_groups=[]).wait(), in seconds",
            [
                big_parent.side("pidproc", "pidproc", ids),
                big_parent.side("stdlib", "stdlib (forks)", ids),
            ],
            [Target.faster("stdlib (forks)", 50)],
            rounds=25,
            per_round=3,
            quick_per_round=2,
        ),
    )
    assert all(s.samples for s in result.sides)
