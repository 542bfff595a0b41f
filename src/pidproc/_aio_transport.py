"""The asyncio subprocess transport on pidfds (behind ``pidproc.asyncio``).

asyncio's own transport (``unix_events._UnixSubprocessTransport``) spawns with
``subprocess.Popen`` and leaves the exit to a child watcher: a thread per
child blocked in ``waitpid`` (3.10/3.11), or a pidfd reader that then calls
``waitpid`` (3.12/3.13), the returncode reaching the transport one loop
iteration later.  Its signals go by PID (``os.kill`` since 3.13): a signal
sent between the reap and that iteration can hit whoever got the PID next
(CPython gh-127049).

Here the transport owns the child outright:

- ``_start`` spawns a ``pidproc.Popen`` and registers its pidfd with
  ``loop.add_reader``.  No child watcher and no thread is involved, so any
  loop with ``add_reader`` works, in any thread.
- When the pidfd turns readable, the same callback reaps the child
  (``Popen.poll()``: ``waitid(P_PIDFD)``) and reports the exit
  (``_process_exited``): the returncode is known the instant the PID is
  given back, so there is no window in which the PID is free and the
  transport still believes the child runs.
- ``send_signal``/``terminate``/``kill`` go through ``pidfd_send_signal``
  (``pidproc.Popen.send_signal``): a recycled PID is never hit.
- Once reaped, the pidfd is closed: thousands of finished Process objects
  hold no fds.

Fallbacks: a Popen without a pidfd (the ``pid`` path) gets one from
``pidfd_open`` (checked against the unreaped child); where that fails too, or
the loop has no ``add_reader``, a thread blocks in ``Popen.wait()`` as
asyncio's ThreadedChildWatcher does (knob ``_USE_PIDFD``).

A loop closed while children run: the transport cannot be told, but when it
is closed or collected afterwards it closes its pipes itself (the pipe
transports cannot, on a closed loop), kills the child if it still runs and
reaps it, waiting at most ``_REAP_AFTER_KILL`` seconds.

``install()``/``uninstall()`` put ``make_subprocess_transport`` in place of
the selector loop's ``_make_subprocess_transport`` for ``pidproc.patch()``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from asyncio import base_subprocess, events, protocols
from asyncio.log import logger
from collections.abc import Callable
from select import POLLIN
from typing import Any

from . import _posix
from ._pidfd_handle import pin_pidfd, unpin_pidfd
from ._pidfd_sys import open_unreaped_child, poll_fd, returncode, returncode_after_reap
from ._popen import Popen

# A knob, as CPython's _USE_VFORK: False makes the transport wait in a thread (the fallback taken
# where pidfds are unavailable), so that path can be tested here.
_USE_PIDFD = True
# A pidfd readable but the child not reapable yet (another thread is inside
# this Popen's wait() and holds its lock, or a tracer holds the child): look
# again after _RETRY_FIRST seconds rather than spin on a level-triggered fd,
# doubling the pause up to _RETRY_MAX while it lasts. The first looks are
# quick because the other thread usually reaps within microseconds; the cap
# bounds how late an exit is noticed when it does not.
_RETRY_FIRST = 0.002
_RETRY_MAX = 0.05
# A loop closed under a running child: how long close() waits for the child
# it killed before leaving it to subprocess's own cleanup (SIGKILL takes
# effect in microseconds unless the child is stuck in the kernel).
_REAP_AFTER_KILL = 1.0


class PidfdSubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """A subprocess transport whose child is a pidproc.Popen, watched through
    its pidfd in the event loop (see the module docstring)."""

    _proc: subprocess.Popen[Any] | None
    _reader_fd = -1  # the fd registered with loop.add_reader
    _own_fd = -1  # a pidfd we opened ourselves (the ``pid`` path)
    # The Popen whose own pidfd we watch, pinned meanwhile (kept apart from
    # _proc, which the base class drops when the connection is lost).
    _pinned: subprocess.Popen[Any] | None = None
    _retry: asyncio.TimerHandle | None = None
    _retry_after = _RETRY_FIRST
    _thread: threading.Thread | None = None

    def _start(
        self,
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        **kwargs: Any,
    ) -> None:
        self._proc = self._popen_class()(
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs,
        )  # fmt: skip
        self._watch(self._proc)

    def _popen_class(self) -> type[subprocess.Popen[Any]]:
        return Popen

    # ---- watching for the exit ------------------------------------------

    def _watch(self, proc: subprocess.Popen[Any]) -> None:
        fd = pin_pidfd(proc) if _USE_PIDFD else None
        if fd is not None:
            self._pinned = proc
        if fd is None and _USE_PIDFD:
            # The pid path's child: a pidfd of our own (GONE or NO_FD: a thread
            # waits by PID, as the Popen would).
            own = open_unreaped_child(proc.pid)
            if own >= 0:
                self._own_fd = fd = own
        if fd is not None and _USE_PIDFD:
            try:
                self._loop.add_reader(fd, self._pidfd_readable)
            except NotImplementedError:
                pass  # a loop without add_reader: wait in a thread
            else:
                self._reader_fd = fd
                return
        if self._own_fd >= 0:
            os.close(self._own_fd)  # the thread waits as the Popen does
            self._own_fd = -1
        self._unpin()
        self._wait_in_thread(proc)

    def _reap(self) -> int | None:
        """The returncode if the child has exited (reaping it), else None."""
        proc = self._proc
        assert proc is not None
        fd = self._own_fd
        if fd < 0:
            return proc.poll()  # pidproc.Popen: waitid on its pidfd
        # A Popen without a pidfd would wait by PID, and a PID reaped
        # elsewhere and reused would look like a running child forever: reap
        # through our pidfd, under the Popen's own lock, and tell the Popen.
        if proc.returncode is not None:
            return proc.returncode
        lock: threading.Lock | None = getattr(proc, "_waitpid_lock", None)
        if lock is not None and not lock.acquire(False):
            return None  # another thread is in the Popen's wait(): it reaps
        try:
            if proc.returncode is None:
                try:
                    result = _posix.waitid(_posix.P_PIDFD, fd, _posix.WEXITED | os.WNOHANG)
                except ChildProcessError:
                    # Reaped behind our back: the real status where the
                    # kernel keeps it (6.15+), else 0 as pidproc.Popen says.
                    code = returncode_after_reap(fd)
                    proc.returncode = 0 if code is None else code
                else:
                    if result is None:
                        return None
                    proc.returncode = returncode(result)
        finally:
            if lock is not None:
                lock.release()
        return proc.returncode

    def _pidfd_readable(self) -> None:
        proc = self._proc
        if proc is None or self._returncode is not None:
            self._unwatch()
            return
        returncode = self._reap()
        if returncode is None:
            # Readable but not reaped: see _RETRY_FIRST.
            self._loop.remove_reader(self._reader_fd)
            self._retry = self._loop.call_later(self._retry_after, self._rearm)
            self._retry_after = min(self._retry_after * 2, _RETRY_MAX)
            return
        self._exited(returncode)

    def _rearm(self) -> None:
        self._retry = None
        if self._proc is not None and self._returncode is None and self._reader_fd >= 0:
            self._loop.add_reader(self._reader_fd, self._pidfd_readable)

    def _wait_in_thread(self, proc: subprocess.Popen[Any]) -> None:
        loop = self._loop

        def wait() -> None:
            returncode = proc.wait()
            try:
                loop.call_soon_threadsafe(self._exited, returncode)
            except RuntimeError:
                pass  # the loop was closed meanwhile; the child is reaped

        self._thread = threading.Thread(
            target=wait, name=f"pidproc-asyncio-wait-{proc.pid}", daemon=True
        )
        self._thread.start()

    def _unwatch(self, done: bool = False) -> None:
        """Take the pidfd out of the loop; close it once reaped, or when the
        transport is ``done`` with it (closed on a closed loop)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        fd, self._reader_fd = self._reader_fd, -1
        loop: events.AbstractEventLoop | None = self._loop
        if fd >= 0 and loop is not None and not loop.is_closed():
            loop.remove_reader(fd)
        proc = self._proc
        if done or proc is None or proc.returncode is not None:
            own, self._own_fd = self._own_fd, -1
            if own >= 0:
                os.close(own)
            self._unpin()  # closes it if reaped and the program never read it

    def _unpin(self) -> None:
        proc, self._pinned = self._pinned, None
        if proc is not None:
            unpin_pidfd(proc)

    def _exited(self, returncode: int) -> None:
        if self._proc is None or self._returncode is not None:
            return
        self._unwatch()
        self._process_exited(returncode)

    def get_pidfd(self) -> int | None:
        """The pidfd watched in the loop, or None once the child is reaped."""
        if self._reader_fd >= 0:
            return self._reader_fd
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return None
        if self._own_fd >= 0:
            return self._own_fd
        # Waited in a thread: the Popen's pidfd, closed at the reap as above.
        fd = pin_pidfd(proc)
        if fd is not None:
            unpin_pidfd(proc)
        return fd

    # ---- signals --------------------------------------------------------

    def send_signal(self, signal: int) -> None:
        self._check_proc()
        proc = self._proc
        assert proc is not None
        if self._own_fd >= 0:
            # The ``pid`` path (or not a pidproc.Popen), with a pidfd of our
            # own; the reader reaps, and a reaped child is ESRCH here.
            if proc.returncode is not None:
                return
            try:
                _pidfd_send_signal(self._own_fd, signal)
            except ProcessLookupError:
                pass
            return
        # pidproc.Popen: poll(), then pidfd_send_signal (the PID only if no
        # pidfd could be had at all).  ProcessLookupError is not raised.
        proc.send_signal(signal)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    # ---- closing --------------------------------------------------------

    def close(self) -> None:
        # base_subprocess's close(), except that the kill goes through the
        # pidfd and that a closed loop is survived (see the module docstring).
        if self._closed:
            return
        self._closed = True
        loop: events.AbstractEventLoop | None = self._loop
        loop_closed = loop is not None and loop.is_closed()
        for proto in self._pipes.values():
            pipe = getattr(proto, "pipe", None)
            if pipe is None:
                continue
            if not loop_closed:
                pipe.close()
                continue
            try:
                pipe.close()
            except RuntimeError:
                pass  # it needs the loop to finish closing: close its file here
            file = pipe.get_extra_info("pipe")
            if file is not None:
                file.close()
        proc = self._proc
        if proc is None:
            return
        if self._returncode is None and self._reap() is None:
            if loop is not None and loop.get_debug():
                logger.warning("Close running child process: kill %r", self)
            try:
                # As asyncio: the Popen's kill() (pidproc's goes through the
                # pidfd), unless the pidfd is ours.
                if self._own_fd >= 0:
                    self.kill()
                else:
                    proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
            if loop_closed:
                self._reap_within(_REAP_AFTER_KILL)
        if loop_closed:
            for file in (proc.stdin, proc.stdout, proc.stderr):
                if file is not None:
                    file.close()
            self._unwatch(done=True)

    def _reap_within(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        fd = self._own_fd
        if fd < 0:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass  # Popen.__del__ hands it to subprocess's own cleanup
            return
        deadline = time.monotonic() + timeout
        while self._reap() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            poll_fd(fd, POLLIN, remaining)


def _pidfd_send_signal(fd: int, sig: int) -> None:
    # Module level: send_signal's parameter is named ``signal`` (as asyncio's).
    _posix.pidfd_send_signal(fd, sig)


async def make_subprocess_transport(
    loop: events.AbstractEventLoop,
    protocol: protocols.SubprocessProtocol,
    args: Any,
    shell: bool,
    stdin: Any,
    stdout: Any,
    stderr: Any,
    bufsize: int,
    extra: Any = None,
    _transport_class: type[PidfdSubprocessTransport] = PidfdSubprocessTransport,
    **kwargs: Any,
) -> PidfdSubprocessTransport:
    """What ``_UnixSelectorEventLoop._make_subprocess_transport`` does, minus
    the child watcher: spawn, connect the pipes, and on failure or
    cancellation kill and reap the child before raising."""
    waiter = loop.create_future()
    transport = _transport_class(
        loop, protocol, args, shell, stdin, stdout, stderr, bufsize,
        waiter=waiter, extra=extra, **kwargs,
    )  # fmt: skip
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transport.close()
        await transport._wait()
        raise
    return transport


class _PatchedTransport(PidfdSubprocessTransport):
    """Under pidproc.patch(): ``subprocess.Popen`` is looked up at each spawn,
    as asyncio's own transport does (it is pidproc's while patched; a test's
    mock.patch of it is honoured)."""

    def _popen_class(self) -> type[subprocess.Popen[Any]]:
        return subprocess.Popen


async def _loop_make_subprocess_transport(
    self: events.AbstractEventLoop,
    protocol: protocols.SubprocessProtocol,
    args: Any,
    shell: bool,
    stdin: Any,
    stdout: Any,
    stderr: Any,
    bufsize: int,
    extra: Any = None,
    **kwargs: Any,
) -> PidfdSubprocessTransport:
    return await make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize,
        extra=extra, _transport_class=_PatchedTransport, **kwargs,
    )  # fmt: skip


# ---- pidproc.patch() ---------------------------------------------------------

_lock = threading.Lock()
_saved: Callable[..., Any] | None = None


def _loop_class() -> type[Any]:
    from asyncio import unix_events

    return unix_events._UnixSelectorEventLoop


def install() -> None:
    """Make asyncio's selector event loop spawn through this transport."""
    global _saved
    with _lock:
        cls = _loop_class()
        current = cls.__dict__.get("_make_subprocess_transport")
        if current is _loop_make_subprocess_transport:
            return
        _saved = current
        cls._make_subprocess_transport = _loop_make_subprocess_transport


def uninstall() -> None:
    """Put asyncio's own method back, unless someone replaced ours since."""
    global _saved
    with _lock:
        cls = _loop_class()
        if cls.__dict__.get("_make_subprocess_transport") is _loop_make_subprocess_transport:
            if _saved is not None:
                cls._make_subprocess_transport = _saved
            else:
                del cls._make_subprocess_transport
        _saved = None


def installed() -> bool:
    return _loop_class().__dict__.get("_make_subprocess_transport") is (
        _loop_make_subprocess_transport
    )
