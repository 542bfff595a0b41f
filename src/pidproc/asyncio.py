"""``pidproc.asyncio``: asyncio subprocesses held by pidfds.

``create_subprocess_exec`` and ``create_subprocess_shell`` take the
arguments of ``asyncio.create_subprocess_exec``/``_shell`` and return an
``asyncio.subprocess.Process`` (a subclass adding ``pidfd``), so existing
code only changes its import::

    from pidproc.asyncio import create_subprocess_exec

What changes: the child is a ``pidproc.Popen``; its exit is seen through its
pidfd, registered in the running loop (``loop.add_reader``), and reaped in
the same callback, without a child watcher or a thread; ``send_signal``,
``terminate`` and ``kill`` use ``pidfd_send_signal``, so a recycled PID is
never signalled (asyncio's own transport signals by PID: CPython gh-127049).
Any event loop with ``add_reader`` works, in any thread.

``pidproc.patch()`` puts the same transport under asyncio's own
``create_subprocess_*`` and ``loop.subprocess_exec``/``_shell`` (the stdlib's
selector event loop).

``wait_pidfd`` awaits the exit of any process held by a pidfd (a
``pidproc.PidFd``, or a pidfd number), a child or not.
"""

from __future__ import annotations

# Absolute imports: "asyncio" below is the stdlib's, never this module.
import asyncio as _asyncio
import os
import select
from asyncio import protocols as _protocols
from asyncio import streams as _streams
from asyncio import subprocess as _aio_subprocess
from collections.abc import Callable
from typing import Any

from ._aio_transport import PidfdSubprocessTransport, make_subprocess_transport
from ._pidfd import PidFd, awaiting_reap, finished

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "Process",
    "PidfdSubprocessTransport",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "subprocess_exec",
    "subprocess_shell",
    "wait_pidfd",
]

PIPE = _aio_subprocess.PIPE
STDOUT = _aio_subprocess.STDOUT
DEVNULL = _aio_subprocess.DEVNULL

_DEFAULT_LIMIT: int = getattr(_streams, "_DEFAULT_LIMIT", 2**16)


class Process(_aio_subprocess.Process):
    """``asyncio.subprocess.Process``, with the child held by a pidfd."""

    @property
    def pidfd(self) -> int | None:
        """The child's pidfd while it runs; None once reaped (it is closed then).

        Watched by the event loop: to await it elsewhere use
        :func:`wait_pidfd`, not ``loop.add_reader`` on the same number."""
        transport = getattr(self, "_transport", None)
        if isinstance(transport, PidfdSubprocessTransport):
            return transport.get_pidfd()
        return None


def _check(kwargs: dict[str, Any], *, shell: bool) -> int:
    """BaseEventLoop.subprocess_exec/_shell's checks, same order and messages;
    returns bufsize and leaves in ``kwargs`` what goes to Popen."""
    universal_newlines = kwargs.pop("universal_newlines", False)
    given_shell = kwargs.pop("shell", shell)
    bufsize = kwargs.pop("bufsize", 0)
    encoding = kwargs.pop("encoding", None)
    errors = kwargs.pop("errors", None)
    text = kwargs.pop("text", None)
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bool(given_shell) != shell:
        raise ValueError(f"shell must be {shell}")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")
    return int(bufsize)


async def subprocess_exec(
    protocol_factory: Callable[[], _protocols.SubprocessProtocol],
    program: Any,
    *args: Any,
    stdin: Any = PIPE,
    stdout: Any = PIPE,
    stderr: Any = PIPE,
    **kwargs: Any,
) -> tuple[PidfdSubprocessTransport, _protocols.SubprocessProtocol]:
    """``loop.subprocess_exec`` on the running loop, on pidfds."""
    loop = _asyncio.get_running_loop()
    bufsize = _check(kwargs, shell=False)
    protocol = protocol_factory()
    transport = await make_subprocess_transport(
        loop, protocol, (program, *args), False, stdin, stdout, stderr, bufsize, **kwargs
    )
    return transport, protocol


async def subprocess_shell(
    protocol_factory: Callable[[], _protocols.SubprocessProtocol],
    cmd: str | bytes,
    *,
    stdin: Any = PIPE,
    stdout: Any = PIPE,
    stderr: Any = PIPE,
    **kwargs: Any,
) -> tuple[PidfdSubprocessTransport, _protocols.SubprocessProtocol]:
    """``loop.subprocess_shell`` on the running loop, on pidfds."""
    loop = _asyncio.get_running_loop()
    if not isinstance(cmd, (bytes, str)):
        raise ValueError("cmd must be a string")
    bufsize = _check(kwargs, shell=True)
    protocol = protocol_factory()
    transport = await make_subprocess_transport(
        loop, protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs
    )
    return transport, protocol


async def create_subprocess_exec(
    program: Any,
    *args: Any,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    limit: int = _DEFAULT_LIMIT,
    **kwds: Any,
) -> Process:
    """``asyncio.create_subprocess_exec``, on pidfds."""
    loop = _asyncio.get_running_loop()
    transport, protocol = await subprocess_exec(
        lambda: _aio_subprocess.SubprocessStreamProtocol(limit=limit, loop=loop),
        program, *args, stdin=stdin, stdout=stdout, stderr=stderr, **kwds,
    )  # fmt: skip
    return Process(transport, protocol, loop)


async def create_subprocess_shell(
    cmd: str | bytes,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    limit: int = _DEFAULT_LIMIT,
    **kwds: Any,
) -> Process:
    """``asyncio.create_subprocess_shell``, on pidfds."""
    loop = _asyncio.get_running_loop()
    transport, protocol = await subprocess_shell(
        lambda: _aio_subprocess.SubprocessStreamProtocol(limit=limit, loop=loop),
        cmd, stdin=stdin, stdout=stdout, stderr=stderr, **kwds,
    )  # fmt: skip
    return Process(transport, protocol, loop)


# ---- any process -------------------------------------------------------------


async def wait_pidfd(target: PidFd | int) -> int | None:
    """Wait for the process behind a pidfd to end; return its returncode
    (exit code, or minus the signal), as ``PidFd.wait()`` does.

    ``target`` is a ``pidproc.PidFd`` or a pidfd number (which stays the
    caller's: a duplicate is watched).  Our own child is reaped.  Any other
    process: its status is read with PIDFD_INFO_EXIT (Linux 6.15+) once its
    parent has reaped it, so the wait ends then; None where the kernel
    cannot say (before 6.15, at the exit).

    Cancellation (``asyncio.wait_for``...) leaves the process alone.
    """
    if isinstance(target, PidFd):
        pidfd, owned = target, False
    elif isinstance(target, int) and not isinstance(target, bool):
        pidfd, owned = PidFd(os.dup(target)), True
    else:
        raise TypeError(f"wait_pidfd() takes a PidFd or a pidfd number, not {target!r}")
    loop = _asyncio.get_running_loop()
    try:
        # The loop watches a private epoll set holding the pidfd, never the
        # pidfd itself: the same pidfd may be watched by others (a second
        # wait_pidfd, our transport), and add_reader allows one callback per
        # fd.  It also lets us wait for POLLHUP alone (a zombie that is not
        # our child stays POLLIN until its parent reaps it), which
        # add_reader cannot ask for.
        with select.epoll(1) as watch:
            registered: int | None = None
            while True:
                pidfd.poll()
                if finished(pidfd):
                    return pidfd.returncode
                events = 0 if awaiting_reap(pidfd) else select.EPOLLIN
                if registered is None:
                    watch.register(pidfd.fileno(), events)
                elif registered != events:
                    watch.modify(pidfd.fileno(), events)
                registered = events
                ready = loop.create_future()
                loop.add_reader(watch.fileno(), _set_done, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(watch.fileno())
    finally:
        if owned:
            pidfd.close()


def _set_done(future: _asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
