"""Waits for a byte on the fd in argv[1], then reads all of stdin and
writes its length to stdout: its input stays unread until the parent says
so.  Run by tests/test_communicate.py."""

from __future__ import annotations

import os
import sys

os.read(int(sys.argv[1]), 1)
os.write(1, b"%d" % len(sys.stdin.buffer.read()))
