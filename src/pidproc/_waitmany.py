"""Waiting on many processes at once: ``wait_any`` and ``as_completed``.

Every process is watched through its pidfd in one epoll set, so a wake-up
costs the same whether ten or ten thousand are watched, and nothing sleeps
in a loop: the call returns the moment the kernel reports an exit.

What is ours is reaped: a Popen through its own ``wait()`` (so its
``returncode`` is set and the stdlib's bookkeeping stays right), a PidFd
through ``PidFd.poll()`` (which reaps our child, or reads the status of any
other process once its parent has reaped it, PIDFD_INFO_EXIT, 6.15+).

A pidproc.Popen's own pidfd is pinned for the duration of the call (a reap
elsewhere cannot close the number under the poller), and closed afterwards
if the child has been reaped and the program never read ``Popen.pidfd``.
A Popen without a pidfd (the stdlib's, or one held by its PID) gets one for
the duration of the call, checked against the unreaped child.  Where no fd
is free for that, the Popen is polled the way the stdlib's ``wait(timeout)``
polls: ``waitpid(WNOHANG)`` at each wake-up, the wait between growing from
0.5 ms to 50 ms.
"""

from __future__ import annotations

import errno
import math
import os
import select
import subprocess
from collections.abc import Callable, Generator, Iterable
from time import monotonic as _time
from typing import Any, TypeVar, Union, cast

from ._pidfd import PidFd, finished
from ._pidfd_handle import pin_pidfd, unpin_pidfd
from ._pidfd_sys import GONE, NO_FD, open_unreaped_child

Waitable = Union["subprocess.Popen[Any]", PidFd]
W = TypeVar("W", bound=Waitable)

_MAX_EVENTS = 1024
# Popens polled without a pidfd: the stdlib's wait(timeout) delays.
_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.05
_NO_FD = {errno.EMFILE, errno.ENFILE, errno.ENOMEM}


def _finished(proc: Any) -> bool:
    if isinstance(proc, PidFd):
        return finished(proc)
    return proc.returncode is not None


def _collect(proc: Any) -> bool:
    """The pidfd turned ready: reap or read the status. True once known."""
    if isinstance(proc, PidFd):
        proc.poll()
        return finished(proc)
    # Exited: Popen.wait() reaps at once (it would only block if another
    # thread held the Popen's wait lock, and that thread is reaping it).
    proc.wait()
    return True


def _pidfd_for(proc: Any) -> tuple[int, str] | None | subprocess.Popen[Any]:
    """What to watch: (fd, how we hold it: "borrowed", "pinned" or "owned"),
    None if the process is already done, or the Popen itself when no fd is
    free for a pidfd (it is then polled)."""
    if isinstance(proc, PidFd):
        return proc.fileno(), "borrowed"
    fd = pin_pidfd(proc)
    if fd is not None:
        return fd, "pinned"
    if proc.returncode is not None:
        return None  # reaped meanwhile
    fd = open_unreaped_child(proc.pid)
    if fd == GONE:
        proc.poll()  # reaped behind its back: let the Popen find out
        return None
    if fd == NO_FD:
        return cast("subprocess.Popen[Any]", proc)  # polled, as the stdlib waits
    return fd, "owned"


class _Poll:
    """select.poll behind epoll's interface (timeout in seconds, close())."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self.register = self._poll.register
        self.modify = self._poll.modify
        self.unregister = self._poll.unregister

    def poll(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
        return self._poll.poll(None if timeout < 0 else math.ceil(timeout * 1000))

    def close(self) -> None:
        pass


def as_completed(procs: Iterable[W], timeout: float | None = None) -> Generator[W, None, None]:
    """Yield each of ``procs`` (Popen or PidFd objects) as it finishes, reaped.

    Those already finished come first.  Each object is yielded once.  Raises
    TimeoutError if some are still running ``timeout`` seconds after the
    call (as concurrent.futures.as_completed does)."""
    return _as_completed(_unique(procs), timeout, select.epoll)


def wait_any(procs: Iterable[W], timeout: float | None = None) -> W:
    """The first of ``procs`` (Popen or PidFd objects) to finish, reaped; one
    already finished if there is one.  The others are left as they are.
    Raises TimeoutError after ``timeout`` seconds, ValueError if empty.

    One wake-up only, so poll(2) rather than epoll: the kernel scans the
    pidfds once more when it returns, where tearing down an epoll set costs
    a removal per fd (measured ~0.7 ms for 1,000, more than the scan)."""
    it = _as_completed(_unique(procs), timeout, _Poll)
    try:
        return next(it)
    except StopIteration:
        raise ValueError("wait_any() needs at least one process") from None
    finally:
        it.close()


def _unique(procs: Iterable[W]) -> list[W]:
    unique: dict[int, W] = {}
    for proc in procs:
        if not isinstance(proc, (PidFd, subprocess.Popen)):
            raise TypeError(f"expected Popen and PidFd objects, not {proc!r}")
        unique.setdefault(id(proc), proc)
    return list(unique.values())


def _as_completed(
    procs: list[W], timeout: float | None, make_poller: Callable[[], Any]
) -> Generator[W, None, None]:
    endtime = None if timeout is None else _time() + timeout
    by_fd: dict[int, W] = {}
    held: dict[int, tuple[str, W]] = {}  # fds pinned or opened here, to give back
    polled: list[W] = []  # Popens no fd could be had for
    try:
        poller = make_poller()
    except OSError as e:
        if e.errno not in _NO_FD:
            raise
        poller = _Poll()  # poll(2) needs no fd of its own
    try:
        for proc in procs:
            if _finished(proc):
                yield proc
                continue
            got = _pidfd_for(proc)
            if got is None:
                yield proc
                continue
            if not isinstance(got, tuple):
                polled.append(proc)
                continue
            fd, how = got
            if fd in by_fd:
                raise ValueError(f"{proc!r} and {by_fd[fd]!r} share the pidfd {fd}")
            if how != "borrowed":
                held[fd] = how, proc
            poller.register(fd, select.POLLIN)
            by_fd[fd] = proc
        delay = _FIRST_DELAY
        while by_fd or polled:
            if endtime is None:
                wait = -1.0
            else:
                remaining = endtime - _time()
                if remaining <= 0:
                    left = len(by_fd) + len(polled)
                    raise TimeoutError(
                        f"{left} of {len(procs)} processes still running after {timeout} s"
                    )
                wait = remaining
            if polled:
                wait = delay if wait < 0 else min(wait, delay)
                delay = min(delay * 2, _MAX_DELAY)
            events = poller.poll(wait, max(1, min(len(by_fd), _MAX_EVENTS)))
            for fd, _events in events:
                proc = by_fd[fd]
                if not _collect(proc):
                    # An exited process that is not ours: its status comes
                    # with its reap, which only POLLHUP announces.
                    poller.modify(fd, 0)
                    continue
                del by_fd[fd]
                poller.unregister(fd)
                if fd in held:
                    _give_back(fd, *held.pop(fd))
                yield proc
            for proc in [p for p in polled if p.poll() is not None]:
                polled.remove(proc)
                yield proc
    finally:
        poller.close()
        for fd, (how, proc) in held.items():
            _give_back(fd, how, proc)


def _give_back(fd: int, how: str, proc: Any) -> None:
    if how == "owned":
        os.close(fd)
    elif how == "pinned":
        unpin_pidfd(proc)
