"""The spawn paths: one record each, best first.

Everything pidproc knows about a path is in its record: its name (the
``Popen.backend`` it gives and ``PIDPROC_BACKEND`` takes), its knob, the C
function that spawns through it, what a request may need that it cannot
express, and the facts that rule it out without spawning anything.  The
rest of the package reads the records; no other place names a path.

Adding a path: write its C function (``_c/``, the contract in
``docs/design.md``), add its record here, in its place in the order.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from .. import _stdlib
from .._native import ffi, lib
from .convert import PYPY, pypy_cast

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

# What a request may need that not every path can express (``needs``).
PREEXEC_FN = "preexec_fn"  # Python code in the child: only a fork can run it
CREDENTIALS = "credentials"  # user=, group=, extra_groups=
UMASK = "umask"  # umask= of 0 or more
STDIO_REMAP = "stdio_remap"  # a child's stdin/out/err taken from fds 0-2 out of place
ODD_PASS_FDS = "odd_pass_fds"  # pass_fds not a plain collection of small ints

ALL_NEEDS = frozenset({PREEXEC_FN, CREDENTIALS, UMASK, STDIO_REMAP, ODD_PASS_FDS})

# What the lifecycle options may need (``_lifecycle``).
HELD_BY_PIDFD = "held_by_pidfd"  # its process group signalled through its pidfd
NEW_PROCESS_GROUP = "new_process_group"  # process_group=0 (3.10's stdlib spawn has none)
C_CHILD_SETUP = "c_child_setup"  # a prctl in pidproc's own child before exec
CLONE3_FLAGS = "clone3_flags"  # CLONE_INTO_CGROUP and Linux 7.1's flags: clone3 alone
_NO_GROUP = frozenset() if _stdlib.TAKES_PROCESS_GROUP else frozenset({NEW_PROCESS_GROUP})

Unusable = tuple[int, str]
"""Why a path cannot work here: an errno value (ENOSYS: not in this kernel
or libc; EPERM: denied, e.g. by seccomp; ENOTSUP: missing, or unsafe) and a
sentence for ``pidproc``'s users."""


class SpawnPath:
    """One spawn path's record (a plain class, not a dataclass: see
    ``_stdlib.ChildArgs``)."""

    __slots__ = (
        "name",
        "knob",
        "c_function",
        "cannot",
        "static_check",
        "probe_by_spawning",
        "pidfd_at_birth",
        "replays_child_failures",
        "clones_with",
    )

    def __init__(
        self,
        name: str,
        knob: str,
        c_function: Callable[[Any], int] | None,
        cannot: frozenset[str],
        static_check: Callable[[], Unusable | None] | None = None,
        probe_by_spawning: bool = False,
        pidfd_at_birth: bool = True,
        replays_child_failures: bool = False,
        clones_with: str | None = None,
    ) -> None:
        self.name = name
        self.knob = knob
        """The module global in ``state`` that switches it off, as CPython's
        ``_USE_VFORK``."""
        self.c_function = c_function
        """The C core's entry point (0: spawned or failed in the child, see
        ``err_step``; > 0: a transient errno; < 0: -errno, the path cannot work
        here).  None: the stdlib spawns the child."""
        self.cannot = cannot
        """The needs it cannot express: such requests go to the next path."""
        self.static_check = static_check
        """Facts known without spawning (libc, CPU, kernel); None: none."""
        self.probe_by_spawning = probe_by_spawning
        """Whether it is known to work only once a child spawned through it."""
        self.pidfd_at_birth = pidfd_at_birth
        """The kernel returns the pidfd with the child (no pidfd_open after)."""
        self.replays_child_failures = replays_child_failures
        """It cannot say which step failed in the child (glibc's posix_spawn):
        a failure is replayed on the next path, whose child says it (nothing
        ran, so nothing happens twice)."""
        self.clones_with = clones_with
        """The path whose syscall it uses underneath: where that one is denied
        (EPERM), so is this one."""

    def __repr__(self) -> str:
        return f"SpawnPath({self.name!r})"


# pidfd_spawn is glibc's posix_spawn: it takes only file actions and
# attributes, so the request must be one those can say (see
# ``needs_of``); the C function relies on that check.
_MAX_SPAWNABLE_PASS_FD = 1024  # it closes the gaps below the highest one, one action each


def _leaks_pidfd_on_exec_failure(glibc_version: str) -> bool:
    """glibc 2.39 leaks the pidfd when exec fails (BZ 31695, fixed in 2.40).
    A distribution's 2.39 with the fix backported still says "2.39", and
    snapshots on the way to 2.40 say "2.39.9000": all count as leaking."""
    parts = glibc_version.split(".")[:2]
    return len(parts) == 2 and all(p.isdigit() for p in parts) and (2, 39) == tuple(map(int, parts))


def _pidfd_spawn_check() -> Unusable | None:
    version = ffi.string(lib.pidproc_glibc_version()).decode()
    available = lib.pidproc_pidfd_spawn_available()
    if not available:
        return errno.ENOSYS, f"glibc {version} has no pidfd_spawn (2.39+)"
    if available < 0:
        return errno.ENOSYS, "no /proc for pidfd_getpid and no PIDFD_GET_INFO (Linux 6.13)"
    if _leaks_pidfd_on_exec_failure(version):
        return errno.ENOTSUP, f"glibc {version} leaks a pidfd when exec fails (BZ 31695)"
    return None


def _clone3_check() -> Unusable | None:
    if not lib.pidproc_clone3_compiled():
        return errno.ENOSYS, "no clone3 trampoline for this CPU architecture"
    return None


PATHS: tuple[SpawnPath, ...] = (
    SpawnPath(
        "pidfd_spawn", "_USE_PIDFD_SPAWN", lib.pidproc_spawn_pidfd_spawn,
        cannot=ALL_NEEDS | {C_CHILD_SETUP, CLONE3_FLAGS}, static_check=_pidfd_spawn_check,
        # glibc clones with clone3 and falls back to clone only on ENOSYS/EINVAL.
        replays_child_failures=True, clones_with="clone3",
    ),
    SpawnPath(
        "clone3", "_USE_CLONE3", lib.pidproc_spawn_clone3,
        cannot=frozenset({PREEXEC_FN}), static_check=_clone3_check, probe_by_spawning=True,
    ),
    SpawnPath(
        "clone", "_USE_CLONE", lib.pidproc_spawn_clone,
        cannot=frozenset({PREEXEC_FN, CLONE3_FLAGS}), probe_by_spawning=True,
    ),
    # The stdlib's own spawn (vfork, posix_spawn, or fork for preexec_fn),
    # then pidfd_open while the child is unreaped.
    SpawnPath(
        "fork", "_USE_FORK", None, cannot=_NO_GROUP | {C_CHILD_SETUP, CLONE3_FLAGS},
        pidfd_at_birth=False,
    ),
    # The stdlib as it is: the child held by its PID.  Always usable.
    SpawnPath(
        "pid", "", None, cannot=_NO_GROUP | {HELD_BY_PIDFD, C_CHILD_SETUP, CLONE3_FLAGS},
        pidfd_at_birth=False,
    ),
)  # fmt: skip

BY_NAME = {p.name: p for p in PATHS}
NAMES = tuple(p.name for p in PATHS)


def needs_of(
    preexec_fn: Any,
    uid: Any,
    gid: Any,
    gids: Any,
    umask: Any,
    child_fds: tuple[int, int, int],
    pass_fds: Any,
) -> frozenset[str]:
    """What a request needs beyond a plain spawn.  Never raises, never
    consumes an iterator: whatever is wrong with an argument, the stdlib's
    own checks say so later, on the path that takes the request."""
    if PYPY:  # its fork_exec casts these to a C int: judge what the child gets
        umask = pypy_cast(umask)
        child_fds = (pypy_cast(child_fds[0]), pypy_cast(child_fds[1]), pypy_cast(child_fds[2]))
    stdin, stdout, stderr = child_fds
    plain_stdio = (
        (stdin == -1 or stdin > 2 or stdin == 0)
        and (stdout == -1 or stdout > 2 or stdout == 1)
        and (stderr == -1 or stderr > 2 or stderr == 2)
    )
    if (
        preexec_fn is None and uid is None and gid is None and gids is None
        and type(umask) is int and umask < 0 and plain_stdio and pass_fds == ()
    ):  # fmt: skip
        return _NOTHING  # the common case, on every spawn: no set built
    needs = set()
    if preexec_fn is not None:
        needs.add(PREEXEC_FN)
    if uid is not None or gid is not None or gids is not None:
        needs.add(CREDENTIALS)
    if not (type(umask) is int and umask < 0):
        needs.add(UMASK)
    if not plain_stdio:
        needs.add(STDIO_REMAP)
    if not (
        isinstance(pass_fds, (list, tuple, set, frozenset))
        and all(type(fd) is int and fd < _MAX_SPAWNABLE_PASS_FD for fd in pass_fds)
    ):
        needs.add(ODD_PASS_FDS)
    return frozenset(needs)


_NOTHING: frozenset[str] = frozenset()
