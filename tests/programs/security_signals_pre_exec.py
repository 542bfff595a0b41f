"""With handlers installed and signals blocked, prints this process's PID,
blocked, caught and ignored sets, then spawns ``true`` (argv[1]) through the stdlib
and every path usable here, printing each child's PID.  Run under strace,
which holds each child at execve, by tests/test_security_signals.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pidproc

true = sys.argv[1]
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.signal(signal.SIGRTMIN + 1, lambda *a: None)
signal.signal(signal.SIGCHLD, lambda *a: None)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGRTMIN + 2})
with open("/proc/self/status") as f:
    mine = {line.split(":")[0]: line.split()[1] for line in f if line.startswith("Sig")}
print(os.getpid(), mine["SigBlk"], mine["SigCgt"], mine["SigIgn"], flush=True)
for name in ["stdlib", *pidproc.backends()]:
    module = subprocess if name == "stdlib" else pidproc
    with pidproc.use_backend(None if name == "stdlib" else name):
        p = module.Popen([true])
        print(name, p.pid, flush=True)
        p.wait()
