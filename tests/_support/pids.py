"""PID reuse on demand, inside a PID namespace of our own (where root may
write ns_last_pid): the next child gets the PID asked for.

Only the stdlib: the programs in ``tests/programs/`` use it."""

from __future__ import annotations

import subprocess


def recycle(pid: int) -> subprocess.Popen[bytes]:
    """A new ``sleep 30``, a stdlib child, that gets ``pid`` (which must be
    free: its last holder reaped)."""
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    b = subprocess.Popen(["sleep", "30"])
    assert b.pid == pid, (pid, b.pid)
    return b
