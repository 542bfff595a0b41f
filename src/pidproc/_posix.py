"""The pidfd calls and wait constants of ``os`` and ``signal``, wherever the
interpreter lacks them: every module of pidproc takes them from here.

CPython (3.9+ on Linux) has them all, and then these names *are* its
functions and constants, so nothing changes and nothing costs more.  PyPy
(7.3 to 8.0, Python 3.11) has ``os.waitpid`` but none of ``os.pidfd_open``,
``os.waitid`` (nor its result type, ``P_PID``, ``P_PIDFD``, ``WEXITED``,
``WNOWAIT``, the ``CLD_*`` codes) or ``signal.pidfd_send_signal``.  cffi is
PyPy's own FFI, so there the C core makes the calls: the children of a
PyPy program are held by pidfds too, which PyPy's own subprocess cannot do.

Without either (PyPy without the core), the calls raise ENOSYS, the answer
of a kernel without pidfds, and pidproc holds its children by PID (the
``pid`` path), exactly like the stdlib.

The constants are the kernel's (include/uapi/linux/wait.h and the generic
siginfo codes), the same on every Linux architecture.
"""

from __future__ import annotations

import errno
import os
import signal

from ._native import MISSING, ffi, lib, missing_error

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

P_PID: int = getattr(os, "P_PID", 1)
P_PIDFD: int = getattr(os, "P_PIDFD", 3)
WEXITED: int = getattr(os, "WEXITED", 4)
WNOWAIT: int = getattr(os, "WNOWAIT", 0x01000000)
CLD_EXITED: int = getattr(os, "CLD_EXITED", 1)
CLD_KILLED: int = getattr(os, "CLD_KILLED", 2)
CLD_DUMPED: int = getattr(os, "CLD_DUMPED", 3)

NATIVE: bool = hasattr(os, "waitid") and hasattr(os, "pidfd_open")
"""The interpreter has the calls itself (CPython); else the core makes them."""


def _raise(rc: int) -> Any:
    # OSError(errno, ...) is the matching subclass (ProcessLookupError for
    # ESRCH, ChildProcessError for ECHILD), as os raises it.
    raise OSError(-rc, os.strerror(-rc))


class _WaitidResult(tuple):  # type: ignore[type-arg]
    """``os.waitid_result`` where os has none: the same five fields, by
    name and by index."""

    __slots__ = ()

    si_pid = property(lambda self: self[0])
    si_uid = property(lambda self: self[1])
    si_signo = property(lambda self: self[2])
    si_status = property(lambda self: self[3])
    si_code = property(lambda self: self[4])

    def __repr__(self) -> str:
        fields = ("si_pid", "si_uid", "si_signo", "si_status", "si_code")
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(fields, self, strict=True))
        return f"waitid_result({inner})"


def _pidfd_open(pid: int, flags: int = 0) -> int:
    if MISSING is not None:
        raise missing_error("pidfd_open")
    rc: int = lib.pidproc_pidfd_open(pid, flags)
    return rc if rc >= 0 else _raise(rc)


def _pidfd_send_signal(fd: int, sig: int, siginfo: None = None, flags: int = 0) -> None:
    if siginfo is not None:
        raise TypeError("siginfo must be None")  # as os's
    if MISSING is not None:
        raise missing_error("pidfd_send_signal")
    rc: int = lib.pidproc_pidfd_send_signal(fd, sig, flags)
    while rc == -errno.EINTR:
        rc = lib.pidproc_pidfd_send_signal(fd, sig, flags)
    if rc < 0:
        _raise(rc)


def waitid_pidfd(
    fd: int,
    options: int,
    _new: Any = ffi.new,
    _call: Any = lib.pidproc_waitid_rusage,
    _EINTR: int = -errno.EINTR,
    _strerror: Any = os.strerror,
) -> Any:
    """waitid(P_PIDFD, fd, options) through the core, with the rusage os's
    drops: the ``struct pidproc_waited`` it filled (pid 0: WNOHANG and
    nothing to report).  EINTR is retried (PEP 475; a handler, if any, has
    run between the tries); any other error is the OSError os raises.
    Default arguments only: Popen.__del__ reaps through it, possibly at
    interpreter exit, when module globals may already be gone."""
    out = _new("struct pidproc_waited *")
    rc = _call(fd, options, out)
    while rc == _EINTR:
        rc = _call(fd, options, out)
    if rc < 0:
        raise OSError(-rc, _strerror(-rc))
    return out


def waited_fields(out: Any, _SIGCHLD: int = int(signal.SIGCHLD)) -> tuple[int, ...]:
    """A filled ``struct pidproc_waited`` as waitid_result's five fields."""
    return (out.pid, out.uid, _SIGCHLD, out.status, out.code)


def _waitid(idtype: int, ident: int, options: int) -> _WaitidResult | None:
    if idtype != P_PIDFD:
        raise OSError(errno.EINVAL, "pidproc's waitid takes only P_PIDFD")
    if MISSING is not None:
        raise missing_error("waitid")
    out = waitid_pidfd(ident, options)
    return None if out.pid == 0 else _WaitidResult(waited_fields(out))


pidfd_open: Callable[..., int] = getattr(os, "pidfd_open", _pidfd_open)
pidfd_send_signal: Callable[..., None] = getattr(signal, "pidfd_send_signal", _pidfd_send_signal)
waitid: Callable[[int, int, int], Any] = getattr(os, "waitid", _waitid)
waitid_result: Any = getattr(os, "waitid_result", _WaitidResult)
