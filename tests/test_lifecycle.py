"""The pidfd lifecycle: handle, waiting, signalling, foreign reapers, cleanup."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time

import pytest

import pidproc

from ._support.features import IN_PRIVATE_PID_NS, PRIVATE_PID_NS, keeps_exit_status, private_pid_ns
from ._support.leaks import collect, open_fds
from ._support.programs import program
from .conftest import PY

SLEEP = [PY, "-c", "import time; time.sleep(30)"]


HAS_EXIT_INFO = keeps_exit_status()
needs_exit_info = pytest.mark.skipif(
    not HAS_EXIT_INFO, reason="kernel has no PIDFD_INFO_EXIT (Linux 6.15+)"
)


def pidful(backend: str) -> bool:
    return backend != "pid"


def test_pidfd_is_valid_at_once_and_close_on_exec(backend: str) -> None:
    with pidproc.Popen(SLEEP) as p:
        assert p.backend == backend
        if not pidful(backend):
            assert p.pidfd is None
            p.kill()
            return
        assert p.pidfd is not None
        assert not os.get_inheritable(p.pidfd)
        with open(f"/proc/self/fdinfo/{p.pidfd}") as f:
            assert f"Pid:\t{p.pid}\n" in f.read()
        p.kill()


def test_pidfd_in_a_selector(pidfd_backend: str) -> None:
    p = pidproc.Popen([PY, "-c", "import time; time.sleep(0.2)"])
    assert p.pidfd is not None
    with selectors.DefaultSelector() as sel:
        sel.register(p.pidfd, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []
        assert p.poll() is None
        ready = sel.select(timeout=10)
        assert [key.fd for key, _ in ready] == [p.pidfd]
    assert p.poll() == 0


def test_wait_poll_and_timeout(backend: str) -> None:
    p = pidproc.Popen([PY, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"])
    assert p.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.01)
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0)
    assert p.wait(timeout=10) == 3
    assert p.poll() == 3 and p.wait() == 3 and p.wait(timeout=0) == 3


@pytest.mark.parametrize(
    ("method", "code"),
    [("terminate", -signal.SIGTERM), ("kill", -signal.SIGKILL), ("send_signal", -signal.SIGUSR1)],
)
def test_signals(backend: str, method: str, code: int) -> None:
    p = pidproc.Popen(SLEEP)
    if method == "send_signal":
        p.send_signal(signal.SIGUSR1)
    else:
        getattr(p, method)()
    assert p.wait(timeout=10) == code


def test_signal_after_exit_is_a_no_op(backend: str) -> None:
    p = pidproc.Popen(["true"])
    p.wait()
    p.kill()
    p.terminate()
    p.send_signal(signal.SIGTERM)
    assert p.returncode == 0


def test_many_threads_wait_on_one_popen(backend: str) -> None:
    p = pidproc.Popen([PY, "-c", "import time; time.sleep(0.3); raise SystemExit(9)"])
    results: list[object] = []

    def waiter(timeout: float | None) -> None:
        results.append(p.wait(timeout=timeout))

    def poller() -> None:
        while p.poll() is None:
            time.sleep(0.001)
        results.append(p.returncode)

    threads = [threading.Thread(target=waiter, args=(t,)) for t in (None, None, 10, 10, 5)]
    threads += [threading.Thread(target=poller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
        assert not t.is_alive()
    assert results == [9] * len(threads)


def test_reaped_behind_our_back_reports_real_status(backend: str) -> None:
    p = pidproc.Popen(["sh", "-c", "exit 7"])
    _, status = os.waitpid(p.pid, 0)  # a foreign reaper
    assert os.waitstatus_to_exitcode(status) == 7
    expected = 7 if (HAS_EXIT_INFO and pidful(backend)) else 0  # the stdlib says 0
    assert p.wait() == expected
    p.kill()  # must not signal whatever now holds the PID


@needs_exit_info
def test_foreign_reaper_thread_and_sigchld_ignored(pidfd_backend: str) -> None:
    """SIGCHLD ignored (the kernel reaps at once) and os.wait() in another
    thread: the real status either way, and no hang."""
    env = dict(os.environ, PIDPROC_BACKEND=pidfd_backend)
    cmd = [PY, program("lifecycle_foreign_reapers")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["4", "6"], out.stderr


def test_pidfd_closed_at_with_exit(backend: str) -> None:
    with pidproc.Popen(["true"]) as p:
        fd = p.pidfd
    assert p.pidfd is None
    if fd is not None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            return  # closed, and the number not reused
        assert not target.startswith(("anon_inode:[pidfd]", "pidfd:"))


def test_pidfd_closed_when_collected(backend: str) -> None:
    before = open_fds()
    p = pidproc.Popen(["true"])
    assert (p.pidfd is not None) == pidful(backend)  # read: kept after the reap
    p.wait()
    assert (p.pidfd is not None) == pidful(backend)
    del p
    collect()
    assert open_fds() <= before


def test_dropped_running_child_is_reaped_later_and_its_pidfd_closed(backend: str) -> None:
    before = open_fds()
    p = pidproc.Popen([PY, "-c", "import time; time.sleep(0.2)"])
    pid = p.pid
    with pytest.warns(ResourceWarning):
        del p
        collect()
    assert any(q.pid == pid for q in subprocess._active)  # type: ignore[attr-defined]
    # Until it has exited (a zombie): a fixed sleep is too short where an
    # interpreter takes long to start (an emulated CPU, a loaded machine).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    pidproc.Popen(["true"]).wait()  # the stdlib reaps its _active list on each new Popen
    collect()
    assert not any(q.pid == pid for q in subprocess._active)  # type: ignore[attr-defined]
    assert open_fds() <= before


def test_ten_thousand_spawns_leave_fd_count_flat() -> None:
    collect()
    before = len(open_fds())
    for _ in range(10_000):
        pidproc.Popen(["true"]).wait()
    collect()
    assert len(open_fds()) <= before


@pytest.mark.skipif(not private_pid_ns(), reason=PRIVATE_PID_NS)
@pytest.mark.parametrize("backend_name", [b for b in pidproc.backends() if b != "pid"])
def test_recycled_pid_is_never_signalled_nor_reaped(backend_name: str) -> None:
    """The PID-reuse race: with the stdlib, B dies; with pidproc, B survives
    A's kill(), poll() and wait()."""

    def run(mod: str) -> str:
        env = dict(os.environ, PIDPROC_BACKEND=backend_name)
        cmd = [*IN_PRIVATE_PID_NS, PY, program("lifecycle_reuse"), mod]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert run("subprocess") == "killed"  # the race is real here
    assert run("pidproc") == "survived"
