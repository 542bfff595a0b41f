"""``pidproc.Popen``: the stdlib's Popen, with the child held by a pidfd.

Only the POSIX hooks change; everything else (argument checking, pipes,
text wrappers, communicate, context manager) is the stdlib's own code:

``_execute_child``  spawns through the chosen path (``_backends``) and keeps
                    the pidfd the kernel returned with the child.
``_internal_poll``  ``waitid(P_PIDFD, WNOHANG)``: one syscall, never another
                    process's status.
``_wait``           no timeout: ``waitid(P_PIDFD)``; with one: ``poll()`` on
                    the pidfd, so the exit is seen at once (no sleep loop).
``send_signal``     ``pidfd_send_signal``: a recycled PID is never hit.

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

import inspect
import math
import os
import resource
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from time import monotonic as _time
from typing import Any, cast

from . import _backends, _fdbudget, _reap
from ._errors import TransientSpawnError
from ._lifecycle import Lifecycle
from ._pidfd_info import exit_status_after_reap
from ._request import (
    SpawnRequest,
    build_spec,
    check_like_posix_spawn,
    normalize_args,
    quick_request,
    stdlib_posix_spawns,
)

_STDLIB_EXECUTE_CHILD = subprocess.Popen._execute_child  # type: ignore[attr-defined]
_STDLIB_TAKES_PGID = "process_group" in inspect.signature(_STDLIB_EXECUTE_CHILD).parameters
_NO_PGID = -1
# pidfd_spawn closes the gaps below the highest pass_fd one action each.
_MAX_SPAWNABLE_PASS_FD = 1024
# Waits with a timeout go in slices of at most this many seconds: poll()
# takes an int of milliseconds and Lock.acquire refuses more than
# TIMEOUT_MAX, so wait(timeout=1e10 or inf) would overflow (gh-154836).
_MAX_WAIT_SLICE = 24 * 3600.0


def _few_plain_fds(pass_fds: Any) -> bool:
    """pass_fds that pidfd_spawn can take.  Never raises, never consumes an
    iterator: whatever is wrong with them, the stdlib's own checks say so."""
    if not isinstance(pass_fds, (list, tuple, set, frozenset)):
        return False
    return all(type(fd) is int and fd < _MAX_SPAWNABLE_PASS_FD for fd in pass_fds)


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


def _returncode(result: Any) -> int:
    """A waitid result as Popen.returncode (negative signal number if killed)."""
    if result.si_code == os.CLD_EXITED:
        return int(result.si_status)
    return -int(result.si_status)


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
    _STDLIB_INTERNAL_POLL: Callable[..., int | None] = subprocess.Popen._internal_poll  # type: ignore[attr-defined]
    _STDLIB_WAIT: Callable[..., int] = subprocess.Popen._wait  # type: ignore[attr-defined]

    def __init__(
        self,
        *args: Any,
        die_with_parent: bool = False,
        kill_tree: bool = False,
        no_new_privs: bool = False,
        **kwargs: Any,
    ) -> None:
        if die_with_parent or kill_tree or no_new_privs:
            self._lifecycle = life = Lifecycle(die_with_parent, kill_tree, no_new_privs)
            try:
                super().__init__(*args, **kwargs)
            except BaseException:
                life.abandon()
                raise
            life.spawned(self)
        else:
            super().__init__(*args, **kwargs)

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

    def _execute_child(
        self,
        args: Any,
        executable: Any,
        preexec_fn: Callable[[], Any] | None,
        close_fds: bool,
        pass_fds: Any,
        cwd: Any,
        env: Any,
        startupinfo: Any,
        creationflags: int,
        shell: bool,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        restore_signals: bool,
        gid: int | None,
        gids: Any,
        uid: int | None,
        umask: int,
        start_new_session: bool,
        process_group: int = _NO_PGID,
    ) -> None:
        life = self._lifecycle
        needs = _backends._NO_NEEDS
        if life is not None:
            preexec_fn, process_group = life.prepare(preexec_fn, process_group, start_new_session)
            needs = life.needs
        fds = (p2cread, c2pwrite, errwrite)
        names = _backends.chain(preexec=preexec_fn is not None, posix_spawnable=True, needs=needs)
        if "pidfd_spawn" in names and not (
            type(umask) is int
            and umask < 0
            and uid is None
            and gid is None
            and gids is None
            and all(fd == -1 or fd > 2 or fd == n for n, fd in enumerate(fds))
            and _few_plain_fds(pass_fds)
        ):
            names = _backends.chain(
                preexec=preexec_fn is not None, posix_spawnable=False, needs=needs
            )
        if names[0] in _backends.C_BACKENDS:
            args, executable = normalize_args(args, executable, shell)
            sys.audit("subprocess.Popen", executable, args, cwd, env)
            like_posix_spawn: bool | None = None  # decided only where it matters
            request = None
            if (
                env is None
                and cwd is None
                and not pass_fds
                and uid is None
                and gid is None
                and gids is None
                and umask == -1
                and process_group == -1
            ):
                request = quick_request(
                    args, executable, fds, close_fds, restore_signals, start_new_session
                )
            if request is None:
                # Where the stdlib would use os.posix_spawn, its checks and its
                # error reports are os.posix_spawn's: ours follow them.
                like_posix_spawn = self._stdlib_would_posix_spawn(
                    executable, preexec_fn, close_fds, pass_fds, cwd, fds, start_new_session,
                    process_group, gid, gids, uid, umask,
                )  # fmt: skip
                if like_posix_spawn:
                    check_like_posix_spawn(
                        executable, args, env, close_fds,
                        (p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite),
                    )  # fmt: skip
                spec = build_spec(
                    args, executable, env, cwd, pass_fds, close_fds, fds, restore_signals,
                    start_new_session, process_group, uid, gid, gids, umask,
                    posix_spawn_checked=like_posix_spawn,
                )  # fmt: skip
                request = SpawnRequest(spec)
            if life is not None:
                life.apply(request)
            failure: OSError | None = None
            try:
                for name in names:
                    if name not in _backends.C_BACKENDS:
                        break
                    spawned = _backends.spawn_c(name, request, executable, cwd)
                    if spawned is not None:
                        self._adopt(spawned.pid, spawned.pidfd, spawned.backend)
                        self._close_pipe_fds(
                            p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite
                        )
                        return
            except TransientSpawnError as e:
                failure = e  # out of fds or processes: the stdlib's spawn below says what it says
            except OSError as e:
                if like_posix_spawn is None:
                    like_posix_spawn = self._stdlib_would_posix_spawn(
                        executable, preexec_fn, close_fds, pass_fds, cwd, fds,
                        start_new_session, process_group, gid, gids, uid, umask,
                    )  # fmt: skip
                if not like_posix_spawn:
                    raise
                # os.posix_spawn names the program in every failure.
                raise OSError(e.errno, e.strerror, os.fspath(executable)) from None
            if life is not None:
                life.no_stdlib_spawn(names, failure)
        # The stdlib spawns (vfork, posix_spawn, or fork for preexec_fn).
        stdlib_args = [
            args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
            creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite,
            restore_signals, gid, gids, uid, umask, start_new_session,
        ]  # fmt: skip
        if _STDLIB_TAKES_PGID:
            stdlib_args.append(process_group)
        _STDLIB_EXECUTE_CHILD(self, *stdlib_args)
        if "fork" in names:
            pidfd = self._open_pidfd_of_child()
            if pidfd is None and self.returncode is None:
                self._adopt(self.pid, None, "fork" + _backends.NO_PIDFD)
            else:
                self._adopt(self.pid, pidfd, "fork")
        else:
            self.backend = "pid"

    @staticmethod
    def _stdlib_would_posix_spawn(
        executable: Any,
        preexec_fn: Any,
        close_fds: bool,
        pass_fds: Any,
        cwd: Any,
        fds: tuple[int, int, int],
        start_new_session: bool,
        process_group: int,
        gid: Any,
        gids: Any,
        uid: Any,
        umask: Any,
    ) -> bool:
        return stdlib_posix_spawns(
            dict(executable=executable, preexec_fn=preexec_fn, close_fds=close_fds,
                 pass_fds=pass_fds, cwd=cwd, p2cread=fds[0], c2pwrite=fds[1],
                 errwrite=fds[2], start_new_session=start_new_session,
                 process_group=process_group, gid=gid, gids=gids, uid=uid, umask=umask)
        )  # fmt: skip

    def _adopt(self, pid: int, pidfd: int | None, backend: str) -> None:
        self.pid = pid
        self._child_created = True
        life = self._lifecycle
        if (
            pidfd is not None
            and not _fdbudget.fits(pidfd)
            and (life is None or life.may_drop_pidfd)
        ):
            # Unreaped, so its PID stays its own: held by it, as the stdlib.
            os.close(pidfd)
            pidfd = None
            backend += _backends.NO_PIDFD
        self.backend = backend
        if pidfd is not None:
            self._pidfd_handle = _PidfdHandle(pidfd)

    def _open_pidfd_of_child(self) -> int | None:
        """pidfd_open after the stdlib spawned: race-free while the child is
        unreaped, and we check that it still is (a foreign reaper could have
        taken it and its PID been recycled in between)."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            # Gone: only a reap ends a child's PID, so someone else reaped it.
            # The stdlib reads that (ECHILD) as 0; and its PID is not ours to
            # signal or wait for any more.
            self.returncode = 0
            return None
        except OSError:
            return None  # EMFILE and friends: held by its PID, as the stdlib
        try:
            os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            os.close(fd)
            self.returncode = 0  # as above: reaped elsewhere, its PID already reused
            return None
        return fd

    # ---- waiting ----------------------------------------------------------

    def _reaped_elsewhere(self, deadstate: int | None) -> None:
        """ECHILD: someone else reaped our child.  Report its real status."""
        handle = self._pidfd_handle
        status = (
            exit_status_after_reap(handle.fd) if handle is not None and handle.fd >= 0 else None
        )
        if status is not None:
            self.returncode = os.waitstatus_to_exitcode(status)
        else:
            self.returncode = deadstate if deadstate is not None else 0
        if handle is not None:
            handle.retire()

    def _internal_poll(
        self,
        _deadstate: int | None = None,
        _wait: Callable[..., Any] = _reap.wait,
        _FLAGS: int = os.WEXITED | os.WNOHANG,
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
                        self.returncode = _returncode(result)
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
        self.returncode = _returncode(result)
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
                    self._reap_locked(os.WEXITED)
            return self.returncode

        endtime = _time() + timeout
        poller: select.poll | None = None
        # Pinned: a reap in another thread must not close (and the kernel
        # reuse) the number our poller watches.
        fd = handle.pin()
        if fd < 0:
            return cast(int, self.returncode)  # reaped meanwhile
        try:
            while True:
                # The lock is held by a thread blocked in waitid until the
                # exit: waiting for it up to our deadline is waiting for it.
                if self._waitpid_lock.acquire(
                    True, min(max(endtime - _time(), 0), _MAX_WAIT_SLICE)
                ):
                    try:
                        if self._reap_locked(os.WEXITED | os.WNOHANG):
                            return cast(int, self.returncode)
                    finally:
                        self._waitpid_lock.release()
                remaining = endtime - _time()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                if poller is None:
                    poller = select.poll()
                    poller.register(fd, select.POLLIN)
                # The pidfd turns readable the moment the child exits.
                poller.poll(math.ceil(min(remaining, _MAX_WAIT_SLICE) * 1000))
        finally:
            handle.unpin()

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
            signal.pidfd_send_signal(fd, sig)
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
            try:
                os.waitid(os.P_PIDFD, handle.fd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return  # reaped elsewhere: the PID may be anyone's by now
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


def _init_signature() -> inspect.Signature:
    """The stdlib's parameters, in its order, then pidproc's keyword-only ones
    (help() and inspect show what Popen takes, not ``*args, **kwargs``)."""
    stdlib = inspect.signature(subprocess.Popen.__init__)
    ours = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False)
        for name in ("die_with_parent", "kill_tree", "no_new_privs")
    ]
    return stdlib.replace(parameters=[*stdlib.parameters.values(), *ours])


Popen.__init__.__signature__ = _init_signature()  # type: ignore[attr-defined]
