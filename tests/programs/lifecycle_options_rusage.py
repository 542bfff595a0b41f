"""Popen.rusage from a small parent (a vfork-style child's maxrss counts its
parent's pages until exec): a child that touched 200 MiB, one that did
nothing, one that burnt 0.2 s of CPU.  Prints, as JSON, the path and each
child's ru_maxrss (KiB) and CPU seconds, or None.  Run by
tests/test_lifecycle_options.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pidproc

TOUCH = "b = bytearray(200 << 20)\nb[::4096] = b'x' * (len(b) // 4096)\n"
BURN = "import time\nt = time.process_time() + 0.2\nwhile time.process_time() < t: pass\n"
out: dict[str, Any] = {}
for name, code in (("touch", TOUCH), ("idle", "pass"), ("burn", BURN)):
    p = pidproc.Popen([sys.executable, "-c", code])
    before = p.rusage
    if name == "burn":
        p.wait(timeout=120)  # poll() on the pidfd, then waitid(WNOHANG)
    else:
        p.wait()  # waitid, blocking
    ru = p.rusage
    out["backend"] = p.backend
    out[name] = None if ru is None else [ru.ru_maxrss, ru.ru_utime + ru.ru_stime]
    out[name + "_before_reap"] = before
print(json.dumps(out))
