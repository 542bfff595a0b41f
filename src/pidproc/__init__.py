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
from ._peer import peer_pidfd, pidfd_from_ancdata, recv_with_pidfd, set_pass_pidfd
from ._pidfd import Advice, Namespace, PidFd
from ._popen import Popen
from ._spawn.state import BACKENDS, backends, use_backend
from ._waitmany import as_completed, wait_any

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
