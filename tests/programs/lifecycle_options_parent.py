"""A parent for die_with_parent: spawns ``sleep argv[3]`` through the module
named in argv[4] (pidproc or subprocess) with the options in argv[1] (JSON),
from the main thread or from a thread that then ends (argv[2]: "main",
"thread"), prints the child's pid, the mechanism and the path as JSON, then
sleeps until killed; with "exec" it execs ``sleep`` instead, with "fork" it
forks a copy of itself that sleeps too.  Run by
tests/test_lifecycle_options.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pidproc

opts, how, mark = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
module: Any = pidproc if sys.argv[4] == "pidproc" else subprocess
box: list[Any] = []


def spawn() -> None:
    box.append(module.Popen(["sleep", mark], **opts))


if how == "thread":
    t = threading.Thread(target=spawn)
    t.start()
    t.join()  # the spawning thread has ended
else:
    spawn()
p = box[0]
if how == "fork" and os.fork() == 0:
    time.sleep(600)  # a copy of the parent, holding what it inherited
info = {
    "pid": p.pid,
    "die": getattr(p, "die_with_parent", None),
    "backend": getattr(p, "backend", None),
}
print(json.dumps(info), flush=True)
if how == "exec":
    os.execv("/bin/sleep", ["sleep", "600"])  # this process goes on as another program
time.sleep(600)
