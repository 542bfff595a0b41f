"""A signal sent through asyncio (argv[1]: pidproc.asyncio, or asyncio
under pidproc.patch()): prints the child's PID, sends it SIGUSR2 and
checks the exit; run under strace by tests/test_asyncio.py to see which
call carried the signal."""

from __future__ import annotations

import asyncio
import signal
import sys

import pidproc
import pidproc.asyncio

if sys.argv[1] == "patched":
    pidproc.patch()
    create = asyncio.create_subprocess_exec
else:
    create = pidproc.asyncio.create_subprocess_exec


async def main() -> None:
    p = await create("sleep", "30")
    print(p.pid, flush=True)
    p.send_signal(signal.SIGUSR2)
    assert await p.wait() == -signal.SIGUSR2


asyncio.run(main())
