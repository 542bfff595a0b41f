"""Every stdlib internal pidproc relies on, in one place.

pidproc reuses the running stdlib's own code wherever it can (argument
checks, pipes, communicate, the run() family), so it must know a few things
the stdlib does not publish.  Each is read here, at import (the
``posix_spawn`` condition at its first use), and each has a
test (``tests/test_stdlib_internals.py``) that fails loudly on a CPython
where it no longer holds, instead of pidproc quietly behaving differently.

- ``Popen._execute_child``, ``_internal_poll``, ``_wait``: the stdlib's own
  spawn and PID-based wait, which pidproc falls back to (the ``fork`` and
  ``pid`` paths, a child held by its PID).  Their parameter lists differ
  per version (``process_group`` came in 3.11): ``execute_child`` passes
  ours by name.
- The condition under which ``_execute_child`` hands a request to
  ``os.posix_spawn``: there the argument checks and error reports are
  ``os.posix_spawn``'s, and pidproc's must match them.  It differs per
  version, so it is read from the stdlib's source and evaluated as there.
- ``os.posix_spawn``'s message for a file action it cannot parse: pidproc
  runs ``os.posix_spawn``'s own argument checks by giving it one last
  unparsable action, so that it stops there before spawning.
- Whether a failed ``chdir`` is told apart from other pre-exec failures
  (``"noexec:chdir"``, 3.13+): it decides which filename an OSError names.
- ``os.environ._data``: the bytes environment, read without the KeyError
  that ``os.environ.get`` raises and catches (about 1 % of a spawn).
- Popen's private attributes used by the hooks (``_waitpid_lock``,
  ``_child_created``, ``_close_pipe_fds``): listed in ``POPEN_ATTRIBUTES``.
- ``Popen._communicate``: the stdlib's loop under ``communicate()``, which
  runs where pidproc's own (``_communicate.py``) does not recognise this
  version's.  That module recognises it by its source lines and relies on
  what it calls (``_save_input``, ``_check_timeout``,
  ``_translate_newlines``) and keeps (``_communication_started``,
  ``_input``, ``_input_offset``); ``tests/test_communicate.py`` checks them.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Mapping
from types import CodeType

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

_Popen: Any = subprocess.Popen

STDLIB_EXECUTE_CHILD: Callable[..., None] = _Popen._execute_child
STDLIB_INTERNAL_POLL: Callable[..., int | None] = _Popen._internal_poll
STDLIB_WAIT: Callable[..., int] = _Popen._wait
STDLIB_COMMUNICATE: Callable[..., tuple[Any, Any]] = _Popen._communicate

# The private attributes of a Popen that pidproc's hooks use.
POPEN_ATTRIBUTES = ("_waitpid_lock", "_child_created", "_close_pipe_fds")

_NO_PGID = -1


def slots_repr(obj: Any) -> str:
    """``Name(field=value, ...)`` over ``__slots__``: the repr a dataclass
    would write, for the plain classes that stand in for one (see
    ``ChildArgs``)."""
    values = ", ".join(f"{n}={getattr(obj, n)!r}" for n in type(obj).__slots__)
    return f"{type(obj).__name__}({values})"


class ChildArgs:
    """The arguments of the stdlib's POSIX ``_execute_child``, by name.

    A plain class, not a dataclass: ``dataclasses`` costs more at import
    than the rest of this module, and every process under PIDPROC_PATCH=1
    imports pidproc.  ``FIELDS`` lists the parameters in order; the last
    one (``process_group``, 3.11+) has a default."""

    FIELDS = (
        "args",
        "executable",
        "preexec_fn",
        "close_fds",
        "pass_fds",
        "cwd",
        "env",
        "startupinfo",
        "creationflags",
        "shell",
        "p2cread",
        "p2cwrite",
        "c2pread",
        "c2pwrite",
        "errread",
        "errwrite",
        "restore_signals",
        "gid",
        "gids",
        "uid",
        "umask",
        "start_new_session",
        "process_group",
    )
    __slots__ = FIELDS

    def __init__(
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
        gid: Any,
        gids: Any,
        uid: Any,
        umask: Any,
        start_new_session: bool,
        process_group: Any = _NO_PGID,
    ) -> None:
        self.args = args
        self.executable = executable
        self.preexec_fn = preexec_fn
        self.close_fds = close_fds
        self.pass_fds = pass_fds
        self.cwd = cwd
        self.env = env
        self.startupinfo = startupinfo
        self.creationflags = creationflags
        self.shell = shell
        self.p2cread = p2cread
        self.p2cwrite = p2cwrite
        self.c2pread = c2pread
        self.c2pwrite = c2pwrite
        self.errread = errread
        self.errwrite = errwrite
        self.restore_signals = restore_signals
        self.gid = gid
        self.gids = gids
        self.uid = uid
        self.umask = umask
        self.start_new_session = start_new_session
        self.process_group = process_group

    def __repr__(self) -> str:
        return slots_repr(self)

    @property
    def child_fds(self) -> tuple[int, int, int]:
        """The child's ends: its stdin, stdout and stderr (-1: inherited)."""
        return (self.p2cread, self.c2pwrite, self.errwrite)

    @property
    def pipe_fds(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.p2cread, self.p2cwrite, self.c2pread,
            self.c2pwrite, self.errread, self.errwrite,
        )  # fmt: skip


_code = STDLIB_EXECUTE_CHILD.__code__
# The stdlib's parameters after self, in order: ours, or ours but the last.
STDLIB_PARAMETERS = list(_code.co_varnames[1 : _code.co_argcount])
TAKES_PROCESS_GROUP = "process_group" in STDLIB_PARAMETERS


def execute_child(popen: subprocess.Popen[Any], a: ChildArgs) -> None:
    """The stdlib's own spawn, with the arguments it takes in this version."""
    values = [getattr(a, n) for n in ChildArgs.FIELDS]
    if not TAKES_PROCESS_GROUP:
        values.pop()
    STDLIB_EXECUTE_CHILD(popen, *values)


# ---- where the stdlib calls os.posix_spawn -----------------------------------


def _posix_spawn_condition(source: str) -> CodeType | None:
    """The ``if`` test that guards the stdlib's os.posix_spawn call, compiled.

    The condition is found by text, not by parsing the whole method: parsing
    recurses deeply, and this runs in whatever thread first spawns such a
    request (on 3.14+, a small thread stack turns that recursion into a
    RecursionError or a crash).  Only the condition itself, a few lines, is
    compiled."""
    import re  # first use only: 3.10's subprocess does not import it

    match = re.search(r"\bif\s*\(\s*_USE_POSIX_SPAWN\b", source)
    if match is None:
        return None
    start = source.index("(", match.start())
    depth = 0
    for end in range(start, len(source)):
        char = source[end]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                break
    else:
        return None
    text = re.sub(r"#[^\n]*", "", source[start : end + 1])
    try:
        return compile(text, "<subprocess: posix_spawn?>", "eval")
    except SyntaxError:
        return None


_condition: CodeType | None = None
_condition_read = False
# Errors that say nothing about the file: no fd free, no memory.  The next
# spawn that needs the condition reads it again.
_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR, errno.EAGAIN})


def posix_spawn_condition() -> CodeType | None:
    """The condition, read from subprocess.py at its first use rather than
    at import (reading and searching the file cost more than the rest of
    this module), by the first spawn that needs it: one with env, cwd,
    pass_fds, ... (see ``dispatch.spawn_c``).  None where it cannot be read."""
    global _condition, _condition_read
    if not _condition_read:
        path = getattr(subprocess, "__file__", None)
        try:
            import re  # noqa: F401  (for _posix_spawn_condition; not loaded by 3.10's subprocess)

            with open(path or "", encoding="utf-8") as f:
                source = f.read()
        except OSError as e:
            if e.errno in _TRANSIENT:
                return None  # not kept: read again next time
            source = ""
        except UnicodeDecodeError:
            source = ""
        _condition = _posix_spawn_condition(source)
        _condition_read = True
    return _condition


def would_posix_spawn(a: ChildArgs, executable: Any) -> bool:
    """Would the stdlib take os.posix_spawn for this request?  Evaluated as
    there, with ``executable`` as the stdlib has made it by then (args[0]
    if not given), so it raises what it raises there (``umask < 0`` with a
    str umask).  False where the condition could not be read (see the test)."""
    condition = posix_spawn_condition()
    if condition is None:
        return False
    names = {n: getattr(a, n) for n in ChildArgs.FIELDS}
    names["executable"] = executable
    try:
        return bool(eval(condition, vars(subprocess), names))  # noqa: S307
    except NameError:
        return False  # a condition on something this version of pidproc does not pass


def _unparsable_action_message() -> str:
    if not hasattr(os, "posix_spawn"):
        return ""
    try:
        os.posix_spawn("/", ["/"], {}, file_actions=[None])  # type: ignore[list-item]
    except TypeError as e:
        return str(e)
    raise AssertionError("os.posix_spawn accepted a file action of None")  # pragma: no cover


UNPARSABLE_ACTION = None
UNPARSABLE_ACTION_MESSAGE = _unparsable_action_message()


# ---- error reports and the environment ---------------------------------------

SPLITS_CHDIR = "noexec:chdir" in STDLIB_EXECUTE_CHILD.__code__.co_consts


def environ_bytes(environ: Mapping[str, str] = os.environ) -> dict[bytes, bytes] | None:
    """os.environ's own bytes dict (kept current by putenv/unsetenv through
    it), or None where it has none."""
    data = getattr(environ, "_data", None)
    return data if isinstance(data, dict) else None
