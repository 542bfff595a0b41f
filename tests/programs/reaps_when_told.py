"""A middle process: forks a grandchild of the test and prints its PID;
reaps it when told (a line on stdin), prints the wait status, and exits
at the next line (or end of input).  The grandchild exits at once with
argv[1], or with argv[1] "sleep" sleeps 60 s first and exits with 0.  Run
by tests/test_pidfd_handle.py and tests/test_waitmany.py."""

from __future__ import annotations

import os
import sys
import time

mode = sys.argv[1]
pid = os.fork()
if pid == 0:
    if mode == "sleep":
        time.sleep(60)
    os._exit(0 if mode == "sleep" else int(mode))
print(pid, flush=True)
sys.stdin.readline()
print(os.waitpid(pid, 0)[1], flush=True)
sys.stdin.readline()
