"""Differences CPython's own test_subprocess found, each run through both.

Every case makes the same call through ``subprocess`` and through ``pidproc``
(on each spawn path) and compares what comes out: the exception's type,
errno, filename and message, or the exit status.  Also here: the pidproc
side of the test_subprocess tests listed in conformance/expected_failures.ini
that had no test of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import pidproc

from ._support.outcome import outcome
from .conftest import PY

PYPY = sys.implementation.name == "pypy"


def both(module_call: Callable[[Any], Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(ours, theirs): the call through pidproc, then through the stdlib."""
    theirs = outcome(lambda: module_call(subprocess))
    return outcome(lambda: module_call(pidproc)), theirs


# ---- uid_t/gid_t conversion (test_extra_groups, test_extra_groups_invalid_gid_t_values) --

# Around the 32-bit uid_t/gid_t and the 64-bit C long: the stdlib's
# _Py_Uid_Converter/_Py_Gid_Converter answer "less than minimum" below 2**63
# and "greater than maximum" above; 2**32 - 1 is (uid_t)-1, "leave as is".
ID_VALUES = [
    0,
    2**31,
    2**32 - 2,
    2**32 - 1,
    2**32,
    2**40,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**100,
]


GROUP_TOO_BIG = "group id is greater than maximum"
INT_TOO_BIG = "Python int too large to convert to C int"


def assert_refused_off_the_stdlib(
    backend: str, ours: Any, theirs: Any, error: type[Exception], message: str
) -> None:
    """A value the stdlib runs the child wrong with (it truncates it):
    pidproc's own paths refuse it with this error; where the stdlib spawns
    (the fork and pid paths) the outcome is the stdlib's, parsing and all."""
    if backend in ("fork", "pid"):
        assert ours == theirs
    else:
        assert ours[0] is error
        assert ours[3] == message


@pytest.mark.parametrize("value", ID_VALUES, ids=hex)
@pytest.mark.parametrize("kind", ["user", "group", "extra_groups"])
def test_credentials_converted_as_the_stdlib(backend: str, kind: str, value: int) -> None:
    arg: Any = [value] if kind == "extra_groups" else value
    ours, theirs = both(lambda m: m.call(["true"], **{kind: arg}))
    if PYPY and kind == "extra_groups" and 2**32 <= value < 2**63:
        # PyPy's fork_exec casts an extra group that fits a C long to gid_t:
        # the child gets its low 32 bits (2**32: group 0, root's).  pidproc
        # refuses it, as PyPy refuses a group beyond a C long.
        cast = outcome(lambda: subprocess.call(["true"], extra_groups=[value % 2**32]))
        assert theirs == cast
        assert_refused_off_the_stdlib(backend, ours, theirs, ValueError, GROUP_TOO_BIG)
        return
    assert ours == theirs
    if value == 2**32:
        # Once truncated to 0 by the C struct: the child ran as root.
        assert theirs[0] is (ValueError if kind == "extra_groups" else OverflowError)


@pytest.mark.parametrize("fd", [2**30 + 1, 2**31 - 1, 2**31, 2**63, -(2**63) - 1], ids=hex)
def test_huge_pass_fd_as_the_stdlib(backend: str, fd: int) -> None:
    # CPython's fork_exec takes fds up to INT_MAX, PyPy's up to 2**30 (and
    # raises OverflowError beyond a C long, where CPython says "bad value").
    ours, theirs = both(lambda m: m.call(["true"], pass_fds=[fd]))
    assert ours == theirs
    if PYPY:
        assert theirs[0] is (ValueError if -(2**63) <= fd < 2**63 else OverflowError)
    else:  # up to INT_MAX passes the check and is no open fd
        assert theirs[0] is (OSError if 0 <= fd < 2**31 else ValueError)


def test_too_many_groups(backend: str) -> None:
    ours, theirs = both(lambda m: m.call(["true"], extra_groups=[0] * 65537))
    assert ours == theirs
    assert theirs[0] is ValueError


@pytest.mark.parametrize("value", [2**31, 2**40, 2**63, 2**70, -(2**70)], ids=hex)
def test_huge_umask_rejected_as_the_stdlib(backend: str, value: int) -> None:
    ours, theirs = both(lambda m: m.call(["true"], umask=value))
    assert ours == theirs
    if PYPY and -(2**63) <= value < 2**63:
        # PyPy's fork_exec reads a C long and casts it to int: no error.
        assert theirs == ("ok", 0)
    else:
        assert theirs[0] is OverflowError


# PyPy's fork_exec casts umask and process_group from a C long to int: the
# child gets the low 32 bits, signed.  The same child here.
CAST = [2**32 + 0o27, 2**31 + 0o27, 2**40 + 0o77, -(2**32) + 0o7, 2**63 - 1, -(2**63)]


@pytest.mark.skipif(not PYPY, reason="CPython refuses these (above)")
@pytest.mark.parametrize("value", CAST, ids=hex)
def test_umask_cast_as_pypy(backend: str, value: int) -> None:
    def run(m: Any) -> Any:
        return m.run(["sh", "-c", "umask"], umask=value, stdout=m.PIPE).stdout

    old = os.umask(0o22)  # what a child that leaves it alone reports
    try:
        ours, theirs = both(run)
    finally:
        os.umask(old)
    cast = value % 2**32
    expected = 0o22 if cast >= 2**31 else cast & 0o777  # negative as int: no umask call
    assert theirs == ("ok", f"{expected:04o}\n".encode())
    assert ours == theirs


@pytest.mark.skipif(sys.version_info < (3, 11), reason="process_group is new in 3.11")
@pytest.mark.parametrize("value", [2**31, 2**70], ids=hex)
def test_huge_process_group_rejected_as_the_stdlib(backend: str, value: int) -> None:
    ours, theirs = both(lambda m: m.call(["true"], process_group=value))
    if PYPY and value < 2**63:
        # PyPy's fork_exec casts it to int: 2**31 is -1 there, no group change.
        assert theirs == ("ok", 0)
        assert ours == theirs
        return
    if sys.version_info[:2] == (3, 12) and value < 2**63:
        # 3.12's fork_exec truncates a C long to pid_t: 2**31 runs with no
        # group change at all, 2**32 in a new group (fixed in 3.13).  pidproc
        # refuses such values as 3.13 does, rather than run the child wrong.
        assert theirs == ("ok", 0)
        assert_refused_off_the_stdlib(backend, ours, theirs, OverflowError, INT_TOO_BIG)
        return
    assert ours == theirs
    assert theirs[0] is OverflowError


@pytest.mark.skipif(not PYPY, reason="CPython refuses these (above)")
@pytest.mark.parametrize("high", [2**32, -(2**32), 2**40], ids=hex)
def test_stdout_fd_cast_as_pypy(backend: str, high: int) -> None:
    """stdout=<an int>: PyPy's child gets its low 32 bits, so the pipe's fd."""
    r, w = os.pipe()
    try:

        def run(m: Any) -> tuple[Any, bytes]:
            code = m.call(["sh", "-c", "echo hi"], stdout=high + w)
            return code, os.read(r, 100)

        ours, theirs = both(run)
    finally:
        os.close(r)
        os.close(w)
    assert theirs == ("ok", (0, b"hi\n"))
    assert ours == theirs


PGID_CAST = {
    2**32: "own",  # 0: a group of its own
    -(2**63): "own",
    2**31: "caller's",  # negative: no setpgid
    2**63 - 1: "caller's",
    2**32 + 2**31 - 1: "refused",  # 2**31 - 1: no such group to join
}


@pytest.mark.skipif(not PYPY, reason="CPython refuses these (above)")
@pytest.mark.parametrize("value", sorted(PGID_CAST), ids=hex)
def test_process_group_cast_as_pypy(backend: str, value: int) -> None:
    def run(m: Any) -> str:
        code = "import os; print(os.getpgrp())"
        with m.Popen([PY, "-c", code], process_group=value, stdout=m.PIPE) as p:
            pgid = int(p.stdout.read())
        return "own" if pgid == p.pid else "caller's" if pgid == os.getpgrp() else str(pgid)

    ours, theirs = both(run)
    assert ours == theirs
    if PGID_CAST[value] == "refused":
        assert theirs[0] is PermissionError
    else:
        assert theirs == ("ok", PGID_CAST[value])


# ---- stopped children (test_stopped) ---------------------------------------


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


STOP_THEN_EXIT_5 = "import os, signal, sys; os.kill(os.getpid(), signal.SIGSTOP); sys.exit(5)"


@pytest.mark.parametrize("module", ["subprocess", "pidproc"])
def test_stopped_child_is_not_an_exit(backend: str, module: str) -> None:
    """test_stopped feeds the stdlib a faked WIFSTOPPED status through a
    mocked os.waitpid.  pidproc waits with waitid(WEXITED) on the pidfd, so
    the kernel never reports a stop: a really stopped child is still running
    for poll() and wait(timeout), and its real exit status comes once it is
    continued, exactly as with the stdlib."""
    mod: Any = subprocess if module == "subprocess" else pidproc
    with mod.Popen([PY, "-c", STOP_THEN_EXIT_5]) as p:
        deadline = time.monotonic() + 30
        while _state(p.pid) != "T":
            assert time.monotonic() < deadline, "the child never stopped"
            time.sleep(0.01)
        assert p.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=0.2)
        assert p.returncode is None
        os.kill(p.pid, signal.SIGCONT)
        assert p.wait(timeout=30) == 5
