"""A spawn with no fd free for the pidfd (EMFILE), then one with the limit
raised: prints the first one's errno, then the path the second took and the
best path.  Run by tests/test_backends.py."""

from __future__ import annotations

import os
import resource

import pidproc

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
n = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (n - 1, hard))
try:
    pidproc.Popen(["true"])
except OSError as e:
    print("error", e.errno)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
p = pidproc.Popen(["true"])
p.wait()
print(p.backend, pidproc.backends()[0])
