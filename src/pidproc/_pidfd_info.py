"""The PIDFD_GET_INFO ioctl (Linux 6.13; exit status with PIDFD_INFO_EXIT, 6.15).

``struct pidfd_info`` is extensible: the kernel reads the size from the
ioctl number, and 64 bytes (PIDFD_INFO_SIZE_VER0) is understood by every
kernel that has the ioctl.  A kernel without it answers ENOTTY (6.18+ also
for a wrongly sized request) or EINVAL (earlier): both mean "cannot say".
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from dataclasses import dataclass

PIDFD_INFO_PID = 1 << 0
PIDFD_INFO_CREDS = 1 << 1
PIDFD_INFO_CGROUPID = 1 << 2
PIDFD_INFO_EXIT = 1 << 3

_LAYOUT = struct.Struct("=QQ11Ii")  # mask, cgroupid, pid..fsgid, exit_code
_IOC_READ_WRITE = 3
PIDFD_GET_INFO = (_IOC_READ_WRITE << 30) | (_LAYOUT.size << 16) | (0xFF << 8) | 11
_NOT_SUPPORTED = {errno.ENOTTY, errno.EINVAL}


@dataclass(frozen=True)
class PidfdInfo:
    mask: int
    cgroupid: int
    pid: int
    tgid: int
    ppid: int
    ruid: int
    rgid: int
    euid: int
    egid: int
    suid: int
    sgid: int
    fsuid: int
    fsgid: int
    exit_status: int | None
    """A wait status (as os.waitpid gives), present once the process was reaped."""

    @property
    def returncode(self) -> int | None:
        """exit_status as Popen.returncode: the exit code, or minus the signal."""
        if self.exit_status is None:
            return None
        return os.waitstatus_to_exitcode(self.exit_status)


def pidfd_info(pidfd: int, mask: int = PIDFD_INFO_PID | PIDFD_INFO_CREDS) -> PidfdInfo | None:
    """Ask the kernel about a pidfd's process; None where the kernel cannot.

    Raises ProcessLookupError when the process is gone and no exit
    information was asked for (or kept)."""
    buf = bytearray(_LAYOUT.size)
    struct.pack_into("=Q", buf, 0, mask)
    try:
        fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf, True)
    except OSError as e:
        if e.errno in _NOT_SUPPORTED:
            return None
        raise
    mask_got, cgroupid, *ids, exit_code = _LAYOUT.unpack(buf)
    pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid = ids
    return PidfdInfo(
        mask_got, cgroupid, pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid,
        exit_status=exit_code if mask_got & PIDFD_INFO_EXIT else None,
    )  # fmt: skip


def exit_status_after_reap(pidfd: int, patience: float = 0.1) -> int | None:
    """The wait status of a process that someone else reaped, or None.

    A reaper's waitid can return a moment before the kernel records the exit
    information (it does so when it releases the task), so look again for a
    short while before giving up."""
    deadline = time.monotonic() + patience
    delay = 0.0001
    while True:
        try:
            info = pidfd_info(pidfd, PIDFD_INFO_EXIT)
        except ProcessLookupError:
            pass  # gone, its exit not recorded yet: look again
        except OSError:
            return None
        else:
            if info is None:
                return None  # no PIDFD_GET_INFO in this kernel
            if info.exit_status is not None:
                return info.exit_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
