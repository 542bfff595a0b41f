"""One battery of Popen uses, through the stdlib and through pidproc on
every path usable here (run behind a seccomp filter); prints the outcomes,
the paths and the fds and children before and after, as JSON.  Needs
PIDPROC_SCRATCH: a directory holding a file ``noexec``.  Run by
tests/test_sandbox_faults.py."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.leaks import children, collect, live_fds  # noqa: E402
from tests._support.outcome import as_json, outcome  # noqa: E402


def result_of(fn: Callable[[], Any]) -> list[Any]:
    try:
        return as_json(outcome(fn))
    except subprocess.TimeoutExpired as e:  # its message carries the time left
        return ["TimeoutExpired", e.cmd, e.output]


SCRATCH = os.environ["PIDPROC_SCRATCH"]
NOEXEC = os.path.join(SCRATCH, "noexec")


def battery(M: Any) -> dict[str, list[Any]]:
    r = {}
    r["exit"] = result_of(lambda: M.Popen(["sh", "-c", "exit 3"]).wait())

    def timeout_then_terminate() -> Any:
        p = M.Popen(["sleep", "10"])
        try:
            p.wait(timeout=0.02)
            return "no timeout"
        except subprocess.TimeoutExpired:
            pass
        first = p.poll()
        p.terminate()
        return [first, p.wait(timeout=10), p.poll(), p.wait()]

    r["timeout"] = result_of(timeout_then_terminate)

    def kill() -> Any:
        p = M.Popen(["sleep", "10"])
        p.kill()
        return p.wait()

    r["kill"] = result_of(kill)

    def usr1() -> Any:
        p = M.Popen(["sleep", "10"])
        p.send_signal(signal.SIGUSR1)
        return p.wait(timeout=10)

    r["usr1"] = result_of(usr1)

    def signal_after_exit() -> Any:
        p = M.Popen(["true"])
        p.wait()
        p.kill()
        p.terminate()
        p.send_signal(signal.SIGUSR1)
        return p.returncode

    r["after_exit"] = result_of(signal_after_exit)

    def communicate() -> Any:
        p = M.Popen(["cat"], stdin=M.PIPE, stdout=M.PIPE)
        return [p.communicate(b"hello", timeout=10)[0].decode(), p.returncode]

    r["communicate"] = result_of(communicate)

    def communicate_timeout() -> Any:
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

    r["communicate_timeout"] = result_of(communicate_timeout)

    def run() -> Any:
        c = M.run(["sh", "-c", "echo out; echo err >&2; exit 2"], capture_output=True, timeout=10)
        return [c.returncode, c.stdout.decode(), c.stderr.decode()]

    r["run"] = result_of(run)
    r["run_timeout"] = result_of(lambda: M.run(["sleep", "10"], timeout=0.05))

    r["missing"] = result_of(lambda: M.Popen(["pidproc-no-such-program"]))
    r["bad_cwd"] = result_of(lambda: M.Popen(["true"], cwd="/nonexistent"))
    r["dir_as_program"] = result_of(lambda: M.Popen([SCRATCH]))
    r["not_executable"] = result_of(lambda: M.Popen([NOEXEC]))
    r["nul"] = result_of(lambda: M.Popen(["true", "a\0b"]))

    def listing(keep_w: bool = False, **kw: Any) -> list[str]:
        rd, wr = os.pipe()
        os.set_inheritable(rd, True)
        os.set_inheritable(wr, True)
        ours = f"pipe:[{os.fstat(rd).st_ino}]"
        if keep_w:
            kw["pass_fds"] = [wr]
        try:
            out = M.run(["ls", "-l", "/proc/self/fd"], stdout=M.PIPE, **kw).stdout.decode()
        finally:
            os.close(rd)
            os.close(wr)
        names = []
        for line in out.splitlines()[1:]:  # "lr-x------ ... 3 -> pipe:[123]"
            fd, target = int(line.split(" -> ")[0].split()[-1]), line.split(" -> ")[1]
            if target == ours:
                names.append({rd: "r", wr: "w"}.get(fd, f"{fd}=ours"))
            else:
                names.append(str(fd) if fd < 3 else "other")
        return sorted(names)

    r["close_fds"] = result_of(listing)
    r["pass_fds"] = result_of(lambda: listing(keep_w=True))
    r["inherit"] = result_of(lambda: listing(close_fds=False))
    if os.geteuid() == 0:
        r["user"] = result_of(
            lambda: M.run(["id", "-u"], user=65534, stdout=M.PIPE).stdout.decode()
        )
    return r


def fds() -> list[int]:
    return sorted(live_fds())


before = (fds(), children())
result: dict[str, Any] = {"stdlib": battery(subprocess), "paths": {}, "usable": pidproc.backends()}
for name in result["usable"]:
    with pidproc.use_backend(name):
        result["paths"][name] = battery(pidproc)
with pidproc.use_backend(None):
    p = pidproc.Popen(["true"])
    result["default"] = [p.backend, p.pidfd is not None]
    p.wait()
    del p
collect()
result["leaked"] = [before, (fds(), children())]
print(json.dumps(result))
