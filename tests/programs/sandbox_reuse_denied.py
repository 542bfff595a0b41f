"""The PID-reuse race with pidfd_send_signal denied (run behind a seccomp
filter, in a PID namespace of its own): A is alive when kill() polls it,
then dies, is reaped behind Popen's back and B takes its PID, all before
kill() falls back to kill(pid).  Prints whether B survived A's kill() and
terminate().  Run by tests/test_sandbox_faults.py."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.pids import recycle, survives  # noqa: E402

a = pidproc.Popen(["sleep", "30"])
b = None
real_poll = a.poll


def poll_then_recycle() -> int | None:
    global b
    rc = real_poll()
    if b is None:
        os.kill(a.pid, signal.SIGKILL)
        os.waitpid(a.pid, 0)
        b = recycle(a.pid)
    return rc


a.poll = poll_then_recycle  # type: ignore[method-assign]
a.kill()
a.terminate()
assert b is not None
print("survived" if survives(b, 0.3) else "killed")
