"""A child whose own child (``sleep argv[1]``) leaves the process group and
the session (setsid), as daemons do; prints "started" and sleeps.  Run by
tests/test_lifecycle_options.py."""

from __future__ import annotations

import subprocess
import sys
import time

subprocess.Popen(["sleep", sys.argv[1]], start_new_session=True, stdout=subprocess.DEVNULL)
print("started", flush=True)
time.sleep(600)
