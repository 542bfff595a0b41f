"""The low-level pidfd idioms every part of pidproc shares, written once.

- ``open_unreaped_child``: a pidfd for a child we did not get one for at
  birth (the stdlib spawned it, or it is held by its PID), race-free only
  while the child is unreaped, so the check that it still is comes with it.
- ``returncode`` / ``returncode_after_reap``: a waitid result, or the status
  of a child someone else reaped, as ``Popen.returncode``.
- ``still_unreaped``: whether a pidfd's process is our child and unreaped,
  i.e. whether its PID is still certainly its own.
- ``poll_fd``: wait for a pidfd's events, with a timeout of any size.
"""

from __future__ import annotations

import math
import os
import select

from . import _fdbudget, _posix

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

# open_unreaped_child's answers besides an fd.
GONE = -1
"""The child was reaped by someone else: its PID may be anyone's now."""
NO_FD = -2
"""No pidfd to be had: no fd free (or none to spare, ``_fdbudget``), or the
kernel refuses pidfd_open.  The child is then held by its PID, as the
stdlib holds it."""

_WNOWAIT_FLAGS = _posix.WEXITED | os.WNOHANG | _posix.WNOWAIT
# poll() takes an int of milliseconds: waits longer than this go in slices
# (wait(timeout=1e10 or inf) must not overflow it).
MAX_POLL_SECONDS = 24 * 3600.0


def open_unreaped_child(pid: int) -> int:
    """pidfd_open(pid), checked to name our unreaped child: a pidfd, GONE or
    NO_FD.  A foreign reaper (SIGCHLD ignored, waitpid(-1) elsewhere) could
    have taken the child and its PID been reused before the open."""
    try:
        fd = _posix.pidfd_open(pid)
    except ProcessLookupError:
        return GONE  # only a reap ends a child's PID
    except OSError:
        return NO_FD  # EMFILE and friends, or no pidfd_open here
    if not _fdbudget.fits(fd):
        os.close(fd)  # the fds left are the program's
        return NO_FD
    if not still_unreaped(fd):
        os.close(fd)
        return GONE
    return fd


def still_unreaped(fd: int) -> bool:
    """The pidfd's process is our child and not reaped (a zombie keeps its
    PID): waitid(WNOWAIT) succeeds on it."""
    try:
        _posix.waitid(_posix.P_PIDFD, fd, _WNOWAIT_FLAGS)
    except ChildProcessError:
        return False
    return True


def returncode(result: Any) -> int:
    """A waitid result as Popen.returncode (minus the signal if killed)."""
    if result.si_code == _posix.CLD_EXITED:
        return int(result.si_status)
    return -int(result.si_status)


def returncode_after_reap(fd: int) -> int | None:
    """The status of a child someone else reaped, as a returncode, where the
    kernel keeps it (PIDFD_INFO_EXIT, Linux 6.15+); else None."""
    # Loaded here, not at import: only a foreign reap gets here, and the
    # module defines the dataclass PidfdInfo (dataclasses is costly to import).
    try:
        from ._pidfd_info import exit_status_after_reap
    except OSError:  # no fd free to open the module: as where the kernel keeps nothing
        return None

    status = exit_status_after_reap(fd)
    return None if status is None else os.waitstatus_to_exitcode(status)


def poll_fd(fd: int, events: int, seconds: float | None) -> int:
    """poll() one fd for ``events`` for up to ``seconds`` (None: no limit,
    any size: long waits go in slices); the events seen, 0 on timeout."""
    poller = select.poll()
    poller.register(fd, events)
    while True:
        if seconds is None:
            got = poller.poll()
        else:
            ms = math.ceil(min(max(seconds, 0.0), MAX_POLL_SECONDS) * 1000)
            got = poller.poll(ms)
            seconds -= MAX_POLL_SECONDS
            if not got and seconds > 0:
                continue
        return got[0][1] if got else 0


def os_error(err: int, what: str) -> OSError:
    """OSError(err) with a message; the constructor picks the subclass
    (ProcessLookupError for ESRCH, PermissionError for EPERM, ...)."""
    return OSError(err, f"{what} ({os.strerror(err)})")
