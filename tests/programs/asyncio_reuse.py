"""The asyncio PID-reuse race (gh-127049), in a PID namespace of its own:
A, made by asyncio (argv[1]: stdlib, patched, or pidproc for
pidproc.asyncio), is reaped before asyncio has run its exit callback and B
takes its PID; then A.kill().  Prints whether B survived.  Run by
tests/test_asyncio.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.pids import recycle  # noqa: E402

mode = sys.argv[1]
create: Any
if mode == "pidproc":
    import pidproc.asyncio

    create = pidproc.asyncio.create_subprocess_exec
else:
    if mode == "patched":
        import pidproc

        pidproc.patch()
    create = asyncio.create_subprocess_exec


async def main() -> None:
    a = await create("sleep", "0")
    # A exits and is reaped before asyncio has run its exit callback (in
    # gh-127049 the child watcher reaps; here we do, deterministically).
    try:
        os.waitpid(a.pid, 0)
    except ChildProcessError:
        pass  # 3.10/3.11: the watcher's thread was first
    b = recycle(a.pid)
    a.kill()  # no await since A was reaped
    await asyncio.wait_for(a.wait(), 10)
    try:
        b.wait(timeout=0.5)  # a SIGKILL ends it at once
        print("killed")
    except subprocess.TimeoutExpired:
        print("survived")
        b.kill()
        b.wait()


warnings.simplefilter("ignore", DeprecationWarning)
asyncio.run(main())
