"""Spawns under RLIMIT_NPROC 0: the stdlib, each path named in argv[1]
(comma-separated) and the default path, then again once the limit is
raised; prints the outcomes and the fds and children before and after, as
JSON.  Run by tests/test_exhaustion.py."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.leaks import children, live_fds  # noqa: E402
from tests._support.outcome import short  # noqa: E402


def fds() -> list[int]:
    return sorted(live_fds())


def outcome(M: Any, args: list[str] | None = None, **kw: Any) -> list[Any]:
    try:
        p = M.Popen(args or ["true"], **kw)
    except Exception as e:  # noqa: BLE001 - comparing whatever is raised
        return short(e)
    p.communicate()
    return ["ok", p.returncode, getattr(p, "backend", None)]


paths = sys.argv[1].split(",")
if os.geteuid() == 0:
    # Root is exempt from RLIMIT_NPROC: become nobody (imports are done).
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
before = (fds(), children())
resource.setrlimit(resource.RLIMIT_NPROC, (0, hard))
# The last one goes to os.posix_spawn in the stdlib, whose error names the program.
SPAWNED = dict(args=["/bin/true"], close_fds=False)


def three(M: Any) -> list[list[Any]]:
    return [outcome(M), outcome(M, stdout=subprocess.PIPE), outcome(M, **SPAWNED)]


out: dict[str, Any] = {"stdlib": three(subprocess)}
for name in paths:
    with pidproc.use_backend(name):
        out[name] = three(pidproc)
with pidproc.use_backend(None):
    out["default"] = three(pidproc)
out["leaked"] = [before, (fds(), children())]
resource.setrlimit(resource.RLIMIT_NPROC, (soft, hard))
out["after"] = {}
for name in [*paths, None]:
    with pidproc.use_backend(name):
        out["after"][str(name)] = outcome(pidproc)
print(json.dumps(out))
