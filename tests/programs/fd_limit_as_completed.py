"""120 children under a soft RLIMIT_NOFILE of 64 (most get no pidfd), then
the fd table filled but for one: prints how many had no pidfd, how many
as_completed() collected and their return codes.  Run by
tests/test_fd_limit.py."""

from __future__ import annotations

import os
import resource

import pidproc

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
procs = [pidproc.Popen(["sh", "-c", "sleep 0.2"]) for _ in range(120)]
held = sum(p.backend.endswith("-no-pidfd") for p in procs)
filler = []
try:
    while True:
        filler.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
for fd in filler[-1:]:
    os.close(fd)  # room for as_completed's epoll, and nothing else
done = list(pidproc.as_completed(procs, timeout=30))
print(held, len(done), sorted({p.returncode for p in done}))
