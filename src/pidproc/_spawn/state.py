"""Which spawn path to take: the probes' cached answers, the knobs, the chain.

The paths themselves are records in ``paths``.  Here is what is known
about each on this machine, and the order to try them in for one request.

Each answer is cached as a state, with the reason as an errno value and a
sentence.  Only facts about the kernel or libc are cached (ENOSYS, EPERM,
EINVAL); a transient failure (EMFILE, ENFILE, ENOMEM, EAGAIN) says nothing
about them and is never cached.

Knobs, one per path as CPython's ``_USE_VFORK``: set ``_USE_<PATH> = False``
to skip a path, or force one with ``PIDPROC_BACKEND=<name>`` in the
environment or :func:`use_backend`.  A forced path that cannot work here
raises :class:`BackendUnavailable`; requests the forced path cannot express
(``preexec_fn`` anywhere but ``fork``) go down the chain as usual.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator

from .. import _native, _posix, _stdlib
from .._errors import BackendUnavailable
from .paths import BY_NAME, NAMES, PATHS, SpawnPath, Unusable

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import ClassVar

BACKENDS = NAMES

_USE_PIDFD_SPAWN = True
_USE_CLONE3 = True
_USE_CLONE = True
_USE_FORK = True

TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR})


class State:
    """What is known of a path here: ``State.UNKNOWN``, ``USABLE`` or
    ``UNUSABLE``, compared with ``is``.  Not an enum.Enum: creating one costs
    more at ``import pidproc`` than the rest of this module."""

    __slots__ = ("name",)
    UNKNOWN: ClassVar[State]
    USABLE: ClassVar[State]
    UNUSABLE: ClassVar[State]

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"State.{self.name}"


State.UNKNOWN = State("UNKNOWN")
State.USABLE = State("USABLE")
State.UNUSABLE = State("UNUSABLE")


_state: dict[str, State] = {name: State.UNKNOWN for name in NAMES}
_state["pid"] = State.USABLE
_reason: dict[str, Unusable] = {}
_lock = threading.Lock()
_forced: str | None = None
# chain() runs on every spawn: its answer is memoised per input, and the memo
# is dropped whenever a path's state changes (mark_unusable/mark_usable).
_chains: dict[tuple[object, ...], list[SpawnPath]] = {}
# Bumped on the same changes, for answers memoised elsewhere (choice_key).
_generation = 0


def _validate(name: str | None, origin: str) -> str | None:
    if name is not None and name not in BY_NAME:
        raise ValueError(f"{origin}={name!r}: unknown spawn path; choose one of {', '.join(NAMES)}")
    return name


def forced() -> str | None:
    """The forced path: use_backend() wins over PIDPROC_BACKEND."""
    if _forced is not None:
        return _forced
    return _validate(_env_backend(), "PIDPROC_BACKEND")


def _env_backend() -> str | None:
    """PIDPROC_BACKEND, read at every spawn (tests change it at run time),
    from os.environ's bytes dict where it has one (see ``_stdlib``)."""
    data = _stdlib.environ_bytes()
    if data is None:
        return os.environ.get("PIDPROC_BACKEND") or None
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


_module = globals()
_KNOBS = tuple(p.knob for p in PATHS if p.knob)


def _enabled(path: SpawnPath) -> bool:
    return not path.knob or bool(_module[path.knob])


def mark_unusable(name: str, err: int, why: str) -> None:
    global _generation
    with _lock:
        _state[name] = State.UNUSABLE
        _reason[name] = (err, why)
        _chains.clear()
        _generation += 1


def mark_usable(name: str) -> None:
    global _generation
    if _state[name] is State.UNKNOWN:
        with _lock:
            _state[name] = State.USABLE
            _chains.clear()
            _generation += 1


def choice_key(force: str | None) -> tuple[object, ...]:
    """What the paths a spawn may take depend on besides its request: the
    forced path (``forced()``, read by the caller), the knobs, the paths'
    states (a counter of their changes).  A choice memoised under this key
    is still right while it is the same."""
    return (force, _generation, *map(_module.__getitem__, _KNOBS))


def unusable_because(name: str) -> int | None:
    """The errno value for which a path is unusable here, or None."""
    found = _reason.get(name)
    return None if found is None else found[0]


# ---- probes ---------------------------------------------------------------


def _probe_pidfd_wait() -> State:
    """pidfd_open (5.3) and waitid(P_PIDFD) (5.4), the way Go probes: waiting
    on our own pidfd must say ECHILD (we are not our own child)."""
    try:
        fd = _posix.pidfd_open(os.getpid())
    except OSError as e:
        return State.UNKNOWN if e.errno in TRANSIENT else State.UNUSABLE
    try:
        _posix.waitid(_posix.P_PIDFD, fd, _posix.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return State.USABLE
    except OSError as e:
        return State.UNKNOWN if e.errno in TRANSIENT else State.UNUSABLE
    finally:
        os.close(fd)
    return State.UNUSABLE


_pidfd_wait = State.UNKNOWN


def pidfd_wait_state() -> State:
    global _pidfd_wait
    if _pidfd_wait is State.UNKNOWN:
        _pidfd_wait = _probe_pidfd_wait()
        if _pidfd_wait is State.UNUSABLE:
            why = "the kernel has no pidfd_open/waitid(P_PIDFD) (Linux 5.4+)"
            if not _posix.NATIVE and _native.MISSING is not None:
                why = f"this Python's os has no pidfd_open/waitid, and {_native.MISSING}"
            for path in PATHS:
                if path.name != "pid" and not _unusable_without_core(path):
                    mark_unusable(path.name, errno.ENOSYS, why)
    return _pidfd_wait


def _unusable_without_core(path: SpawnPath) -> bool:
    """A path that calls into the C core is unusable when the core did not
    load, whatever the kernel has: marked so, with the loader's reason."""
    if path.c_function is not None and _native.MISSING is not None:
        mark_unusable(path.name, errno.ENOSYS, _native.MISSING)
        return True
    return False


def _static_check(path: SpawnPath) -> None:
    """Facts known without spawning anything."""
    if _state[path.name] is not State.UNKNOWN:
        return
    if _unusable_without_core(path):
        return
    pidfd_wait_state()
    if _state[path.name] is not State.UNKNOWN or path.static_check is None:
        return
    found = path.static_check()
    if found is not None:
        mark_unusable(path.name, *found)


def _probe_by_spawning(path: SpawnPath) -> None:
    """Spawn a child that exits at once, through the path itself."""
    from .request import SpawnRequest, probe_spec  # the request needs the paths first

    assert path.c_function is not None
    request = SpawnRequest(probe_spec(), probe_only=True)
    rc = path.c_function(request.struct)
    if rc < 0:
        mark_unusable(path.name, -rc, f"{path.name}() answered {errno.errorcode.get(-rc, -rc)}")
        return
    if rc > 0:
        return  # transient: says nothing about the kernel
    r = request.struct
    if r.pidfd >= 0:
        with contextlib.suppress(ChildProcessError):
            _posix.waitid(_posix.P_PIDFD, r.pidfd, _posix.WEXITED)
        os.close(r.pidfd)
        mark_usable(path.name)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(r.pid, 0)
    why = f"{path.name}() ignored CLONE_PIDFD and pidfd_open failed"
    mark_unusable(path.name, errno.ENOSYS, why)


def state(name: str) -> State:
    path = BY_NAME[name]
    _static_check(path)
    if _state[name] is State.UNKNOWN:
        if path.probe_by_spawning:
            _probe_by_spawning(path)
        elif _pidfd_wait is State.USABLE:
            mark_usable(name)  # needs nothing beyond pidfd_open and waitid
    return _state[name]


def backends() -> list[str]:
    """The spawn paths usable here, best first (probing those not yet known)."""
    return [p.name for p in PATHS if _enabled(p) and state(p.name) is not State.UNUSABLE]


def may_take(name: str) -> bool:
    """May a spawn take this path: enabled, not before the forced one, and
    not known to be unusable (probing it if not known yet)?"""
    force = forced()
    if force is not None and NAMES.index(name) < NAMES.index(force):
        return False
    if name != force and not _enabled(BY_NAME[name]):
        return False
    return state(name) is not State.UNUSABLE


def reason(name: str) -> str | None:
    """Why a path is unusable here, or None."""
    state(name)
    found = _reason.get(name)
    return None if found is None else found[1]


# ---- the chain for one request ------------------------------------------------


def chain(needs: frozenset[str]) -> list[SpawnPath]:
    """The paths to try for a request with these needs, in order."""
    return chain_forced(forced(), needs)


def chain_forced(force: str | None, needs: frozenset[str]) -> list[SpawnPath]:
    """As :func:`chain`, with ``forced()`` read already by the caller (a
    spawn with lifecycle options reads it once for its choice and its chain)."""
    key = (force, needs, *map(_module.__getitem__, _KNOBS))
    cached = _chains.get(key)
    if cached is None:
        cached = _chains[key] = _compute_chain(force, needs)
    return cached


def _compute_chain(force: str | None, needs: frozenset[str]) -> list[SpawnPath]:
    paths = list(PATHS)
    if force is not None:
        _static_check(BY_NAME[force])
        if _state[force] is State.UNUSABLE:
            raise forced_unavailable(force)
        paths = paths[NAMES.index(force) :]
    out = []
    for path in paths:
        if path.name != force:
            if not _enabled(path):
                continue
            _static_check(path)
        if needs & path.cannot:
            continue  # the next path can say it
        if _state[path.name] is not State.UNUSABLE:
            out.append(path)
    return out


def forced_unavailable(name: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"spawn path {name!r} was forced but cannot work here: {_reason[name][1]}"
    )
