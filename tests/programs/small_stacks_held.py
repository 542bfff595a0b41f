"""argv[2] spawns at once from threads with the stack size argv[3], through
the module argv[1]: every child waits in execve until all of them are
there, so that many spawns hold a stack at the same time.  With "fork" as
argv[4], the process forks meanwhile and the forked child spawns from
small threads and its main thread.  Prints whether every spawn returned 0
(then, with "fork", the code of one more spawn).  Run by
tests/test_small_stacks.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support import seccomp  # noqa: E402

mod: Any = subprocess if sys.argv[1] == "subprocess" else pidproc
n, size, fork = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] == ["fork"]


def fork_while_held() -> None:
    """os.fork() while the threads are inside a spawn, holding stacks: in
    the forked child those threads are gone; it spawns from small threads,
    many at once, and from its main thread."""
    pid = os.fork()
    if pid == 0:
        ok = True
        try:
            threading.stack_size(size)
            results = []

            def again() -> None:
                for _ in range(20):
                    results.append(mod.run(["sh", "-c", "exit 5"]).returncode)

            ts = [threading.Thread(target=again) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            ok = results == [5] * 160 and mod.run(["true"]).returncode == 0
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status


held, go = seccomp.hold_execve(n)
threading.stack_size(size)
codes = []


def spawn() -> None:
    codes.append(mod.run(["true"]).returncode)


threads = [threading.Thread(target=spawn) for _ in range(n)]
for t in threads:
    t.start()
for _ in range(n):
    assert held.acquire(timeout=60), "children never reached execve"
if fork:
    fork_while_held()
go.set()
for t in threads:
    t.join()
print(codes == [0] * n)
if fork:
    print(mod.run(["true"]).returncode)
