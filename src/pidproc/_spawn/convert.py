"""Popen's arguments converted by the stdlib's own rules, with its exceptions.

The stdlib converts in ``_execute_child`` and in ``_posixsubprocess.fork_exec``'s
argument parsing (PyArg_ParseTuple up to 3.11, Argument Clinic from 3.12),
and, for the requests it hands to ``os.posix_spawn``, in that function.
pidproc converts in the parent, before any child exists, so it raises what
the stdlib raises, in the same order, for the same input.

On PyPy the stdlib's subprocess calls PyPy's own built-in fork_exec, whose
argument conversion differs from CPython's: the ``_pypy_*`` rules below are
that conversion, chosen once at import (``PYPY``).
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


PYPY = sys.implementation.name == "pypy"


def _c_int(value: Any) -> int:
    """What fork_exec's argument parsing accepts for a C int, with its
    exceptions: PyArg_ParseTuple's "i" up to 3.11, Argument Clinic's int
    converter from 3.12."""
    if PYPY:
        return _pypy_c_int(value)
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
    if PYPY:
        return _pypy_c_int(value)  # its pid_t is a C int too
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
    if PYPY:
        return _pypy_ids(uid, gid, gids)
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


# ---- PyPy's fork_exec ---------------------------------------------------------
#
# PyPy's _posixsubprocess.fork_exec is RPython.  Its ints are unwrapped as
# machine words (PyPy's int_w: __int__ or __index__, never a float) and then
# cast to the C type the child is given, without a range check: a C int
# (fds, umask, process group) or gid_t (extra_groups) keeps its low 32 bits.
# uid and gid are range-checked (its c_uid_t_w).  Its MAX_GROUPS is 64:
# PyPy's build finds no NGROUPS_MAX in the headers it reads.

_PYPY_MAX_GROUPS = 64


def _pypy_int(value: Any) -> int:
    """PyPy's int_w, with its exceptions: a C long, read with __int__ first."""
    if type(value) is not int:
        if isinstance(value, float):
            raise TypeError(f"expected integer, got {type(value).__name__} object")
        if not isinstance(value, int):
            convert = getattr(type(value), "__int__", None) or getattr(
                type(value), "__index__", None
            )
            if convert is None:
                raise TypeError(f"expected integer, got {type(value).__name__} object")
            value = convert(value)
            if not isinstance(value, int):
                raise TypeError(f"__int__ returned non-int (type {type(value).__name__})")
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise OverflowError("int too large to convert to int")
    return int(value)


def _pypy_c_int(value: Any) -> int:
    """A C int as PyPy's fork_exec gets one: a C long, then cast to int (the
    low 32 bits, signed).  So umask=2**32 + 0o22 is umask 0o22 there and
    process_group=2**31 is -1, no group change; pidproc's child does the same
    with the same int."""
    number = _pypy_int(value) & 0xFFFFFFFF
    return number - 2**32 if number > 2**31 - 1 else number


def pypy_cast(value: Any) -> Any:
    """An int as _pypy_c_int gives it to the child; anything else (or an int
    it refuses) as it is.  Never raises."""
    if type(value) is int and _LONG_MIN <= value <= _LONG_MAX:
        return _pypy_c_int(value)
    return value


def _pypy_id_t(number: int) -> int:
    """PyPy's c_uid_t_w: an unsigned 32-bit int, or -1 for (uid_t)-1."""
    if number > 2**64 - 1:  # beyond its machine-word unsigned int
        raise OverflowError("int too large to convert to unsigned int")
    if number > _ID_T_MAX:
        raise OverflowError("expected an unsigned 32-bit integer")
    if number == -1:
        return _ID_T_MAX
    if number < 0:
        if number < _LONG_MIN:
            raise OverflowError("int too large to convert to int")
        raise OverflowError("user/group id smaller than minimum (-1)")
    return number


def _pypy_ids(
    uid: int | None, gid: int | None, gids: Sequence[int] | None
) -> tuple[int | None, int | None, list[int] | None]:
    """PyPy's fork_exec's conversions of the credentials, in its order:
    groups, gid, uid.

    One difference, on purpose: an extra group that fits a C long but not
    gid_t is cast there, so extra_groups=[2**32] gives the child group 0
    (root's).  pidproc refuses it, with the exception PyPy raises for a group
    beyond a C long."""
    groups = None
    if gids is not None:
        if len(gids) > _PYPY_MAX_GROUPS:
            raise ValueError("too many groups")
        groups = []
        for g in gids:
            try:
                number = _pypy_int(g)
            except OverflowError:
                raise ValueError("group id is greater than maximum") from None
            if number < 0:
                raise ValueError("group id is negative")
            if number > _ID_T_MAX:
                raise ValueError("group id is greater than maximum")  # not cast to a gid_t
            groups.append(number)
    if gid is not None:
        gid = _pypy_id_t(operator.index(gid))
        gid = None if gid == _ID_T_MAX else gid
    if uid is not None:
        uid = _pypy_id_t(operator.index(uid))
        uid = None if uid == _ID_T_MAX else uid
    return uid, gid, groups


def _pypy_fds_to_keep(fds: tuple[int, ...]) -> None:
    """PyPy's check of pass_fds: each a C long, then none above 2**30."""
    for fd in fds:
        _pypy_int(fd)
    for fd in fds:
        if fd < 0 or fd > 1 << 30:
            raise ValueError("bad value(s) in fds_to_keep")


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
