"""kill_tree children, then exit: prints the mechanism and the last child's
cgroup directory, which must be gone, with its ``pidproc-<pid>`` parent,
once this process has exited.  Run by tests/test_lifecycle_options.py."""

from __future__ import annotations

import pidproc

for _ in range(3):
    pidproc.run(["true"], kill_tree=True)
p = pidproc.Popen(["sleep", "30"], kill_tree=True)
assert p._lifecycle is not None and p._lifecycle.cgroup is not None
print(p.kill_tree, p._lifecycle.cgroup.path, flush=True)
p.kill()
p.wait()
