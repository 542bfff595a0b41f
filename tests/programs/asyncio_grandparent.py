"""The parent of a grandchild of the test: prints the grandchild's PID,
which exits after 0.1 s; reaps it 0.5 s after a line on stdin, then
sleeps.  Run by tests/test_asyncio.py."""

from __future__ import annotations

import subprocess
import sys
import time

g = subprocess.Popen(["sh", "-c", "sleep 0.1; exit 7"])
print(g.pid, flush=True)
sys.stdin.readline()
time.sleep(0.5)
g.wait()
time.sleep(30)
