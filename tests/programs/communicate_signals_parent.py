"""Twenty times: SIGUSR1 to its parent, 100,000 bytes of "x" on stdout, a
5 ms pause; it never reads its stdin.  Run by tests/test_communicate.py."""

from __future__ import annotations

import os
import signal
import time

for _ in range(20):
    os.kill(os.getppid(), signal.SIGUSR1)
    os.write(1, b"x" * 100000)
    time.sleep(0.005)
