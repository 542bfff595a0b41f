"""clone3 and clone forced where a seccomp filter denies them: prints what
each forced spawn says.  Run by tests/test_sandbox_faults.py."""

from __future__ import annotations

import pidproc

for name in ("clone3", "clone"):
    with pidproc.use_backend(name):
        try:
            pidproc.Popen(["true"]).wait()
        except pidproc.BackendUnavailable as e:
            print(name, e)
