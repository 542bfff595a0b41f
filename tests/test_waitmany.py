"""wait_any and as_completed: many processes, one epoll set, no sleep loop."""

from __future__ import annotations

import os
import random
import resource
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pidproc
from pidproc import _pidfd

from ._support.leaks import children, collect, open_fds
from ._support.programs import program
from .conftest import PY

# Blocks until its stdin is closed, then exits with the code it was given.
HOLD = ["sh", "-c", 'read x; exit "$0"']


def held(code: int, mod: Any = pidproc) -> Any:
    return mod.Popen([*HOLD, str(code)], stdin=subprocess.PIPE)


def release(p: Any) -> None:
    p.stdin.close()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    """Every test leaves no fd and no child behind."""

    before_fds, before_children = open_fds(), {pid for pid, _ in children()}
    yield
    collect()
    left = {fd for fd in open_fds() - before_fds if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not left, f"fds left open: {left}"
    assert not [c for c in children() if c[0] not in before_children], children()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if anything naps: the waits must come from the kernel."""

    def boom(_: float) -> None:
        raise AssertionError("time.sleep called while waiting")

    monkeypatch.setattr(time, "sleep", boom)


def test_yields_in_exit_order(no_sleep: None) -> None:
    procs = [held(i) for i in range(12)]
    order = list(range(12))
    random.Random(7).shuffle(order)
    it = pidproc.as_completed(procs)
    for i in order:
        release(procs[i])
        p = next(it)
        assert p is procs[i] and p.returncode == i
    with pytest.raises(StopIteration):
        next(it)


def test_mixed_popens_and_pidfds() -> None:
    ours = held(3)
    stdlib = held(4, subprocess)
    other = held(5)
    pf = pidproc.PidFd.from_popen(other)
    got = []
    for p in (ours, stdlib, other):
        release(p)
    for done in pidproc.as_completed([ours, stdlib, pf]):
        got.append(done)
    assert {id(x) for x in got} == {id(ours), id(stdlib), id(pf)}
    assert (ours.returncode, stdlib.returncode, pf.returncode) == (3, 4, 5)
    # Reaped through the PidFd: the Popen reads the status the kernel kept
    # (PIDFD_INFO_EXIT, 6.15+), else 0, as the stdlib for a foreign reap.
    assert other.wait() == (5 if _pidfd._EXIT_INFO_KEPT else 0)
    pf.close()


def test_a_process_that_is_not_ours() -> None:
    # A grandchild: it exits at once, its parent reaps it when told.
    middle = pidproc.Popen(
        [PY, program("reaps_when_told"), "17"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert middle.stdin is not None and middle.stdout is not None
    gpid = int(middle.stdout.readline())
    with pidproc.PidFd.open(gpid) as grandchild:
        slow = held(0)
        if _pidfd._EXIT_INFO_KEPT:
            # Exited but unreaped: no status yet, so it is not "completed".
            with pytest.raises(TimeoutError):
                pidproc.wait_any([grandchild], timeout=0.1)
            middle.stdin.write("\n")
            middle.stdin.flush()
            assert pidproc.wait_any([slow, grandchild], timeout=10) is grandchild
            assert grandchild.returncode == 17
        else:
            assert pidproc.wait_any([slow, grandchild], timeout=10) is grandchild
            assert grandchild.returncode is None  # the kernel cannot say
        release(slow)
        assert slow.wait() == 0
    middle.stdin.close()
    assert middle.wait() == 0
    middle.stdout.close()


def test_wait_any_returns_the_first_and_leaves_the_rest(no_sleep: None) -> None:
    procs = [held(i) for i in range(5)]
    release(procs[3])
    assert pidproc.wait_any(procs) is procs[3]
    assert procs[3].returncode == 3
    assert [p.returncode for p in procs] == [None, None, None, 3, None]
    assert all(p.poll() is None for i, p in enumerate(procs) if i != 3)
    # One already finished comes back at once.
    assert pidproc.wait_any(procs) is procs[3]
    for p in procs:
        release(p)
        p.wait()


def test_timeout_raises_and_reaps_nothing() -> None:
    procs = [held(i) for i in range(3)]
    with pytest.raises(TimeoutError, match="3 of 3"):
        pidproc.wait_any(procs, timeout=0.05)
    it = pidproc.as_completed(procs, timeout=1.0)  # room for a loaded machine
    release(procs[1])
    assert next(it) is procs[1]
    with pytest.raises(TimeoutError, match="2 of 3"):
        next(it)
    assert procs[0].returncode is None and procs[2].returncode is None
    for p in procs:
        release(p)
        p.wait()


def test_duplicates_empty_and_finished() -> None:
    p = held(1)
    release(p)
    assert list(pidproc.as_completed([p, p, p])) == [p]
    assert list(pidproc.as_completed([p])) == [p]  # already finished
    assert list(pidproc.as_completed([])) == []
    with pytest.raises(ValueError):
        pidproc.wait_any([])
    with pytest.raises(TypeError):
        list(pidproc.as_completed([os.getpid()]))  # type: ignore[list-item]


def test_popen_without_a_pidfd() -> None:
    with pidproc.use_backend("pid"):
        p = held(8)
    assert p.pidfd is None
    release(p)
    assert pidproc.wait_any([p], timeout=10) is p and p.returncode == 8


def test_closing_the_generator_early_closes_its_fds() -> None:
    procs = [held(i, subprocess) for i in range(4)]  # pidfds opened by as_completed
    it = pidproc.as_completed(procs)
    release(procs[0])
    assert next(it) is procs[0]
    it.close()
    for p in procs[1:]:
        release(p)
        p.wait()


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def test_two_thousand_children(no_sleep: None) -> None:
    count = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _raise_nofile(count + 256)
    try:
        procs = [pidproc.Popen(["sh", "-c", f"exit {i % 200}"]) for i in range(count)]
        seen = set()
        for p in pidproc.as_completed(procs, timeout=60):
            assert id(p) not in seen
            seen.add(id(p))
        assert len(seen) == count
        assert [p.returncode for p in procs] == [i % 200 for i in range(count)]
        for p in procs:
            p.__exit__(None, None, None)  # close the pidfds now, not at gc
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
