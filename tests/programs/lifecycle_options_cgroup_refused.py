"""kill_tree where clone3 refuses CLONE_INTO_CGROUP with EINVAL (as before
Linux 5.7): prints the path, the mechanism and why there is no cgroup.
Run by tests/test_lifecycle_options.py."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support import seccomp  # noqa: E402

seccomp.veto_clone3_flags(1 << 33, errno.EINVAL)  # CLONE_INTO_CGROUP

import pidproc  # noqa: E402
from pidproc import _lifecycle  # noqa: E402

with pidproc.Popen(["true"], kill_tree=True) as p:
    pass
print(p.backend, p.kill_tree, _lifecycle.Lifecycle.cgroup_reason())
