"""argv[2] children, each reaped behind pidproc's back by a foreign reaper
(argv[1]: SIGCHLD ignored, a SIGCHLD handler, or a thread in os.wait()),
waited for in four ways, while someone else's child runs; prints, as JSON,
each exit code with what Popen read and whether it held a pidfd, the
hangs, whether the bystander still runs and the path taken.  Run by
tests/test_races.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.pids import foreign_reaper  # noqa: E402

mode, n = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
if mode == "sigchld-ignored":
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
elif mode == "sigchld-handler":

    def reap(signum: int, frame: Any) -> None:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass

    signal.signal(signal.SIGCHLD, reap)
elif mode == "wait-thread":
    foreign_reaper(stop, 0.001)

# Someone else's child: pidproc must never signal it (whoever reaps it).
quiet = subprocess.DEVNULL
bystanders_popen = subprocess.Popen(["sleep", "60"], stdin=quiet, stdout=quiet, stderr=quiet)
bystander = bystanders_popen.pid  # the stdlib's child: pidproc knows nothing of it
rng = random.Random(5)
got: list[list[Any]] = []
hangs = 0
for i in range(n):
    code = rng.randrange(1, 256)
    p = pidproc.Popen(["sh", "-c", f"sleep 0.00{rng.randrange(3)}; exit {code}"])
    held = p.pidfd is not None  # read at once: a reaped child's is closed unless read
    how = i % 4
    rc: Any
    try:
        if how == 0:
            rc = p.wait(timeout=20)
        elif how == 1:
            rc = p.wait()  # the child exits by itself: bounded
        elif how == 2:
            deadline = time.monotonic() + 20
            while p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0005)
            rc = p.returncode
        else:
            with pidproc.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as c:
                out = c.communicate(b"abc", timeout=20)[0]
            rc = p.wait(timeout=20)
            if out != b"abc":
                rc = "cat"
    except subprocess.TimeoutExpired:
        hangs += 1
        rc = None
    # After the exit: must reach nobody.
    p.kill()
    p.terminate()
    got.append([code, rc, held])
with open(f"/proc/{bystander}/stat") as f:
    running = f.read().rsplit(")", 1)[1].split()[0] in "RS"
os.kill(bystander, signal.SIGKILL)
stop.set()
print(json.dumps({"got": got, "hangs": hangs, "bystander_running": running, "backend": p.backend}))
