"""Turn Popen's arguments into the one struct the C core reads.

Everything the child needs is converted here, in the parent, with the
stdlib's own rules and its own exceptions (``TypeError`` for a wrong type,
``ValueError('embedded null byte')``, ``ValueError('illegal environment
variable name')``, ``ValueError('bad value(s) in fds_to_keep')``), so the
child created by clone never allocates.  Strings are packed back to back in
one buffer per vector and C points argv/envp into it: two allocations per
vector instead of one per string.
"""

from __future__ import annotations

import ast
import inspect
import operator
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import Any

from ._core import ffi

StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def fsencode_checked(value: Any) -> bytes:
    """os.fsencode plus the NUL check that PyUnicode_FSConverter does."""
    encoded = os.fsencode(value)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")
    return encoded


def _c_int(value: Any) -> int:
    """What fork_exec's argument parsing accepts for a C int, with its
    exceptions: PyArg_ParseTuple's "i" up to 3.11, Argument Clinic's int
    converter from 3.12."""
    number = operator.index(value)
    if -(2**31) <= number <= 2**31 - 1:
        return number
    if sys.version_info >= (3, 12):
        raise OverflowError("Python int too large to convert to C int")
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise OverflowError("Python int too large to convert to C long")  # "i" reads a long
    if number > 0:
        raise OverflowError("signed integer is greater than maximum")
    raise OverflowError("signed integer is less than minimum")


def _pid_t(value: Any) -> int:
    """process_group: a C int, except that 3.12's fork_exec reads a C long
    and truncates it to pid_t (2**32 became 0, a new group; fixed in 3.13).
    Beyond a long we raise 3.12's message; in between we refuse, as 3.13."""
    if sys.version_info[:2] == (3, 12):
        number = operator.index(value)
        if not _LONG_MIN <= number <= _LONG_MAX:
            raise OverflowError("Python int too large to convert to C long")
    return _c_int(value)


_LONG_MAX = 2 ** (8 * struct.calcsize("l") - 1) - 1
_LONG_MIN = -_LONG_MAX - 1
_ID_T_MAX = 2**32 - 1  # uid_t and gid_t: unsigned 32 bits on Linux
_NGROUPS_MAX = 65536  # <limits.h> NGROUPS_MAX, fork_exec's MAX_GROUPS
_TOO_MANY_GROUPS = "too many extra_groups" if sys.version_info >= (3, 12) else "too many groups"


def _id_t(number: int, kind: str) -> int:
    """CPython's _Py_Uid_Converter/_Py_Gid_Converter (kind "uid" or "gid"),
    with its exceptions.  Popen has already refused non-ints and negatives.
    Its quirk is kept: a value that fits a C long but not the 32-bit type is
    "less than minimum".  Without this, 2**32 would be truncated to 0 (root)
    by the C struct."""
    if number == -1:
        return _ID_T_MAX  # (uid_t)-1: "leave unchanged", as there
    if _LONG_MIN <= number <= _LONG_MAX:
        if 0 <= number <= _ID_T_MAX:
            return number
        raise OverflowError(f"{kind} is less than minimum")
    if number < 0:
        raise OverflowError(f"{kind} is less than minimum")
    raise OverflowError(f"{kind} is greater than maximum")


def _ids(
    uid: int | None, gid: int | None, gids: Sequence[int] | None
) -> tuple[int | None, int | None, list[int] | None]:
    """fork_exec's conversions of the credentials, in its order: groups, gid, uid."""
    groups = None
    if gids is not None:
        if len(gids) > _NGROUPS_MAX:
            # fork_exec's wording; Argument Clinic's since 3.12 names the argument.
            raise ValueError(_TOO_MANY_GROUPS)
        groups = []
        for g in gids:
            try:
                groups.append(_id_t(operator.index(g), "gid"))
            except (OverflowError, TypeError):
                raise ValueError("invalid group id") from None
    # (uid_t)-1 passes: the stdlib's child calls setreuid(-1, -1), which
    # changes nothing, so ours skips the call (and its read-back check).
    if gid is not None:
        gid = _id_t(operator.index(gid), "gid")
        gid = None if gid == _ID_T_MAX else gid
    if uid is not None:
        uid = _id_t(operator.index(uid), "uid")
        uid = None if uid == _ID_T_MAX else uid
    return uid, gid, groups


def _pack(items: Sequence[bytes]) -> bytes:
    return b"\0".join(items) + b"\0" if items else b""


def normalize_args(args: Any, executable: Any, shell: bool) -> tuple[list[Any], Any]:
    """argv and the program to run, by the stdlib's rules (POSIX _execute_child)."""
    if isinstance(args, (str, bytes)):
        args = [args]
    elif isinstance(args, os.PathLike):
        if shell:
            raise TypeError("path-like args is not allowed when shell is true")
        args = [args]
    else:
        args = list(args)
    if shell:
        unix_shell = "/system/bin/sh" if hasattr(sys, "getandroidapilevel") else "/bin/sh"
        args = [unix_shell, "-c", *args]
        if executable:
            args[0] = executable
    if executable is None:
        executable = args[0]
    return args, executable


# ---- where the stdlib would call os.posix_spawn ------------------------------
#
# The stdlib's _execute_child hands some requests to os.posix_spawn instead of
# its own fork_exec (an executable with a directory part, no cwd, pass_fds,
# ids, umask, session or group; close_fds=False before 3.13).  There the
# arguments are checked by os.posix_spawn, in its order and with its
# messages, and every failure names the program.  pidproc still spawns
# those with its own paths, after the same checks.


def _posix_spawn_test() -> CodeType | None:
    """The running stdlib's own condition (it differs per version), compiled
    from its source; None where the source is not there to read."""
    try:
        source = textwrap.dedent(inspect.getsource(subprocess.Popen._execute_child))  # type: ignore[attr-defined]
    except (OSError, TypeError):
        return None
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.BoolOp)
            and any(
                isinstance(v, ast.Name) and v.id == "_USE_POSIX_SPAWN" for v in node.test.values
            )
        ):
            return compile(ast.Expression(node.test), "<subprocess: posix_spawn?>", "eval")
    return None


# Read at import, not at the first spawn that needs it: parsing the source
# recurses deeply, and a spawn may come from a thread with the smallest
# stack, where 3.14+ raises RecursionError (and can crash) far sooner.
_POSIX_SPAWN_TEST = _posix_spawn_test()


def stdlib_posix_spawns(names: dict[str, Any]) -> bool:
    """Would the stdlib take os.posix_spawn here?  Evaluated as there, so
    that it raises what it raises there (``umask < 0`` with a str umask)."""
    test = _POSIX_SPAWN_TEST
    if test is None:
        return False
    try:
        return bool(eval(test, vars(subprocess), names))  # noqa: S307 - the stdlib's own code
    except NameError:
        return False  # a condition on something this version of pidproc does not pass


_STOP = None  # not a file action: os.posix_spawn stops there, before spawning


def check_like_posix_spawn(
    executable: Any, args: list[Any], env: Any, close_fds: bool, fds: tuple[int, ...]
) -> None:
    """os.posix_spawn's own checks of what the stdlib would pass it (path,
    argv, env, file actions, in its order), without spawning: the last file
    action is one it cannot parse, so it raises there at the latest."""
    p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite = fds
    actions: list[Any] = [
        (os.POSIX_SPAWN_CLOSE, fd) for fd in (p2cwrite, c2pread, errread) if fd != -1
    ]
    for n, fd in enumerate((p2cread, c2pwrite, errwrite)):
        if fd != -1:
            actions.append((os.POSIX_SPAWN_DUP2, fd, n))
    if close_fds and hasattr(os, "POSIX_SPAWN_CLOSEFROM"):
        actions.append((os.POSIX_SPAWN_CLOSEFROM, 3))
    actions.append(_STOP)
    try:
        # os.environ holds only what putenv accepted: nothing there to check.
        os.posix_spawn(executable, args, {} if env is None else env, file_actions=actions)
    except TypeError as e:
        if str(e) != _STOP_MESSAGE:
            raise
    else:  # pragma: no cover - cannot happen: the last action cannot be parsed
        raise AssertionError("os.posix_spawn ran past an unparsable file action")


def _stop_message() -> str:
    try:
        os.posix_spawn("/", ["/"], {}, file_actions=[_STOP])  # type: ignore[list-item]
    except TypeError as e:
        return str(e)
    raise AssertionError("os.posix_spawn accepted a file action of None")  # pragma: no cover


_STOP_MESSAGE = _stop_message() if hasattr(os, "posix_spawn") else ""


@dataclass
class ChildSpec:
    """What the child is to run, in the stdlib's terms, already validated."""

    argv: list[bytes]
    exec_paths: list[bytes]
    envp: list[bytes] | None
    cwd: bytes | None
    stdin_fd: int
    stdout_fd: int
    stderr_fd: int
    keep_fds: tuple[int, ...]
    close_fds: bool
    restore_signals: bool
    new_session: bool
    pgid: int
    umask: int
    uid: int | None
    gid: int | None
    groups: list[int] | None


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
    exe = os.fsencode(executable)
    if os.path.dirname(exe):
        exec_paths = [exe]
    else:
        # This matches the stdlib (and os._execvpe): the child's PATH.
        exec_paths = [os.path.join(os.fsencode(d), exe) for d in os.get_exec_path(env)]
    keep = tuple(sorted(map(int, set(pass_fds))))  # still Python code there
    # fork_exec's argument parsing comes next in the stdlib, in its order:
    # the stdio fds (an int given as stdin= etc. is passed as is), the
    # process group, the umask.
    fds = (_c_int(fds[0]), _c_int(fds[1]), _c_int(fds[2]))
    process_group = _pid_t(process_group)
    umask = _c_int(umask)
    if keep and (keep[0] < 0 or keep[-1] > 2**31 - 1):  # fork_exec: 0 <= fd <= INT_MAX
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
    spec: ChildSpec | None  # None when built by quick_request
    _keep: Any

    def __init__(self, spec: ChildSpec, *, probe_only: bool = False) -> None:
        self.spec = spec
        r = ffi.new("struct pidproc_spawn *")
        keep: list[Any] = []

        def vector(items: list[bytes]) -> tuple[Any, Any]:
            slots = ffi.new("char *[]", len(items) + 1)
            buf = ffi.new("char[]", _pack(items))
            keep.extend((slots, buf))
            return slots, buf

        r.argv, r.argv_buf = vector(spec.argv)
        r.argc = len(spec.argv)
        if spec.envp is not None:
            r.envp, r.envp_buf = vector(spec.envp)
            r.envc = len(spec.envp)
        r.exec_paths, r.exec_buf = vector(spec.exec_paths)
        r.n_exec = len(spec.exec_paths)
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

    @classmethod
    def _packed(
        cls,
        packed: bytes,
        argc: int,
        argv_size: int,
        n_exec: int,
        fds: tuple[int, int, int],
        close_fds: bool,
        restore_signals: bool,
        new_session: bool,
    ) -> SpawnRequest:
        """argv then the exec candidates in one buffer and one slot array."""
        self = cls.__new__(cls)
        self.spec = None
        slots = ffi.new("char *[]", argc + n_exec + 2)
        buf = ffi.new("char[]", packed)
        r = ffi.new("struct pidproc_spawn *")
        r.argv = slots
        r.argv_buf = buf
        r.argc = argc
        r.exec_paths = slots + (argc + 1)
        r.exec_buf = buf + argv_size  # the candidates follow argv's strings
        r.n_exec = n_exec
        r.stdin_fd, r.stdout_fd, r.stderr_fd = fds
        r.close_fds = close_fds
        r.restore_signals = restore_signals
        r.new_session = new_session
        r.pgid = r.umask = r.uid = r.gid = r.n_groups = -1
        self.struct = r
        self._keep = (slots, buf)
        return self


_INT_MAX = 2**31 - 1


def quick_request(
    args: list[Any],
    executable: Any,
    fds: tuple[int, int, int],
    close_fds: bool,
    restore_signals: bool,
    new_session: bool,
) -> SpawnRequest | None:
    """The common request (str/bytes argv, no env, cwd, pass_fds, ids, umask
    or process group; the caller checks those), built without the general
    path's conversions; None sends anything unusual to build_spec.

    Only input that every check in build_spec (and os.posix_spawn's, where
    the stdlib would use it) accepts gets through here, so both paths raise
    the same for bad input: that is build_spec's job alone.  Spawning is the
    hot path of every benchmark, hence the duplication of a few checks."""
    for a in args:
        if type(a) is not str and type(a) is not bytes:
            return None
    if not args or not args[0] or (type(executable) is not str and type(executable) is not bytes):
        return None
    for fd in fds:
        if type(fd) is not int or not (fd == -1 or 2 < fd <= _INT_MAX):
            return None
    exe = os.fsencode(executable)
    if os.path.dirname(exe):
        exec_paths = [exe]
    else:
        exec_paths = [os.path.join(os.fsencode(d), exe) for d in os.get_exec_path()]
    argv = [os.fsencode(a) for a in args]
    packed = b"\0".join(argv + exec_paths) + b"\0"
    if packed.count(b"\0") != len(argv) + len(exec_paths):
        return None  # an embedded NUL: build_spec raises what the stdlib raises
    argv_size = sum(map(len, argv)) + len(argv)
    return SpawnRequest._packed(
        packed, len(argv), argv_size, len(exec_paths), fds, close_fds, restore_signals, new_session
    )


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
