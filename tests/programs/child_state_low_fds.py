"""stdout given as fd 0 and stderr as fd 1 (bpo-12607), through the module
argv[1] (pidproc or subprocess): writes what the child wrote to each to
stderr.  Run by tests/test_child_state.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pidproc

CHILD = "import sys; sys.stdout.write('o'); sys.stdout.flush(); sys.stderr.write('e')"
mod: Any = pidproc if sys.argv[1] == "pidproc" else subprocess
r1, w1 = os.pipe()
r2, w2 = os.pipe()
os.dup2(w1, 0)
os.dup2(w2, 1)
p = mod.Popen([sys.executable, "-c", CHILD], stdout=0, stderr=1)
p.wait()
os.close(0)
os.close(1)
os.close(w1)
os.close(w2)
sys.stderr.write(repr((os.read(r1, 10), os.read(r2, 10))))
