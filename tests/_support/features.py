"""Probes for what a test needs from the kernel and the system.

Each answers for this machine (those that start a process, once); a test
skips with its own reason when the answer is no.  They ask the kernel
directly rather than read pidproc's own conclusions, which are what the
tests check.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time

from pidproc import _posix
from pidproc._pidfd_info import PIDFD_INFO_EXIT, pidfd_info

# A command line's prefix: what follows runs in a PID namespace of its own,
# with its own /proc, where writing ns_last_pid hands a chosen PID to the
# next child.
IN_PRIVATE_PID_NS = ("unshare", "--pid", "--fork", "--mount-proc")
# The skip reason of the tests that need one.
PRIVATE_PID_NS = "needs root and unshare --pid (a private PID ns)"


@functools.cache
def unshare_works(*flags: str, then: tuple[str, ...] = ("true",)) -> bool:
    """Whether root may run ``unshare FLAGS THEN`` here (util-linux, a
    kernel and a container that allow the namespaces)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", *flags, *then], capture_output=True).returncode == 0


def private_pid_ns() -> bool:
    """Whether commands can run behind IN_PRIVATE_PID_NS here."""
    return unshare_works(*IN_PRIVATE_PID_NS[1:])


def runnable_by_anyone(path: str) -> bool:
    """Whether an unprivileged user (a uid a test drops to) may run the
    program at ``path``: it and every directory above it are executable
    by others (/root/.pyenv, say, is 0700)."""
    parts = os.path.realpath(path).split("/")
    dirs = ["/".join(parts[:i]) or "/" for i in range(1, len(parts))]
    return all(os.stat(d).st_mode & 0o001 for d in [*dirs, path])


@functools.cache
def has_pidfd_get_info() -> bool:
    """The PIDFD_GET_INFO ioctl (Linux 6.13)."""
    fd = _posix.pidfd_open(os.getpid())
    try:
        return pidfd_info(fd, 0) is not None
    finally:
        os.close(fd)


@functools.cache
def keeps_exit_status() -> bool:
    """PIDFD_INFO_EXIT (Linux 6.15): the exit status of a child reaped
    behind a pidfd's back is still readable through the pidfd."""
    if not has_pidfd_get_info():
        return False
    p = subprocess.Popen(["sh", "-c", "exit 5"])
    fd = _posix.pidfd_open(p.pid)
    try:
        os.waitpid(p.pid, 0)
        # The kernel records the status when it releases the task, a moment
        # after the reaper's waitpid may return (until then, or for ever
        # before 6.15, a reaped process is simply gone: ESRCH).
        for _ in range(100):
            try:
                info = pidfd_info(fd, PIDFD_INFO_EXIT)
            except ProcessLookupError:
                pass
            else:
                if info is None:
                    return False
                if info.exit_status is not None:
                    return os.waitstatus_to_exitcode(info.exit_status) == 5
            time.sleep(0.001)
        return False
    finally:
        os.close(fd)
        p.returncode = 0  # reaped above; keep the stdlib from waiting for it
