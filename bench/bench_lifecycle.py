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
S12d  S12b split in two (where kill_tree takes a cgroup): the same
      ``kill_tree`` spawns with the child left in our own cgroup, so
      everything of pidproc's runs (the pool, the request, the
      ``cgroup.events`` read at the reap) but not ``CLONE_INTO_CGROUP``.
      The plain spawn against it is pidproc's share; the real ``kill_tree``
      spawn against it is the kernel's, for a child born into and running
      in a cgroup of its own.  No target: a measurement that explains S12b.
      Run apart from S12b, whose rounds a fourth side would change (longer
      pauses between its batches).

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


def not_moved_into_its_cgroup(kill_tree: Side) -> Side:
    """The ``kill_tree=True`` side's spawns with the child left in our
    cgroup: the request is filled as usual, then its cgroup entry is taken
    out.  A measuring device only; the child is in no tree."""
    apply = _lifecycle.Lifecycle.apply

    def apply_without_entry(self: _lifecycle.Lifecycle, request: Any) -> None:
        apply(self, request)
        request.struct.into_cgroup = 0

    def run(n: int) -> list[float]:
        _lifecycle.Lifecycle.apply = apply_without_entry  # type: ignore[method-assign]
        try:
            return kill_tree.run(n)
        finally:
            _lifecycle.Lifecycle.apply = apply  # type: ignore[method-assign]

    return Side("pidproc kill_tree, child not moved into its cgroup", run)


def _mechanism(option: str) -> str | None:
    with pidproc.Popen([TRUE], **{option: True}) as p:
        pass
    value: str | None = getattr(p, option)
    return value


def with_and_without(option: str, mechanism: str) -> tuple[Side, Side]:
    """The spawn with the option (honoured by ``mechanism``) and without."""
    with_it = spawn_wait(
        f"pidproc {option}={mechanism}",
        lambda argv: pidproc.Popen(argv, **{option: True}),
        {option: mechanism},
    )
    return with_it, spawn_wait("pidproc plain", pidproc.Popen, {option: None})


def scenario(key: str, option: str) -> Scenario:
    mechanism = _mechanism(option)
    assert mechanism is not None
    with_it, plain = with_and_without(option, mechanism)
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


def split_scenario() -> Scenario:
    with_it, plain = with_and_without("kill_tree", "cgroup")
    return Scenario(
        "S12d",
        "S12b split: kill_tree=True with the child not moved into its cgroup",
        "one Popen([...]).wait(), in seconds",
        [not_moved_into_its_cgroup(with_it), with_it, plain],
        [],
        rounds=120,
        per_round=30,
        quick_per_round=2,
        note="the plain side's speed-up below 1 is pidproc's share of S12b; "
        "the kill_tree=cgroup side's, the kernel's",
    )


@needs_core
def test_s12a_die_with_parent(benchmark: Any) -> None:
    compare(benchmark, scenario("S12a", "die_with_parent"))


def test_s12b_kill_tree(benchmark: Any) -> None:
    compare(benchmark, scenario("S12b", "kill_tree"))


def test_s12d_kill_tree_split(benchmark: Any) -> None:
    if _mechanism("kill_tree") != "cgroup":
        pytest.skip(f"kill_tree takes no cgroup here: {_lifecycle.Lifecycle.cgroup_reason()}")
    compare(benchmark, split_scenario())


def test_s12c_kill_tree_process_group(benchmark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lifecycle, "_USE_CGROUP", False)
    compare(benchmark, scenario("S12c", "kill_tree"))
