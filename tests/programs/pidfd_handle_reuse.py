"""The PID-reuse race for PidFds, in a PID namespace of its own: A exits
and is reaped, B gets its PID; prints, as JSON, both PIDs, whether A's
PidFd equals (or hashes as) B's, and what A's PidFd says to kill(), .pid
and wait(), and whether B still runs.  Run by tests/test_pidfd_handle.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pidproc

SLEEP = ["sleep", "30"]
a = pidproc.Popen(SLEEP)
fa = pidproc.PidFd.from_popen(a)
a.terminate()
a.wait()
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(a.pid - 1))
b = pidproc.Popen(SLEEP)
fb = pidproc.PidFd.open(b.pid)
out: dict[str, Any] = {"a": a.pid, "b": b.pid, "equal": fa == fb, "same_hash": hash(fa) == hash(fb)}
try:
    fa.kill()
    out["kill"] = "sent"
except ProcessLookupError as e:
    out["kill"] = str(e)
try:
    out["a_pid"] = fa.pid
except ProcessLookupError as e:
    out["a_pid"] = str(e)
out["a_status"] = fa.wait(timeout=5)
time.sleep(0.05)
out["b_alive"] = b.poll() is None
b.kill()
b.wait()
print(json.dumps(out))
