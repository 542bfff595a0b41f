"""The fds a kill_tree cgroup keeps (its directory, its cgroup.events):
never in the top quarter of the fd range, where a pidfd would not be kept
either; at most two per pooled cgroup once the children are gone; none of
them in a forked child.  Prints one JSON object.  Run by
tests/test_lifecycle_options.py."""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from pathlib import Path

import pidproc
from pidproc import _cgroup

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.leaks import collect  # noqa: E402


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def cgroup_fds(base: str) -> list[int]:
    """Our fds that name something in our pidproc-<pid> directory."""
    found = []
    for fd in open_fds():
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(base + "/"):
            found.append(fd)
    return sorted(found)


out: dict[str, object] = {}

# 1. Near the fd limit, in a fresh process (an empty pool: a new cgroup).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(60 - len(os.listdir("/proc/self/fd")))]
for _ in range(4):  # a few numbers free, all in the top quarter
    os.close(held.pop())
before = open_fds()
p = pidproc.Popen(["sleep", "30"], kill_tree=True)
where = _cgroup._place
assert where is not None
with open(f"/proc/{p.pid}/cgroup") as f:
    in_cgroup = f"/pidproc-{os.getpid()}/" in f.read()
# The pidfd is given up up there (the child held by its PID), and so are
# the cgroup's fds: nothing of pidproc's stays in the top quarter.
out["near_limit"] = [p.kill_tree, in_cgroup, sorted(open_fds() - before)]
p.kill()
out["near_limit_killed"] = p.wait() == -signal.SIGKILL
del p
collect()
out["near_limit_after"] = sorted(open_fds() - before)
for fd in held:
    os.close(fd)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

# 2. Many children at once, then none: the pool keeps at most two fds per
# cgroup, each of them a cgroup's directory or its cgroup.events.  (Killed
# cgroups are never pooled: these children end by themselves.)
children = [pidproc.Popen(["sleep", "0.3"], kill_tree=True) for _ in range(12)]
for c in children:
    c.wait()
del children, c
collect()
kept = cgroup_fds(where.base)
names = sorted({os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) for fd in kept})
ours = all(n.isdigit() or n == "cgroup.events" for n in names)
out["pooled"] = [len(where.pool), len(kept), ours]
for _ in range(200):  # reused: no fd beyond the pool's two per cgroup
    pidproc.run(["true"], kill_tree=True)
collect()
# Not "the same count as before": on Linux 7.x a reaped child can still
# count as a member for a moment (its cgroup is unlinked after its last
# switch out), and such a cgroup is removed rather than pooled.
after = cgroup_fds(where.base)
out["after_200"] = len(after) == 2 * len(where.pool) <= len(kept)

# 3. A forked child holds none of them.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, str(len(cgroup_fds(where.base))).encode())
    os._exit(0)
os.close(w)
out["in_forked_child"] = int(os.read(r, 16))
os.close(r)
os.waitpid(pid, 0)
print(json.dumps(out))
