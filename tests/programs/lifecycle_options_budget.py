"""Above three quarters of the fd limit: a plain child is held by its PID;
a kill_tree child in process-group mode keeps its pidfd (its group is
signalled through it); die_with_parent takes the parent-death signal
(autokill would tie the child to a pidfd it could never give up).  Prints
backend, pidfd kept, kill_tree, die_with_parent for each, as JSON.  Run by
tests/test_lifecycle_options.py."""

from __future__ import annotations

import json
import os
import resource

import pidproc
from pidproc import _lifecycle

_lifecycle._USE_CGROUP = False  # a process group: its pidfd is needed
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(60 - len(os.listdir("/proc/self/fd")))]
for _ in range(4):  # a few numbers free, all in the top quarter
    os.close(held.pop())
out = {}
options: dict[str, dict[str, bool]] = {
    "plain": {},
    "kill_tree": {"kill_tree": True},
    "die_with_parent": {"die_with_parent": True},
}
for name, opts in options.items():
    p = pidproc.Popen(["sleep", "30"], **opts)
    out[name] = [p.backend, p.pidfd is not None, p.kill_tree, p.die_with_parent]
    p.kill()
    p.wait()
print(json.dumps(out))
