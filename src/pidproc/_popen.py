"""``pidproc.Popen``: the stdlib's Popen, with the child held by a pidfd.

Only the POSIX hooks change; everything else (argument checking, pipes,
text wrappers, communicate() around its loop, context manager) is the
stdlib's own code:

``_execute_child``  spawns through the chosen path (``_backends``) and keeps
                    the pidfd the kernel returned with the child.
``_internal_poll``  ``waitid(P_PIDFD, WNOHANG)``: one syscall, never another
                    process's status.
``_wait``           no timeout: ``waitid(P_PIDFD)``; with one: ``poll()`` on
                    the pidfd, so the exit is seen at once (no sleep loop).
``send_signal``     ``pidfd_send_signal``: a recycled PID is never hit.
``_communicate``    the same exchange with fewer, larger reads and writes
                    (``_communicate``), for every path.

The lifecycle options (``die_with_parent``, ``kill_tree``, ``no_new_privs``)
and ``Popen.rusage`` live in ``_lifecycle``, ``_cgroup`` and ``_reap``; this
module only hands them over: ``__init__`` takes the options, ``_execute_child``
lets ``Lifecycle.prepare``/``apply`` shape the spawn, the waits reap through
``_reap.wait``, and ``send_signal`` goes to the tree.

When a child was reaped behind our back (SIGCHLD ignored, a foreign
``waitpid(-1)``), its real exit status is read with PIDFD_INFO_EXIT where
the kernel keeps it (6.15+); the stdlib reports 0 there.

A Popen without a pidfd (path ``pid``, or a kernel without pidfds) runs the
stdlib's methods unchanged.

A reaped child holds no file descriptor: its pidfd is closed at the reap,
unless the program read ``Popen.pidfd`` (then it stays open until a
``with Popen(...)`` block ends with the child reaped, or the Popen is
collected, so a number registered in a selector is never closed under it).
Where no descriptor can be spared, the child is held by its PID alone, as
the stdlib holds it (``_fdbudget``).
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
from collections.abc import Callable
from select import POLLIN
from time import monotonic as _time

from . import _fdbudget, _posix, _reap, _stdlib
from ._communicate import communicate as _communicate_fast
from ._pidfd_handle import _PidfdHandle
from ._pidfd_sys import (
    GONE,
    MAX_POLL_SECONDS,
    NO_FD,
    open_unreaped_child,
    poll_fd,
    returncode,
    returncode_after_reap,
    still_unreaped,
)
from ._spawn.dispatch import NO_PIDFD, Spawned, spawn_c
from ._spawn.paths import needs_of
from ._spawn.state import chain, chain_forced, forced
from ._stdlib import ChildArgs

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    import inspect
    import resource
    from typing import Any

    from ._lifecycle import Lifecycle


@functools.cache
def _lifecycle_class() -> type[Lifecycle]:
    # Loaded on first use (import time), then without an import statement
    # at each spawn (~2 us).
    from ._lifecycle import Lifecycle

    return Lifecycle


# Called as a plain function, not through super(): CPython 3.14+ then runs
# it in the same C frame as our __init__, so spawning from a thread with the
# smallest stack the stdlib manages with takes no more C stack than it does.
_STDLIB_INIT: Callable[..., None] = subprocess.Popen.__init__


class Popen(subprocess.Popen):  # type: ignore[type-arg]
    __doc__ = subprocess.Popen.__doc__

    backend: str | None = None
    """The spawn path this child took: pidfd_spawn, clone3, clone, fork or pid."""

    die_with_parent: str | None = None
    """What kills the child when this process dies: "autokill", "pdeathsig", or None."""
    kill_tree: str | None = None
    """What holds the child's tree for signals: "cgroup", "process_group", or None."""
    no_new_privs: str | None = None
    """What set no_new_privs in the child: "clone_nnp", "prctl", or None."""

    _pidfd_handle: _PidfdHandle | None = None
    _lifecycle: Lifecycle | None = None

    # The stdlib's private machinery we build on (absent from typeshed).
    _waitpid_lock: threading.Lock
    _child_created: bool
    _close_pipe_fds: Callable[..., None]
    _STDLIB_INTERNAL_POLL = _stdlib.STDLIB_INTERNAL_POLL
    _STDLIB_WAIT = _stdlib.STDLIB_WAIT

    def __init__(
        self,
        *args: Any,
        die_with_parent: bool = False,
        kill_tree: bool = False,
        no_new_privs: bool = False,
        **kwargs: Any,
    ) -> None:
        if die_with_parent or kill_tree or no_new_privs:
            self._lifecycle = life = _lifecycle_class()(die_with_parent, kill_tree, no_new_privs)
            try:
                _STDLIB_INIT(self, *args, **kwargs)
            except BaseException:
                life.abandon()
                raise
            life.spawned(self)
        else:
            _STDLIB_INIT(self, *args, **kwargs)

    @property
    def rusage(self) -> resource.struct_rusage | None:
        """The child's resource usage, as ``os.wait4`` reports it, once
        pidproc has reaped it; None before, or where it cannot be known
        (reaped by someone else, the kernel's autoreap, the ``pid`` path)."""
        handle = self._pidfd_handle
        return None if handle is None else _reap.rusage_of(handle)

    @property
    def pidfd(self) -> int | None:
        """The child's pidfd (close-on-exec), or None without one or once closed.

        Once read, it stays open until a ``with`` block ends with the child
        reaped, or the Popen is collected; unread, it is closed at the reap."""
        handle = self._pidfd_handle
        if handle is None:
            return None
        return handle.expose()

    # ---- spawning ---------------------------------------------------------

    def _execute_child(self, *arguments: Any) -> None:
        """The stdlib's hook, called with its own arguments (``ChildArgs``)."""
        a = ChildArgs(*arguments)
        life = self._lifecycle
        if life is None:
            paths = chain(self._needs(a))
        else:
            force = forced()  # once for the choice and the chain
            needs = life.prepare(a, force)  # first: it may wrap preexec_fn
            paths = chain_forced(force, needs | self._needs(a))
        if paths[0].c_function is not None:
            spawned = spawn_c(a, paths, life.apply if life is not None else None)
            if spawned is not None:
                self._adopt(spawned)
                self._close_pipe_fds(*a.pipe_fds)
                return
        if life is not None:
            life.before_stdlib_spawn(paths, a)
        # The stdlib spawns (vfork, posix_spawn, or fork for preexec_fn).
        _stdlib.execute_child(self, a)
        if not any(p.name == "fork" for p in paths):
            self.backend = "pid"
            return
        pidfd = open_unreaped_child(self.pid)
        if pidfd == GONE:
            # Reaped by someone else already: the stdlib reads that (ECHILD)
            # as 0, and its PID is not ours to signal or wait for any more.
            self.returncode = 0
            self.backend = "fork"
        elif pidfd == NO_FD:
            self.backend = "fork" + NO_PIDFD  # held by its PID, as the stdlib
        else:
            self._adopt(Spawned(self.pid, pidfd, "fork"))

    @staticmethod
    def _needs(a: ChildArgs) -> frozenset[str]:
        """What the spawn path must express for the stdlib's own arguments."""
        return needs_of(a.preexec_fn, a.uid, a.gid, a.gids, a.umask, a.child_fds, a.pass_fds)

    def _adopt(self, spawned: Spawned) -> None:
        self.pid = spawned.pid
        self._child_created = True
        pidfd, backend = spawned.pidfd, spawned.backend
        life = self._lifecycle
        if (
            pidfd is not None
            and not _fdbudget.fits(pidfd)
            and (life is None or life.may_drop_pidfd)
        ):
            # Unreaped, so its PID stays its own: held by it, as the stdlib.
            os.close(pidfd)
            pidfd = None
            backend += NO_PIDFD
        self.backend = backend
        if pidfd is not None:
            self._pidfd_handle = _PidfdHandle(pidfd)

    # ---- waiting ----------------------------------------------------------

    def _reaped_elsewhere(self, deadstate: int | None) -> None:
        """ECHILD: someone else reaped our child.  Report its real status."""
        handle = self._pidfd_handle
        code = returncode_after_reap(handle.fd) if handle is not None and handle.fd >= 0 else None
        if code is not None:
            self.returncode = code
        else:
            self.returncode = deadstate if deadstate is not None else 0
        if handle is not None:
            handle.retire()

    def _internal_poll(
        self,
        _deadstate: int | None = None,
        _wait: Callable[..., Any] = _reap.wait,
        _FLAGS: int = _posix.WEXITED | os.WNOHANG,
    ) -> int | None:
        # Called by __del__: only locals and default arguments from here.
        handle = self._pidfd_handle
        if handle is None:
            return self._STDLIB_INTERNAL_POLL(_deadstate=_deadstate)
        if self.returncode is not None:
            return self.returncode
        if not self._waitpid_lock.acquire(False):
            return None  # another thread is waiting: we know nothing yet
        try:
            if self.returncode is None:
                try:
                    result = _wait(handle, _FLAGS)
                except ChildProcessError:
                    self._reaped_elsewhere(_deadstate)
                except OSError:
                    if _deadstate is not None:
                        self.returncode = _deadstate
                        handle.retire()
                else:
                    if result is not None:
                        self.returncode = returncode(result)
                        handle.retire()
        finally:
            self._waitpid_lock.release()
        return self.returncode

    def _reap_locked(self, flags: int) -> bool:
        """waitid on the pidfd; the caller holds _waitpid_lock. True once reaped."""
        if self.returncode is not None:
            return True
        handle = self._pidfd_handle
        assert handle is not None
        try:
            result = _reap.wait(handle, flags)
        except ChildProcessError:
            self._reaped_elsewhere(None)
            return True
        if result is None:
            return False
        self.returncode = returncode(result)
        handle.retire()
        return True

    def _wait(self, timeout: float | None) -> int:
        if self.returncode is not None:
            return self.returncode
        handle = self._pidfd_handle
        if handle is None:
            return self._STDLIB_WAIT(timeout)
        if timeout is None:
            while self.returncode is None:
                with self._waitpid_lock:
                    self._reap_locked(_posix.WEXITED)
            return self.returncode

        endtime = _time() + timeout
        # Pinned: a reap in another thread must not close (and the kernel
        # reuse) the number our poller watches.
        fd = handle.pin()
        if fd < 0:
            return self.returncode  # type: ignore[return-value]  # reaped meanwhile: set
        try:
            while True:
                # The lock is held by a thread blocked in waitid until the
                # exit: waiting for it up to our deadline is waiting for it.
                wait_for_lock = min(max(endtime - _time(), 0), MAX_POLL_SECONDS)
                if self._waitpid_lock.acquire(True, wait_for_lock):
                    try:
                        if self._reap_locked(_posix.WEXITED | os.WNOHANG):
                            return self.returncode  # type: ignore[return-value]  # set
                    finally:
                        self._waitpid_lock.release()
                remaining = endtime - _time()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                # The pidfd turns readable the moment the child exits.
                poll_fd(fd, POLLIN, remaining)
        finally:
            handle.unpin()

    # ---- pipes --------------------------------------------------------------

    def _communicate(self, input: Any, endtime: float | None, orig_timeout: float | None) -> Any:
        # Larger reads and writes, same semantics (_communicate.py).
        return _communicate_fast(self, input, endtime, orig_timeout)

    # ---- signalling -------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        life = self._lifecycle
        if life is not None and life.tree is not None:
            return life.send_signal(self, sig, self._send_signal_to_child)
        self._send_signal_to_child(sig)

    def _send_signal_to_child(self, sig: int) -> None:
        handle = self._pidfd_handle
        if handle is None:
            return super().send_signal(sig)
        # As the stdlib: poll first so a known-dead child is not signalled.
        self.poll()
        if self.returncode is not None:
            return
        fd = handle.pin()  # a reap in another thread must not free the number
        if fd < 0:
            return  # reaped meanwhile
        try:
            _posix.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            pass  # exited meanwhile; the pidfd cannot point anywhere else
        except OSError:
            # Denied by a seccomp filter (ENOSYS, EPERM) or refused for a
            # reason kill() shares (EPERM, EINVAL): kill() gives its answer.
            self._kill_while_unreaped(sig)
        finally:
            handle.unpin()

    def _kill_while_unreaped(self, sig: int) -> None:
        """kill(pid), only while the PID is certainly still our child's: we
        hold its pidfd, and waitid(WNOWAIT) on it says it is not reaped (a
        zombie keeps its PID).  Under the wait lock when it is free, so no
        thread of ours reaps in between; a thread blocked in waitid holds it
        until the exit, and then only an exit, a reap and a full wrap of the
        PID space in the microseconds between waitid and kill could mislead."""
        handle = self._pidfd_handle
        assert handle is not None
        locked = self._waitpid_lock.acquire(False)
        try:
            if self.returncode is not None or handle.fd < 0:
                return
            if still_unreaped(handle.fd):  # else the PID may be anyone's by now
                os.kill(self.pid, sig)
        finally:
            if locked:
                self._waitpid_lock.release()

    # ---- end of life ------------------------------------------------------

    def __exit__(self, exc_type: Any, value: Any, traceback: Any) -> None:
        try:
            super().__exit__(exc_type, value, traceback)
        finally:
            self._close_pidfd_if_reaped()

    def _close_pidfd_if_reaped(self) -> None:
        handle = self._pidfd_handle
        if handle is None or self.returncode is None:
            return
        with self._waitpid_lock:
            handle.close()


class _InitSignature:
    """``Popen.__signature__``: the stdlib's parameters, in its order, then
    pidproc's keyword-only ones (help() and inspect show what Popen takes,
    not ``*args, **kwargs``).  Computed on first use: ``inspect`` costs more
    to import than the rest of pidproc, and every process under
    PIDPROC_PATCH=1 imports pidproc.  A subclass with its own ``__init__``
    gets its own signature (None: inspect looks further)."""

    def __init__(self) -> None:
        self._signature: inspect.Signature | None = None

    def __get__(self, obj: object, cls: type | None = None) -> inspect.Signature | None:
        if obj is not None or cls is None or cls.__init__ is not Popen.__init__:  # type: ignore[misc]
            return None
        if self._signature is None:
            import inspect

            stdlib = inspect.signature(subprocess.Popen)
            ours = [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False)
                for name in ("die_with_parent", "kill_tree", "no_new_privs")
            ]
            self._signature = stdlib.replace(parameters=[*stdlib.parameters.values(), *ours])
        return self._signature


Popen.__signature__ = _InitSignature()  # type: ignore[attr-defined]
