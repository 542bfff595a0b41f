"""Reports the size of one of its pipes after using it.  argv[1] "out N":
writes N zero bytes to stdout, then the stdout pipe's size to stderr.
argv[1] "in": reads all of stdin, then writes "<bytes read> <stdin pipe's
size>" to stdout.  Run by tests/test_communicate.py."""

from __future__ import annotations

import fcntl
import os
import sys

if sys.argv[1] == "out":
    view = memoryview(bytes(int(sys.argv[2])))
    while view:
        view = view[os.write(1, view) :]
    os.write(2, b"%d" % fcntl.fcntl(1, fcntl.F_GETPIPE_SZ))
else:
    data = sys.stdin.buffer.read()
    os.write(1, b"%d %d" % (len(data), fcntl.fcntl(0, fcntl.F_GETPIPE_SZ)))
