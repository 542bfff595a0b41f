"""Enters the namespaces argv[2] (flags) of the process behind the pidfd
argv[1] (inherited): prints its hostname before and after.  Run by
tests/test_pidfd_handle.py."""

from __future__ import annotations

import socket
import sys

import pidproc

pf = pidproc.PidFd(int(sys.argv[1]))
before = socket.gethostname()
pf.setns(int(sys.argv[2]))
print(before, socket.gethostname())
