"""Popen's arguments converted by the stdlib's own rules, with its exceptions.

The stdlib converts in ``_execute_child`` and in ``_posixsubprocess.fork_exec``'s
argument parsing (PyArg_ParseTuple up to 3.11, Argument Clinic from 3.12),
and, for the requests it hands to ``os.posix_spawn``, in that function.
pidproc converts in the parent, before any child exists, so it raises what
the stdlib raises, in the same order, for the same input.
"""

from __future__ import annotations

import operator
import os
import sys
from collections.abc import Sequence

from .. import _stdlib

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any


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


# A C long: as wide as a pointer on Linux (LP64, ILP32), so as Py_ssize_t.
_LONG_MAX = sys.maxsize
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
# its own fork_exec (see ``_stdlib.would_posix_spawn``).  There the arguments
# are checked by os.posix_spawn, in its order and with its messages, and
# every failure names the program.  pidproc still spawns those with its own
# paths, after the same checks.


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
    actions.append(_stdlib.UNPARSABLE_ACTION)
    try:
        # os.environ holds only what putenv accepted: nothing there to check.
        os.posix_spawn(executable, args, {} if env is None else env, file_actions=actions)
    except TypeError as e:
        if str(e) != _stdlib.UNPARSABLE_ACTION_MESSAGE:
            raise
    else:  # pragma: no cover - cannot happen: the last action cannot be parsed
        raise AssertionError("os.posix_spawn ran past an unparsable file action")
