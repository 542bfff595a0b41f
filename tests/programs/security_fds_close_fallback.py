"""close_fds where close_range is missing or denied (run behind a seccomp
filter): with inheritable fds at 50, 300 and 1023, prints, as JSON, the
fds a child finds open through the stdlib and every path usable here,
without and with pass_fds=[300].  Run by tests/test_security_fds.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.leaks import child_fds  # noqa: E402

for target in (50, 300, 1023):  # inheritable descriptors at scattered numbers
    fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, target)
    os.close(fd)
report = {}
for name in ["stdlib", *pidproc.backends()]:
    module = subprocess if name == "stdlib" else pidproc
    with pidproc.use_backend(None if name == "stdlib" else name):
        report[name] = [sorted(child_fds(module)), sorted(child_fds(module, pass_fds=[300]))]
print(json.dumps(report))
