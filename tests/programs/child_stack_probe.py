"""How many bytes of its stack the clone3/clone child writes in one
scenario (argv[1], a name from tests/child_stack.py): its set-up, then the
C core loaded, the stack probe on, the spawn, and the count printed.  Run
by tests/child_stack.py (PIDPROC_BACKEND picks the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support import heavy  # noqa: E402

scenario = sys.argv[1]
# As many extra groups as the interpreter's subprocess takes, up to 256:
# PyPy's takes 64 at most (pidproc raises its error beyond).
GROUPS = 64 if sys.implementation.name == "pypy" else 256
IDS = dict(user=0, group=0, extra_groups=list(range(1000, 1000 + GROUPS)))
fds: list[int] = []

# The set-up, before the C core is loaded (RTLD_LAZY must come first).
if scenario == "close_fds by listing /proc/self/fd, 2000 fds open":
    heavy.no_close_range()
    fds = heavy.many_fds()
elif scenario == "exec failing over 1000 PATH candidates":
    heavy.long_path()
elif scenario == "handlers reset by the child (no CLONE_CLEAR_SIGHAND)":
    heavy.every_signal_caught()
    heavy.no_clear_sighand()
elif scenario == "libc symbols bound lazily, by the child":
    sys.setdlopenflags(os.RTLD_LAZY)
    heavy.every_signal_caught()
    heavy.no_clear_sighand()
elif scenario == "all of the above, then exec":
    sys.setdlopenflags(os.RTLD_LAZY)
    heavy.no_close_range()
    fds = heavy.many_fds()
    heavy.every_signal_caught()
    heavy.no_clear_sighand()
    heavy.long_path()

import pidproc  # noqa: E402
from pidproc._core import lib  # noqa: E402

lib.pidproc_child_stack_probe(1)
if scenario == "close_fds by listing /proc/self/fd, 2000 fds open":
    pidproc.run(["true"], check=True, pass_fds=(fds[7], fds[900]))
elif scenario == "user, group, many extra_groups":
    pidproc.run(["true"], check=True, **IDS)
elif scenario == "exec failing over 1000 PATH candidates":
    try:
        pidproc.run(["no-such-program"])
    except FileNotFoundError:
        pass
elif scenario == "libc symbols bound lazily, by the child":
    pidproc.run(["true"], check=True, cwd="/", umask=0o22, start_new_session=True)
elif scenario == "all of the above, then exec":
    ids = IDS if os.geteuid() == 0 else {}
    pidproc.run(
        ["/bin/true"],
        check=True,
        pass_fds=(fds[7], fds[900]),
        cwd="/",
        umask=0o22,
        start_new_session=True,
        restore_signals=True,
        env={"PATH": os.environ["PATH"] + ":/usr/bin:/bin", "X": "y" * 4096},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **ids,
    )
    try:
        pidproc.run(
            ["no-such-program"],
            pass_fds=(fds[7],),
            cwd="/",
            umask=0o22,
            start_new_session=True,
            restore_signals=True,
            **ids,
        )
    except FileNotFoundError:
        pass
else:  # plain, and the handlers reset by the child
    pidproc.run(["true"], check=True)
print(lib.pidproc_child_stack_probe(0))
