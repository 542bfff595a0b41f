"""One spawn: the request through the C paths of its chain, in order.

``spawn_c`` returns the child of the first C path that takes the request,
or None when the stdlib's own spawn is to run it (no C path in the chain,
or a transient failure: out of fds or processes, where the stdlib's spawn
either manages, needing fewer fds, or raises exactly its own exception).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from .. import _stdlib
from .._errors import TransientSpawnError, raise_child_error
from .._stdlib import ChildArgs
from .convert import check_like_posix_spawn, normalize_args
from .paths import SpawnPath
from .request import SpawnRequest, build_spec, quick_spec
from .state import forced, forced_unavailable, mark_unusable, mark_usable, state, unusable_because

NO_PIDFD = "-no-pidfd"
"""Suffix of ``Popen.backend`` for a child held by its PID alone, as the
stdlib holds it: its pidfd would have taken a file descriptor the program
may need (see ``_fdbudget``)."""


class Spawned:
    """A child a path spawned (a plain class, not a dataclass: see
    ``_stdlib.ChildArgs``)."""

    __slots__ = ("pid", "pidfd", "backend")

    def __init__(self, pid: int, pidfd: int | None, backend: str) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.backend = backend


def spawn_c(
    a: ChildArgs, paths: list[SpawnPath], shape: Callable[[SpawnRequest], None] | None = None
) -> Spawned | None:
    """Spawn through the C paths at the head of ``paths``; None: the stdlib
    spawns.  Raises what the stdlib would raise for the request.  ``shape``
    fills what the request needs beyond the stdlib's arguments (the
    lifecycle options, ``_lifecycle.Lifecycle.apply``)."""
    args, executable = normalize_args(a.args, a.executable, a.shell)
    sys.audit("subprocess.Popen", executable, args, a.cwd, a.env)
    like_posix_spawn: bool | None = None  # decided only where it matters
    spec = None
    if (
        a.env is None and a.cwd is None and not a.pass_fds and a.uid is None and a.gid is None
        and a.gids is None and a.umask == -1 and a.process_group == -1
    ):  # fmt: skip
        spec = quick_spec(
            args, executable, a.child_fds, a.close_fds, a.restore_signals, a.start_new_session
        )
    if spec is None:
        # Where the stdlib would use os.posix_spawn, its checks and its
        # error reports are os.posix_spawn's: ours follow them.
        like_posix_spawn = _stdlib.would_posix_spawn(a, executable)
        if like_posix_spawn:
            check_like_posix_spawn(executable, args, a.env, a.close_fds, a.pipe_fds)
        spec = build_spec(
            args, executable, a.env, a.cwd, a.pass_fds, a.close_fds, a.child_fds,
            a.restore_signals, a.start_new_session, a.process_group, a.uid, a.gid, a.gids,
            a.umask, posix_spawn_checked=like_posix_spawn,
        )  # fmt: skip
    request = SpawnRequest(spec)
    if shape is not None:
        shape(request)
    try:
        for path in paths:
            if path.c_function is None:
                return None
            spawned = _spawn_one(path, request, executable, a.cwd)
            if spawned is not None:
                return spawned
        return None
    except TransientSpawnError as e:
        if paths[-1].c_function is not None:
            # No stdlib spawn after the C paths (the request needs what only
            # they can do): the failure is the answer, as the stdlib's would be.
            raise OSError(e.errno, e.strerror) from None
        return None
    except OSError as e:
        if like_posix_spawn is None:
            like_posix_spawn = _stdlib.would_posix_spawn(a, executable)
        if not like_posix_spawn:
            raise
        # os.posix_spawn names the program in every failure.
        raise OSError(e.errno, e.strerror, os.fspath(executable)) from None


def _spawn_one(
    path: SpawnPath, request: SpawnRequest, executable: object, cwd: object
) -> Spawned | None:
    """One C path: Spawned, None for "not here, try the next", or raise."""
    assert path.c_function is not None
    name = path.name
    rc = path.c_function(request.struct)
    if rc < 0:
        mark_unusable(name, -rc, f"{name}() answered {errno.errorcode.get(-rc, -rc)}")
        if forced() == name:
            raise forced_unavailable(name)
        return None
    if rc > 0:
        raise TransientSpawnError(rc, os.strerror(rc))
    r = request.struct
    if r.err_step:
        if path.replays_child_failures:
            if r.err_errno == errno.ENOSYS:
                mark_unusable(name, errno.ENOSYS, f"{name}() answered ENOSYS")
            elif r.err_errno == errno.EPERM and _denied(path.clones_with):
                # A filter's EPERM on the syscall underneath reaches every spawn.
                mark_unusable(
                    name, errno.EPERM, f"{name} uses {path.clones_with}, which answers EPERM here"
                )
            return None
        raise_child_error(r.err_step, r.err_errno, executable, cwd)
    mark_usable(name)
    if r.pidfd < 0:
        return Spawned(pid=r.pid, pidfd=None, backend=name + NO_PIDFD)
    return Spawned(pid=r.pid, pidfd=r.pidfd, backend=name)


def _denied(name: str | None) -> bool:
    """That path answers EPERM here (probing it once if not known yet)."""
    if name is None:
        return False
    state(name)
    return unusable_because(name) == errno.EPERM
