"""clone3 where CLONE_CLEAR_SIGHAND (argv[1], the flag's value) fails with
EINVAL, as on Linux 5.3/5.4: three spawns on the clone3 path with a handler
and an ignored signal set; prints whether each child's signal state equals
the stdlib child's, and the flag bits of every clone3 call seen.  Run by
tests/test_sandbox_faults.py."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import pidproc  # noqa: E402
from tests._support import seccomp  # noqa: E402

flag = int(sys.argv[1])
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
seen = seccomp.veto_clone3_flags(flag, errno.EINVAL)
status = "grep ^Sig[BIC] /proc/self/status"
with pidproc.use_backend("clone3"):
    outs = []
    for _ in range(3):
        p = pidproc.Popen(["sh", "-c", status], stdout=subprocess.PIPE)
        outs.append(p.communicate()[0])
        assert p.backend == "clone3", p.backend
std = subprocess.run(["sh", "-c", status], stdout=subprocess.PIPE).stdout
print(outs == [std] * 3, [hex(w & flag) for w in seen])
