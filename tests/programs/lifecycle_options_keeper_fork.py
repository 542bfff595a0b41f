"""die_with_parent after os.fork(): the forked child has no keeper thread
(only the forking thread survives a fork) and starts its own.  Prints the
exit status of the forked child's own die_with_parent child (3).  Run by
tests/test_lifecycle_options.py."""

from __future__ import annotations

import os

import pidproc

pidproc.Popen(["true"], die_with_parent=True).wait()
pid = os.fork()
if pid == 0:
    p = pidproc.Popen(["sh", "-c", "exit 3"], die_with_parent=True)
    os._exit(p.wait())
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
