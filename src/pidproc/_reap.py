"""How a child held by a pidfd is reaped: ``waitid`` with its rusage, or,
for a child the kernel reaps itself (``CLONE_AUTOREAP``), its pidfd.

``wait(handle, flags)`` is ``os.waitid(P_PIDFD, handle.fd, flags)`` as
``Popen`` uses it (the same result, None, or the same exceptions), with two
additions:

- The raw ``waitid`` syscall takes a fifth argument, the reaped child's
  ``struct rusage``: the same figures ``os.wait4`` gives, read in the same
  syscall that reaps, so they are always this child's (a ``wait4(pid)`` after
  the fact could be another process's once the PID is reused).  glibc's
  ``waitid`` and ``os.waitid`` drop that argument; ``_lifecycle.c`` passes it.
- An autoreaped child never reaches ``waitid`` (ECHILD at once): its exit is
  seen by polling the pidfd, after which this raises ChildProcessError, as
  for a child reaped elsewhere, and Popen reads the status with
  PIDFD_INFO_EXIT (which every kernel with autoreap has).

Without the C core (see ``_native``) it is ``os.waitid`` itself, and
``Popen.rusage`` stays None.
"""

from __future__ import annotations

import errno
import os
import resource
import select
from collections.abc import Callable

from . import _posix
from ._native import MISSING

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

# wait() takes what it calls as default arguments: Popen.__del__ reaps
# through it, possibly at interpreter exit, when module globals may be gone.


def _wait_with_rusage(
    handle: Any,
    flags: int,
    _waitid: Any = _posix.waitid_pidfd,
    _fields: Any = _posix.waited_fields,
    _result: type[os.waitid_result] = _posix.waitid_result,
    _WNOWAIT: int = _posix.WNOWAIT,
) -> os.waitid_result | None:
    life = handle.life
    if life is not None and life.autoreaped:
        return _wait_autoreaped(handle, flags)
    try:
        out = _waitid(handle.fd, flags)
    except ChildProcessError:
        if life is not None:
            life.reaped()
        raise
    if out.pid == 0:
        return None
    if not flags & _WNOWAIT:
        handle.rusage = out
        if life is not None:
            life.reaped()
    return _result(_fields(out))


def _wait_autoreaped(handle: Any, flags: int) -> os.waitid_result | None:
    if handle.fd < 0:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))  # as waitid on a closed pidfd
    poller = select.poll()
    poller.register(handle.fd, select.POLLIN)
    if not poller.poll(0 if flags & os.WNOHANG else None):
        return None
    handle.life.reaped()
    raise ChildProcessError(errno.ECHILD, "reaped by the kernel (CLONE_AUTOREAP)")


def rusage_of(handle: Any) -> resource.struct_rusage | None:
    """The waitid's rusage as ``resource.struct_rusage`` (os.wait4's type)."""
    ru = handle.rusage
    if ru is None:
        return None
    if not isinstance(ru, resource.struct_rusage):
        r = ru.ru
        ru = handle.rusage = resource.struct_rusage(
            (r[0] + r[1] / 1e6, r[2] + r[3] / 1e6, *(r[i] for i in range(4, 18)))
        )
    return ru


def _wait_without_core(
    handle: Any,
    flags: int,
    _waitid: Any = _posix.waitid,
    _P_PIDFD: int = _posix.P_PIDFD,
) -> os.waitid_result | None:
    # No autoreaped children without the core: only its clone3 makes them.
    try:
        result: os.waitid_result | None = _waitid(_P_PIDFD, handle.fd, flags)
    except ChildProcessError:
        if handle.life is not None:
            handle.life.reaped()
        raise
    if result is not None and not flags & _posix.WNOWAIT and handle.life is not None:
        handle.life.reaped()
    return result


# Popen's wait(): one of the two, chosen once.
wait: Callable[..., os.waitid_result | None] = (
    _wait_with_rusage if MISSING is None else _wait_without_core
)
