"""Every PidFd operation on a child (run behind a seccomp filter that
answers as an older kernel): prints, as JSON, ["ok", repr of the result]
or the errno and message of each.  Run by tests/test_pidfd_handle.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pidproc

p = pidproc.Popen(["sleep", "30"])
out: dict[str, list[Any]] = {}


def attempt(name: str, op: Callable[[], Any]) -> None:
    try:
        out[name] = ["ok", repr(op())]
    except OSError as e:
        out[name] = [e.errno, str(e)]


attempt("open", lambda: pidproc.PidFd.open(p.pid).close())
if out["open"][0] == "ok":
    pf = pidproc.PidFd.open(p.pid)
    attempt("pid", lambda: pf.pid == p.pid)
    attempt("info", pf.info)
    attempt("signal", lambda: pf.send_signal(0))
    attempt("getfd", lambda: os.close(pf.getfd(0)))
    attempt("madvise", lambda: pf.madvise([(4096, 4096)], pidproc.Advice.COLD))
    attempt("setns", lambda: pf.setns(pidproc.Namespace.UTS))
p.kill()
p.wait()
print(json.dumps(out))
