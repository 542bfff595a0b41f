"""One spawn from the main thread (under whatever RLIMIT_STACK it was
given), through the module argv[1]: prints ok.  Run by
tests/test_small_stacks.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pidproc

mod: Any = subprocess if sys.argv[1] == "subprocess" else pidproc
r = mod.run(["sh", "-c", "exit 3"])
assert r.returncode == 3, r
print("ok")
