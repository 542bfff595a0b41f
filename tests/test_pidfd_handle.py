"""pidproc.PidFd: a handle on any process, every operation on real processes."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pidproc
from pidproc import _pidfd, _posix
from pidproc._native import lib
from pidproc._pidfd_info import PIDFD_GET_INFO, PIDFD_INFO_EXIT

from ._support import core, seccomp
from ._support.features import (
    IN_PRIVATE_PID_NS,
    has_pidfd_get_info,
    private_pid_ns,
    unshare_works,
)
from ._support.leaks import collect
from ._support.programs import program
from .conftest import PY

SLEEP = [PY, "-c", "import time; time.sleep(30)"]
PLAIN_SLEEP = ["sleep", "30"]  # for nobody, who cannot run a Python under /root
NOBODY = 65534


class Grandchild:
    """A process that is not our child: its parent reaps it when told."""

    def __init__(self, mode: str) -> None:
        self.middle = pidproc.Popen(
            [PY, program("reaps_when_told"), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.middle.stdout is not None and self.middle.stdin is not None
        self.pid = int(self.middle.stdout.readline())

    def state(self) -> str:
        with open(f"/proc/{self.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def reap(self) -> int:
        """Let the parent reap it; the wait status the parent saw."""
        assert self.middle.stdin is not None and self.middle.stdout is not None
        self.middle.stdin.write("\n")
        self.middle.stdin.flush()
        return int(self.middle.stdout.readline())

    def close(self) -> None:
        self.middle.kill()
        self.middle.communicate()


@pytest.fixture
def grandchild() -> Iterator[Callable[[str], Grandchild]]:
    made: list[Grandchild] = []

    def make(mode: str) -> Grandchild:
        made.append(Grandchild(mode))
        return made[-1]

    yield make
    for g in made:
        g.close()


def wait_state(pid: int, state: str) -> None:
    """Until /proc says the process is in ``state`` (a zombie: Z)."""
    for _ in range(2000):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == state:
                return
        time.sleep(0.001)
    raise AssertionError(f"pid {pid} never reached state {state}")


def exit_info_kept() -> bool:
    return _pidfd._EXIT_INFO_KEPT


needs_exit_info = pytest.mark.skipif(
    not exit_info_kept(), reason="kernel keeps no exit status (PIDFD_INFO_EXIT, Linux 6.15+)"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def kept(returncode: int) -> int:
    """What a Popen reads for its child that a PidFd reaped: the real status
    where the kernel keeps it (PIDFD_INFO_EXIT, 6.15+), else 0, as the
    stdlib reports a child reaped behind its back."""
    return returncode if exit_info_kept() else 0


def as_nobody(op: Callable[[], object]) -> tuple[int, str]:
    """Run ``op`` in a forked child that dropped to nobody: (errno, message)
    of the OSError it raised, (0, repr(result)) if it did not."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                out: list[Any] = [0, repr(op())]
            except OSError as e:
                out = [e.errno, str(e)]
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        got = json.loads(f.read() or '[-1, "child died"]')
    os.waitpid(pid, 0)
    return got[0], got[1]


# ---- opening, closing, leaks ----------------------------------------------------


def test_open_close_and_context_manager() -> None:
    with pidproc.Popen(SLEEP) as p:
        pf = pidproc.PidFd.open(p.pid)
        fd = pf.fileno()
        assert not os.get_inheritable(fd)
        assert not pf.closed and pf.pid == p.pid
        pf.close()
        pf.close()  # idempotent
        assert pf.closed
        with pytest.raises(OSError) as e:
            os.fstat(fd)
        assert e.value.errno == errno.EBADF
        with pytest.raises(ValueError, match="closed"):
            pf.fileno()
        with pytest.raises(ValueError):
            pf.send_signal(0)
        with pidproc.PidFd.open(p.pid) as pf2:
            fd2 = pf2.fileno()
            os.fstat(fd2)
        assert pf2.closed
        p.kill()


def test_dropped_pidfd_is_closed() -> None:
    with pidproc.Popen(SLEEP) as p:
        pf = pidproc.PidFd.open(p.pid)
        fd = pf.fileno()
        del pf
        collect()
        with pytest.raises(OSError) as e:
            os.fstat(fd)
        assert e.value.errno == errno.EBADF
        p.kill()


def test_open_nonblock() -> None:
    import fcntl

    p = pidproc.Popen(
        [PY, "-c", "import sys; sys.stdin.read(); sys.exit(4)"], stdin=subprocess.PIPE
    )
    with pidproc.PidFd.open(p.pid, nonblock=True) as pf:
        assert fcntl.fcntl(pf.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        assert pf.poll() is None  # waitid answers EAGAIN on a running child
        with pytest.raises(subprocess.TimeoutExpired):
            pf.wait(timeout=0.05)
        assert p.stdin is not None
        p.stdin.close()
        assert pf.wait(timeout=10) == 4
    assert p.wait() == kept(4)  # reaped through the PidFd; the Popen reads the kept status


def test_open_errors() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())  # PIDs are below pid_max: this one never exists
    with pytest.raises(ProcessLookupError, match=f"no process with pid {pid_max}"):
        pidproc.PidFd.open(pid_max)
    with pytest.raises(ValueError):
        pidproc.PidFd.open(0)
    with pytest.raises(ValueError):
        pidproc.PidFd(-1)

    import threading

    ready, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def thread() -> None:
        tid.append(threading.get_native_id())
        ready.set()
        done.wait()

    t = threading.Thread(target=thread)
    t.start()
    ready.wait()
    try:
        with pytest.raises(OSError, match="thread") as e:
            pidproc.PidFd.open(tid[0])
        assert e.value.errno in (errno.ENOENT, errno.EINVAL)
    finally:
        done.set()
        t.join()


def test_from_popen_gets_its_own_fd(pidfd_backend: str) -> None:
    with pidproc.Popen(SLEEP) as p:
        assert p.pidfd is not None
        pf = pidproc.PidFd.from_popen(p)
        assert pf.fileno() != p.pidfd
        # Equal to another PidFd of the process with pidfs (6.9+); before
        # it, a PidFd is equal only to itself.
        assert (pf == pidproc.PidFd.open(p.pid)) is _pidfd._pidfs()
        pf.close()
        os.fstat(p.pidfd)  # the Popen's own pidfd is untouched
        pf = pidproc.PidFd.from_popen(p)
        p.kill()
    assert p.pidfd is None  # the with block closed the Popen's pidfd
    # Ours still works: the Popen reaped the child, the kernel kept its
    # status (6.15+); before, the exit is seen and no status is left (None).
    assert pf.wait(timeout=0) == (-signal.SIGKILL if exit_info_kept() else None)
    with pytest.raises(ProcessLookupError):
        pf.pid  # noqa: B018
    pf.close()


def test_from_popen_after_reap_refuses() -> None:
    p = pidproc.Popen(["true"])
    p.wait()
    with pytest.raises(ProcessLookupError, match="reaped"):
        pidproc.PidFd.from_popen(p)


def test_from_stdlib_popen() -> None:
    p = subprocess.Popen(SLEEP)
    try:
        with pidproc.PidFd.from_popen(p) as pf:
            assert pf.pid == p.pid
            pf.terminate()
            assert p.wait() == -signal.SIGTERM
    finally:
        p.kill()
        p.wait()


def test_from_stdlib_popen_reaped_behind_its_back() -> None:
    p = subprocess.Popen(["true"])
    os.waitpid(p.pid, 0)  # the Popen does not know
    with pytest.raises(ProcessLookupError):
        pidproc.PidFd.from_popen(p)
    p.returncode = 0  # keep the stdlib from warning about it


# ---- .pid, each strategy ------------------------------------------------------

STRATEGIES = ["PIDFD_GET_INFO", "pidfd_getpid", "fdinfo"]


@pytest.fixture(params=STRATEGIES)
def pid_strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = str(request.param)
    if name == "PIDFD_GET_INFO" and not has_pidfd_get_info():
        pytest.skip("kernel has no PIDFD_GET_INFO (Linux 6.13+)")
    if name == "pidfd_getpid":
        if core.MISSING is not None:
            pytest.skip(core.REASON)
        monkeypatch.setattr(_pidfd, "_USE_GET_INFO", False)
        fd = _posix.pidfd_open(os.getpid())
        try:
            if lib.pidproc_pidfd_getpid(fd) == -errno.ENOSYS:
                pytest.skip("glibc has no pidfd_getpid (2.39+)")
        finally:
            os.close(fd)
    if name == "fdinfo":
        monkeypatch.setattr(_pidfd, "_USE_GET_INFO", False)
        monkeypatch.setattr(_pidfd, "_USE_PIDFD_GETPID", False)
    return name


def test_pid_alive_zombie_reaped(pid_strategy: str) -> None:
    p = subprocess.Popen(["sh", "-c", "read x"], stdin=subprocess.PIPE)
    pf = pidproc.PidFd.from_popen(p)
    assert pf.pid == p.pid
    assert p.stdin is not None
    p.stdin.close()
    wait_state(p.pid, "Z")
    assert pf.pid == p.pid  # a zombie still has its PID
    p.wait()
    with pytest.raises(ProcessLookupError, match="reaped"):
        pf.pid  # noqa: B018
    pf.close()


@pytest.mark.skipif(
    not private_pid_ns(),
    reason="unshare --pid --mount-proc does not work here (needs root, util-linux, a real /)",
)
def test_pid_in_another_namespace(pid_strategy: str) -> None:
    # A process in a new PID namespace cannot see us: our pidfd, passed to
    # it, has no PID there.  (--mount-proc: fdinfo shows PIDs as seen by the
    # namespace of the /proc mount, not of the reader.)
    with pidproc.PidFd.open(os.getpid()) as me:
        fd = me.fileno()
        out = subprocess.run(
            [*IN_PRIVATE_PID_NS, PY, program("pidfd_handle_ns_pid"), str(fd), pid_strategy],
            pass_fds=[fd],
            capture_output=True,
            text=True,
        )
    assert out.returncode == 0, out.stderr
    err, message = json.loads(out.stdout)
    assert err == errno.EREMOTE, message
    assert "PID namespace" in message


OWN_PID = textwrap.dedent(
    """
    import os
    import pidproc
    with pidproc.PidFd.open(os.getpid()) as me:
        print(os.getpid(), me.pid)
    """
)


@pytest.mark.skipif(not unshare_works("--pid", "--fork"), reason="unshare --pid does not work here")
def test_pid_in_a_new_namespace_without_its_own_proc() -> None:
    # /proc still shows the outer namespace's PIDs (fdinfo, and glibc's
    # pidfd_getpid which parses it, would say the outer PID); the ioctl
    # answers in the caller's namespace.
    if not has_pidfd_get_info():
        pytest.skip("kernel has no PIDFD_GET_INFO (Linux 6.13+): only fdinfo, which cannot")
    out = subprocess.run(
        ["unshare", "--pid", "--fork", PY, "-c", OWN_PID], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


# ---- signals and waiting -------------------------------------------------------


def test_send_signal_then_wait(pidfd_backend: str) -> None:
    p = pidproc.Popen(SLEEP)
    pf = pidproc.PidFd.from_popen(p)
    pf.send_signal(signal.SIGTERM)
    assert pf.wait() == -signal.SIGTERM
    assert pf.returncode == -signal.SIGTERM
    assert pf.wait(timeout=0) == -signal.SIGTERM  # known: no syscall needed
    # The PidFd reaped it: nothing left for waitpid.
    with pytest.raises(ChildProcessError):
        os.waitpid(p.pid, os.WNOHANG)
    with pytest.raises(ProcessLookupError, match="reaped"):
        pf.send_signal(signal.SIGTERM)
    assert p.wait() == kept(-signal.SIGTERM)  # the Popen reads the kept status
    pf.close()


def test_wait_timeout_raises_timeout_expired() -> None:
    with pidproc.Popen(SLEEP) as p, pidproc.PidFd.from_popen(p) as pf:
        with pytest.raises(subprocess.TimeoutExpired):
            pf.wait(timeout=0.05)
        assert pf.poll() is None and pf.returncode is None
        pf.kill()
        assert pf.wait(timeout=10) == -signal.SIGKILL


@needs_exit_info
def test_wait_for_a_grandchild_reads_its_exit_status(
    grandchild: Callable[[str], Grandchild],
) -> None:
    g = grandchild("7")
    with pidproc.PidFd.open(g.pid) as pf:
        wait_state(g.pid, "Z")
        # Exited, but its parent has not reaped it: the status is not
        # recorded yet, so wait() keeps waiting (for the reap).
        with pytest.raises(subprocess.TimeoutExpired):
            pf.wait(timeout=0.1)
        assert pf.poll() is None
        assert g.reap() == 7 << 8
        assert pf.wait(timeout=10) == 7
        info = pf.info()
        assert info.mask & PIDFD_INFO_EXIT and info.returncode == 7


@needs_exit_info
def test_wait_for_a_grandchild_killed_by_a_signal(
    grandchild: Callable[[str], Grandchild],
) -> None:
    g = grandchild("sleep")
    with pidproc.PidFd.open(g.pid) as pf:
        pf.kill()
        wait_state(g.pid, "Z")
        assert g.reap() == signal.SIGKILL
        assert pf.wait(timeout=10) == -signal.SIGKILL


def test_wait_for_a_grandchild_without_exit_info(
    grandchild: Callable[[str], Grandchild], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a kernel before 6.15 gives: the exit is seen, the status is not.
    monkeypatch.setattr(_pidfd, "_EXIT_INFO_KEPT", False)
    g = grandchild("3")
    with pidproc.PidFd.open(g.pid) as pf:
        assert pf.wait(timeout=10) is None
        assert g.state() == "Z"  # returned at the exit, not at the reap
        g.reap()


def test_wait_from_two_threads() -> None:
    import threading

    p = pidproc.Popen(
        [PY, "-c", "import sys; sys.stdin.read(); sys.exit(6)"], stdin=subprocess.PIPE
    )
    pf = pidproc.PidFd.from_popen(p)
    got: list[int | None] = []
    threads = [threading.Thread(target=lambda: got.append(pf.wait())) for _ in range(4)]
    for t in threads:
        t.start()
    assert p.stdin is not None
    p.stdin.close()
    for t in threads:
        t.join(10)
    assert got == [6, 6, 6, 6]
    assert p.wait() == kept(6)
    pf.close()


# ---- info --------------------------------------------------------------------


def cgroup2_root() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return Path(left.split()[4])
    return None


def needs_get_info() -> None:
    if not has_pidfd_get_info():
        pytest.skip("kernel has no PIDFD_GET_INFO (Linux 6.13+)")


@needs_root
def test_info_of_a_child_with_other_credentials() -> None:
    needs_get_info()
    p = pidproc.Popen(PLAIN_SLEEP, user=NOBODY, group=NOBODY, extra_groups=[])
    try:
        with pidproc.PidFd.from_popen(p) as pf:
            info = pf.info()
            assert (info.pid, info.tgid, info.ppid) == (p.pid, p.pid, os.getpid())
            assert (info.ruid, info.euid, info.suid, info.fsuid) == (NOBODY,) * 4
            assert (info.rgid, info.egid, info.sgid, info.fsgid) == (NOBODY,) * 4
            assert info.exit_status is None and info.returncode is None
            p.terminate()
            p.wait()
            if exit_info_kept():
                after = pf.info()
                assert after.returncode == -signal.SIGTERM
                assert after.cgroupid == info.cgroupid
            else:
                with pytest.raises(ProcessLookupError, match="6.15"):
                    pf.info()
    finally:
        p.kill()
        p.wait()


@needs_root
def test_info_cgroup_id_is_the_cgroup_directory_inode() -> None:
    needs_get_info()
    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    group = root / f"pidproc-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as e:
        pytest.skip(f"cannot create a cgroup here: {e}")
    p = pidproc.Popen(SLEEP)
    try:
        (group / "cgroup.procs").write_text(str(p.pid))
        with pidproc.PidFd.from_popen(p) as pf:
            assert pf.info().cgroupid == group.stat().st_ino
    finally:
        p.kill()
        p.wait()
        group.rmdir()


# ---- getfd -------------------------------------------------------------------


@core.needs_core
def test_getfd_steals_pipe_ends_from_a_child() -> None:
    p = pidproc.Popen(
        [PY, program("pidfd_handle_pipe_owner")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdin is not None
    w1, r2 = map(int, p.stdout.readline().split())
    with pidproc.PidFd.from_popen(p) as pf:
        wfd = pf.getfd(w1)
        rfd = pf.getfd(r2)
    try:
        assert not os.get_inheritable(wfd) and not os.get_inheritable(rfd)
        os.write(wfd, b"hello through a stolen fd")
        assert p.stdout.readline().strip() == "hello through a stolen fd"
        assert os.read(rfd, 100) == b"from the child"
    finally:
        os.close(wfd)
        os.close(rfd)
        p.stdin.write("\n")
        p.stdin.close()
        assert p.wait() == 0
        p.stdout.close()


@core.needs_core
def test_getfd_errors() -> None:
    with pidproc.Popen(SLEEP) as p, pidproc.PidFd.from_popen(p) as pf:
        with pytest.raises(OSError, match="no fd 987") as e:
            pf.getfd(987)
        assert e.value.errno == errno.EBADF
        if os.geteuid() == 0:
            err, message = as_nobody(lambda: pf.getfd(0))
            assert err == errno.EPERM, message
            assert "ptrace" in message
        p.kill()
        p.wait()
        with pytest.raises(OSError) as e:
            pf.getfd(0)
        assert e.value.errno == errno.ESRCH


# ---- setns -------------------------------------------------------------------


@pytest.mark.skipif(
    not unshare_works("--uts"),
    reason="unshare --uts does not work here (needs root and util-linux)",
)
@core.needs_core_unless(hasattr(os, "setns"))
def test_setns_enters_a_uts_namespace_made_with_unshare() -> None:
    name = f"pidproc-ns-{os.getpid()}"
    target = subprocess.Popen(
        ["unshare", "--uts", "--fork", "sh", "-c", f"hostname {name} && echo $$ && exec sleep 30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    mine = os.readlink("/proc/self/ns/uts")
    try:
        assert target.stdout is not None
        inner = int(target.stdout.readline())  # sh, a grandchild, in the new namespace
        with pidproc.PidFd.open(inner) as pf:
            fd = pf.fileno()
            # ALL: its user namespace is ours, which setns skips (the kernel
            # would refuse it); the others are entered, UTS the one that differs.
            for flags in (pidproc.Namespace.UTS, int(pidproc.Namespace.UTS), pidproc.Namespace.ALL):
                out = subprocess.run(
                    [PY, program("pidfd_handle_setns"), str(fd), str(int(flags))],
                    pass_fds=[fd],
                    capture_output=True,
                    text=True,
                )
                assert out.returncode == 0, out.stderr
                before, after = out.stdout.split()
                assert before == socket.gethostname() != name
                assert after == name
            if os.geteuid() == 0:
                err, message = as_nobody(lambda: pf.setns(pidproc.Namespace.UTS))
                assert err == errno.EPERM and "CAP_SYS_ADMIN" in message, message
            with pytest.raises(ValueError):
                pf.setns(0)
            pf.kill()
    finally:
        target.kill()
        target.wait()
        target.stdout.close()  # type: ignore[union-attr]
    assert os.readlink("/proc/self/ns/uts") == mine  # this process never moved


# ---- madvise -----------------------------------------------------------------


def rss_kib(pid: int, start: int) -> int:
    """Resident KiB of the mapping that starts at ``start`` in ``pid``."""
    with open(f"/proc/{pid}/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                inside = int(head.split("-")[0], 16) == start
            elif inside and line.startswith("Rss:"):
                return int(line.split()[1])
    raise AssertionError(f"no mapping at {start:#x} in {pid}")


@core.needs_core
def test_madvise_pageout_on_a_childs_mapping(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(4 << 20))
    p = pidproc.Popen(
        [PY, program("pidfd_handle_mapper"), str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdin is not None
    try:
        addr, length = map(int, p.stdout.readline().split())
        before = rss_kib(p.pid, addr)
        assert before >= (length >> 10) // 2, before  # the child touched every page
        with pidproc.PidFd.from_popen(p) as pf:
            assert pf.madvise([(addr, length)], pidproc.Advice.COLD) == length
            half = length // 2
            done = pf.madvise([(addr, half), (addr + half, length - half)], pidproc.Advice.PAGEOUT)
            assert done == length
            after = rss_kib(p.pid, addr)
            assert after < before // 4, (before, after)
            with pytest.raises(OSError, match="advice 4") as e:
                pf.madvise([(addr, length)], 4)  # MADV_DONTNEED: not for others
            assert e.value.errno == errno.EINVAL
            with pytest.raises(OSError, match="not mapped") as e:
                pf.madvise([(4096, 4096)], pidproc.Advice.COLD)
    finally:
        p.stdin.write("\n")
        p.stdin.close()
        p.wait()
        p.stdout.close()


@needs_root
@core.needs_core
def test_madvise_without_cap_sys_nice() -> None:
    # nobody advising another of nobody's processes: ptrace read access is
    # there, CAP_SYS_NICE is not.
    with pidproc.Popen(PLAIN_SLEEP, user=NOBODY, group=NOBODY, extra_groups=[]) as p:
        with pidproc.PidFd.from_popen(p) as pf:
            err, message = as_nobody(lambda: pf.madvise([(4096, 4096)], pidproc.Advice.COLD))
        assert err == errno.EPERM and "CAP_SYS_NICE" in message, message
        p.kill()


# ---- identity ----------------------------------------------------------------


def test_identity_same_process_equal_others_not() -> None:
    with pidproc.Popen(SLEEP) as a, pidproc.Popen(SLEEP) as b:
        fa1, fa2 = pidproc.PidFd.from_popen(a), pidproc.PidFd.open(a.pid)
        fb = pidproc.PidFd.from_popen(b)
        if fa1._key is None:
            assert fa1 != fa2  # before pidfs: only the object itself
            pytest.skip("no pidfs (Linux 6.9+): PidFds compare by object")
        assert fa1 == fa2 and hash(fa1) == hash(fa2)
        assert fa1.inode == fa2.inode
        assert fa1 != fb and fa1.inode != fb.inode
        assert len({fa1, fa2, fb}) == 2
        fa1.close()
        assert fa1 == fa2  # identity outlives the fd
        a.kill()
        b.kill()
        for f in (fa2, fb):
            f.close()


@pytest.mark.skipif(
    not private_pid_ns(),
    reason="unshare --pid --mount-proc does not work here (needs root, util-linux, a real /)",
)
def test_identity_survives_pid_reuse() -> None:
    # The PID-reuse race, in a private PID namespace: B gets A's PID.
    out = subprocess.run(
        [*IN_PRIVATE_PID_NS, PY, program("pidfd_handle_reuse")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["a"] == got["b"], got  # the PID really was reused
    assert got["equal"] is False
    if _pidfd._pidfs():
        assert got["same_hash"] is False
    assert "reaped" in got["kill"] and "reaped" in got["a_pid"]
    assert got["b_alive"] is True  # the signal meant for A never reached B
    if exit_info_kept():
        assert got["a_status"] == -signal.SIGTERM


def test_repr() -> None:
    with pidproc.Popen(SLEEP) as p:
        pf = pidproc.PidFd.from_popen(p)
        assert f"pid={p.pid}" in repr(pf)
        pf.kill()
        pf.wait()
        assert "returncode=-9" in repr(pf)
        pf.close()
        assert "closed" in repr(pf)


# ---- a kernel without the feature: real seccomp filters ----------------------
#
# A filter answers the syscall with the errno an older kernel gives, in a
# throw-away interpreter (tests/_support/seccomp.py).

# call -> (the errno an older kernel answers, the version the message names)
MISSING = {
    "signal": (errno.ENOSYS, "Linux 5.1"),
    "getfd": (errno.ENOSYS, "Linux 5.6"),
    "madvise": (errno.ENOSYS, "Linux 5.10"),
    "setns": (errno.EINVAL, "Linux 5.8"),  # before 5.8 setns took no pidfd
    "info": (errno.ENOTTY, "Linux 6.13"),
}
MISSING_RULES: dict[str, Any] = {
    "pidfd_send_signal": errno.ENOSYS,
    "pidfd_getfd": errno.ENOSYS,
    "process_madvise": errno.ENOSYS,
    "setns": errno.EINVAL,
    "ioctl": (errno.ENOTTY, 1, "==", PIDFD_GET_INFO),
}
needs_seccomp = pytest.mark.skipif(not seccomp.available(), reason="no libseccomp.so.2")


@needs_seccomp
@core.needs_core
def test_missing_kernel_features_are_named() -> None:
    r = seccomp.run_filtered(MISSING_RULES, program=program("pidfd_handle_features"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for call, (err, words) in MISSING.items():
        assert out[call][0] == err, (call, out[call])
        assert words in out[call][1], (call, out[call])
    # Without the ioctl, .pid falls back to /proc/self/fdinfo.
    assert out["pid"] == ["ok", "True"], out["pid"]


@needs_seccomp
def test_missing_pidfd_open_is_named() -> None:
    r = seccomp.run_filtered({"pidfd_open": errno.ENOSYS}, program=program("pidfd_handle_features"))
    assert r.returncode == 0, r.stderr
    err, message = json.loads(r.stdout)["open"]
    assert err == errno.ENOSYS and "Linux 5.3" in message, message
