"""Signal state of the child, compared with the stdlib's on every path.

The parent blocks every signal around the clone; the child must start with
the caller's mask (that of the thread that spawns, not the blocked one),
handled signals reset to SIG_DFL (real-time ones too), ignored ones still
ignored, and ``restore_signals`` resetting SIGPIPE and SIGXFSZ only.  The
child's ``SigBlk``/``SigIgn``/``SigCgt`` lines are read by ``cat`` itself
(a Python child would change them; grep catches SIGSEGV), for both values of
``restore_signals``, in each parent state below.

The stdlib has two children of its own: ``_posixsubprocess`` (always with
``cwd=``) and glibc's posix_spawn (``close_fds=False``, and from 3.13 most
plain calls).  glibc 2.36's posix_spawn child leaves glibc's internal
signals 32 and 33 (SIGCANCEL, SIGSETXID) ignored, an artefact of its
implementation that the same call with ``cwd=`` does not show.  pidproc's
own children match ``_posixsubprocess`` exactly; against posix_spawn (and on
the ``pidfd_spawn`` path, which is glibc's posix_spawn child) they may differ
in those two SigIgn bits and nowhere else.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pidproc

from ._support.programs import program

CAT = shutil.which("cat", path="/usr/bin:/bin") or "/bin/cat"
STATUS = [CAT, "/proc/self/status"]


def _handler(signum: int, frame: Any) -> None:
    pass


@contextlib.contextmanager
def handlers(**wanted: Any) -> Iterator[None]:
    saved = {}
    try:
        for name, action in wanted.items():
            sig = _signum(name)
            saved[sig] = signal.signal(sig, action)
        yield
    finally:
        for sig, action in saved.items():
            signal.signal(sig, action)


@contextlib.contextmanager
def blocked(*names: str) -> Iterator[None]:
    sigs = signal.valid_signals() if names == ("ALL",) else {_signum(n) for n in names}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _signum(name: str) -> int:
    if name.startswith("SIGRTMIN+"):
        return signal.SIGRTMIN + int(name.rsplit("+", 1)[1])
    return int(getattr(signal, name))


STATES: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "python-defaults": contextlib.nullcontext,
    "rt-handlers": lambda: handlers(
        **{"SIGRTMIN+1": _handler, "SIGRTMAX": _handler, "SIGRTMIN+4": signal.SIG_IGN}
    ),
    "sigchld-ignored": lambda: handlers(SIGCHLD=signal.SIG_IGN),
    "sigchld-handled": lambda: handlers(SIGCHLD=_handler),
    "many-handled-and-ignored": lambda: handlers(
        SIGTERM=_handler, SIGUSR1=_handler, SIGHUP=signal.SIG_IGN, SIGALRM=signal.SIG_IGN
    ),
    "sigpipe-sigxfsz-handled": lambda: handlers(SIGPIPE=_handler, SIGXFSZ=_handler),
    "sigpipe-sigxfsz-default": lambda: handlers(SIGPIPE=signal.SIG_DFL, SIGXFSZ=signal.SIG_DFL),
    "sigpipe-sigxfsz-blocked": lambda: blocked("SIGPIPE", "SIGXFSZ"),
    "mask-with-rt": lambda: blocked("SIGUSR2", "SIGRTMIN+2", "SIGRTMAX"),
    "all-blocked": lambda: blocked("ALL"),
}


def state_of(module: Any, restore: bool, **kwargs: Any) -> dict[str, int]:
    out = module.check_output(STATUS, text=True, restore_signals=restore, **kwargs)
    lines = (line.split(":") for line in out.splitlines())
    return {k: int(v, 16) for k, v in lines if k in ("SigBlk", "SigIgn", "SigCgt")}


def bit(sig: int) -> int:
    return 1 << (sig - 1)


GLIBC_INTERNAL = bit(32) | bit(33)


def assert_same_state(ours: dict[str, int], theirs: dict[str, int], posix_spawn: bool) -> None:
    """Equal; against a posix_spawn child, SigIgn may differ in bits 32/33."""
    if posix_spawn and ours["SigIgn"] != theirs["SigIgn"]:
        assert not (ours["SigIgn"] ^ theirs["SigIgn"]) & ~GLIBC_INTERNAL
        theirs = {**theirs, "SigIgn": ours["SigIgn"]}
    assert ours == theirs


def expected_ignored(restore: bool) -> int:
    """What the kernel must show as ignored: the parent's SIG_IGN set, minus
    SIGPIPE/SIGXFSZ when restore_signals is on."""
    ignored = 0
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(sig) is signal.SIG_IGN:
                ignored |= bit(sig)
    if restore:
        ignored &= ~(bit(signal.SIGPIPE) | bit(signal.SIGXFSZ))
    return ignored


def current_mask() -> int:
    return sum(bit(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))


@pytest.mark.parametrize("state", sorted(STATES))
def test_signal_state_matches_stdlib(backend: str, state: str) -> None:
    with STATES[state]():
        mask = current_mask()
        for restore in (True, False):
            # cwd: the stdlib's _posixsubprocess child (never posix_spawn).
            ours = state_of(pidproc, restore, cwd="/")
            glibc_child = backend == "pidfd_spawn"
            assert_same_state(ours, state_of(subprocess, restore, cwd="/"), glibc_child)
            for kwargs in ({}, {"close_fds": False}):
                theirs = state_of(subprocess, restore, **kwargs)
                assert_same_state(state_of(pidproc, restore, **kwargs), theirs, posix_spawn=True)
            assert ours["SigBlk"] == mask
            assert ours["SigIgn"] & ~GLIBC_INTERNAL == expected_ignored(restore)
            assert ours["SigCgt"] == 0
        # The all-blocked mask used around the clone is gone again.
        assert current_mask() == mask


def test_mask_of_the_spawning_thread(backend: str) -> None:
    """A thread with its own mask spawns: the child gets that thread's
    mask, neither the main thread's nor the all-blocked one."""
    results: dict[str, Any] = {}

    def spawn() -> None:
        try:
            with blocked("SIGUSR1", "SIGTERM", "SIGRTMIN+3"):
                results["mask"] = current_mask()
                results["ours"] = state_of(pidproc, True, cwd="/")
                results["theirs"] = state_of(subprocess, True, cwd="/")
                results["after"] = current_mask()
        except BaseException as e:  # noqa: BLE001 - reported below
            results["error"] = e

    with blocked("SIGUSR2"):
        main_mask = current_mask()
        thread = threading.Thread(target=spawn)
        thread.start()
        thread.join()
        assert current_mask() == main_mask
    assert "error" not in results, results["error"]
    assert_same_state(results["ours"], results["theirs"], backend == "pidfd_spawn")
    assert results["ours"]["SigBlk"] == results["mask"] == results["after"]
    assert results["mask"] & bit(signal.SIGRTMIN + 3)
    assert results["ours"]["SigBlk"] != main_mask


# ---- before exec: the moment the child still runs on the parent's memory ---

TRUE = shutil.which("true", path="/usr/bin:/bin") or "/bin/true"
EXECVE = {"x86_64": "59", "aarch64": "221"}
SIG_LINES = ("SigBlk", "SigIgn", "SigCgt")


def test_handlers_reset_and_mask_restored_before_exec() -> None:
    """After exec a caught signal is SIG_DFL whatever the child did, so look
    earlier: strace holds every child at the entry of execve (after all its
    setup) and /proc/<child>/status is read there.  No Python handler may
    still be installed in a child that shares the parent's memory, and the
    mask is already the caller's."""
    import platform
    import sys

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    nr = EXECVE.get(platform.machine())
    if nr is None:
        pytest.skip(f"execve's syscall number on {platform.machine()} is not listed here")
    proc = subprocess.Popen(
        [strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=execve",
         "-e", "inject=execve:delay_enter=200000",
         sys.executable, program("security_signals_pre_exec"), TRUE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    if not first:
        proc.wait()
        pytest.skip(f"strace cannot trace here: {proc.stderr.read() if proc.stderr else ''}")
    pid, parent_blk, parent_cgt, parent_ign = (int(first[0]), *(int(x, 16) for x in first[1:4]))
    # What the child may ignore at exec: what its parent ignores (inherited,
    # as from whoever started this run), but SIGPIPE and SIGXFSZ, which
    # restore_signals gives back their defaults.
    may_ignore = parent_ign & ~(bit(signal.SIGPIPE) | bit(signal.SIGXFSZ)) | GLIBC_INTERNAL
    at_exec: dict[int, dict[str, int]] = {}
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(k) for k in f.read().split()]
            for kid in kids:
                with contextlib.suppress(OSError, IndexError):
                    with open(f"/proc/{kid}/syscall") as f:
                        if f.read().split()[0] != nr:
                            continue  # not yet (or no longer) at execve
                    with open(f"/proc/{kid}/status") as f:
                        lines = [line.split() for line in f if line[:6] in SIG_LINES]
                    at_exec[kid] = {k.rstrip(":"): int(v, 16) for k, v in lines}
        time.sleep(0.003)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    spawned = dict(line.split() for line in out.splitlines())
    assert sorted(spawned) == sorted(["stdlib", *pidproc.backends()])
    assert parent_cgt & bit(signal.SIGUSR1) and parent_cgt & bit(signal.SIGRTMIN + 1)
    for name, kid in spawned.items():
        state = at_exec.get(int(kid))
        assert state is not None, f"{name}: child never seen at execve"
        # PyPy's own fork_exec forks (no memory shared with the parent),
        # so its child (the stdlib's, and the fork and pid paths', which
        # spawn through it) may keep handlers until the exec resets them.
        if name not in ("stdlib", "fork", "pid") or sys.implementation.name == "cpython":
            assert state["SigCgt"] == 0, name
        assert state["SigBlk"] == parent_blk, name
        assert not state["SigIgn"] & ~may_ignore, name
