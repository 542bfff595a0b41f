"""run, call, check_call, check_output, getoutput, getstatusoutput on pidproc.Popen.

These are the running stdlib's own functions, rebound to a namespace in
which ``Popen`` is pidproc's: the same code, version for version, with no
copy of ours to drift from it.  They find each other (check_output calls run,
getoutput calls getstatusoutput) in that namespace too.
"""

from __future__ import annotations

import functools
import subprocess
import types

from ._popen import Popen

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

_NAMES = ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput")
_namespace: dict[str, Any] = dict(vars(subprocess))
_namespace["Popen"] = Popen


def _rebind(name: str) -> Any:
    original = getattr(subprocess, name)
    clone = types.FunctionType(
        original.__code__,
        _namespace,
        original.__name__,
        original.__defaults__,
        original.__closure__,
    )
    clone.__kwdefaults__ = original.__kwdefaults__
    functools.update_wrapper(clone, original)
    clone.__module__ = "pidproc"
    clone.__wrapped__ = original  # type: ignore[attr-defined]
    _namespace[name] = clone
    return clone


run = _rebind("run")
call = _rebind("call")
check_call = _rebind("check_call")
check_output = _rebind("check_output")
getoutput = _rebind("getoutput")
getstatusoutput = _rebind("getstatusoutput")
