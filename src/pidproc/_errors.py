"""Raise a child's failure exactly as the running stdlib would.

The stdlib's child reports ``OSError:<hex errno>:<marker>`` through a pipe
and the parent raises ``OSError(errno, strerror, filename)``.  Which filename
depends on the step that failed and on the Python version: up to 3.12 any
setup failure before exec names ``cwd``; from 3.13 only a failed chdir does
("noexec:chdir"), other setup failures carry no filename.  We read which
convention the running stdlib follows from its own code, not its version
number, so a backport is honoured too.
"""

from __future__ import annotations

import os

from ._native import lib
from ._stdlib import SPLITS_CHDIR

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any, NoReturn


class BackendUnavailable(RuntimeError):
    """A spawn path was forced (PIDPROC_BACKEND or use_backend) that cannot work here."""


class TransientSpawnError(OSError):
    """The spawn syscall itself failed for now (EAGAIN, EMFILE, ENOMEM, ...).
    Internal: Popen then lets the stdlib spawn, which either manages (it may
    need fewer fds, e.g. posix_spawn) or raises exactly its own exception."""


def raise_child_error(step: int, err: int, executable: Any, cwd: Any) -> NoReturn:
    message = os.strerror(err) if err else ""
    if step == lib.PIDPROC_STEP_EXEC:
        raise OSError(err, message, executable)
    if step == lib.PIDPROC_STEP_CHDIR or not SPLITS_CHDIR:
        raise OSError(err, message, cwd)
    raise OSError(err, message)
