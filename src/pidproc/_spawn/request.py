"""Turn Popen's arguments into the one struct the C core reads.

Everything the child needs is converted here, in the parent, by the
stdlib's rules and with its exceptions (``convert``), so the child created
by clone never allocates.  ``ChildSpec`` is the request in Python terms;
``SpawnRequest`` is the one place that fills the C struct from it.  Strings
are packed back to back: argv and the exec candidates share one buffer and
one slot array, the environment has its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .._native import ffi
from .convert import PYPY, _c_int, _ids, _pid_t, _pypy_fds_to_keep, fsencode_checked

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def _pack(items: Sequence[bytes]) -> bytes:
    return b"\0".join(items) + b"\0" if items else b""


class ChildSpec:
    """What the child is to run, in the stdlib's terms, already validated.
    (A plain class, not a dataclass: see ``_stdlib.ChildArgs``.)"""

    __slots__ = (
        "argv",
        "exec_paths",
        "envp",
        "cwd",
        "stdin_fd",
        "stdout_fd",
        "stderr_fd",
        "keep_fds",
        "close_fds",
        "restore_signals",
        "new_session",
        "pgid",
        "umask",
        "uid",
        "gid",
        "groups",
    )

    def __init__(
        self,
        argv: list[bytes],
        exec_paths: list[bytes],
        envp: list[bytes] | None,
        cwd: bytes | None,
        stdin_fd: int,
        stdout_fd: int,
        stderr_fd: int,
        keep_fds: tuple[int, ...],
        close_fds: bool,
        restore_signals: bool,
        new_session: bool,
        pgid: int,
        umask: int,
        uid: int | None,
        gid: int | None,
        groups: list[int] | None,
    ) -> None:
        self.argv = argv
        self.exec_paths = exec_paths
        self.envp = envp
        self.cwd = cwd
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.keep_fds = keep_fds
        self.close_fds = close_fds
        self.restore_signals = restore_signals
        self.new_session = new_session
        self.pgid = pgid
        self.umask = umask
        self.uid = uid
        self.gid = gid
        self.groups = groups


def build_spec(
    args: list[Any],
    executable: StrOrBytesPath,
    env: Mapping[Any, Any] | None,
    cwd: StrOrBytesPath | None,
    pass_fds: Sequence[int],
    close_fds: bool,
    fds: tuple[int, int, int],
    restore_signals: bool,
    start_new_session: bool,
    process_group: int,
    uid: int | None,
    gid: int | None,
    gids: Sequence[int] | None,
    umask: int,
    *,
    posix_spawn_checked: bool = False,
) -> ChildSpec:
    """Validate and convert in the order the stdlib does, so the first bad
    argument raises the same exception it would raise there.

    ``posix_spawn_checked``: check_like_posix_spawn passed, as os.posix_spawn
    would have (it allows "=" first in an env name and never reads umask,
    which is negative there)."""
    if posix_spawn_checked:
        umask = -1
    if env is not None:
        envp = []
        for k, v in env.items():
            key = os.fsencode(k)
            if b"=" in key and not posix_spawn_checked:
                raise ValueError("illegal environment variable name")
            envp.append(key + b"=" + os.fsencode(v))
    else:
        envp = None
    exec_paths = _exec_candidates(os.fsencode(executable), env)
    keep = tuple(sorted(map(int, set(pass_fds))))  # still Python code there
    # fork_exec's argument parsing comes next in the stdlib, in its order:
    # the stdio fds (an int given as stdin= etc. is passed as is), the
    # process group, the umask.
    fds = (_c_int(fds[0]), _c_int(fds[1]), _c_int(fds[2]))
    if not PYPY:  # PyPy's fork_exec converts it last, below
        process_group = _pid_t(process_group)
    umask = _c_int(umask)
    if PYPY:
        _pypy_fds_to_keep(keep)
    elif keep and (keep[0] < 0 or keep[-1] > 2**31 - 1):  # fork_exec: 0 <= fd <= INT_MAX
        raise ValueError("bad value(s) in fds_to_keep")
    # fork_exec converts the executable list before argv.
    for item in exec_paths:
        if b"\0" in item:
            raise ValueError("embedded null byte")
    argv = [fsencode_checked(a) for a in args]
    if envp is not None:
        for item in envp:
            if b"\0" in item:
                raise ValueError("embedded null byte")
    cwd_b = fsencode_checked(cwd) if cwd is not None else None
    uid, gid, groups = _ids(uid, gid, gids)
    if PYPY:
        process_group = _pid_t(process_group)
    return ChildSpec(
        argv=argv,
        exec_paths=exec_paths,
        envp=envp,
        cwd=cwd_b,
        stdin_fd=fds[0],
        stdout_fd=fds[1],
        stderr_fd=fds[2],
        keep_fds=keep,
        close_fds=bool(close_fds),
        restore_signals=bool(restore_signals),
        new_session=bool(start_new_session),
        pgid=process_group,
        umask=umask,
        uid=uid,
        gid=gid,
        groups=groups,
    )


class SpawnRequest:
    """The cffi struct for one spawn, with the buffers it points into."""

    __slots__ = ("spec", "struct", "_keep")

    def __init__(self, spec: ChildSpec, *, probe_only: bool = False) -> None:
        self.spec = spec
        r = ffi.new("struct pidproc_spawn *")
        argc, n_exec = len(spec.argv), len(spec.exec_paths)
        # argv then the exec candidates: one buffer, one slot array.
        slots = ffi.new("char *[]", argc + n_exec + 2)
        buf = ffi.new("char[]", _pack(spec.argv + spec.exec_paths))
        keep: list[Any] = [slots, buf]
        r.argv, r.argv_buf, r.argc = slots, buf, argc
        r.exec_paths = slots + (argc + 1)
        r.exec_buf = buf + (sum(map(len, spec.argv)) + argc)  # after argv's strings
        r.n_exec = n_exec
        if spec.envp is not None:
            env_slots = ffi.new("char *[]", len(spec.envp) + 1)
            env_buf = ffi.new("char[]", _pack(spec.envp))
            keep += (env_slots, env_buf)
            r.envp, r.envp_buf, r.envc = env_slots, env_buf, len(spec.envp)
        if spec.cwd is not None:
            cwd = ffi.new("char[]", spec.cwd)
            keep.append(cwd)
            r.cwd = cwd
        r.stdin_fd, r.stdout_fd, r.stderr_fd = spec.stdin_fd, spec.stdout_fd, spec.stderr_fd
        if spec.keep_fds:
            fds = ffi.new("int[]", spec.keep_fds)
            keep.append(fds)
            r.keep_fds = fds
            r.n_keep_fds = len(spec.keep_fds)
        r.close_fds = spec.close_fds
        r.restore_signals = spec.restore_signals
        r.new_session = spec.new_session
        r.pgid = spec.pgid
        r.umask = spec.umask
        r.uid = -1 if spec.uid is None else spec.uid
        r.gid = -1 if spec.gid is None else spec.gid
        if spec.groups is None:
            r.n_groups = -1
        else:
            groups = ffi.new("unsigned int[]", spec.groups or [0])
            keep.append(groups)
            r.groups = groups
            r.n_groups = len(spec.groups)
        r.probe_only = probe_only
        self.struct = r
        self._keep = keep


_INT_MAX = 2**31 - 1


def quick_spec(
    args: list[Any],
    executable: Any,
    fds: tuple[int, int, int],
    close_fds: bool,
    restore_signals: bool,
    new_session: bool,
) -> ChildSpec | None:
    """The common request (str/bytes argv, no env, cwd, pass_fds, ids, umask
    or process group; the caller checks those), without the general path's
    conversions; None sends anything unusual to build_spec.

    Only input that every check in build_spec (and os.posix_spawn's, where
    the stdlib would use it) accepts gets through here, so both raise the
    same for bad input: that is build_spec's job alone.  Spawning is the hot
    path of every benchmark, hence a few checks written twice."""
    for a in args:
        if type(a) is not str and type(a) is not bytes:
            return None
    if not args or not args[0] or (type(executable) is not str and type(executable) is not bytes):
        return None
    for fd in fds:
        if type(fd) is not int or not (fd == -1 or 2 < fd <= _INT_MAX):
            return None
    argv = [os.fsencode(a) for a in args]
    exec_paths = _exec_candidates(os.fsencode(executable), None)
    for item in argv + exec_paths:
        if b"\0" in item:
            return None  # build_spec raises what the stdlib raises
    return ChildSpec(
        argv, exec_paths, None, None, fds[0], fds[1], fds[2], (),
        bool(close_fds), bool(restore_signals), bool(new_session), -1, -1, None, None, None,
    )  # fmt: skip


def _exec_candidates(exe: bytes, env: Mapping[Any, Any] | None) -> list[bytes]:
    """The paths the child tries in turn: as the stdlib (and os._execvpe),
    the directories of the child's PATH unless the name has a directory."""
    if os.path.dirname(exe):
        return [exe]
    return [os.path.join(os.fsencode(d), exe) for d in os.get_exec_path(env)]


def probe_spec() -> ChildSpec:
    """A request whose child exits at once: used to learn whether a path works."""
    return ChildSpec(
        argv=[b"pidproc-probe"],
        exec_paths=[],
        envp=None,
        cwd=None,
        stdin_fd=-1,
        stdout_fd=-1,
        stderr_fd=-1,
        keep_fds=(),
        close_fds=False,
        restore_signals=False,
        new_session=False,
        pgid=-1,
        umask=-1,
        uid=None,
        gid=None,
        groups=None,
    )
