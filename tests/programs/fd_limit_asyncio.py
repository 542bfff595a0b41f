"""argv[2] live pidproc.asyncio children under a soft RLIMIT_NOFILE of
argv[1], then killed: prints how many there were and their return codes.
Run by tests/test_fd_limit.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import asyncio
import resource
import sys

import pidproc.asyncio as aio

soft, n = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


async def main() -> tuple[int, list[int | None]]:
    # "sleep 600": they must outlive the spawning of all of them, however slow.
    procs = [await aio.create_subprocess_exec("sleep", "600") for _ in range(n)]
    for p in procs:
        p.kill()
    codes = await asyncio.gather(*(p.wait() for p in procs))
    return len(procs), sorted(set(codes))


print(*asyncio.run(main()))
