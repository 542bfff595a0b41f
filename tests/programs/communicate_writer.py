"""Writes argv[1] bytes of a repeating 0..255 pattern (so that order errors
show) to fd 1 in writes of argv[2] bytes, then argv[3] bytes of "e" to fd
2, then exits with status argv[4].  Run by tests/test_communicate.py."""

from __future__ import annotations

import os
import sys

n, step, e, code = map(int, sys.argv[1:5])
pattern = bytes(range(256)) * (step // 256 + 1)
while n:
    view = memoryview(pattern)[: min(n, step)]
    n -= len(view)
    while view:
        view = view[os.write(1, view) :]
os.write(2, b"e" * e)
sys.exit(code)
