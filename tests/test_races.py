"""Races and signals: many threads on shared children, foreign reapers, signal storms.

Every wait here is bounded (a timeout, or a child that exits by itself), and
every thread is joined with a deadline, so a hang fails the test instead of
stalling the run.  Return codes are known in advance and checked exactly.
"""

from __future__ import annotations

import collections
import faulthandler
import gc
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pidproc
from pidproc._pidfd_info import PIDFD_INFO_EXIT, pidfd_info

from ._support.leaks import children, open_fds
from .conftest import PY, USABLE
from .stress import record, scale

BOUND = 20.0  # seconds any single wait may take before it counts as a hang


def _kernel_keeps_exit_status() -> bool:
    """PIDFD_INFO_EXIT (Linux 6.15): a status still readable after a foreign reap."""
    with pidproc.use_backend("clone3" if "clone3" in USABLE else None):
        p = pidproc.Popen(["sh", "-c", "exit 5"])
    if p.pidfd is None:
        return False
    os.waitpid(p.pid, 0)
    try:
        for _ in range(100):
            info = pidfd_info(p.pidfd, PIDFD_INFO_EXIT)
            if info is None:
                return False
            if info.exit_status is not None:
                return os.waitstatus_to_exitcode(info.exit_status) == 5
            time.sleep(0.001)
        return False
    finally:
        p.wait()


def _unshare_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return r.returncode == 0


HAS_EXIT_INFO = _kernel_keeps_exit_status()


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
    gc.collect()
    fds_before, kids_before = open_fds(), children()
    shared, errors = Shared(), []
    hung = run_threads(
        worker, [(seed, ops, shared, errors) for seed in range(8)], limit=60 + ops * 0.2
    )
    shared.items.clear()
    gc.collect()
    leaked = len({fd for fd in open_fds() - fds_before if os.path.exists(f"/proc/self/fd/{fd}")})
    left = [kid for kid in children() if kid not in kids_before]
    record(f"8 threads racing ({backend})", 8 * ops, len(errors) + len(hung), leaked + len(left))
    assert not hung, "threads hung"
    assert errors == []
    assert not leaked
    assert not left


# ---- foreign reapers ------------------------------------------------------

REAPERS = r"""
import json, os, random, signal, subprocess, sys, threading, time
import pidproc

mode, n = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
if mode == "sigchld-ignored":
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
elif mode == "sigchld-handler":
    def reap(signum, frame):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
    signal.signal(signal.SIGCHLD, reap)
elif mode == "wait-thread":
    def reaper():
        while not stop.is_set():
            try:
                os.wait()
            except ChildProcessError:
                time.sleep(0.001)
    threading.Thread(target=reaper, daemon=True).start()

# Someone else's child: pidproc must never signal it (whoever reaps it).
quiet = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (0, 1, 2)]
bystander = os.posix_spawn("/bin/sleep", ["sleep", "60"], os.environ, file_actions=quiet)
rng = random.Random(5)
got, hangs = [], 0
for i in range(n):
    code = rng.randrange(1, 256)
    p = pidproc.Popen(["sh", "-c", f"sleep 0.00{rng.randrange(3)}; exit {code}"])
    held = p.pidfd is not None  # read at once: a reaped child's is closed unless read
    how = i % 4
    try:
        if how == 0:
            rc = p.wait(timeout=20)
        elif how == 1:
            rc = p.wait()  # the child exits by itself: bounded
        elif how == 2:
            deadline = time.monotonic() + 20
            while p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0005)
            rc = p.returncode
        else:
            with pidproc.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as c:
                out = c.communicate(b"abc", timeout=20)[0]
            rc = p.wait(timeout=20)
            if out != b"abc":
                rc = "cat"
    except subprocess.TimeoutExpired:
        hangs += 1
        rc = None
    p.kill(); p.terminate()  # after the exit: must reach nobody
    got.append([code, rc, held])
with open(f"/proc/{bystander}/stat") as f:
    running = f.read().rsplit(")", 1)[1].split()[0] in "RS"
os.kill(bystander, signal.SIGKILL)
stop.set()
print(json.dumps({"got": got, "hangs": hangs, "bystander_running": running,
                  "backend": p.backend}))
"""


@pytest.mark.parametrize("mode", ["sigchld-ignored", "sigchld-handler", "wait-thread"])
def test_foreign_reaper(backend: str, mode: str) -> None:
    """Children reaped behind pidproc's back: the real exit status where the
    kernel keeps it (PIDFD_INFO_EXIT, 6.15+), else what the stdlib says (0);
    never a hang, never a signal to someone else's child."""
    n = scale(24, 400)
    env = dict(os.environ, PIDPROC_BACKEND=backend)
    r = subprocess.run(
        [PY, "-c", REAPERS, mode, str(n)], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
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


REUSE_BY_REAPER = r"""
import os, signal, subprocess, sys, threading, time
import pidproc
mode = sys.argv[1]
done = threading.Event()
stop = threading.Event()
thread = None
if mode == "wait-thread":
    def reaper():
        while not stop.is_set():
            try:
                os.wait()
                done.set()
            except ChildProcessError:
                time.sleep(0.0005)
    thread = threading.Thread(target=reaper, daemon=True)
    thread.start()
else:
    def reap(signum, frame):
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        done.set()
    signal.signal(signal.SIGCHLD, reap)
with open("/proc/sys/kernel/pid_max") as f:
    pid_max = int(f.read())
for attempt in range(50):
    done.clear()
    a = pidproc.Popen(["true"])
    done.wait(10)
    if a.pid <= pid_max:
        break
    # pidfd_spawn lost the race to name its child (the reaper took it before
    # glibc read its pid): it says so with a pid above pid_max, which nothing
    # can hold.  Nothing to recycle: those calls must reach nobody; try again.
    a.kill(); a.poll(); a.wait(timeout=5)
else:
    raise SystemExit("the child was never named")
time.sleep(0.05)
assert not os.path.exists(f"/proc/{a.pid}"), "not reaped by the foreign reaper"
stop.set()
if thread is not None:
    thread.join()
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(a.pid - 1))
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
b = subprocess.Popen(["sleep", "30"])
assert b.pid == a.pid, (a.pid, b.pid)
a.kill(); a.poll(); a.wait(timeout=5); a.terminate()
try:
    b.wait(timeout=0.3)
    print("killed or reaped")
except subprocess.TimeoutExpired:
    print("survived")
b.kill(); b.wait()
"""


@pytest.mark.skipif(not _unshare_works(), reason="needs root and unshare --pid (a private PID ns)")
@pytest.mark.parametrize("mode", ["sigchld-handler", "wait-thread"])
def test_foreign_reaper_then_pid_reuse(pidfd_backend: str, mode: str) -> None:
    """A reaped by a SIGCHLD handler or a waiting thread, B gets A's PID:
    A.kill(), A.poll(), A.wait() never touch B."""
    env = dict(os.environ, PIDPROC_BACKEND=pidfd_backend)
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", PY, "-c", REUSE_BY_REAPER, mode]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "survived"


# The fork path opens the pidfd just after the stdlib's spawn: a foreign
# reaper can take the child in between.  The hook reaps it right there.
REAPED_BEFORE_PIDFD_OPEN = r"""
import os, signal, subprocess
import pidproc
pidproc.backends()  # probed with the real pidfd_open
real_pidfd_open = os.pidfd_open
def reap_first(pid, flags=0):
    os.waitpid(pid, 0)  # a foreign reaper, at the worst moment
    return real_pidfd_open(pid, flags)
os.pidfd_open = reap_first
with pidproc.use_backend("fork"):
    a = pidproc.Popen(["true"])
os.pidfd_open = real_pidfd_open
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(a.pid - 1))
b = subprocess.Popen(["sleep", "30"])
assert b.pid == a.pid, (a.pid, b.pid)
a.kill(); a.poll(); a.wait(timeout=5); a.terminate()
try:
    b.wait(timeout=0.3)
    print("killed or reaped", a.pidfd, a.returncode)
except subprocess.TimeoutExpired:
    print("survived", a.pidfd, a.returncode)
b.kill(); b.wait()
"""


@pytest.mark.skipif(not _unshare_works(), reason="needs root and unshare --pid (a private PID ns)")
@pytest.mark.skipif("fork" not in USABLE, reason="no fork path here")
def test_fork_path_child_reaped_before_its_pidfd_was_opened() -> None:
    """No pidfd could be had, and the child is known gone: it reads as the
    stdlib reads a foreign reap (0), and its PID is never signalled."""
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", PY, "-c", REAPED_BEFORE_PIDFD_OPEN]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "survived None 0"


# ---- signal storms --------------------------------------------------------


@pytest.fixture
def storm() -> Iterator[list[int]]:
    """SIGALRM every millisecond, with a Python handler, for the test's length."""
    hits = [0]

    def handler(signum: int, frame: Any) -> None:
        hits[0] += 1

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
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


def test_signal_storm(backend: str, storm: list[int]) -> None:
    """No EINTR escapes wait, communicate, poll or spawn, and every result
    equals the stdlib's under the same storm."""
    rounds = scale(15, 400)
    divergences, errors = 0, []
    start = storm[0]
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
    hits = storm[0] - start
    record(f"signal storm, 1 ms SIGALRM ({backend})", rounds, divergences + len(errors), 0)
    assert errors == []
    assert hits > 10 * rounds  # the storm really blew during the waits


def test_signal_storm_while_threads_race(backend: str, storm: list[int]) -> None:
    """The storm lands on the main thread while four others race: nothing
    interrupted anywhere."""
    ops = scale(20, 400)
    shared, errors = Shared(), []
    hung = run_threads(worker, [(s, ops, shared, errors) for s in range(4)], 60 + ops * 0.2)
    shared.items.clear()
    assert not hung
    assert errors == []
    assert storm[0] > 0  # it blew
