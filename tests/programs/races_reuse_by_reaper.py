"""A reaped by a foreign reaper (argv[1]: a SIGCHLD handler or a thread in
os.wait()), in a PID namespace of its own, then B gets A's PID; then A's
kill(), poll(), wait() and terminate().  Prints whether B survived.  Run by
tests/test_races.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.pids import call_everything, foreign_reaper, recycle, survives  # noqa: E402

mode = sys.argv[1]
done = threading.Event()
stop = threading.Event()
thread = None
if mode == "wait-thread":
    thread = foreign_reaper(stop, 0.0005, done)
else:

    def reap(signum: int, frame: Any) -> None:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        done.set()

    signal.signal(signal.SIGCHLD, reap)
with open("/proc/sys/kernel/pid_max") as f:
    pid_max = int(f.read())
for _ in range(50):
    done.clear()
    a = pidproc.Popen(["true"])
    done.wait(10)
    if a.pid <= pid_max:
        break
    # pidfd_spawn lost the race to name its child (the reaper took it before
    # glibc read its pid): it says so with a pid above pid_max, which nothing
    # can hold.  Nothing to recycle: those calls must reach nobody; try again.
    a.kill()
    a.poll()
    a.wait(timeout=5)
else:
    raise SystemExit("the child was never named")
time.sleep(0.05)
assert not os.path.exists(f"/proc/{a.pid}"), "not reaped by the foreign reaper"
stop.set()
if thread is not None:
    thread.join()
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
b = recycle(a.pid)
call_everything(a)
print("survived" if survives(b, 0.3) else "killed or reaped")
