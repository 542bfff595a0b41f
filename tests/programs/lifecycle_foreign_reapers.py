"""Popen.wait() while something else reaps: first with SIGCHLD ignored (the
kernel reaps at once), then with os.wait() in another thread; prints the
two return codes.  Run by tests/test_lifecycle.py (PIDPROC_BACKEND picks
the path)."""

from __future__ import annotations

import os
import signal
import threading

import pidproc

signal.signal(signal.SIGCHLD, signal.SIG_IGN)
p = pidproc.Popen(["sh", "-c", "sleep 0.1; exit 4"])
print(p.wait(timeout=10))
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
p = pidproc.Popen(["sh", "-c", "sleep 0.1; exit 6"])
t = threading.Thread(target=os.wait)
t.start()
print(p.wait())
t.join()
