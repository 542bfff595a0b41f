"""Run with CPython's os and signal stripped of the pidfd calls PyPy lacks
(os.pidfd_open, os.waitid and its constants, signal.pidfd_send_signal),
before pidproc is imported: pidproc must then make them through its C
core.  Prints what it saw as JSON.  Used by tests/test_posix.py."""

from __future__ import annotations

import json
import os
import signal
import sys

for name in (
    "pidfd_open",
    "waitid",
    "waitid_result",
    "P_PID",
    "P_PIDFD",
    "P_ALL",
    "P_PGID",
    "WEXITED",
    "WNOWAIT",
    "WSTOPPED",
    "WCONTINUED",
    "CLD_EXITED",
    "CLD_KILLED",
    "CLD_DUMPED",
    "CLD_TRAPPED",
    "CLD_STOPPED",
    "CLD_CONTINUED",
):
    if hasattr(os, name):
        delattr(os, name)
if hasattr(signal, "pidfd_send_signal"):
    del signal.pidfd_send_signal

import pidproc  # noqa: E402  # after the stripping, on purpose
from pidproc import _posix  # noqa: E402

out: dict[str, object] = {"native": _posix.NATIVE, "backends": pidproc.backends()}

p = pidproc.Popen([sys.executable, "-c", "import sys; sys.exit(5)"])
out["spawn"] = [p.backend, p.pidfd is not None, p.wait()]

p = pidproc.Popen(["sleep", "30"])
p.terminate()
out["terminated"] = p.wait()

r = pidproc.run(["cat"], input=b"x" * 100_000, capture_output=True, timeout=30)
out["communicate"] = len(r.stdout)

with pidproc.use_backend("fork"):  # the stdlib spawns, pidproc opens the pidfd
    p = pidproc.Popen(["sleep", "30"])
    out["fork"] = [p.backend, p.pidfd is not None]
    p.kill()
    out["fork"].append(p.wait())

with pidproc.PidFd.open(os.getpid()) as pf:
    out["pidfd_open_self"] = pf.pid == os.getpid()

print(json.dumps(out))
