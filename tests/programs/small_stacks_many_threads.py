"""24 threads with the stack size argv[2] spawn 8 children each, all
starting at once, through the module argv[1]: prints whether every return
code came back.  Run by tests/test_small_stacks.py (PIDPROC_BACKEND picks
the path)."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pidproc

mod: Any = subprocess if sys.argv[1] == "subprocess" else pidproc
threading.stack_size(int(sys.argv[2]))
start = threading.Barrier(24)
codes = []


def spawn(i: int) -> None:
    start.wait()
    for j in range(8):
        codes.append(mod.run(["sh", "-c", f"exit {(i + j) % 7}"]).returncode)


threads = [threading.Thread(target=spawn, args=(i,)) for i in range(24)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sorted(codes) == sorted((i + j) % 7 for i in range(24) for j in range(8)))
