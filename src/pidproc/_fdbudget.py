"""How many file descriptors pidproc's pidfds may take from the program.

The stdlib holds a child by its PID and needs no file descriptor for it, so a
program that runs with the stdlib under a given ``RLIMIT_NOFILE`` must not
run out of descriptors with pidproc.  Three rules see to that:

- A reaped child holds no descriptor unless the program asked for its pidfd
  (``_popen._PidfdHandle``).
- A pidfd is kept only while its number stays below three quarters of the
  soft limit (``fits``); a child whose pidfd would land above is held by its
  PID alone, as the stdlib holds every child.  So however many children run
  at once, the top quarter of the descriptor range stays free for the
  program's own files, sockets and pipes.
- Where the program's own descriptors fill the table, a spawn that cannot
  have its pidfd goes to the stdlib's own spawn, which needs none for the
  child: it succeeds where the stdlib's succeeds (posix_spawn needs no fd)
  and raises the stdlib's EMFILE where the stdlib's does (its error pipe
  needs two).  A child started with no fd free could not even load its
  shared libraries, so failing there is the better answer anyway.

The kernel hands out the lowest free number, so a pidfd's own number says
how full the table is, at no cost.  The soft limit is read at each spawn
(one ``getrlimit``, about 0.5 us against a spawn's 600 us), since the
program may lower or raise it at any time.

The soft limit is never raised here.  Raising it (as Go's runtime does at
start-up) would move the program's later descriptors above 1024, where
``select.select()`` cannot take them, and children would inherit the raised
limit on every path that cannot restore it (posix_spawn, the stdlib's own
spawn).  A program that wants more room raises it itself.
"""

from __future__ import annotations

# Imported here, not in fits(): fits() runs once a child exists, where an
# import that fails (no fd free to open the module) would leave it behind.
import resource

# The share of the soft limit kept free for the program: the top quarter.
_KEEP_FREE_DIVISOR = 4


def fits(fd: int) -> bool:
    """True if a pidfd numbered ``fd`` may be kept (see the module docstring)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return True
    return fd < soft - soft // _KEEP_FREE_DIVISOR
