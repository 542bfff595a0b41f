"""The part of tools/kernels.py that runs inside the VM, as /pidproc-vm/job.py.

Started by the VM's /init with the venv's python3 (pidproc installed, the
tree at /src).  Reads /pidproc-vm/job.json, writes everything it learns to
/results (gates.json, paths.json, one junit XML per pytest run, steps.json)
and prints its progress to the console.  Only the standard library and
pidproc: the oldest CPython here is bookworm's 3.11.

    job.json = {"mode": "test" | "run", "command": str, "steps": [...],
                "deadline": seconds of uptime by which the steps must end}
    a step   = {"name": str, "argv": [...], "env": {...}, "timeout": seconds}

The host kills the VM at its own timeout, and results only leave the VM at
the end; so the steps stop at the deadline (a step running then is ended
and counts as timed out, those after it are not started and the host
reports them as never run) and what ran comes back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path("/results")
JOB = json.loads(Path("/pidproc-vm/job.json").read_text())
# A step with less time than this left before the deadline is not started.
MIN_STEP_SECONDS = 30.0


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def say(msg: str) -> None:
    print(f"pidproc-vm [{uptime():7.1f}s] {msg}", flush=True)


# ---- the kernel's features, each probed directly ----------------------------

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_CLONE3, SYS_CLOSE_RANGE = 435, 436
CLONE_PIDFD = 0x1000
CLONE_CLEAR_SIGHAND = 1 << 32
CLONE_AUTOREAP = 1 << 34
CLONE_NNP = 1 << 35
CLONE_PIDFD_AUTOKILL = 1 << 36
PIDFS_MAGIC = 0x50494446
PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11
PIDFD_INFO_PID, PIDFD_INFO_EXIT = 1 << 0, 1 << 3
SO_PEERPIDFD = 77


def gate_pidfs() -> tuple[bool, str]:
    fd = os.pidfd_open(os.getpid())
    try:
        buf = ctypes.create_string_buffer(256)
        if libc.fstatfs(fd, buf) != 0:
            return False, f"fstatfs: {os.strerror(ctypes.get_errno())}"
        magic = struct.unpack_from("l", buf)[0]
        return magic == PIDFS_MAGIC, f"pidfd f_type {magic:#x}"
    finally:
        os.close(fd)


def _get_info(fd: int, mask: int) -> tuple[int, int]:
    """(mask returned, exit_code) or OSError."""
    buf = bytearray(64)
    struct.pack_into("=Q", buf, 0, mask)
    fcntl.ioctl(fd, PIDFD_GET_INFO, buf, True)
    return struct.unpack_from("=Q", buf, 0)[0], struct.unpack_from("=i", buf, 60)[0]


def gate_get_info() -> tuple[bool, str]:
    fd = os.pidfd_open(os.getpid())
    try:
        got, _ = _get_info(fd, PIDFD_INFO_PID)
        return bool(got & PIDFD_INFO_PID), f"mask {got:#x}"
    except OSError as e:
        return False, f"ioctl: {errno.errorcode.get(e.errno or 0, e.errno)}"
    finally:
        os.close(fd)


def gate_info_exit() -> tuple[bool, str]:
    p = subprocess.Popen(["sh", "-c", "exit 5"])
    fd = os.pidfd_open(p.pid)
    try:
        p.wait()
        deadline = time.monotonic() + 1
        last = ""
        while time.monotonic() < deadline:
            try:
                got, code = _get_info(fd, PIDFD_INFO_EXIT)
            except OSError as e:
                last = f"ioctl: {errno.errorcode.get(e.errno or 0, e.errno)}"
                if e.errno in (errno.ENOTTY, errno.EINVAL):
                    return False, last
            else:
                if got & PIDFD_INFO_EXIT:
                    return code == 5 << 8, f"exit status {code:#x} after the reap"
                last = f"mask {got:#x} without PIDFD_INFO_EXIT"
            time.sleep(0.01)
        return False, last
    finally:
        os.close(fd)


def gate_peer_pidfd() -> tuple[bool, str]:
    a, b = socket.socketpair()
    with a, b:
        try:
            fd = struct.unpack("i", a.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4))[0]
        except OSError as e:
            return False, f"getsockopt: {errno.errorcode.get(e.errno or 0, e.errno)}"
        os.close(fd)
        return True, "getsockopt gave a pidfd"


def gate_close_range() -> tuple[bool, str]:
    top = 2**31 - 1
    rc = libc.syscall(SYS_CLOSE_RANGE, ctypes.c_uint(top - 1), ctypes.c_uint(top), 0)
    if rc == 0:
        return True, "close_range(2) answered 0"
    return False, f"close_range: {errno.errorcode.get(ctypes.get_errno(), '?')}"


_CLONE3_PROBE = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
flags, exit_signal = int(sys.argv[1]), int(sys.argv[2])
pidfd = ctypes.c_int(-1)
args = ctypes.create_string_buffer(struct.pack(
    "=8Q", flags, ctypes.addressof(pidfd) if flags & 0x1000 else 0, 0, 0, exit_signal, 0, 0, 0))
pid = libc.syscall(435, args, 64)
if pid == 0:
    os._exit(0)
if pid < 0:
    print(ctypes.get_errno())
    sys.exit(0)
try:
    os.waitpid(pid, 0)
except ChildProcessError:
    pass
print(0)
"""


# Companions tried with a flag: some need CLONE_PIDFD, no exit signal, or
# another of the new flags.
COMPANIONS = (
    (CLONE_PIDFD, signal.SIGCHLD),
    (CLONE_PIDFD, 0),
    (0, signal.SIGCHLD),
    (CLONE_PIDFD | CLONE_AUTOREAP, 0),
    (CLONE_PIDFD | CLONE_NNP, signal.SIGCHLD),
    (CLONE_PIDFD | CLONE_AUTOREAP | CLONE_NNP, 0),
)


def clone3_accepts(flags: int) -> tuple[bool, str]:
    """Whether clone3 starts a child with these flags, with any of COMPANIONS."""
    tried = []
    for extra, sig in COMPANIONS:
        out = subprocess.run(
            [sys.executable, "-c", _CLONE3_PROBE, str(flags | extra), str(int(sig))],
            capture_output=True,
            text=True,
            timeout=60,
        )
        err = int(out.stdout.strip() or -1)
        if err == 0:
            return True, f"clone3 flags {flags | extra:#x} exit_signal {int(sig)} started a child"
        tried.append(errno.errorcode.get(err, str(err)))
    return False, "clone3: " + "/".join(tried)


def gate_pidfd_spawn() -> tuple[bool, str]:
    import pidproc
    from pidproc._spawn import state as _backends

    usable = "pidfd_spawn" in pidproc.backends()
    return usable, "usable" if usable else str(_backends.reason("pidfd_spawn"))


def gate_pidfd_getpid() -> tuple[bool, str]:
    there = hasattr(libc, "pidfd_getpid")
    return there, "glibc exports pidfd_getpid" if there else "no pidfd_getpid in glibc"


GATES = {
    "pidfs": gate_pidfs,
    "PIDFD_GET_INFO": gate_get_info,
    "PIDFD_INFO_EXIT": gate_info_exit,
    "SO_PEERPIDFD": gate_peer_pidfd,
    "close_range": gate_close_range,
    "CLONE_CLEAR_SIGHAND": lambda: clone3_accepts(CLONE_CLEAR_SIGHAND),
    "CLONE_PIDFD_AUTOKILL": lambda: clone3_accepts(CLONE_PIDFD_AUTOKILL),
    "CLONE_AUTOREAP": lambda: clone3_accepts(CLONE_AUTOREAP),
    "CLONE_NNP": lambda: clone3_accepts(CLONE_NNP),
    "pidfd_spawn": gate_pidfd_spawn,
    "pidfd_getpid": gate_pidfd_getpid,
}


def probe_gates() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, probe in GATES.items():
        try:
            is_open, detail = probe()
        except Exception as e:  # a probe that breaks says so, and the gate is closed
            is_open, detail = False, f"probe failed: {type(e).__name__}: {e}"
        out[name] = {"open": is_open, "detail": detail}
    return out


# ---- what pidproc itself says about non-children and foreign reapers -------

BEHAVIOUR = r"""
import json, os, subprocess, sys, time
import pidproc
out = {}
# A child reaped behind pidproc's back (a foreign reaper): what wait() says.
p = pidproc.Popen(["sh", "-c", "exit 5"])
with pidproc.use_backend(None):
    os.waitpid(p.pid, 0)
out["foreign_reap_returncode"] = p.wait(timeout=30)
# A process that is not our child: pid, info(), identity, wait().
holder = subprocess.Popen(
    ["sh", "-c", "sleep 2 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
grandchild = int(holder.stdout.readline())
with pidproc.PidFd.open(grandchild) as pf, pidproc.PidFd.open(grandchild) as again:
    out["nonchild_pid_ok"] = pf.pid == grandchild
    try:
        out["nonchild_info_pid"] = pf.info().pid == grandchild
    except OSError as e:
        out["nonchild_info_pid"] = f"{type(e).__name__}: {e}"
    try:
        out["nonchild_identity"] = {"equal": pf == again, "inode": pf.inode}
    except OSError as e:
        out["nonchild_identity"] = {"equal": pf == again, "inode": f"{e}"}
    t0 = time.monotonic()
    out["nonchild_wait"] = pf.wait(timeout=30)
    out["nonchild_wait_seconds"] = round(time.monotonic() - t0, 2)
    # Exited is not reaped: its parent reaps it, and exits, only now.
    holder.wait()
    try:
        pf.pid
        out["nonchild_pid_after_reap"] = "no error"
    except OSError as e:
        out["nonchild_pid_after_reap"] = type(e).__name__
print(json.dumps(out))
"""

PATHS = r"""
import json, os, sys
import pidproc
from pidproc._spawn import state as _backends
out = {
    "python": sys.version.split()[0],
    "glibc": os.confstr("CS_GNU_LIBC_VERSION").split()[-1],
    "kernel": os.uname().release,
    "backends": pidproc.backends(),
    "reasons": {n: _backends.reason(n) for n in pidproc.BACKENDS if _backends.reason(n)},
}
with pidproc.Popen(["true"]) as p:
    pass
out["default"] = p.backend
print(json.dumps(out))
"""


def json_of(code: str, name: str) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/tmp"
    )
    if r.returncode != 0:
        return {"error": f"{name} exited {r.returncode}: {r.stderr[-2000:]}"}
    return dict(json.loads(r.stdout))


# ---- steps ------------------------------------------------------------------


def run_step(name: str, argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One command, its output on the console, ended whole (its process
    group) when it outlives timeout."""
    say(f"step {name}: {' '.join(argv)}")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd="/src", env=dict(os.environ, **env), start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        timed_out = True
    # What the step left running would skew the next one.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    seconds = round(time.monotonic() - t0, 1)
    say(f"step {name}: exit {rc}{' (timed out)' if timed_out else ''} in {seconds} s")
    return {"name": name, "exit": rc, "timed_out": timed_out, "seconds": seconds}


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    if JOB["mode"] == "run":
        say(f"run: {JOB['command']}")
        rc = subprocess.run(["sh", "-c", JOB["command"]], cwd="/src").returncode
        (RESULTS / "run.json").write_text(json.dumps({"exit": rc}))
        say(f"run: exit status {rc}")
        return rc
    paths = json_of(PATHS, "paths")
    (RESULTS / "paths.json").write_text(json.dumps(paths))
    say(f"paths: {paths}")
    gates = probe_gates()
    (RESULTS / "gates.json").write_text(json.dumps(gates, indent=1))
    for name, g in gates.items():
        say(f"gate {name}: {'OPEN' if g['open'] else 'closed'} ({g['detail']})")
    behaviour = json_of(BEHAVIOUR, "behaviour")
    (RESULTS / "behaviour.json").write_text(json.dumps(behaviour))
    say(f"behaviour: {behaviour}")
    steps: list[dict[str, Any]] = []
    deadline = float(JOB.get("deadline", float("inf")))
    for step in JOB["steps"]:
        left = deadline - uptime()
        if left < MIN_STEP_SECONDS:
            not_started = ", ".join(s["name"] for s in JOB["steps"][len(steps) :])
            say(f"out of time ({deadline:.0f} s of uptime allowed); not started: {not_started}")
            break
        timeout = min(step["timeout"], left)
        steps.append(run_step(step["name"], step["argv"], step.get("env", {}), timeout))
        (RESULTS / "steps.json").write_text(json.dumps(steps, indent=1))
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException as e:  # the host must learn of it: say it on the console
        say(f"job failed: {type(e).__name__}: {e}")
        code = 99
    sys.exit(code)
