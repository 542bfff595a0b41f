"""``pidproc.PidFd``: a handle on any process, held by a pidfd.

A pidfd names one process for as long as it is open: once that process is
gone, the PID number may be reused, but the pidfd never points at the new
owner.  Every operation here goes through the pidfd, so none of them can
reach a recycled PID.

Where Python has the call it is used (``os.pidfd_open``,
``signal.pidfd_send_signal``, ``os.waitid``, ``os.setns`` on 3.12+); the rest
goes through the cffi core (``_toolkit.c``), and so do the first three on
PyPy, which lacks them (``_posix``).  Where the kernel or the
privileges lack something, the OSError carries the kernel's errno and a
message naming what is missing.

Kernel features, by call: pidfd_open 5.3 (PIDFD_NONBLOCK 5.10),
pidfd_send_signal 5.1, waitid(P_PIDFD) 5.4, pidfd_getfd 5.6, setns 5.8,
process_madvise 5.10, pidfs identity 6.9, PIDFD_GET_INFO 6.13,
PIDFD_INFO_EXIT 6.15.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import math
import os
import re
import select
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable
from time import monotonic as _time
from typing import Any

from . import _native, _posix
from ._native import ffi, lib
from ._pidfd_handle import pin_pidfd, unpin_pidfd
from ._pidfd_info import (
    PIDFD_INFO_CGROUPID,
    PIDFD_INFO_CREDS,
    PIDFD_INFO_EXIT,
    PIDFD_INFO_PID,
    PidfdInfo,
    pidfd_info,
)
from ._pidfd_sys import os_error, returncode, returncode_after_reap, still_unreaped

# Strategies for PidFd.pid, in order (one knob each, as CPython's _USE_VFORK, so a test can
# force every fallback).  The last one, /proc/self/fdinfo, always runs.
# PIDFD_GET_INFO comes first, glibc's pidfd_getpid second: that one only
# parses fdinfo, whose PIDs are those of the PID namespace /proc was mounted
# from, while the ioctl answers in the caller's own PID namespace.
_USE_GET_INFO = True  # PIDFD_GET_INFO, Linux 6.13+
_USE_PIDFD_GETPID = True  # glibc 2.39+

PIDFD_NONBLOCK = os.O_NONBLOCK
_PIDFD_GET_USER_NAMESPACE = (0xFF << 8) | 9  # _IO(PIDFS_IOCTL_MAGIC, 9), Linux 6.11
_MAX_IOV = 1024  # the kernel's UIO_MAXIOV: process_madvise takes at most this many ranges


class Namespace(enum.IntFlag):
    """The CLONE_NEW* flags that ``PidFd.setns`` takes (os.CLONE_NEW* on 3.12+)."""

    MNT = 0x00020000  # CLONE_NEWNS
    CGROUP = 0x02000000
    UTS = 0x04000000
    IPC = 0x08000000
    USER = 0x10000000
    PID = 0x20000000
    NET = 0x40000000
    TIME = 0x00000080
    ALL = MNT | CGROUP | UTS | IPC | USER | PID | NET | TIME


class Advice(enum.IntEnum):
    """The advice values process_madvise(2) accepts."""

    WILLNEED = 3  # Linux 5.10
    COLD = 20  # 5.10
    PAGEOUT = 21  # 5.10
    COLLAPSE = 25  # 6.1


def _kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return m is not None and (int(m[1]), int(m[2])) >= (major, minor)


# Whether the kernel records a reaped process's exit status (PIDFD_INFO_EXIT)
# and wakes pidfd pollers at the reap.  No probe can ask this without
# creating and reaping a process, so the kernel release decides (6.15).
_EXIT_INFO_KEPT = _kernel_at_least(6, 15)


_GONE = "the process has exited and been reaped"
_REMOTE = "the process is in a PID namespace not visible from here: it has no PID in ours"


# ---- identity ----------------------------------------------------------------

_pidfs_known: bool | None = None


def _pidfs() -> bool:
    """True when pidfds live on pidfs (Linux 6.9+): one inode per process.

    Before pidfs every pidfd shared the single anon_inode, as an epoll fd
    still does, so compare the two.  A failure (EMFILE, ...) is not cached."""
    global _pidfs_known
    if _pidfs_known is None:
        fd = _posix.pidfd_open(os.getpid())
        try:
            with select.epoll() as ep:
                a, b = os.fstat(fd), os.fstat(ep.fileno())
        finally:
            os.close(fd)
        _pidfs_known = (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)
    return _pidfs_known


# ---- the handle --------------------------------------------------------------


class PidFd:
    """A process, held by a pidfd (close-on-exec) that this object owns.

    ``PidFd(fd)`` takes ownership of an open pidfd; ``PidFd.open(pid)`` and
    ``PidFd.from_popen(popen)`` make one.  The fd is closed by ``close()``, at
    the end of a ``with`` block, or when the object is collected; closing
    never waits for the process nor signals it.
    """

    returncode: int | None = None
    """Set by wait()/poll() once the exit status is known: the exit code, or
    minus the signal that killed it (as Popen.returncode)."""

    def __init__(self, fd: int) -> None:
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise ValueError(f"PidFd needs an open pidfd, got {fd!r}")
        st = os.fstat(fd)
        self._fd = fd
        self._lock = threading.Lock()
        self._done = False  # the exit is known (returncode may still be None)
        self._await_reap = False  # exited, not our child, not reaped yet
        # (dev, ino) names the process on pidfs; before it, only this object.
        self._key: tuple[int, int] | None = (st.st_dev, st.st_ino) if _pidfs() else None
        self._pid_hint = _fdinfo_pid(fd)

    # ---- making one --------------------------------------------------------

    @classmethod
    def open(cls, pid: int, *, nonblock: bool = False) -> PidFd:
        """pidfd_open(2) (Linux 5.3; ``nonblock``: PIDFD_NONBLOCK, 5.10).

        Race-free only while you know ``pid`` is the process you mean: your
        unreaped child, or a process that cannot exit meanwhile.  Raises
        ProcessLookupError when no such process exists."""
        if not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"pid must be a positive int, got {pid!r}")
        try:
            fd = _posix.pidfd_open(pid, PIDFD_NONBLOCK if nonblock else 0)
        except OSError as e:
            raise _open_error(e.errno or 0, pid, nonblock) from None
        return cls(fd)

    @classmethod
    def from_popen(cls, popen: subprocess.Popen[Any]) -> PidFd:
        """A PidFd for a Popen's child (pidproc's or the stdlib's).

        The PidFd gets its own fd (a dup of ``popen.pidfd``, or a fresh
        pidfd_open checked against the unreaped child), so either can be
        closed first.  The child stays the Popen's to wait for: ``wait()``
        here would reap it behind the Popen's back (pidproc.Popen still reads
        the real status then, the stdlib's reports 0)."""
        if popen.returncode is not None:
            raise ProcessLookupError(errno.ESRCH, f"pid {popen.pid} was already reaped")
        pidfd = pin_pidfd(popen)
        if pidfd is not None:
            try:
                return cls(os.dup(pidfd))
            finally:
                unpin_pidfd(popen)
        self = cls.open(popen.pid)
        # Our unreaped child cannot have lost its PID; a reaped one could
        # have, so the pidfd must name an unreaped child of ours.
        if not still_unreaped(self._fd):
            self.close()
            raise ProcessLookupError(errno.ESRCH, f"pid {popen.pid} was reaped elsewhere")
        return self

    # ---- the fd ------------------------------------------------------------

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on a closed PidFd")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self, _close: Callable[[int], None] = os.close) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close(fd)

    def __enter__(self) -> PidFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        if self._done:
            state += f" returncode={self.returncode}"
        hint = self._pid_hint
        pid = hint if hint is not None and hint > 0 else "?"  # reaped, or not visible here
        return f"<PidFd pid={pid} {state}>"

    # ---- identity ----------------------------------------------------------

    @property
    def inode(self) -> int:
        """The process's pidfs inode number: unique per process since boot."""
        if self._key is None:
            raise OSError(errno.EOPNOTSUPP, "process identity needs pidfs (Linux 6.9)")
        return self._key[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PidFd):
            return NotImplemented
        if self._key is None or other._key is None:
            return self is other  # before pidfs nothing tells two processes apart
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key) if self._key is not None else object.__hash__(self)

    # ---- what the process is -----------------------------------------------

    @property
    def pid(self) -> int:
        """The process's PID in our PID namespace, asked of the kernel now.

        ProcessLookupError once it has been reaped (the number may belong to
        another process by then); OSError(EREMOTE) when it lives in a PID
        namespace we cannot see into."""
        fd = self.fileno()
        if _USE_GET_INFO:
            try:
                info = pidfd_info(fd, PIDFD_INFO_PID)
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise _pid_error(e.errno or 0) from None
                # ESRCH: reaped, or (before 6.18) in a namespace we cannot
                # see; only for the former does fdinfo say -1.
                found = _fdinfo_pid(fd)
                gone = found is None or found < 0
                raise _pid_error(errno.ESRCH if gone else errno.EREMOTE) from None
            if info is not None:
                return info.pid
        # Both below read /proc/self/fdinfo, whose PIDs belong to the PID
        # namespace /proc was mounted from: wrong in a process that entered
        # another PID namespace without mounting its own /proc.
        if _USE_PIDFD_GETPID and _native.MISSING is None:
            pid = lib.pidproc_pidfd_getpid(fd)
            if pid > 0:
                return pid
            if pid != -errno.ENOSYS:
                raise _pid_error(-pid)
        found = _fdinfo_pid(fd)
        if found is None:
            raise OSError(errno.EBADF, f"fd {fd} is not a pidfd")
        if found > 0:
            return found
        raise _pid_error(errno.EREMOTE if found == 0 else errno.ESRCH)

    def info(self) -> PidfdInfo:
        """PIDFD_GET_INFO (Linux 6.13): pid, tgid, ppid, real/effective/saved/fs
        uid and gid, cgroup id; once reaped (6.15) only cgroupid and the exit
        status remain, the other fields read 0 (see ``mask``)."""
        fd = self.fileno()
        mask = PIDFD_INFO_PID | PIDFD_INFO_CREDS | PIDFD_INFO_CGROUPID | PIDFD_INFO_EXIT
        try:
            info = pidfd_info(fd, mask)
        except OSError as e:
            if e.errno == errno.ESRCH:
                raise os_error(
                    errno.ESRCH, f"{_GONE}; its exit status is kept from Linux 6.15 on"
                ) from None
            if e.errno == errno.EREMOTE:
                raise os_error(errno.EREMOTE, _REMOTE) from None
            raise
        if info is None:
            raise os_error(errno.ENOTTY, "PIDFD_GET_INFO needs Linux 6.13")
        return info

    # ---- signalling --------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """pidfd_send_signal(2) (Linux 5.1): never reaches a recycled PID.

        ProcessLookupError once the process has been reaped."""
        try:
            _posix.pidfd_send_signal(self.fileno(), sig)
        except OSError as e:
            err = e.errno or 0
            if err == errno.ESRCH:
                raise os_error(err, _GONE) from None
            if err == errno.EPERM:
                raise os_error(err, "no permission to signal the process (other user)") from None
            if err == errno.ENOSYS:
                raise os_error(err, "pidfd_send_signal needs Linux 5.1") from None
            raise

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    # ---- waiting -----------------------------------------------------------

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit and return its status as a returncode
        (exit code, or minus the signal), raising subprocess.TimeoutExpired
        after ``timeout`` seconds, as Popen.wait does.

        Our child is reaped (waitid P_PIDFD).  Any other process is watched
        through the pidfd; its status is read with PIDFD_INFO_EXIT (Linux
        6.15+) once its parent has reaped it, so wait() returns when that
        happens.  Returns None only where the kernel cannot say (before
        6.15: the moment the process exits)."""
        fd = self.fileno()
        endtime = None if timeout is None else _time() + timeout
        poller: select.poll | None = None
        while True:
            if self._collect(fd):
                return self.returncode
            if endtime is None:
                ms = -1
            else:
                remaining = endtime - _time()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(repr(self), timeout or 0)
                ms = math.ceil(remaining * 1000)
            if poller is None:
                poller = select.poll()
            # POLLIN: the process exited.  Events 0: only POLLHUP, which comes
            # when a zombie that is not ours is reaped.
            poller.register(fd, 0 if self._await_reap else select.POLLIN)
            poller.poll(ms)

    def poll(self) -> int | None:
        """The returncode if the process has ended (reaping our child), else
        None, without blocking."""
        if self._fd >= 0 and self._collect(self._fd):
            return self.returncode
        return self.returncode if self._done else None

    def _collect(self, fd: int) -> bool:
        """Learn the exit if it happened; True once it is known."""
        if self._done:
            return True
        with self._lock:
            if self._done:
                return True
            try:
                result = _posix.waitid(_posix.P_PIDFD, fd, _posix.WEXITED | os.WNOHANG)
            except ChildProcessError:
                pass  # not our child (or someone reaped it): watch the pidfd
            except BlockingIOError:
                return False  # PIDFD_NONBLOCK: our child, still running
            else:
                if result is None:
                    return False
                self._finish(returncode(result))
                return True
            events = _ready(fd)
            if not events & select.POLLIN:
                return False  # still running
            if not _EXIT_INFO_KEPT:
                self._finish(None)  # exited; this kernel keeps no status
                return True
            if events & select.POLLHUP:
                self._finish(returncode_after_reap(fd))
                return True
            self._await_reap = True  # a zombie: its status comes with the reap
            return False

    def _finish(self, returncode: int | None) -> None:
        self.returncode = returncode
        self._done = True
        self._await_reap = False

    # ---- reaching into the process -----------------------------------------

    def getfd(self, targetfd: int) -> int:
        """pidfd_getfd(2) (Linux 5.6): a duplicate of the process's fd
        ``targetfd``, close-on-exec, owned by the caller.

        Needs ptrace attach rights over the process (same user and not
        restricted by Yama's ptrace_scope, or CAP_SYS_PTRACE).  Needs the C
        core (Python has no pidfd_getfd)."""
        if _native.MISSING is not None:
            raise _native.missing_error("pidfd_getfd")
        fd = lib.pidproc_pidfd_getfd(self.fileno(), targetfd, 0)
        if fd >= 0:
            return fd
        err = -fd
        what = {
            errno.EBADF: f"the process has no fd {targetfd}",
            errno.EPERM: "pidfd_getfd needs ptrace attach rights over the process "
            "(PTRACE_MODE_ATTACH_REALCREDS: same user and Yama ptrace_scope, or CAP_SYS_PTRACE)",
            errno.ESRCH: "the process has exited",
            errno.ENOSYS: "pidfd_getfd needs Linux 5.6",
        }.get(err, "pidfd_getfd failed")
        raise os_error(err, what)

    def setns(self, nstypes: int) -> None:
        """Move the calling thread into some or all of the process's
        namespaces (setns(2) with a pidfd, Linux 5.8): ``nstypes`` is a mask of
        ``Namespace`` flags (or os.CLONE_NEW*), atomically all or none.

        This changes the calling process for good: do it in a child.  Needs
        CAP_SYS_ADMIN (in the target's user namespace); USER and MNT need a
        single-threaded caller.  USER is skipped when the process shares
        ours (the kernel refuses it), so ``Namespace.ALL`` means "all of
        them", as nsenter --all does."""
        fd = self.fileno()
        if nstypes <= 0:
            raise ValueError("setns needs at least one Namespace flag")
        if nstypes & Namespace.USER and self._user_ns_is_ours(fd):
            # The kernel refuses to "enter" the user namespace one is in
            # (EINVAL); nsenter --all skips it too.
            nstypes &= ~Namespace.USER
            if not nstypes:
                return
        os_setns = getattr(os, "setns", None)  # 3.12+
        if os_setns is not None:
            try:
                os_setns(fd, int(nstypes))
                return
            except OSError as e:
                err = e.errno or 0
        elif _native.MISSING is not None:
            raise _native.missing_error("setns before Python 3.12")
        else:
            err = -lib.pidproc_setns(fd, int(nstypes))
            if err == 0:
                return
        what = {
            errno.EPERM: "setns needs CAP_SYS_ADMIN over the target's namespaces",
            errno.EINVAL: "setns with a pidfd needs Linux 5.8, namespace flags the kernel "
            "knows, and for USER or MNT a single-threaded caller",
            errno.ESRCH: "the process has exited",
        }.get(err, "setns failed")
        raise os_error(err, what)

    def _user_ns_is_ours(self, fd: int) -> bool:
        try:
            mine = os.stat("/proc/thread-self/ns/user")
        except OSError:
            return False
        try:
            nsfd = fcntl.ioctl(fd, _PIDFD_GET_USER_NAMESPACE)
        except OSError:
            # Before 6.11: the /proc entry, if /proc is our PID namespace's,
            # read while the process is known to hold its PID.
            try:
                if os.readlink("/proc/self") != str(os.getpid()):
                    return False
                pid = self.pid
                theirs = os.stat(f"/proc/{pid}/ns/user")
                if self.pid != pid:
                    return False
            except OSError:
                return False
        else:
            try:
                theirs = os.fstat(nsfd)
            finally:
                os.close(nsfd)
        return (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino)

    def madvise(self, ranges: Iterable[tuple[int, int]], advice: int) -> int:
        """process_madvise(2) (Linux 5.10) on the process's memory: advise
        each (address, length) range; returns the number of bytes advised
        (fewer than asked if the kernel stopped early).

        ``advice``: an ``Advice`` (COLD, PAGEOUT, WILLNEED; COLLAPSE on 6.1+).
        Needs ptrace read access and, for a process other than ourselves,
        CAP_SYS_NICE.  Needs the C core (Python has no process_madvise)."""
        if _native.MISSING is not None:
            raise _native.missing_error("process_madvise")
        fd = self.fileno()
        pairs = [(int(a), int(n)) for a, n in ranges]
        total = 0
        for start in range(0, len(pairs), _MAX_IOV):
            chunk = pairs[start : start + _MAX_IOV]
            addrs = ffi.new("unsigned long[]", [a for a, _ in chunk])
            lens = ffi.new("size_t[]", [n for _, n in chunk])
            done = lib.pidproc_process_madvise(fd, addrs, lens, len(chunk), int(advice), 0)
            if done < 0:
                err = -done
                what = {
                    errno.EPERM: "process_madvise on another process needs CAP_SYS_NICE "
                    "and ptrace read access to it",
                    errno.EINVAL: f"advice {int(advice)} is not one process_madvise takes here "
                    "(Linux 5.10: COLD, PAGEOUT, WILLNEED; 6.1: COLLAPSE), or a bad range",
                    errno.ENOMEM: "a range is not mapped in the process",
                    errno.EFAULT: "a range is not mapped in the process",
                    errno.ESRCH: "the process has exited",
                    errno.ENOSYS: "process_madvise needs Linux 5.10",
                }.get(err, "process_madvise failed")
                raise os_error(err, what)
            total += done
            if done < sum(n for _, n in chunk):
                break  # the kernel stopped early; report what was done
        return total


# ---- helpers -----------------------------------------------------------------


def finished(p: PidFd) -> bool:
    """Its exit is known (``returncode`` may still be None: a kernel before
    6.15 keeps no status for a process that is not our child)."""
    return p._done


def awaiting_reap(p: PidFd) -> bool:
    """It has exited, is not our child, and its parent has not reaped it: its
    status comes with the reap (POLLHUP), not with the exit (POLLIN)."""
    return p._await_reap


def _ready(fd: int) -> int:
    """The pidfd's poll events right now (POLLIN: exited; POLLHUP: reaped)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    got = p.poll(0)
    return got[0][1] if got else 0


def _fdinfo_pid(fd: int) -> int | None:
    """The ``Pid:`` line of /proc/self/fdinfo/FD: the PID in our namespace,
    0 if it is in a namespace we cannot see, -1 once reaped; None if absent."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _pid_error(err: int) -> OSError:
    if err == errno.ESRCH:
        return os_error(err, f"{_GONE}: it has no PID any more")
    if err == errno.EREMOTE:
        return os_error(err, _REMOTE)
    return os_error(err, "cannot read the pidfd's PID")


def _open_error(err: int, pid: int, nonblock: bool) -> OSError:
    if err == errno.ESRCH:
        return os_error(err, f"no process with pid {pid}")
    if err == errno.ENOENT:
        return os_error(err, f"pid {pid} is a thread, not a process (thread-group leader)")
    if err == errno.EINVAL:
        hint = "; PIDFD_NONBLOCK needs Linux 5.10" if nonblock else ""
        return os_error(err, f"pid {pid} is not a thread-group leader{hint}")
    if err == errno.ENOSYS:
        if not _posix.NATIVE and _native.MISSING is not None:
            return _native.missing_error("pidfd_open")  # this Python's os has none (PyPy)
        return os_error(err, "pidfd_open needs Linux 5.3")
    return os_error(err, f"pidfd_open({pid}) failed")
