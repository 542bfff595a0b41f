"""One Popen from a thread with the stack size argv[2]: prints the path it
took and its return code.  Run by tests/test_small_stacks.py
(PIDPROC_BACKEND picks the path; argv[1] is the module, pidproc)."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pidproc

mod: Any = subprocess if sys.argv[1] == "subprocess" else pidproc
threading.stack_size(int(sys.argv[2]))
out = []


def spawn() -> None:
    p = mod.Popen(["true"])
    out.append((p.backend, p.wait()))


t = threading.Thread(target=spawn)
t.start()
t.join()
print(out)
