"""A keeper's child killed before its first instruction, for real.

The keeper thread clones a ``die_with_parent`` (pdeathsig) child, and the
child tells the thread that asked its pid as its first step.  A child killed
before that step has told nothing: the asking thread then names it with
``waitid(WNOWAIT)`` on its pidfd, or, where the kernel has reaped it already
(SIGCHLD ignored), fails the spawn as a transient error.  Never pid 0.

A kernel that kills a child born into a cgroup once killed (Linux 6.18 does,
at birth, before the child returns to user space) makes that happen: each
spawn here gets such a cgroup (``kill_tree``).  Prints one JSON object;
``killed_at_birth`` false where this kernel does not.  Run by
tests/test_lifecycle_options.py.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pidproc
from pidproc import _cgroup

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.leaks import children, collect, live_fds  # noqa: E402

# The probes (a cgroup of its own for each) before the cgroups are swapped.
pidproc.run(["true"], kill_tree=True, die_with_parent=True)
new_tree = _cgroup.new_tree


def killed_tree() -> _cgroup.Tree:
    tree = new_tree()
    tree.kill()  # cgroup.kill, with no one in it yet
    return tree


_cgroup.new_tree = killed_tree
out: dict[str, object] = {}
p = pidproc.Popen(["true"], kill_tree=True)
out["killed_at_birth"] = p.wait() == -signal.SIGKILL
if out["killed_at_birth"]:
    before = live_fds()
    p = pidproc.Popen(["true"], kill_tree=True, die_with_parent=True)
    with open(f"/proc/self/fdinfo/{p.pidfd}") as f:
        named = next(int(line.split()[1]) for line in f if line.startswith("Pid:"))
    out["named"] = [p.die_with_parent, p.pid > 0, named == p.pid, p.wait() == -signal.SIGKILL]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        q = pidproc.Popen(["true"], kill_tree=True, die_with_parent=True)
        out["reaped_by_kernel"] = f"spawned, pid {q.pid}"
    except OSError as e:
        out["reaped_by_kernel"] = [type(e).__name__, e.errno]
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    del p
    collect()
    out["fds_left"] = sorted(live_fds() - before)
    out["children_left"] = children()
print(json.dumps(out))
