"""PidFd.pid of the pidfd argv[1] (inherited), asked one way (argv[2]:
PIDFD_GET_INFO, pidfd_getpid or fdinfo), from a PID namespace of its own:
prints, as JSON, ["pid", the PID] or the errno and message.  Run by
tests/test_pidfd_handle.py."""

from __future__ import annotations

import json
import sys
from typing import Any

import pidproc
from pidproc import _pidfd

_pidfd._USE_GET_INFO = sys.argv[2] == "PIDFD_GET_INFO"
_pidfd._USE_PIDFD_GETPID = sys.argv[2] != "fdinfo"
pf = pidproc.PidFd(int(sys.argv[1]))
out: list[Any]
try:
    out = ["pid", pf.pid]
except OSError as e:
    out = [e.errno, str(e)]
print(json.dumps(out))
