"""S12: what the lifecycle options cost a spawn, on the default path.

S12a  ``Popen([...], die_with_parent=True).wait()`` against the same spawn
      without it (and the stdlib's, for scale).  Before Linux 7.1, or without
      CAP_SYS_ADMIN: the parent-death signal set in the C child, the clone
      done by the keeper thread (a handover to another thread and back).
S12b  ``kill_tree=True``: a cgroup per child where a cgroup2 directory is
      writable (taken from the pool, given back at the reap after one
      ``cgroup.events`` read), else a new process group.
S12c  ``kill_tree=True`` in process-group mode (the cgroup knob off): what
      kill_tree costs where no cgroup can be made.

Target: each under 5 % of a plain spawn+wait (time ratio <= 1.05).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from _compare import Scenario, Side, Target, compare

import pidproc
from pidproc import _lifecycle, _native

# die_with_parent needs pidproc's own child, so its C core.
needs_core = pytest.mark.skipif(
    _native.MISSING is not None, reason=f"needs pidproc's C core: {_native.MISSING}"
)

TRUE = "/bin/true"


def spawn_wait(name: str, popen: Callable[..., Any], expect: dict[str, str | None]) -> Side:
    def run(n: int, _clock: Callable[[], float] = time.perf_counter) -> list[float]:
        out = []
        for _ in range(n):
            t0 = _clock()
            p = popen([TRUE])
            rc = p.wait()
            out.append(_clock() - t0)
            assert rc == 0, rc
            # The option really was honoured, by the mechanism expected.
            for attr, want in expect.items():
                assert getattr(p, attr) == want, (attr, getattr(p, attr), want)
        return out

    return Side(name, run)


def _mechanism(option: str) -> str | None:
    with pidproc.Popen([TRUE], **{option: True}) as p:
        pass
    value: str | None = getattr(p, option)
    return value


def scenario(key: str, option: str) -> Scenario:
    mechanism = _mechanism(option)
    assert mechanism is not None
    with_it = spawn_wait(
        f"pidproc {option}={mechanism}",
        lambda argv: pidproc.Popen(argv, **{option: True}),
        {option: mechanism},
    )
    plain = spawn_wait("pidproc plain", pidproc.Popen, {option: None})
    stdlib = spawn_wait("stdlib", subprocess.Popen, {})
    return Scenario(
        key,
        f"spawn and wait /bin/true with {option}=True ({mechanism})",
        "one Popen([...]).wait(), in seconds",
        [with_it, plain, stdlib],
        [Target.at_most("pidproc plain", 1.05)],
        rounds=120,
        per_round=30,
        quick_per_round=2,
        context=[("stdlib", "pidproc plain")],
    )


@needs_core
def test_s12a_die_with_parent(benchmark: Any) -> None:
    compare(benchmark, scenario("S12a", "die_with_parent"))


def test_s12b_kill_tree(benchmark: Any) -> None:
    compare(benchmark, scenario("S12b", "kill_tree"))


def test_s12c_kill_tree_process_group(benchmark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lifecycle, "_USE_CGROUP", False)
    compare(benchmark, scenario("S12c", "kill_tree"))
