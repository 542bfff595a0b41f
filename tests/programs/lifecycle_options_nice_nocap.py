"""die_with_parent without CAP_SYS_NICE (dropped here, from a root process,
before any thread starts): the keeper thread is started from the main
thread, a thread three steps nicer spawns through it, then the main thread
again.  Prints, as JSON, the nice value of each child, pidproc's beside the
stdlib's.  Run by tests/test_lifecycle_options.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.caps import CAP_SYS_NICE, drop_capability  # noqa: E402

drop_capability(CAP_SYS_NICE)

import pidproc  # noqa: E402

NICE = ["sh", "-c", "cut -d' ' -f19 /proc/$$/stat"]
out: dict[str, list[int]] = {}


def nice_of_children(name: str) -> None:
    std = subprocess.run(NICE, capture_output=True, text=True).stdout
    ours = pidproc.run(NICE, capture_output=True, text=True, die_with_parent=True)
    out[name] = [int(std), int(ours.stdout)]


with pidproc.use_backend(sys.argv[1]):
    pidproc.run(["true"], die_with_parent=True)  # the keeper, started from here

    def nicer() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 3)
        nice_of_children("nicer thread")

    t = threading.Thread(target=nicer)
    t.start()
    t.join()
    nice_of_children("main thread")
print(json.dumps(out))
