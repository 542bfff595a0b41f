"""Connects to the abstract unix address argv[1] (without its leading
NUL), prints the PID of the peer that listens there, waits for a line on
stdin and exits with 9.  Run by tests/test_peer.py."""

from __future__ import annotations

import socket
import sys

import pidproc

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0" + sys.argv[1])
with pidproc.peer_pidfd(s) as listener:
    print(listener.pid, flush=True)
sys.stdin.readline()
sys.exit(9)
