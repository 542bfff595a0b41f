"""When a Popen's pidfd is closed: exactly once, and never under a user.

A reaped child holds no file descriptor: its pidfd is closed at the reap,
unless the program read ``Popen.pidfd`` (then it stays open until a
``with Popen(...)`` block ends with the child reaped, or the Popen is
collected, so a number registered in a selector is never closed under it).
pidproc's own users of the number (a wait with a timeout, a signal,
``as_completed``, the asyncio transport) pin it meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

    from ._lifecycle import Lifecycle


class _PidfdHandle:
    """Owns the pidfd and decides when it is closed, exactly once.

    - ``retire()``: the child has been reaped.  The pidfd is closed at once,
      so finished children hold no fds, unless the program has seen its
      number (``expose()``, from ``Popen.pidfd``): a number the program may
      have registered in a selector is never closed under it, nor reused
      behind its back, before ``close()``.
    - ``close()``: the end of a ``with`` block; the program is done with it.
    - ``pin()``/``unpin()``: pidproc's own users of the number (a wait with a
      timeout, a signal, ``as_completed``, the asyncio transport) hold it
      open meanwhile; a reap or a ``close()`` in another thread leaves the
      close to the last ``unpin()``.
    - Collection closes it whatever the state.  It is kept apart from the
      Popen because the stdlib resurrects a Popen whose child still runs
      (``subprocess._active``) and never calls its ``__del__`` again; this
      object dies with the last reference, whichever comes last.
    """

    __slots__ = ("fd", "_lock", "_pins", "_exposed", "_retired", "rusage", "life", "__weakref__")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self._pins = 0
        self._exposed = False
        self._retired = False
        self.rusage: Any = None  # what the reaping waitid reported (_reap)
        self.life: Lifecycle | None = None  # the lifecycle options, if any

    def expose(self) -> int | None:
        with self._lock:
            if self.fd < 0:
                return None
            self._exposed = True
            return self.fd

    def pin(self) -> int:
        """The fd, open until the matching unpin(); -1 if already closed
        (then the child has been reaped: there is nothing to unpin)."""
        with self._lock:
            if self.fd >= 0:
                self._pins += 1
            return self.fd

    def unpin(self) -> None:
        with self._lock:
            self._pins -= 1
            if not self._pins and self._retired and not self._exposed:
                self._close_now()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            if not self._pins and not self._exposed:
                self._close_now()

    def close(self) -> None:
        with self._lock:
            self._retired = True
            self._exposed = False
            if not self._pins:
                self._close_now()

    def _close_now(self, _close: Callable[[int], None] = os.close) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            _close(fd)

    def __del__(self) -> None:
        self._close_now()


def pin_pidfd(proc: subprocess.Popen[Any]) -> int | None:
    """A pidproc.Popen's pidfd for pidproc's own use (a selector, a dup),
    open until ``unpin_pidfd(proc)`` even if the child is reaped meanwhile;
    None without one.  Unlike ``Popen.pidfd``, it does not keep the pidfd
    open after the reap once unpinned."""
    handle = getattr(proc, "_pidfd_handle", None)
    if not isinstance(handle, _PidfdHandle):
        return None
    fd = handle.pin()
    return fd if fd >= 0 else None


def unpin_pidfd(proc: subprocess.Popen[Any]) -> None:
    """Pair of a ``pin_pidfd(proc)`` that returned an fd."""
    handle = proc._pidfd_handle  # type: ignore[attr-defined]
    handle.unpin()
