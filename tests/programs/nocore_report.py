"""Run with PIDPROC_NO_EXTENSION=1 (the C core not loaded): what pidproc
can still do, as JSON.  Used by tests/test_nocore.py."""

from __future__ import annotations

import json
import os
import sys

import pidproc
from pidproc import _native, _posix
from pidproc._spawn import state

out: dict[str, object] = {
    "loaded": "pidproc._core" in sys.modules,
    "missing": _native.MISSING,
    "native": _posix.NATIVE,
    "backends": pidproc.backends(),
    "reasons": {name: state.reason(name) for name in pidproc.BACKENDS},
}


def fdinfo_pid(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pid:"))


with pidproc.Popen([sys.executable, "-c", "import sys; sys.exit(7)"]) as p:
    fd = p.pidfd
    out["spawn"] = [p.backend, fd is not None and fdinfo_pid(fd) == p.pid]
out["returncode"] = p.returncode

os.environ["PIDPROC_BACKEND"] = "clone3"
try:
    pidproc.run(["true"])
except pidproc.BackendUnavailable as e:
    out["forced"] = str(e)
del os.environ["PIDPROC_BACKEND"]

try:
    pf = pidproc.PidFd.open(os.getpid())
except OSError as e:  # where os has no pidfd_open either (PyPy)
    out["open"] = [e.errno, str(e)]
    print(json.dumps(out))
    sys.exit()
with pf:
    out["pid"] = pf.pid == os.getpid()
    for name, call in {
        "getfd": lambda: pf.getfd(0),
        "madvise": lambda: pf.madvise([(4096, 4096)], pidproc.Advice.COLD),
    }.items():
        try:
            call()
        except OSError as e:
            out[name] = [e.errno, str(e)]
print(json.dumps(out))
