"""The PID-reuse race, in a PID namespace of its own: A (through the module
named in argv[1], pidproc or subprocess) is reaped behind its Popen's back
and B takes its PID; then A's kill(), poll() and wait().  Prints whether B
survived.  Run by tests/test_lifecycle.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.pids import recycle  # noqa: E402

mod: Any = pidproc if sys.argv[1] == "pidproc" else subprocess
a = mod.Popen(["sleep", "0"])
os.waitpid(a.pid, 0)  # reaped behind Popen's back
b = recycle(a.pid)
a.kill()
a.poll()
a.wait()
print("survived" if b.poll() is None else "killed")
b.kill()
b.wait()
