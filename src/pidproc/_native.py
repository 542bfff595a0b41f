"""The C core (``pidproc._core``), loaded once: every user of it imports it from here.

pidproc works without its core: installed with ``PIDPROC_NO_EXTENSION=1``
or without a C compiler, or where the compiled module fails to load, or
with ``PIDPROC_NO_EXTENSION=1`` in the environment at import (the core is
then not loaded even if installed; the suite runs that way).  Then
``MISSING`` says why, the C spawn paths are unusable with that reason
(children are spawned by the stdlib and held by ``pidfd_open``, the
``fork`` path), and the calls that only the core can make raise
:func:`missing_error`.

Without the core, ``ffi`` and ``lib`` are stand-ins: any function taken from
them raises that error when called, so a module may name a C function at
import time (the path records do) and still import.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ._core import _Lib

ENV = "PIDPROC_NO_EXTENSION"
"""Set (to anything but "" or "0") at install: the core is not compiled; at
import: it is not loaded."""

MISSING: str | None = None
"""Why the core is not loaded (a sentence starting "the C core"), or None."""


def missing_error(what: str) -> OSError:
    """The error for a call only the core can make: ENOSYS, naming what
    is missing and why."""
    return OSError(errno.ENOSYS, f"{what} needs pidproc's C core: {MISSING}")


class _Missing:
    """``ffi`` or ``lib`` without the core: every attribute is a function
    that raises :func:`missing_error` when called."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        what = f"{self._name}.{attr}"

        def unavailable(*args: Any, **kwargs: Any) -> NoReturn:
            raise missing_error(what)

        return unavailable


ffi: Any
lib: _Lib

if os.environ.get(ENV, "0") not in ("", "0"):
    MISSING = f"the C core is not loaded: {ENV}={os.environ[ENV]} is set"
else:
    try:
        from ._core import ffi, lib
    except ModuleNotFoundError as e:
        if e.name == f"{__package__}._core":
            MISSING = (
                "the C core is not built (pidproc was installed without it: "
                f"{ENV}=1 or no C compiler at install time)"
            )
        else:  # e.g. cffi's own backend
            MISSING = f"the C core failed to load: {e}"
    except ImportError as e:  # built, but this interpreter or system cannot load it
        MISSING = f"the C core failed to load: {e}"

if MISSING is not None:
    ffi, lib = _Missing("ffi"), _Missing("lib")  # type: ignore[assignment]
