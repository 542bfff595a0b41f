"""Spawns through the module argv[1] while mprotect(PROT_NONE) fails with
ENOMEM, so that no child stack can get its guard page: prints the paths
taken with the return codes, and how many mappings were left behind.  Run
by tests/test_small_stacks.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support import seccomp  # noqa: E402

mod: Any = subprocess if sys.argv[1] == "subprocess" else pidproc


def mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


for _ in range(20):  # the stdlib's spawn, which runs below: its allocations first
    subprocess.Popen(["sh", "-c", "exit 4"]).wait()
# Making a stack's guard page fails from now on (nothing else here asks
# for PROT_NONE): the pool cannot map a stack, which is ENOMEM.
seccomp.install({"mprotect": (errno.ENOMEM, 2, "==", 0)})
before = mappings()  # libseccomp loaded
got = []
for _ in range(20):
    p = mod.Popen(["sh", "-c", "exit 4"])
    got.append((p.backend, p.wait()))
print(sorted(set(got)), mappings() - before)
