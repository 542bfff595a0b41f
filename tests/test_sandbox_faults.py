"""Faults from real sandboxes: seccomp filters as container runtimes install.

Each scenario runs a fresh interpreter behind a real filter (``tests/_support/seccomp.py``)
that runs one battery of Popen uses (spawn, wait with and without timeout,
poll, signals, communicate, run, the usual errors, close_fds and pass_fds,
user=) through the stdlib and through pidproc on every path usable there.
The outcomes must equal the stdlib's under the same filter and the stdlib's
without any filter, and each run must leave no fd, zombie or child behind.

What seccomp cannot express: the flags of clone3 live in ``struct
clone_args`` in memory, which a filter never sees, so a 5.3/5.4 kernel's
EINVAL for CLONE_CLEAR_SIGHAND is produced by a supervisor thread instead
(SECCOMP_RET_USER_NOTIF), which reads the struct and answers.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ._support import seccomp
from .conftest import PY
from .stress import NOT_OURS, record

pytestmark = pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 not installed")

CLONE_PIDFD = 0x1000
P_PIDFD = 3

BATTERY = r"""
import errno, json, os, select, signal, subprocess, sys
import pidproc

def open_fds():
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))

def children():
    out = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out += f.read().split()
    return out

def outcome(fn):
    try:
        return ["ok", fn()]
    except subprocess.TimeoutExpired as e:  # its message carries the time left
        return ["TimeoutExpired", e.cmd, e.output]
    except Exception as e:
        return [type(e).__name__, getattr(e, "errno", None), getattr(e, "filename", None), str(e)]

SCRATCH = os.environ["PIDPROC_SCRATCH"]
NOEXEC = os.path.join(SCRATCH, "noexec")

def battery(M):
    r = {}
    r["exit"] = outcome(lambda: M.Popen(["sh", "-c", "exit 3"]).wait())

    def timeout_then_terminate():
        p = M.Popen(["sleep", "10"])
        try:
            p.wait(timeout=0.02)
            return "no timeout"
        except subprocess.TimeoutExpired:
            pass
        first = p.poll()
        p.terminate()
        return [first, p.wait(timeout=10), p.poll(), p.wait()]
    r["timeout"] = outcome(timeout_then_terminate)

    def kill():
        p = M.Popen(["sleep", "10"])
        p.kill()
        return p.wait()
    r["kill"] = outcome(kill)

    def usr1():
        p = M.Popen(["sleep", "10"])
        p.send_signal(signal.SIGUSR1)
        return p.wait(timeout=10)
    r["usr1"] = outcome(usr1)

    def signal_after_exit():
        p = M.Popen(["true"])
        p.wait()
        p.kill(); p.terminate(); p.send_signal(signal.SIGUSR1)
        return p.returncode
    r["after_exit"] = outcome(signal_after_exit)

    def communicate():
        p = M.Popen(["cat"], stdin=M.PIPE, stdout=M.PIPE)
        return [p.communicate(b"hello", timeout=10)[0].decode(), p.returncode]
    r["communicate"] = outcome(communicate)

    def communicate_timeout():
        p = M.Popen(["sh", "-c", "echo part; exec sleep 10"], stdout=M.PIPE)
        # Once "part" is in the pipe: the timeout must keep it, however
        # slowly the shell starts (an emulated CPU takes longer than 0.1 s).
        select.select([p.stdout], [], [], 30)
        try:
            p.communicate(timeout=0.1)
            return "no timeout"
        except subprocess.TimeoutExpired:
            pass
        p.kill()
        return [p.communicate()[0].decode(), p.returncode]
    r["communicate_timeout"] = outcome(communicate_timeout)

    def run():
        c = M.run(["sh", "-c", "echo out; echo err >&2; exit 2"], capture_output=True,
                  timeout=10)
        return [c.returncode, c.stdout.decode(), c.stderr.decode()]
    r["run"] = outcome(run)
    r["run_timeout"] = outcome(lambda: M.run(["sleep", "10"], timeout=0.05))

    r["missing"] = outcome(lambda: M.Popen(["pidproc-no-such-program"]))
    r["bad_cwd"] = outcome(lambda: M.Popen(["true"], cwd="/nonexistent"))
    r["dir_as_program"] = outcome(lambda: M.Popen([SCRATCH]))
    r["not_executable"] = outcome(lambda: M.Popen([NOEXEC]))
    r["nul"] = outcome(lambda: M.Popen(["true", "a\0b"]))

    def listing(keep_w=False, **kw):
        rd, wr = os.pipe()
        os.set_inheritable(rd, True)
        os.set_inheritable(wr, True)
        ours = f"pipe:[{os.fstat(rd).st_ino}]"
        if keep_w:
            kw["pass_fds"] = [wr]
        try:
            out = M.run(["ls", "-l", "/proc/self/fd"], stdout=M.PIPE, **kw).stdout.decode()
        finally:
            os.close(rd); os.close(wr)
        names = []
        for line in out.splitlines()[1:]:  # "lr-x------ ... 3 -> pipe:[123]"
            fd, target = int(line.split(" -> ")[0].split()[-1]), line.split(" -> ")[1]
            if target == ours:
                names.append({rd: "r", wr: "w"}.get(fd, f"{fd}=ours"))
            else:
                names.append(str(fd) if fd < 3 else "other")
        return sorted(names)
    r["close_fds"] = outcome(listing)
    r["pass_fds"] = outcome(lambda: listing(keep_w=True))
    r["inherit"] = outcome(lambda: listing(close_fds=False))
    if os.geteuid() == 0:
        r["user"] = outcome(lambda: M.run(["id", "-u"], user=65534, stdout=M.PIPE).stdout.decode())
    return r

before = (open_fds(), children())
result = {"stdlib": battery(subprocess), "paths": {}, "usable": pidproc.backends()}
for name in result["usable"]:
    with pidproc.use_backend(name):
        result["paths"][name] = battery(pidproc)
with pidproc.use_backend(None):
    p = pidproc.Popen(["true"])
    result["default"] = [p.backend, p.pidfd is not None]
    p.wait()
    del p
import gc; gc.collect()
result["leaked"] = [before, (open_fds(), children())]
print(json.dumps(result))
"""

ALL_PIDFD = {
    "clone3": errno.ENOSYS,
    "clone": (errno.EINVAL, 0, CLONE_PIDFD),
    "pidfd_open": errno.ENOSYS,
    "pidfd_send_signal": errno.ENOSYS,
    "waitid": (errno.EINVAL, 0, "==", P_PIDFD),
}

CLONES = {"clone3", "clone"}
STDLIB_SPAWN = {"fork", "pid"}  # the paths on which the stdlib itself spawns
PIDFD_PATHS = {"pidfd_spawn", "clone3", "clone", "fork"}

# name: (rules, the paths the filter takes away from those usable without it)
SCENARIOS: dict[str, tuple[dict[str, seccomp.Rule], set[str]]] = {
    "clone3-ENOSYS": ({"clone3": errno.ENOSYS}, {"clone3"}),
    "clone3-EPERM": ({"clone3": errno.EPERM}, {"clone3"}),
    "no-CLONE_PIDFD": ({"clone3": errno.ENOSYS, "clone": (errno.EINVAL, 0, CLONE_PIDFD)}, CLONES),
    "no-CLONE_PIDFD-EPERM": (
        {"clone3": errno.EPERM, "clone": (errno.EPERM, 0, CLONE_PIDFD)},
        CLONES,
    ),
    # pidfd_open is how pidproc checks for pidfds at all (as Go does): without
    # it every pidfd path is given up, even though CLONE_PIDFD still works.
    "pidfd_open-ENOSYS": ({"pidfd_open": errno.ENOSYS}, PIDFD_PATHS),
    "pidfd_open-EPERM": ({"pidfd_open": errno.EPERM}, PIDFD_PATHS),
    # Signals go by kill(pid) while the child is certainly unreaped.
    "pidfd_send_signal-ENOSYS": ({"pidfd_send_signal": errno.ENOSYS}, set()),
    "pidfd_send_signal-EPERM": ({"pidfd_send_signal": errno.EPERM}, set()),
    # waitid(P_PIDFD) alone (the stdlib waits with wait4, untouched): EINVAL
    # is what a 5.3 kernel says for the unknown idtype.
    "waitid-P_PIDFD-EINVAL": ({"waitid": (errno.EINVAL, 0, "==", P_PIDFD)}, PIDFD_PATHS),
    "waitid-P_PIDFD-EPERM": ({"waitid": (errno.EPERM, 0, "==", P_PIDFD)}, PIDFD_PATHS),
    "all-pidfd": (ALL_PIDFD, PIDFD_PATHS),
    # Pre-5.9 kernels: close_fds walks /proc/self/fd instead.
    "close_range-ENOSYS": ({"close_range": errno.ENOSYS}, set()),
    "close_range-EPERM": ({"close_range": errno.EPERM}, set()),
}


@pytest.fixture(scope="module")
def batteries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every scenario's battery, run side by side (they mostly sleep)."""
    scratch = tmp_path_factory.mktemp("faults")
    (scratch / "noexec").write_text("#!/bin/sh\n")

    def run(rules: dict[str, seccomp.Rule]) -> dict[str, Any]:
        r = seccomp.run_filtered(rules, BATTERY, timeout=120, env={"PIDPROC_SCRATCH": str(scratch)})
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    jobs = {"unfiltered": {}, **{name: s[0] for name, s in SCENARIOS.items()}}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(run, rules) for name, rules in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module")
def unfiltered(batteries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return batteries["unfiltered"]


def test_battery_without_filter_matches_the_stdlib(unfiltered: dict[str, Any]) -> None:
    """The baseline itself: every path equals the stdlib with no filter."""
    base = unfiltered["stdlib"]
    assert base["exit"] == ["ok", 3]
    assert base["timeout"] == ["ok", [None, -15, -15, -15]]
    assert base["communicate_timeout"] == ["ok", ["part\n", -9]]
    assert base["close_fds"] == ["ok", ["0", "1", "2", "other"]]
    assert base["inherit"] == ["ok", ["0", "1", "2", "other", "r", "w"]]
    assert base["pass_fds"] == ["ok", ["0", "1", "2", "other", "w"]]
    for name, got in unfiltered["paths"].items():
        assert got == base, name
    before, after = unfiltered["leaked"]
    assert before == after


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_paths_behave_as_without_the_filter(
    scenario: str, batteries: dict[str, dict[str, Any]], unfiltered: dict[str, Any]
) -> None:
    rules, removed = SCENARIOS[scenario]
    got = batteries[scenario]
    base, stdlib = unfiltered["stdlib"], got["stdlib"]
    # glibc's posix_spawn (2.34+) tries clone3 and falls back to clone on
    # ENOSYS only: under an EPERM filter (older Docker profiles) every call
    # the stdlib hands to os.posix_spawn (3.13: an absolute path, no cwd...)
    # fails with EPERM.  That is the stdlib's own behaviour there, and that of
    # the paths that are its spawn (pid, fork); pidproc's own paths have none.
    broken = {key for key in base if stdlib[key] != base[key]}
    expected = {name: stdlib if name in STDLIB_SPAWN else base for name in got["paths"]}
    divergences = [
        (path, key)
        for path, battery in got["paths"].items()
        for key in base
        if battery.get(key) != expected[path][key]
    ]
    before, after = got["leaked"]
    checks = len(got["paths"]) * len(base)
    record(f"seccomp: {scenario}", checks, len(divergences), before != after)
    if broken:
        record(f"seccomp: {scenario}, the stdlib itself {NOT_OURS}", len(base), len(broken))
    if rules.get("clone3") == errno.EPERM:
        assert all(stdlib[key][:2] == ["PermissionError", errno.EPERM] for key in broken), broken
    else:
        assert not broken
    usable = [b for b in unfiltered["usable"] if b not in removed]
    # A clone3 EPERM retires pidfd_spawn at its first spawn (glibc's goes
    # through clone3 and falls back to clone on ENOSYS only); forced, it
    # then says it cannot work here.
    retired = "pidfd_spawn" in usable and rules.get("clone3") == errno.EPERM
    if "pidfd_spawn" in usable and removed & CLONES:
        # glibc's pidfd_spawn goes through clone3 (then clone, on ENOSYS
        # only): whether it stays listed depends on the errno; its requests
        # are replayed on the next path when it fails.
        usable.remove("pidfd_spawn")
        got["usable"] = [b for b in got["usable"] if b != "pidfd_spawn"]
        if got["default"][0] == "pidfd_spawn":
            got["default"][0] = usable[0]
    assert got["usable"] == usable
    assert got["default"] == [usable[0], usable[0] != "pid"]
    for path, battery in got["paths"].items():
        if retired and path == "pidfd_spawn":
            # Every spawn says the forced path cannot work here; the rest is as ever.
            unavailable = {k for k, v in battery.items() if v[0] == "BackendUnavailable"}
            assert unavailable, battery
            assert all(battery[k] == expected[path][k] for k in set(base) - unavailable), battery
            continue
        assert battery == expected[path], path
    assert before == after


SIGNAL_DENIED = r"""
import os, signal, subprocess, threading, time
import pidproc
for name in ("clone3", "clone", "fork"):
    with pidproc.use_backend(name):
        p = pidproc.Popen(["sleep", "10"])
        assert p.pidfd is not None and p.backend == name
        try:
            signal.pidfd_send_signal(p.pidfd, 0)
        except OSError as e:
            denied = e.errno
        p.terminate()
        codes = [p.wait(timeout=10)]
        # A waiter blocked in waitid holds the wait lock: kill() from another
        # thread must neither wait for it nor be skipped.
        p = pidproc.Popen(["sleep", "10"])
        t = threading.Thread(target=lambda: codes.append(p.wait()))
        t.start()
        time.sleep(0.05)
        p.kill()
        t.join(10)
        codes.append(t.is_alive())
        # Reaped behind our back: the PID is no longer certainly ours.
        p = pidproc.Popen(["true"])
        os.waitpid(p.pid, 0)
        p.kill()
        codes.append(p.returncode)
        print(name, denied, codes)
"""


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM], ids=["ENOSYS", "EPERM"])
def test_pidfd_send_signal_denied_falls_back_to_kill(err: int) -> None:
    r = seccomp.run_filtered({"pidfd_send_signal": err}, SIGNAL_DENIED)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines == [f"{name} {err} [-15, -9, False, 0]" for name in ("clone3", "clone", "fork")]


def _unshare_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return r.returncode == 0


# The PID-reuse race, with pidfd_send_signal denied.  The worst moment: A is
# alive when kill() polls it, then dies, is reaped behind Popen's back and
# B takes its PID, all before kill() falls back to kill(pid).  The hook on
# poll() puts all of that exactly there.
REUSE_DENIED = r"""
import os, signal, subprocess, sys
import pidproc
a = pidproc.Popen(["sleep", "30"])
b = None
real_poll = a.poll
def poll_then_recycle():
    global b
    rc = real_poll()
    if b is None:
        os.kill(a.pid, signal.SIGKILL)
        os.waitpid(a.pid, 0)
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(a.pid - 1))
        b = subprocess.Popen(["sleep", "30"])
        assert b.pid == a.pid, (a.pid, b.pid)
    return rc
a.poll = poll_then_recycle
a.kill()
a.terminate()
try:
    b.wait(timeout=0.3)  # a signal takes a moment to land
    print("killed")
except subprocess.TimeoutExpired:
    print("survived")
b.kill(); b.wait()
"""


@pytest.mark.skipif(not _unshare_works(), reason="needs root and unshare --pid (a private PID ns)")
@pytest.mark.parametrize("backend_name", ["clone3", "clone", "fork"])
def test_denied_pidfd_send_signal_never_kills_a_recycled_pid(backend_name: str) -> None:
    r = seccomp.run_filtered(
        {"pidfd_send_signal": errno.ENOSYS},
        REUSE_DENIED,
        env={"PIDPROC_BACKEND": backend_name},
        prefix=("unshare", "--pid", "--fork", "--mount-proc"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "survived"


FORCED_BUT_DENIED = r"""
import pidproc
for name in ("clone3", "clone"):
    with pidproc.use_backend(name):
        try:
            pidproc.Popen(["true"]).wait()
        except pidproc.BackendUnavailable as e:
            print(name, e)
"""


def test_forcing_a_denied_path_says_why() -> None:
    r = seccomp.run_filtered(
        {"clone3": errno.EPERM, "clone": (errno.EPERM, 0, CLONE_PIDFD)}, FORCED_BUT_DENIED
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "clone3 spawn path 'clone3' was forced but cannot work here: clone3() answered EPERM",
        "clone spawn path 'clone' was forced but cannot work here: clone() answered EPERM",
    ]


# ---- clone3 without CLONE_CLEAR_SIGHAND (Linux 5.3, 5.4) ----------------

CLEAR_SIGHAND = 0x100000000

SIGHAND = r"""
import errno, signal, subprocess, sys
sys.path.insert(0, {root!r})
from tests._support import seccomp
import pidproc
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
seen = seccomp.veto_clone3_flags({flag}, errno.EINVAL)
status = "grep ^Sig[BIC] /proc/self/status"
with pidproc.use_backend("clone3"):
    outs = []
    for _ in range(3):
        p = pidproc.Popen(["sh", "-c", status], stdout=subprocess.PIPE)
        outs.append(p.communicate()[0])
        assert p.backend == "clone3", p.backend
std = subprocess.run(["sh", "-c", status], stdout=subprocess.PIPE).stdout
print(outs == [std] * 3, [hex(w & {flag}) for w in seen])
"""


def test_clone3_without_clear_sighand_resets_handlers_in_the_child(tmp_path: Path) -> None:
    """A kernel that rejects CLONE_CLEAR_SIGHAND with EINVAL: clone3 is retried
    without it once, remembered, and the child resets the handlers itself."""
    root = str(Path(__file__).resolve().parent.parent)
    code = SIGHAND.format(root=root, flag=CLEAR_SIGHAND)
    strace = shutil.which("strace")
    trace = tmp_path / "trace"
    cmd = [PY, "-c", code]
    if strace:
        cmd = [strace, "-f", "-qq", "-o", str(trace), "-e", "trace=rt_sigaction,execve", *cmd]
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    if strace and r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"ptrace is not permitted here: {r.stderr[:200]}")
    assert r.returncode == 0, r.stderr
    # One clone3 with the flag (refused), then only without it.
    assert r.stdout.split() == ["True", f"['{hex(CLEAR_SIGHAND)}',", "'0x0',", "'0x0',", "'0x0']"]
    if strace:
        # The child (which then execs sh) put SIGUSR1 back to SIG_DFL itself.
        lines = trace.read_text().splitlines()
        sh_pids = {ln.split()[0] for ln in lines if re.search(r'execve\("[^"]*/sh"', ln)}
        assert len(sh_pids) == 4, lines  # three pidproc children and the stdlib's
        reset = {
            ln.split()[0]
            for ln in lines
            if "rt_sigaction(SIGUSR1, {sa_handler=SIG_DFL" in ln and ln.split()[0] in sh_pids
        }
        assert len(reset) >= 3, [ln for ln in lines if "SIGUSR1" in ln]


def test_python_children_see_the_filter() -> None:
    """The fixture itself: the filter really is in force in the child."""
    code = "import os\ntry:\n    os.pidfd_open(0)\nexcept OSError as e:\n    print(e.errno)\n"
    r = seccomp.run_filtered({"pidfd_open": errno.EPERM}, code)
    assert r.stdout.strip() == str(errno.EPERM), r.stderr
