"""Process groups, sessions and the controlling terminal (stdin, which this
process makes its controlling terminal): each case through the stdlib and
every path usable here; writes, as JSON, to the fd argv[1], where each
child stood.  Run by tests/test_security_sessions.py in a new session."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import termios
from typing import Any

import pidproc

fcntl.ioctl(0, termios.TIOCSCTTY, 0)
me = os.getpid()
pgrp = os.getpgrp()


def stat(pid: int) -> list[int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return [int(x) for x in fields[2:6]]  # pgrp, session, tty_nr, tpgid


own_tty = stat(me)[2]
assert own_tty != 0 and os.tcgetpgrp(0) == pgrp == me, "no controlling terminal"


def name(value: int, child: int | None) -> int | str:
    return {child: "child", me: "parent", -1: "none"}.get(value, value)


cases: dict[str, dict[str, Any]] = {"default": {}, "new-session": {"start_new_session": True}}
if sys.version_info >= (3, 11):
    cases.update(
        {
            "process-group-0": {"process_group": 0},
            "process-group-of-parent": {"process_group": pgrp},
            "new-session-and-group-0": {"start_new_session": True, "process_group": 0},
            "group-in-other-session": {"process_group": 1},
            "group-that-does-not-exist": {"process_group": 2**22 - 7},
        }
    )
report: dict[str, dict[str, Any]] = {}
for path in ["stdlib", *pidproc.backends()]:
    module = subprocess if path == "stdlib" else pidproc
    report[path] = {}
    with pidproc.use_backend(None if path == "stdlib" else path):
        for case, kwargs in cases.items():
            try:
                with module.Popen(["sleep", "30"], **kwargs) as p:
                    pg, sid, tty, tpgid = stat(p.pid)
                    p.kill()
                report[path][case] = {
                    "pgrp": name(pg, p.pid),
                    "session": name(sid, p.pid),
                    "tty": "parent" if tty == own_tty else tty,
                    "tpgid": name(tpgid, p.pid),
                    "foreground after": name(os.tcgetpgrp(0), None),
                }
            except OSError as e:
                report[path][case] = [type(e).__name__, e.errno, e.strerror, e.filename]
os.write(int(sys.argv[1]), json.dumps(report).encode())
