"""Races and signals: many threads on shared children, foreign reapers, signal storms.

Every wait here is bounded (a timeout, or a child that exits by itself), and
every thread is joined with a deadline, so a hang fails the test instead of
stalling the run.  Return codes are known in advance and checked exactly.
"""

from __future__ import annotations

import collections
import faulthandler
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pidproc

from ._support.features import IN_PRIVATE_PID_NS, PRIVATE_PID_NS, keeps_exit_status, private_pid_ns
from ._support.leaks import children, collect, live_fds
from ._support.programs import program, run_program
from .conftest import PY, USABLE
from .stress import record, scale

BOUND = 20.0  # seconds any single wait may take before it counts as a hang


HAS_EXIT_INFO = keeps_exit_status()


class Shared:
    """Children published by one thread for the others to wait on too."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: collections.deque[tuple[Any, int]] = collections.deque(maxlen=16)

    def publish(self, p: Any, code: int) -> None:
        with self.lock:
            self.items.append((p, code))

    def pick(self, rng: random.Random) -> tuple[Any, int] | None:
        with self.lock:
            return rng.choice(self.items) if self.items else None


def worker(seed: int, ops: int, shared: Shared, errors: list[str]) -> None:
    rng = random.Random(seed)
    try:
        for _ in range(ops):
            kind = rng.randrange(7)
            code = rng.randrange(256)
            if kind == 0:  # exit code, waited for by us and others, no timeout
                p = pidproc.Popen(["sh", "-c", f"exit {code}"])
                shared.publish(p, code)
                got = p.wait()
            elif kind == 1:  # killed while others may wait on it
                p = pidproc.Popen(["sleep", "10"])
                shared.publish(p, -9)
                p.kill()
                code, got = -9, p.wait(timeout=BOUND)
            elif kind == 2:  # timing out, then terminated
                p = pidproc.Popen(["sleep", "10"])
                try:
                    p.wait(timeout=rng.choice([0, 0.001, 0.005]))
                    errors.append("sleep 10 did not time out")
                except subprocess.TimeoutExpired:
                    pass
                if p.poll() is not None:
                    errors.append(f"poll of a running child said {p.returncode}")
                shared.publish(p, -15)
                p.terminate()
                code, got = -15, p.wait(timeout=BOUND)
            elif kind == 3:  # polled until it exits
                p = pidproc.Popen(["sh", "-c", f"sleep 0.00{rng.randrange(10)}; exit {code}"])
                shared.publish(p, code)
                deadline = time.monotonic() + BOUND
                while p.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.0005)
                got = p.returncode
            elif kind == 4:  # join somebody else's child
                picked = shared.pick(rng)
                if picked is None:
                    continue
                p, code = picked
                got = p.wait(timeout=BOUND) if rng.random() < 0.5 else p.wait()
                if p.poll() != code:
                    errors.append(f"poll after wait said {p.returncode}, expected {code}")
            elif kind == 5:  # pipes
                with pidproc.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:
                    data = os.urandom(rng.randrange(1, 70000))
                    out, _ = p.communicate(data, timeout=BOUND)
                code, got = 0, p.returncode
                if out != data:
                    errors.append("cat returned other bytes")
            else:  # signal after exit: a no-op, never another process
                p = pidproc.Popen(["sh", "-c", f"exit {code}"])
                got = p.wait(timeout=BOUND)
                p.kill()
                p.send_signal(signal.SIGUSR1)
                if p.returncode != code:
                    errors.append(f"a signal after exit changed the code to {p.returncode}")
            if got != code:
                errors.append(f"kind {kind}: expected {code}, got {got}")
    except Exception as e:  # noqa: BLE001 - every failure is reported
        errors.append(f"{type(e).__name__}: {e}")


def run_threads(target: Any, args: list[tuple[Any, ...]], limit: float) -> list[str]:
    threads = [threading.Thread(target=target, args=a, daemon=True) for a in args]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    hung = [t.name for t in threads if t.is_alive()]
    if hung:
        faulthandler.dump_traceback(sys.stderr)
    return hung


def test_eight_threads(backend: str) -> None:
    """8 threads spawning, waiting (several on one child, with and without a
    timeout), polling, killing and timing out: no hang, every code right."""
    ops = scale(60, 2000)
    collect()
    fds_before, kids_before = live_fds(), children()
    shared, errors = Shared(), []
    hung = run_threads(
        worker, [(seed, ops, shared, errors) for seed in range(8)], limit=60 + ops * 0.2
    )
    shared.items.clear()
    collect()
    leaked = len(live_fds() - fds_before)
    left = [kid for kid in children() if kid not in kids_before]
    record(f"8 threads racing ({backend})", 8 * ops, len(errors) + len(hung), leaked + len(left))
    assert not hung, "threads hung"
    assert errors == []
    assert not leaked
    assert not left


# ---- foreign reapers ------------------------------------------------------


@pytest.mark.parametrize("mode", ["sigchld-ignored", "sigchld-handler", "wait-thread"])
def test_foreign_reaper(backend: str, mode: str) -> None:
    """Children reaped behind pidproc's back: the real exit status where the
    kernel keeps it (PIDFD_INFO_EXIT, 6.15+), else what the stdlib says (0);
    never a hang, never a signal to someone else's child."""
    n = scale(24, 400)
    env = dict(os.environ, PIDPROC_BACKEND=backend)
    out = run_program("races_reapers", mode, str(n), timeout=120, env=env)
    expected = backend
    if backend == "pidfd_spawn" and mode.startswith("sigchld"):
        # By design: while SIGCHLD is ignored or handled, pidfd_spawn is not
        # taken (the child could be reaped before glibc names its pid); the
        # request goes down the chain to the next path.
        expected = next(b for b in USABLE if b != "pidfd_spawn")
    assert out["backend"] == expected
    # With a pidfd: the real code, from the kernel if someone else reaped it.
    # Without one (path pid; path fork when a reaper won before its
    # pidfd_open, after the stdlib's spawn): what the stdlib reports, the
    # code, or 0 when it lost the race.
    wrong = [
        (code, rc, held)
        for code, rc, held in out["got"]
        if rc != code and (held and HAS_EXIT_INFO or rc != 0)
    ]
    if out["backend"] in ("clone3", "clone", "pidfd_spawn"):
        assert all(held for _, _, held in out["got"])  # CLONE_PIDFD: never without
    record(f"foreign reaper: {mode} ({backend})", n, len(wrong) + out["hangs"], 0)
    assert out["hangs"] == 0
    assert wrong == []
    assert out["bystander_running"]


@pytest.mark.skipif(not private_pid_ns(), reason=PRIVATE_PID_NS)
@pytest.mark.parametrize("mode", ["sigchld-handler", "wait-thread"])
def test_foreign_reaper_then_pid_reuse(pidfd_backend: str, mode: str) -> None:
    """A reaped by a SIGCHLD handler or a waiting thread, B gets A's PID:
    A.kill(), A.poll(), A.wait() never touch B."""
    env = dict(os.environ, PIDPROC_BACKEND=pidfd_backend)
    cmd = [*IN_PRIVATE_PID_NS, PY, program("races_reuse_by_reaper"), mode]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "survived"


@pytest.mark.skipif(not private_pid_ns(), reason=PRIVATE_PID_NS)
@pytest.mark.skipif("fork" not in USABLE, reason="no fork path here")
def test_fork_path_child_reaped_before_its_pidfd_was_opened() -> None:
    """No pidfd could be had, and the child is known gone: it reads as the
    stdlib reads a foreign reap (0), and its PID is never signalled."""
    cmd = [*IN_PRIVATE_PID_NS, PY, program("races_reaped_before_pidfd_open")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "survived None 0"


# ---- signal storms --------------------------------------------------------


def storm_period() -> float:
    """A millisecond where a spawn and wait costs about that. On a machine
    where it costs far more (an emulated VM on shared cores: 40 ms and up),
    a quarter of that cost, at most 10 ms: there a Python handler every
    millisecond of wall time leaves the main thread almost no time between
    signals, and the test would time out measuring the machine. Either way
    many signals land inside every wait."""
    t0 = time.monotonic()
    subprocess.run(["true"], check=True)
    return min(max(0.001, (time.monotonic() - t0) / 4), 0.01)


class Storm:
    """The storm's period (seconds) and how many signals it has delivered."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.hits = 0


@pytest.fixture
def storm() -> Iterator[Storm]:
    """SIGALRM every storm_period(), with a Python handler, for the test's length."""
    period = storm_period()
    hits = Storm(period)

    def handler(signum: int, frame: Any) -> None:
        hits.hits += 1

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, period, period)
    try:
        yield hits
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)


STATUS = ["sh", "-c", "grep -E '^Sig(Blk|Ign|Cgt)' /proc/self/status"]


def storm_round(module: Any, i: int) -> list[Any]:
    """One round of everything that waits, each outcome recorded."""
    out: list[Any] = []
    p = module.Popen(["sh", "-c", f"sleep 0.002; exit {i % 200}"])
    out.append(p.wait())
    p = module.Popen(["sleep", "10"])
    try:
        p.wait(timeout=0.005)
    except subprocess.TimeoutExpired:
        out.append("timeout")
    out.append(p.poll())
    p.kill()
    out.append(p.wait(timeout=BOUND))
    p = module.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    data = bytes(range(256)) * (i % 300 + 1)
    out.append(p.communicate(data, timeout=BOUND)[0] == data)
    p = module.Popen(["sh", "-c", "echo a; exec sleep 10"], stdout=subprocess.PIPE)
    assert p.stdout is not None
    out.append(p.stdout.readline())  # a blocking read, interrupted again and again
    try:
        p.communicate(timeout=0.01)
    except subprocess.TimeoutExpired:
        out.append("timeout")
    p.terminate()
    out.append(p.communicate(timeout=BOUND))
    out.append(p.returncode)
    p = module.Popen(["sh", "-c", "sleep 0.003"])
    deadline = time.monotonic() + BOUND
    while p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0002)
    out.append(p.returncode)
    if i % 10 == 0:
        # The C paths block signals around clone and the child restores the
        # mask and resets handlers: the program starts as the stdlib's does.
        out.append(module.run(STATUS, stdout=subprocess.PIPE, timeout=BOUND).stdout)
        try:
            module.Popen(["pidproc-no-such-program"])
        except FileNotFoundError as e:
            out.append(str(e))
    return out


# What one round of storm_round waits for at the least, both modules
# together: its sleeps and timeouts (2, 5, 10 and 3 ms each), not counting
# the spawns.  Half of it, in signals, is what a round must have seen.
ROUND_WAITS = 2 * (0.002 + 0.005 + 0.01 + 0.003)


def test_signal_storm(backend: str, storm: Storm) -> None:
    """No EINTR escapes wait, communicate, poll or spawn, and every result
    equals the stdlib's under the same storm."""
    rounds = scale(15, 400)
    divergences, errors = 0, []
    start = storm.hits
    for i in range(rounds):
        try:
            ours = storm_round(pidproc, i)
            theirs = storm_round(subprocess, i)
        except Exception as e:  # noqa: BLE001 - InterruptedError above all
            errors.append(f"{type(e).__name__}: {e}")
            continue
        divergences += ours != theirs
        if ours != theirs:
            errors.append(f"round {i}: {ours} != {theirs}")
    hits = storm.hits - start
    record(f"signal storm, SIGALRM every 1-10 ms ({backend})", rounds, divergences + len(errors), 0)
    assert errors == []
    # The storm really blew during the waits: ten signals a round where the
    # period is a millisecond, as many as half the waits hold where the
    # period is longer (storm_period, on a slow machine).
    assert hits > rounds * min(10, ROUND_WAITS / 2 / storm.period)


def test_signal_storm_while_threads_race(backend: str, storm: Storm) -> None:
    """The storm lands on the main thread while four others race: nothing
    interrupted anywhere."""
    ops = scale(20, 400)
    shared, errors = Shared(), []
    hung = run_threads(worker, [(s, ops, shared, errors) for s in range(4)], 60 + ops * 0.2)
    shared.items.clear()
    assert not hung
    assert errors == []
    assert storm.hits > 0  # it blew
