"""Owns two pipes whose ends the test steals with PidFd.getfd(): prints the
numbers of the end the test writes into and of the end it reads from,
writes into the other end of the latter, prints what arrives through the
former, then waits for a line on stdin.  Run by tests/test_pidfd_handle.py."""

from __future__ import annotations

import os
import sys

r1, w1 = os.pipe()  # we steal w1 and write into it; it echoes what it reads
r2, w2 = os.pipe()  # it writes into w2; we steal r2 and read
print(w1, r2, flush=True)
os.write(w2, b"from the child")
os.close(w2)
print(os.read(r1, 100).decode(), flush=True)
sys.stdin.readline()
