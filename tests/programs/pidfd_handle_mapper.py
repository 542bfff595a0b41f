"""Maps the file argv[1] privately, touches every page, prints the
mapping's address and length, then waits for a line on stdin.  Run by
tests/test_pidfd_handle.py."""

from __future__ import annotations

import ctypes
import mmap
import sys

with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
touched = sum(m[i] for i in range(0, len(m), mmap.PAGESIZE))
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), len(m), flush=True)
sys.stdin.readline()
