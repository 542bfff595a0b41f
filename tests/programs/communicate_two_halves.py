"""Writes 4 KiB of a 0..255 pattern (it fits any pipe unread), says so with
a byte on the fd in argv[2], waits for the parent's byte on the fd in
argv[1], then writes 2 MiB more and "done" on stderr.  Run by
tests/test_communicate.py."""

from __future__ import annotations

import os
import sys

os.write(1, bytes(range(256)) * 16)
os.write(int(sys.argv[2]), b"r")
os.read(int(sys.argv[1]), 1)
view = memoryview(bytes(range(256)) * 8192)
while view:
    view = view[os.write(1, view) :]
os.write(2, b"done")
