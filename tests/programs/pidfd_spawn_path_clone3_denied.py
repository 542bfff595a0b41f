"""One spawn where clone3 answers EPERM (run behind a seccomp filter):
prints the best path before it, the path it took with its return code, and
the best path after it with the reason pidfd_spawn was given up.  Run by
tests/test_pidfd_spawn_path.py."""

from __future__ import annotations

import pidproc
from pidproc._spawn import state as _backends

print(pidproc.backends()[0])
with pidproc.Popen(["sh", "-c", "exit 5"]) as p:
    pass
print(p.backend, p.returncode)
print(pidproc.backends()[0], _backends.reason("pidfd_spawn"))
