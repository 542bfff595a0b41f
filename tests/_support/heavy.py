"""Set-ups that make a spawn's child work hardest, for the programs that
measure or squeeze its stack (tests/programs/small_stacks_*.py and
child_stack_probe.py).  Each changes this process; run them in a fresh
interpreter only."""

from __future__ import annotations

import errno
import os
import resource
import signal

from . import seccomp

CLONE_CLEAR_SIGHAND = 0x100000000


def many_fds() -> list[int]:
    """2000 more fds open (the limit raised for them): close_fds has work."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    return [os.open("/dev/null", os.O_RDONLY) for _ in range(2000)]


def no_close_range() -> None:
    """close_range() answers ENOSYS, as before Linux 5.9: the child lists
    /proc/self/fd instead."""
    seccomp.install({"close_range": errno.ENOSYS})


def every_signal_caught() -> None:
    """A Python handler for every signal that takes one: the child resets
    them all."""
    for s in signal.valid_signals():
        try:
            signal.signal(s, lambda *a: None)
        except (OSError, ValueError, RuntimeError):
            pass


def no_clear_sighand() -> None:
    """clone3 with CLONE_CLEAR_SIGHAND answers EINVAL, as on Linux 5.3/5.4:
    clone3 is retried without it and the child resets the handlers itself."""
    seccomp.veto_clone3_flags(CLONE_CLEAR_SIGHAND, errno.EINVAL)


def long_path() -> None:
    """A PATH of 1000 directories that do not exist."""
    os.environ["PATH"] = ":".join(f"/nonexistent/{i}" for i in range(1000))
