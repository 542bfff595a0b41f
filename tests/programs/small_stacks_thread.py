"""One spawn from a thread with the smallest stack: argv is the module
(subprocess or pidproc), the case and the thread stack size.  The case's
set-up runs in the main thread first; prints what the call returned (code
and output) or the error it raised.  Run by tests/test_small_stacks.py
(PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support import heavy  # noqa: E402

mod: Any = subprocess if sys.argv[1] == "subprocess" else pidproc
case, size = sys.argv[2], int(sys.argv[3])

# What the child sees, in a form that is the same for both spawners.
REPORT = (
    'echo "X=$X"; pwd; umask; ls /proc/self/fd | sort -n | tr "\\n" " "; echo; id -u; id -G;'
    " set -- $(cat /proc/$$/stat); echo session=$([ $6 = $1 ] && echo own || echo inherited)"
    " group=$([ $5 = $1 ] && echo own || echo inherited);"
    " exit 3"
)
IDS = dict(user=65534, group=65534, extra_groups=[1, 2, 3]) if os.geteuid() == 0 else {}

# The set-up, then the call's arguments; the call itself is made in the thread.
args: list[str]
kwargs: dict[str, Any]
if case == "plain":
    args, kwargs = ["sh", "-c", "echo ran; exit 3"], {"capture_output": True}
elif case == "missing program":
    args, kwargs = ["no-such-program-here"], {}
else:
    if case == "every option, close_range denied":
        heavy.no_close_range()
    fds = heavy.many_fds()
    grouped = case == "every option, process group"
    group: dict[str, Any] = {"process_group": 0} if grouped else {"start_new_session": True}
    args = ["sh", "-c", REPORT]
    kwargs = dict(
        capture_output=True,
        close_fds=True,
        pass_fds=(fds[3], fds[1500]),
        cwd="/tmp",
        env={"X": "y", "PATH": "/usr/bin:/bin"},
        umask=0o27,
        restore_signals=True,
        **IDS,
        **group,
    )

threading.stack_size(size)
out: list[tuple[Any, ...]] = []


def spawn() -> None:
    try:
        r = mod.run(args, **kwargs)
        out.append((r.returncode, r.stdout))
    except OSError as e:
        out.append((type(e).__name__, e.errno, e.filename))


t = threading.Thread(target=spawn)
t.start()
t.join()
print(repr(out[0]))
