"""What a child reports about itself, as JSON: argv, cwd, umask,
environment, process group and session, open fds and credentials.  Run by
tests/test_child_state.py through ``python -c`` (its text), as the
unprivileged user may be unable to read the tree."""

from __future__ import annotations

import json
import os
import sys

status = {}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            status[key] = value.split()
with open("/proc/self/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
pid = os.getpid()
umask = os.umask(0)
print(
    json.dumps(
        {
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "umask": umask,
            "env": {k: v for k, v in os.environ.items() if k not in ("LC_CTYPE",)},
            "own_pgrp": int(fields[2]) == pid,
            "own_session": int(fields[3]) == pid,
            "parent_pgrp": int(fields[2]) == os.getpgid(os.getppid()),
            "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "status": status,
        }
    )
)
