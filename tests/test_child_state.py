"""The child starts in exactly the state the stdlib would give it, on every path.

Each case runs the same Popen call through ``subprocess`` and through
``pidproc`` (forced onto each path) and compares what the child reports about
itself: cwd, umask, environment, argv, open fds, session and process group,
credentials, and signal mask/ignored/caught sets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import pidproc

from ._support.features import runnable_by_anyone
from ._support.programs import program, source
from .conftest import PY

# Signal state is read by grep itself: a Python child would change it.
SIGNALS = ["grep", "-E", "^Sig(Blk|Ign|Cgt)", "/proc/self/status"]


# The reporter must also run after a drop to nobody: /root/.pyenv is 0700
# (and the tree may be out of its reach: it runs from its text, with -c).
REPORT = source("child_state_report")
REPORTER = next(
    (p for p in (PY, "/usr/bin/python3") if os.path.exists(p) and runnable_by_anyone(p)), None
)


def report(module: Any, **kwargs: Any) -> dict[str, Any]:
    if REPORTER is None:
        pytest.skip("no Python interpreter here is executable by an unprivileged user")
    out = module.check_output([REPORTER, "-c", REPORT, "arg one", "ä"], **kwargs)
    return dict(json.loads(out))


def signals(module: Any, **kwargs: Any) -> str:
    return str(module.check_output(SIGNALS, text=True, **kwargs))


@pytest.fixture
def inheritable_fd() -> Iterator[int]:
    r, w = os.pipe()
    os.set_inheritable(w, True)
    yield w
    os.close(r)
    os.close(w)


CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cwd": {"cwd": "/tmp"},
    "cwd-bytes": {"cwd": b"/usr"},
    "umask": {"umask": 0o027},
    "env": {"env": {"A": "1", "EMPTY": "", "UNI": "é"}},
    "env-bytes": {"env": {b"B": b"2"}},
    "env-empty": {"env": {}},
    "new-session": {"start_new_session": True},
    "stderr-to-stdout": {"stderr": subprocess.STDOUT},
    "stdin-devnull": {"stdin": subprocess.DEVNULL},
    "no-restore-signals": {"restore_signals": False},
}
if sys.version_info >= (3, 11):
    CASES["process-group-0"] = {"process_group": 0}
if os.geteuid() == 0:
    CASES["user-group"] = {"user": 65534, "group": 65534, "extra_groups": [65534, 100]}
    CASES["extra-groups-empty"] = {"extra_groups": []}
    CASES["group-only"] = {"group": 100}


@pytest.mark.parametrize("case", sorted(CASES))
def test_child_state_matches_stdlib(backend: str, case: str) -> None:
    kwargs = CASES[case]
    assert report(pidproc, **kwargs) == report(subprocess, **kwargs)
    assert signals(pidproc, **kwargs) == signals(subprocess, **kwargs)


def test_fds_inherited_exactly(backend: str, inheritable_fd: int) -> None:
    for kwargs in (
        {"close_fds": False},
        {"close_fds": True},
        {"pass_fds": [inheritable_fd]},
        {"pass_fds": [inheritable_fd], "close_fds": False},
    ):
        theirs = report(subprocess, **kwargs)["fds"]
        ours = report(pidproc, **kwargs)["fds"]
        assert ours == theirs, kwargs
        expected = not kwargs.get("close_fds", True) or "pass_fds" in kwargs
        assert (inheritable_fd in ours) == expected


def test_pass_fds_made_inheritable_in_child_only(backend: str) -> None:
    r, w = os.pipe()  # non-inheritable, as os.pipe makes them
    try:
        code = f"import os; os.write({w}, b'through')"
        pidproc.check_call([PY, "-c", code], pass_fds=[w])
        assert os.read(r, 100) == b"through"
        assert not os.get_inheritable(w)
    finally:
        os.close(r)
        os.close(w)


def test_our_pidfds_never_reach_a_child(backend: str) -> None:
    with pidproc.Popen([PY, "-c", "import time; time.sleep(5)"]) as a:
        fds = report(pidproc, close_fds=False)["fds"]
        a_fd = a.pidfd
        a.kill()
    assert a_fd is not None or backend == "pid"
    assert a_fd not in fds
    assert fds == report(subprocess, close_fds=False)["fds"]


def test_signal_state_with_parent_handlers_mask_and_ignores(backend: str) -> None:
    """Handled signals are reset, ignored ones stay ignored, the caller's
    mask is passed on (not the all-blocked mask used around clone)."""
    old_usr1 = signal.signal(signal.SIGUSR1, lambda *a: None)
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        for restore in (True, False):
            theirs = signals(subprocess, restore_signals=restore)
            assert signals(pidproc, restore_signals=restore) == theirs
            lines = dict(line.split(":") for line in theirs.splitlines())
            assert int(lines["SigBlk"], 16) & (1 << (signal.SIGUSR2 - 1))
            assert int(lines["SigIgn"], 16) & (1 << (signal.SIGHUP - 1))
            assert not int(lines["SigCgt"], 16) & (1 << (signal.SIGUSR1 - 1))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGHUP, old_hup)
        signal.signal(signal.SIGUSR1, old_usr1)


def test_stdio_low_fd_shuffle(backend: str) -> None:
    """stdout given as fd 0 and stderr as fd 1 (bpo-12607): no source is
    overwritten by an earlier dup2."""
    env = dict(os.environ, PIDPROC_BACKEND=backend)
    results = [
        subprocess.run(
            [PY, program("child_state_low_fds"), mod], env=env, capture_output=True, text=True
        )
        for mod in ("pidproc", "subprocess")
    ]
    assert results[0].stderr == results[1].stderr == "(b'o', b'e')"
