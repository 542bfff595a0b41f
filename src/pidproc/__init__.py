"""pidproc: Python's subprocess on Linux, with every child held by a pidfd.

``import pidproc as subprocess`` works for existing code: every public name
of the running Python's subprocess is here, the exceptions and constants are
the stdlib's own objects, and ``pidproc.Popen`` subclasses
``subprocess.Popen``.  What changes: the child is held by a pidfd from the
instant it exists (``Popen.pidfd``), waits wake the moment it exits, signals
never reach a process that merely inherited its PID, and ``user=``/
``group=`` never fork.
"""

from __future__ import annotations

import subprocess as _subprocess
from subprocess import *  # noqa: F403  (every public name, the stdlib's own objects)
from subprocess import (
    DEVNULL,
    PIPE,
    STDOUT,
    CalledProcessError,
    CompletedProcess,
    SubprocessError,
    TimeoutExpired,
)

from ._api import (  # type: ignore[no-redef]  # ours replace the star-imported ones
    call,
    check_call,
    check_output,
    getoutput,
    getstatusoutput,
    run,
)
from ._errors import BackendUnavailable
from ._patch import patch, patched, unpatch
from ._popen import Popen
from ._spawn.state import BACKENDS, backends, use_backend

# The pidfd toolkit, the unix-socket calls and waiting on many are loaded on
# first use (PEP 562 below), so that `import pidproc` costs little more than
# `import subprocess`: every Python process pays it under PIDPROC_PATCH=1.
# Type checkers read the imports; at run time TYPE_CHECKING is False without
# importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._peer import peer_pidfd, pidfd_from_ancdata, recv_with_pidfd, set_pass_pidfd
    from ._pidfd import Advice, Namespace, PidFd
    from ._waitmany import as_completed, wait_any

_LAZY = {
    "Advice": "_pidfd",
    "Namespace": "_pidfd",
    "PidFd": "_pidfd",
    "peer_pidfd": "_peer",
    "pidfd_from_ancdata": "_peer",
    "recv_with_pidfd": "_peer",
    "set_pass_pidfd": "_peer",
    "as_completed": "_waitmany",
    "wait_any": "_waitmany",
}

__version__ = "0.1.0"

__all__ = [
    *_subprocess.__all__,
    "BACKENDS",
    "BackendUnavailable",
    "backends",
    "patch",
    "patched",
    "unpatch",
    "use_backend",
    # the pidfd toolkit
    "Advice",
    "Namespace",
    "PidFd",
    "as_completed",
    "peer_pidfd",
    "pidfd_from_ancdata",
    "recv_with_pidfd",
    "set_pass_pidfd",
    "wait_any",
]

# Names every version has, listed so that linters see them used.
_EXPLICIT = (DEVNULL, PIPE, STDOUT, CalledProcessError, CompletedProcess, SubprocessError)
_OURS = (TimeoutExpired, call, check_call, check_output, getoutput, getstatusoutput, run, Popen)
del _EXPLICIT, _OURS


if not TYPE_CHECKING:  # hidden from type checkers, which would then accept any name

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups find it without this function
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


del TYPE_CHECKING
