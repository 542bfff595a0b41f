"""pidproc._posix: the pidfd calls and wait constants os and signal lack on
PyPy, made through the C core.

On CPython the module hands out os's own functions; its fallbacks are
tested here directly against os's answers, and a program run with those
calls stripped from os and signal shows that every part of pidproc goes
through the module (PyPy itself runs the whole suite in the Debian sid
root, ``nox -s distros``)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

import pidproc
from pidproc import _posix

from ._support.core import needs_core
from ._support.programs import program

pytestmark = needs_core


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["sleep", "30"])
    yield p
    p.kill()
    p.wait()


@pytest.mark.skipif(not _posix.NATIVE, reason="os has no waitid to compare with (PyPy)")
def test_the_constants_are_the_kernels_as_os_has_them() -> None:
    names = ("P_PID", "P_PIDFD", "WEXITED", "WNOWAIT", "CLD_EXITED", "CLD_KILLED", "CLD_DUMPED")
    assert {n: getattr(_posix, n) for n in names} == {n: getattr(os, n) for n in names}


def test_the_fallbacks_open_wait_and_signal_like_os(sleeper: subprocess.Popen[bytes]) -> None:
    fd = _posix._pidfd_open(sleeper.pid)
    try:
        nothing = _posix._waitid(_posix.P_PIDFD, fd, _posix.WEXITED | os.WNOHANG)
        assert nothing is None  # still running
        _posix._pidfd_send_signal(fd, signal.SIGTERM)
        seen = _posix._waitid(_posix.P_PIDFD, fd, _posix.WEXITED | _posix.WNOWAIT)
        assert seen is not None
        assert seen.si_pid == sleeper.pid
        assert seen.si_uid == os.getuid()
        assert seen.si_signo == signal.SIGCHLD
        assert (seen.si_code, seen.si_status) == (_posix.CLD_KILLED, signal.SIGTERM)
        assert tuple(seen) == (
            sleeper.pid,
            os.getuid(),
            signal.SIGCHLD,
            signal.SIGTERM,
            _posix.CLD_KILLED,
        )
        assert repr(seen).startswith(f"waitid_result(si_pid={sleeper.pid}, ")
        if _posix.NATIVE:  # the same answer as os's, field by field
            theirs = os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOWAIT)
            assert tuple(seen) == tuple(theirs)
        assert sleeper.wait() == -signal.SIGTERM  # WNOWAIT left it to be reaped
    finally:
        os.close(fd)


def test_the_fallbacks_raise_what_os_raises(sleeper: subprocess.Popen[bytes]) -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        no_such_pid = int(f.read()) + 1
    with pytest.raises(ProcessLookupError):
        _posix._pidfd_open(no_such_pid)
    with pytest.raises(OSError) as bad:
        _posix._pidfd_open(-1)
    assert bad.value.errno == errno.EINVAL
    fd = _posix._pidfd_open(sleeper.pid)
    try:
        with pytest.raises(TypeError):
            _posix._pidfd_send_signal(fd, signal.SIGTERM, siginfo=object())  # type: ignore[arg-type]
        with pytest.raises(OSError) as bad:
            _posix._waitid(_posix.P_PID, sleeper.pid, _posix.WEXITED)
        assert bad.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    r, w = os.pipe()
    os.close(w)
    try:
        with pytest.raises(OSError) as bad:
            _posix._pidfd_send_signal(r, 0)  # not a pidfd
        assert bad.value.errno == errno.EBADF
        with pytest.raises(OSError) as bad:
            _posix._waitid(_posix.P_PIDFD, r, _posix.WEXITED)
        assert bad.value.errno in (errno.EBADF, errno.EINVAL)
    finally:
        os.close(r)
    with pidproc.PidFd.open(os.getpid()) as self_fd:  # not our child
        with pytest.raises(ChildProcessError):
            _posix._waitid(_posix.P_PIDFD, self_fd.fileno(), _posix.WEXITED | os.WNOHANG)


def test_every_part_of_pidproc_goes_through_it_when_os_lacks_the_calls() -> None:
    r = subprocess.run(
        [sys.executable, program("posix_without_os_pidfd_calls")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["native"] is False
    assert seen["backends"] == pidproc.backends()  # every path still usable
    assert seen["spawn"] == [pidproc.backends()[0], True, 5]
    assert seen["terminated"] == -signal.SIGTERM
    assert seen["communicate"] == 100_000
    assert seen["fork"] == ["fork", True, -signal.SIGKILL]
    assert seen["pidfd_open_self"] is True
