"""Which spawn path to take: probes, their cached answers, and the knobs.

The paths, best first:

``pidfd_spawn``  glibc 2.39+ ``pidfd_spawn``; requests posix_spawn can express.
``clone3``       ``clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK)`` and our C child.
``clone``        legacy ``clone(CLONE_PIDFD|CLONE_VM|CLONE_VFORK)``, where
                 clone3 is missing or denied (ENOSYS/EPERM from seccomp).
``fork``         the stdlib's own spawn (vfork, or fork for ``preexec_fn``),
                 then ``pidfd_open``: no CLONE_PIDFD, or ``preexec_fn``.
``pid``          no pidfd at all: exactly the stdlib.

Each answer is cached as a named state.  Only facts about the kernel or libc
are cached (ENOSYS, EPERM, EINVAL); a transient failure (EMFILE, ENFILE,
ENOMEM, EAGAIN) says nothing about them and is never cached.

Knobs, one per path as CPython's ``_USE_VFORK``: set ``_USE_<PATH> = False``
to skip a path, or force one with ``PIDPROC_BACKEND=<name>`` in the
environment or :func:`use_backend`.  A forced path that cannot work here
raises :class:`BackendUnavailable`; requests the forced path cannot express
(``preexec_fn`` anywhere but ``fork``) go down the chain as usual.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import inspect
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ._core import ffi, lib
from ._errors import BackendUnavailable, TransientSpawnError, raise_child_error
from ._request import SpawnRequest, probe_spec

BACKENDS = ("pidfd_spawn", "clone3", "clone", "fork", "pid")
C_BACKENDS = ("pidfd_spawn", "clone3", "clone")

# 3.11+: the stdlib's spawn takes process_group (the fork and pid paths pass it on).
STDLIB_TAKES_PGID = "process_group" in inspect.signature(subprocess.Popen).parameters
# What each path can express beyond the stdlib's arguments, for chain(needs=):
# the names are _lifecycle's NEED_* (a pidfd, a new process group,
# pidproc's own C child, clone3's own flags).
CAN: dict[str, frozenset[str]] = {
    "pidfd_spawn": frozenset({"pidfd", "process_group"}),
    "clone3": frozenset({"pidfd", "process_group", "c_child", "clone3"}),
    "clone": frozenset({"pidfd", "process_group", "c_child"}),
    "fork": frozenset({"pidfd", "process_group"} if STDLIB_TAKES_PGID else {"pidfd"}),
    "pid": frozenset(),
}

_USE_PIDFD_SPAWN = True
_USE_CLONE3 = True
_USE_CLONE = True
_USE_FORK = True

_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR}


class State(enum.Enum):
    UNKNOWN = "unknown"
    USABLE = "usable"
    UNUSABLE = "unusable"


_state: dict[str, State] = {name: State.UNKNOWN for name in BACKENDS}
_reason: dict[str, str] = {}
_state["pid"] = State.USABLE
_lock = threading.Lock()
_forced: str | None = None
# chain() runs on every spawn: its answer is memoised per input, and the memo
# is dropped whenever a path's state changes (mark_unusable/_mark_usable).
_chains: dict[tuple[object, ...], list[str]] = {}


def _validate(name: str | None, origin: str) -> str | None:
    if name is not None and name not in BACKENDS:
        raise ValueError(
            f"{origin}={name!r}: unknown spawn path; choose one of {', '.join(BACKENDS)}"
        )
    return name


def forced() -> str | None:
    """The forced path: use_backend() wins over PIDPROC_BACKEND."""
    if _forced is not None:
        return _forced
    return _validate(_env_backend(), "PIDPROC_BACKEND")


def _env_backend(_environ: Mapping[str, str] = os.environ) -> str | None:
    """PIDPROC_BACKEND, read at every spawn (tests change it at run time).
    os.environ.get raises and catches a KeyError when it is unset, the usual
    case: ~1 % of a whole spawn+wait here (bench S1).  os.environ keeps its
    own bytes dict current (putenv/unsetenv go through it), so read that."""
    data = getattr(_environ, "_data", None)
    if not isinstance(data, dict):
        return _environ.get("PIDPROC_BACKEND") or None
    raw = data.get(b"PIDPROC_BACKEND")
    return os.fsdecode(raw) if raw else None


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force a spawn path for the block (process-wide; for tests and tools)."""
    global _forced
    _validate(name, "use_backend")
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


def _enabled(name: str) -> bool:
    return {
        "pidfd_spawn": _USE_PIDFD_SPAWN,
        "clone3": _USE_CLONE3,
        "clone": _USE_CLONE,
        "fork": _USE_FORK,
        "pid": True,
    }[name]


def mark_unusable(name: str, reason: str) -> None:
    with _lock:
        _state[name] = State.UNUSABLE
        _reason[name] = reason
        _chains.clear()


def _mark_usable(name: str) -> None:
    if _state[name] is State.UNKNOWN:
        with _lock:
            _state[name] = State.USABLE
            _chains.clear()


# ---- probes ---------------------------------------------------------------


def _probe_pidfd_wait() -> State:
    """pidfd_open (5.3) and waitid(P_PIDFD) (5.4), the way Go probes: waiting
    on our own pidfd must say ECHILD (we are not our own child)."""
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as e:
        return State.UNKNOWN if e.errno in _TRANSIENT else State.UNUSABLE
    try:
        os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return State.USABLE
    except OSError as e:
        return State.UNKNOWN if e.errno in _TRANSIENT else State.UNUSABLE
    finally:
        os.close(fd)
    return State.UNUSABLE


_pidfd_wait = State.UNKNOWN


def pidfd_wait_state() -> State:
    global _pidfd_wait
    if _pidfd_wait is State.UNKNOWN:
        _pidfd_wait = _probe_pidfd_wait()
        if _pidfd_wait is State.UNUSABLE:
            for name in ("pidfd_spawn", "clone3", "clone", "fork"):
                mark_unusable(name, "the kernel has no pidfd_open/waitid(P_PIDFD) (Linux 5.4+)")
    return _pidfd_wait


def _leaks_pidfd_on_exec_failure(glibc_version: str) -> bool:
    """glibc 2.39 leaks the pidfd when exec fails (BZ 31695, fixed in 2.40).
    A distribution's 2.39 with the fix backported still says "2.39", and
    snapshots on the way to 2.40 say "2.39.9000": all count as leaking."""
    parts = glibc_version.split(".")[:2]
    return len(parts) == 2 and all(p.isdigit() for p in parts) and (2, 39) == tuple(map(int, parts))


def _static_check(name: str) -> None:
    """Facts known without spawning anything."""
    if _state[name] is not State.UNKNOWN:
        return
    pidfd_wait_state()
    if _state[name] is not State.UNKNOWN:
        return
    if name == "pidfd_spawn":
        version = ffi.string(lib.pidproc_glibc_version()).decode()
        available = lib.pidproc_pidfd_spawn_available()
        if not available:
            mark_unusable(name, f"glibc {version} has no pidfd_spawn (2.39+)")
        elif available < 0:
            mark_unusable(name, "no /proc for pidfd_getpid and no PIDFD_GET_INFO (Linux 6.13)")
        elif _leaks_pidfd_on_exec_failure(version):
            mark_unusable(name, f"glibc {version} leaks a pidfd when exec fails (BZ 31695)")
    elif name == "clone3" and not lib.pidproc_clone3_compiled():
        mark_unusable(name, "no clone3 trampoline for this CPU architecture")


def _probe_c(name: str) -> None:
    """Spawn a child that exits at once, through the path itself."""
    request = SpawnRequest(probe_spec(), probe_only=True)
    fn = lib.pidproc_spawn_clone3 if name == "clone3" else lib.pidproc_spawn_clone
    rc = fn(request.struct)
    if rc < 0:
        mark_unusable(name, f"{name}() answered {errno.errorcode.get(-rc, -rc)}")
        return
    if rc > 0:
        return  # transient: says nothing about the kernel
    r = request.struct
    if r.pidfd >= 0:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, r.pidfd, os.WEXITED)
        os.close(r.pidfd)
        _mark_usable(name)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(r.pid, 0)
    mark_unusable(name, f"{name}() ignored CLONE_PIDFD and pidfd_open failed")


def state(name: str) -> State:
    _static_check(name)
    if _state[name] is State.UNKNOWN and name in ("clone3", "clone"):
        _probe_c(name)
    elif _state[name] is State.UNKNOWN and name == "fork" and _pidfd_wait is State.USABLE:
        _mark_usable("fork")
    return _state[name]


def backends() -> list[str]:
    """The spawn paths usable here, best first (probing those not yet known)."""
    return [n for n in BACKENDS if _enabled(n) and state(n) is not State.UNUSABLE]


def reason(name: str) -> str | None:
    """Why a path is unusable here, or None."""
    state(name)
    return _reason.get(name)


# ---- the dispatcher -------------------------------------------------------


NO_PIDFD = "-no-pidfd"
"""Suffix of ``Popen.backend`` for a child held by its PID alone, as the
stdlib holds it: its pidfd would have taken a file descriptor the program
may need (see ``_fdbudget``)."""


@dataclass
class Spawned:
    pid: int
    pidfd: int | None
    backend: str


_NO_NEEDS: frozenset[str] = frozenset()


def chain(*, preexec: bool, posix_spawnable: bool, needs: frozenset[str] = _NO_NEEDS) -> list[str]:
    """The paths to try for one request, in order.  ``needs``: what the path
    must express (see CAN); a path that cannot is skipped."""
    force = forced()
    key = (
        force, preexec, posix_spawnable, needs,
        _USE_PIDFD_SPAWN, _USE_CLONE3, _USE_CLONE, _USE_FORK,
    )  # fmt: skip
    cached = _chains.get(key)
    if cached is None:
        cached = _chains[key] = _compute_chain(force, preexec, posix_spawnable, needs)
    return cached


def _compute_chain(
    force: str | None, preexec: bool, posix_spawnable: bool, needs: frozenset[str] = _NO_NEEDS
) -> list[str]:
    names = list(BACKENDS)
    if force is not None:
        _static_check(force)
        if _state[force] is State.UNUSABLE:
            raise BackendUnavailable(
                f"spawn path {force!r} was forced but cannot work here: {_reason[force]}"
            )
        names = names[names.index(force) :]
    out = []
    for name in names:
        if not _enabled(name) and name != force:
            continue
        if preexec and name in C_BACKENDS:
            continue  # preexec_fn runs Python in the child: only fork can
        if name == "pidfd_spawn" and not posix_spawnable:
            continue
        if not needs <= CAN[name]:
            continue  # e.g. a parent-death signal: only pidproc's own child sets one
        if name != force:
            _static_check(name)
        if _state[name] is not State.UNUSABLE:
            out.append(name)
    return out


def _clone3_denied() -> bool:
    """clone3 itself answers EPERM here (probing it once if not known yet)."""
    return state("clone3") is State.UNUSABLE and "EPERM" in _reason.get("clone3", "")


_C_FUNCTIONS = {
    "pidfd_spawn": lib.pidproc_spawn_pidfd_spawn,
    "clone3": lib.pidproc_spawn_clone3,
    "clone": lib.pidproc_spawn_clone,
}


def spawn_c(name: str, request: SpawnRequest, executable: object, cwd: object) -> Spawned | None:
    """One C path: Spawned, None for "not here, try the next", or raise."""
    rc = _C_FUNCTIONS[name](request.struct)
    if rc < 0:
        mark_unusable(name, f"{name}() answered {errno.errorcode.get(-rc, -rc)}")
        if forced() == name:
            raise BackendUnavailable(
                f"spawn path {name!r} was forced but cannot work here: {_reason[name]}"
            )
        return None
    if rc > 0:
        raise TransientSpawnError(rc, os.strerror(rc))
    r = request.struct
    if r.err_step:
        if name == "pidfd_spawn":
            # pidfd_spawn does not say which step failed: replay the request
            # on the next path, whose child does (nothing ran, no side effect).
            if r.err_errno == errno.ENOSYS:
                mark_unusable(name, "pidfd_spawn() answered ENOSYS")
            elif r.err_errno == errno.EPERM and _clone3_denied():
                # glibc clones with clone3 and falls back to clone only on
                # ENOSYS/EINVAL: a filter's EPERM reaches every spawn.
                mark_unusable(name, "glibc's pidfd_spawn uses clone3, which answers EPERM here")
            return None
        raise_child_error(r.err_step, r.err_errno, executable, cwd)
    _mark_usable(name)
    if r.pidfd < 0:
        return Spawned(pid=r.pid, pidfd=None, backend=name + NO_PIDFD)
    return Spawned(pid=r.pid, pidfd=r.pidfd, backend=name)
