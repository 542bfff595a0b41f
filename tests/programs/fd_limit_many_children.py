"""More children than the soft RLIMIT_NOFILE, through the stdlib or
pidproc: argv is the soft limit, the number of children, the number of
threads that spawn them, the rows to run ("1": finished Popens kept, "2":
all alive at once) and the module (subprocess or pidproc).  Prints, as
JSON, what each row got, the paths taken, the errors and the fds and
children left.  Run by tests/test_fd_limit.py."""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import threading
from collections.abc import Callable
from typing import Any

soft, n, threads, rows = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
mod: Any
if sys.argv[5] == "subprocess":
    import subprocess as mod
else:
    import pidproc as mod


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


out: dict[str, Any] = {"errors": [], "backends": collections.Counter()}


def note(p: Any) -> None:
    out["backends"][getattr(p, "backend", "stdlib")] += 1


def finished_kept(count: int, done: list[Any]) -> None:
    # Row 1: finished Popens kept, e.g. to report their return codes later.
    for _ in range(count):
        p = mod.Popen(["true"])
        p.wait()
        done.append(p)


def alive_at_once(count: int, live: list[Any]) -> None:
    # Row 2: all alive at once, then killed and waited.  The children must
    # outlive the spawning of all of them: on a loaded machine, 1500 spawns
    # by fork (3.10's stdlib has no vfork) have taken more than 30 s.
    for _ in range(count):
        live.append(mod.Popen(["sleep", "600"]))


def in_threads(fn: Callable[[int, list[Any]], None], count: int) -> list[Any]:
    got: list[Any] = []
    lock = threading.Lock()

    def work(share: int) -> None:
        mine: list[Any] = []
        try:
            fn(share, mine)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            out["errors"].append(repr(e))
        with lock:
            got.extend(mine)

    shares = [count // threads + (i < count % threads) for i in range(threads)]
    ts = [threading.Thread(target=work, args=(s,)) for s in shares]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return got


if "1" in rows:
    done = in_threads(finished_kept, n)
    out["finished"] = [len(done), sorted({p.returncode for p in done})]
    for p in done:
        note(p)
    out["fds_after_finished"] = fds()
if "2" in rows:
    live = in_threads(alive_at_once, n)
    for p in live:
        note(p)
    # While they run, the program still has room for its own files.
    files = []
    try:
        for _ in range(soft // 4 - 16):
            files.append(open("/dev/null"))
    except OSError as e:
        out["errors"].append("own files: " + repr(e))
    for f in files:
        f.close()
    for p in live:
        p.kill()
    out["alive"] = [len(live), sorted({p.wait() for p in live})]
    out["fds_after_alive"] = fds()
with open(f"/proc/self/task/{os.getpid()}/children") as f:
    out["children_left"] = len(f.read().split())
print(json.dumps(out))
