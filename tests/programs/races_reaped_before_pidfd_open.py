"""The fork path opens the pidfd just after the stdlib's spawn: a foreign
reaper can take the child in between.  A hook on pidfd_open reaps it
right there; then B gets A's PID (in a PID namespace of its own) and A is
killed, polled, waited for and terminated.  Prints whether B survived, A's
pidfd and its return code.  Run by tests/test_races.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pidproc
from pidproc import _posix

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.pids import call_everything, recycle, survives  # noqa: E402

pidproc.backends()  # probed with the real pidfd_open
real_pidfd_open = _posix.pidfd_open


def reap_first(pid: int, flags: int = 0) -> int:
    os.waitpid(pid, 0)  # a foreign reaper, at the worst moment
    return real_pidfd_open(pid, flags)


_posix.pidfd_open = reap_first
with pidproc.use_backend("fork"):
    a = pidproc.Popen(["true"])
_posix.pidfd_open = real_pidfd_open
b = recycle(a.pid)
call_everything(a)
print("survived" if survives(b, 0.3) else "killed or reaped", a.pidfd, a.returncode)
