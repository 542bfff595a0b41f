"""File descriptors: a program that runs with the stdlib under a soft
RLIMIT_NOFILE runs with pidproc under the same limit.

The stdlib holds a child by its PID and needs no fd for it; pidproc holds a
pidfd.  So: a reaped child holds none unless the program read
``Popen.pidfd``; a pidfd is kept only below three quarters of the soft limit
(a child spawned above is held by its PID, ``backend`` ending in
``-no-pidfd``); pidproc's own users of a pidfd (waits, signals,
``as_completed``, asyncio) pin it so that a reap in another thread never
frees a number still in use.

The programs run in fresh interpreters that lower their own soft limit
first (what ``prlimit --nofile=1024:...`` does from outside), once with the
stdlib and once with pidproc on each path, and report what they got.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import subprocess
import threading
import time
from typing import Any

import pytest

import pidproc

from ._support.leaks import children, open_fds
from ._support.programs import program
from .conftest import PY, USABLE
from .stress import STRESS, record, scale

NO_PIDFD = "-no-pidfd"
_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

# (soft limit, children, threads): always more children than the soft
# limit.  The normal run takes the main thread at 1024 and four threads at
# 256 on each path; the stress session every combination.
LIMITS = [(1024, 1500), (256, 400)]
CASES = [
    (soft, n, threads)
    for soft, n in LIMITS
    for threads in (1, 4)
    if STRESS or (soft, threads) in ((1024, 1), (256, 4))
]


def run_program(module: str, soft: int, n: int, rows: str, backend: str | None = None,
                threads: int = 1) -> dict[str, Any]:  # fmt: skip
    env = dict(os.environ)
    env.pop("PIDPROC_BACKEND", None)
    if backend is not None:
        env["PIDPROC_BACKEND"] = backend
    argv = [PY, program("fd_limit_many_children"), str(soft), str(n), str(threads), rows, module]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out: dict[str, Any] = json.loads(r.stdout)
    return out


needs_hard_limit = pytest.mark.skipif(
    _HARD != resource.RLIM_INFINITY and _HARD < 1024,
    reason=f"the hard RLIMIT_NOFILE ({_HARD}) is below the soft limits tried",
)


@needs_hard_limit
@pytest.mark.parametrize(("soft", "n"), LIMITS, ids=[f"soft{s}" for s, _ in LIMITS])
def test_the_stdlib_runs_both_programs(soft: int, n: int) -> None:
    """The reference: the stdlib manages both programs under the limit."""
    out = run_program("subprocess", soft, n, "12")
    assert out["errors"] == []
    assert out["finished"] == [n, [0]]
    assert out["alive"] == [n, [-9]]


@needs_hard_limit
@pytest.mark.parametrize(
    ("soft", "n", "threads"), CASES, ids=[f"soft{s}-threads{t}" for s, _, t in CASES]
)
def test_pidproc_runs_both_programs(backend: str, soft: int, n: int, threads: int) -> None:
    out = run_program("pidproc", soft, n, "12", backend, threads)
    leaked = out["children_left"]
    record(f"RLIMIT_NOFILE {soft}, {n} children ({backend}, {threads} thread(s))",
           2 * n, len(out["errors"]), leaked)  # fmt: skip
    assert out["errors"] == []
    assert out["finished"] == [n, [0]]
    assert out["alive"] == [n, [-9]]
    assert leaked == 0
    # Finished children held nothing: the fd count is back where it began.
    assert out["fds_after_finished"] < 16
    assert out["fds_after_alive"] < 16
    backends = out["backends"]
    if backend == "pid":
        assert set(backends) == {"pid"}
        return
    # Every finished child had its pidfd (closed at the reap); of those alive
    # at once, the first ones too, and the rest past 3/4 of the limit none.
    assert backends.get(backend, 0) >= n + soft // 2
    assert backends.get(backend + NO_PIDFD, 0) >= n - soft
    assert set(backends) <= {backend, backend + NO_PIDFD}


def test_unread_pidfd_is_closed_at_the_reap(backend: str) -> None:
    before = open_fds()
    for reap in ("wait", "wait-timeout", "poll", "communicate", "run"):
        if reap == "run":
            pidproc.run(["true"], check=True)
            assert open_fds() == before, reap
            continue
        p = pidproc.Popen(["true"], stdout=subprocess.PIPE if reap == "communicate" else None)
        if reap == "wait":
            p.wait()
        elif reap == "wait-timeout":
            p.wait(timeout=10)
        elif reap == "poll":
            while p.poll() is None:
                time.sleep(0.001)  # poll() alone reaps: no other wait beside it
        else:
            p.communicate(timeout=10)
        assert p.pidfd is None, reap  # no gc needed: closed at the reap
        assert open_fds() == before, reap


def test_read_pidfd_stays_until_the_with_block_ends(pidfd_backend: str) -> None:
    with pidproc.Popen(["true"]) as p:
        fd = p.pidfd
        assert fd is not None
        p.wait()
        assert p.pidfd == fd  # seen by the program: kept after the reap
        assert os.readlink(f"/proc/self/fd/{fd}").startswith(("anon_inode:[pidfd]", "pidfd:"))
    assert p.pidfd is None


def test_a_registered_pidfd_is_never_closed_under_the_selector(pidfd_backend: str) -> None:
    """Reaped by another thread while registered: the number stays the
    pidfd's (never closed, never reused) until the program unregisters it."""
    p = pidproc.Popen(["sleep", "0.05"])
    with selectors.DefaultSelector() as sel:
        fd = p.pidfd
        assert fd is not None
        sel.register(fd, selectors.EVENT_READ, p)
        t = threading.Thread(target=p.wait)
        t.start()
        t.join(10)
        assert p.returncode == 0
        others = [os.open("/dev/null", os.O_RDONLY) for _ in range(8)]
        try:
            assert fd not in others
            assert sel.select(timeout=10)[0][0].data is p
            sel.unregister(fd)
        finally:
            for o in others:
                os.close(o)
    assert p.pidfd == fd
    del p


def test_as_completed_pins_and_gives_back(pidfd_backend: str) -> None:
    before = open_fds()
    procs = [pidproc.Popen(["sh", "-c", f"sleep 0.0{i}"]) for i in range(5)]
    got = list(pidproc.as_completed(procs, timeout=20))
    assert sorted(id(p) for p in got) == sorted(id(p) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert open_fds() == before  # never read by the program: closed after the call
    assert all(p.pidfd is None for p in procs)


def test_wait_with_timeout_and_reap_in_other_threads(pidfd_backend: str) -> None:
    """Threads waiting with timeouts, polling and signalling one Popen while
    another reaps it and others open files: each gets the returncode, and
    nothing waits on a number that was freed and reused."""
    for _ in range(scale(20, 200)):
        p = pidproc.Popen(["sleep", "0.01"])
        assert _race(p) == [0, 0, 0]
        assert p.pidfd is None


def _race(p: pidproc.Popen) -> list[Any]:  # type: ignore[type-arg]
    results: list[Any] = []
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.close(os.open("/dev/null", os.O_RDONLY))

    def waiter() -> None:
        results.append(p.wait(timeout=10))

    def signaller() -> None:
        p.send_signal(0)
        results.append(p.wait())

    workers = [threading.Thread(target=f) for f in (waiter, waiter, signaller, p.wait)]
    c = threading.Thread(target=churn)
    c.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(20)
    stop.set()
    c.join()
    return results


def test_pidfd_above_three_quarters_is_not_kept(pidfd_backend: str) -> None:
    """The fd budget: with the table filled to just below 3/4 of the soft
    limit, the next child is held by its PID (pidfd None, backend says so),
    waited and signalled as the stdlib does, and leaves nothing behind."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    filler: list[int] = []
    try:
        # The kernel gives the lowest free number: fill every hole below 192.
        while not filler or filler[-1] < 256 * 3 // 4 - 1:
            filler.append(os.open("/dev/null", os.O_RDONLY))
        before = open_fds()
        kids = {pid for pid, _ in children()}
        p = pidproc.Popen(["sleep", "30"])
        assert p.pidfd is None
        assert p.backend == pidfd_backend + NO_PIDFD
        assert open_fds() == before
        assert p.poll() is None
        p.kill()
        assert p.wait(timeout=10) == -9
        assert {pid for pid, _ in children()} == kids
        # Room again: the next child has its pidfd.
        for fd in filler[-8:]:
            os.close(fd)
        del filler[-8:]
        q = pidproc.Popen(["true"])
        assert q.pidfd is not None and q.backend == pidfd_backend
        assert q.wait() == 0
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_as_completed_polls_children_that_have_no_pidfd() -> None:
    """Popens no fd can be had for (table full) are still collected."""
    r = subprocess.run(
        [PY, program("fd_limit_as_completed")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    held, done, codes = r.stdout.split(" ", 2)
    assert int(held) > 60 and int(done) == 120 and codes.strip() == "[0]"


@needs_hard_limit
def test_asyncio_children_beyond_the_soft_limit(backend: str) -> None:
    """1,500 live create_subprocess_exec children under a soft limit of 1024
    (on the default path; 400 under 256 on the others, 1,500 in the stress
    session): asyncio's own pidfd watcher (3.12+) fails with EMFILE;
    pidproc.asyncio watches the first ones through their pidfds and the rest
    in threads, as asyncio's thread watcher does."""
    soft, n = LIMITS[0] if STRESS or backend == USABLE[0] else LIMITS[1]
    env = dict(os.environ, PIDPROC_BACKEND=backend)
    argv = [PY, program("fd_limit_asyncio"), str(soft), str(n)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    record(f"asyncio, RLIMIT_NOFILE {soft}, {n} children ({backend})", n, r.returncode != 0)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [str(n), "[-9]"]
