"""die_with_parent, kill_tree, no_new_privs and Popen.rusage, on real processes.

Each option is tried on every spawn path (the ``backend`` fixture), with the
stdlib's behaviour beside it where the stdlib has one (it leaves orphans and
trees behind).  Which mechanism a Popen reports is checked against what this
kernel and these privileges allow, probed here independently of pidproc:
clone3's 7.1 flags by a raw clone3, the cgroup2 directory by
/proc/self/mountinfo, CAP_SYS_ADMIN by /proc/self/status.  The 7.1 branches
(CLONE_PIDFD_AUTOKILL, CLONE_AUTOREAP, CLONE_NNP) run for real under
``nox -s kernels`` (7.2); here they skip, naming the kernel they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import random
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pidproc
import pidproc.asyncio as aio
from pidproc import _cgroup, _lifecycle, _posix, _stdlib
from pidproc._native import lib
from pidproc._spawn.request import ChildSpec, SpawnRequest

from ._support import seccomp
from ._support.core import needs_core
from ._support.leaks import collect
from ._support.programs import program, run_program
from .conftest import PY, USABLE

SRC = str(Path(pidproc.__file__).resolve().parent.parent)
MiB = 1 << 20

# ---- what this machine allows, probed without pidproc -----------------------


def _clone3_takes(flags: int) -> bool:
    out = subprocess.run(
        [PY, program("lifecycle_options_clone3_probe"), str(flags)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip() == "0"


# AUTOREAP | NNP | PIDFD_AUTOKILL (exit_signal 0), as Linux 7.1 takes them.
KERNEL_71 = "clone3" in USABLE and _clone3_takes((1 << 34) | (1 << 35) | (1 << 36))
needs_71 = pytest.mark.skipif(
    not KERNEL_71, reason="clone3 has no CLONE_PIDFD_AUTOKILL (Linux 7.1+)"
)


def _cap_sys_admin() -> bool:
    with open("/proc/self/status") as f:
        caps = next(line for line in f if line.startswith("CapEff:"))
    return bool(int(caps.split()[1], 16) >> 21 & 1)


PRIVILEGED = _cap_sys_admin()


def _writable_cgroup2() -> bool:
    """Our own cgroup2 directory exists and we may create cgroups in it."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split(" - ") for ln in f]
    except OSError:
        return False
    for left, right in (m for m in mounts if len(m) == 2):
        if right.split()[0] == "cgroup2" and path is not None and left.split()[3] == "/":
            return os.access(os.path.join(left.split()[4], path.lstrip("/")), os.W_OK)
    return False


CGROUP_OK = "clone3" in USABLE and _writable_cgroup2()


def _group_signal() -> bool:
    fd = _posix.pidfd_open(os.getpid())
    try:
        _posix.pidfd_send_signal(fd, 0, None, 4)  # PIDFD_SIGNAL_PROCESS_GROUP, 6.9
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _no_new_privs_here() -> bool:
    with open("/proc/self/status") as f:
        return next(ln for ln in f if ln.startswith("NoNewPrivs:")).split()[1] == "1"


# ---- helpers ----------------------------------------------------------------


def marker() -> str:
    """A sleep duration no other process uses: the processes of one test are
    found by it in /proc."""
    return f"{300 + random.random() * 100:.6f}"


def sleepers(mark: str) -> list[int]:
    """Live processes running ``sleep <mark>`` (a zombie's cmdline is empty)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if len(cmd) >= 2 and cmd[0].endswith(b"sleep") and cmd[1] == mark.encode():
            out.append(int(entry))
    return out


def wait_sleepers(mark: str, n: int, seconds: float = 30.0) -> list[int]:
    """Until n processes run ``sleep <mark>`` (a job forked but not yet
    exec'd still shows the shell's command line)."""
    deadline = time.monotonic() + seconds
    while len(found := sleepers(mark)) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def gone_soon(mark: str, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while sleepers(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def emptied_soon(cgroup: str, seconds: float = 5.0) -> bool:
    """Until the cgroup holds no process (``populated 0``), or removed."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open(os.path.join(cgroup, "cgroup.events")) as f:
                if "populated 0" in f.read().splitlines():
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def kill_sleepers(mark: str) -> None:
    """Cleanup of what the stdlib left: through a pidfd, checked to be ours."""
    for pid in sleepers(mark):
        try:
            fd = _posix.pidfd_open(pid)
        except OSError:
            continue
        try:
            if pid in sleepers(mark):
                with contextlib.suppress(ProcessLookupError):
                    _posix.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)


@contextlib.contextmanager
def cleanup(mark: str) -> Iterator[str]:
    try:
        yield mark
    finally:
        kill_sleepers(mark)


def alive_for(fd: int, seconds: float) -> bool:
    """The pidfd's process did not exit within ``seconds``."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return not poller.poll(int(seconds * 1000))


def env_for(backend: str | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("PIDPROC_BACKEND", None)
    if backend is not None:
        env["PIDPROC_BACKEND"] = backend
    return env


def die_path(backend: str) -> str:
    """The path a die_with_parent/no_new_privs child takes when ``backend``
    is forced: pidfd_spawn cannot set either, the next path can."""
    return "clone3" if backend in ("pidfd_spawn", "clone3") and "clone3" in USABLE else "clone"


def expected_die(backend: str, *, nnp: bool = False, privileged: bool = PRIVILEGED) -> str:
    if die_path(backend) == "clone3" and KERNEL_71 and (privileged or nnp):
        return "autokill"
    return "pdeathsig"


@pytest.fixture
def own_group_paths(backend: str) -> str:
    if backend in ("pid",):
        pytest.skip("covered by test_paths_that_cannot_raise")
    return backend


# ---- die_with_parent ---------------------------------------------------------


def start_parent(
    opts: dict[str, Any], how: str, mark: str, backend: str | None, module: str = "pidproc"
) -> tuple[subprocess.Popen[str], dict[str, Any], int]:
    """tests/programs/lifecycle_options_parent.py, its child's info and a
    pidfd of that child."""
    parent = subprocess.Popen(
        [PY, program("lifecycle_options_parent"), json.dumps(opts), how, mark, module],
        stdout=subprocess.PIPE,
        text=True,
        env=env_for(backend),
        start_new_session=True,  # with "fork", its copy is killed with it
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line, f"the parent died: {parent.wait()}"
    info = json.loads(line)
    return parent, info, _posix.pidfd_open(info["pid"])


@pytest.mark.parametrize("how", ["main", "thread"])
def test_parent_sigkilled_child_dies_within_a_second(backend: str, how: str) -> None:
    if backend in ("fork", "pid"):
        pytest.skip("covered by test_paths_that_cannot_raise")
    with cleanup(marker()) as mark:
        parent, info, fd = start_parent({"die_with_parent": True}, how, mark, backend)
        try:
            assert info["backend"] == die_path(backend)
            assert info["die"] == expected_die(backend)
            # Not before: the thread that spawned it has ended already.
            assert alive_for(fd, 0.3)
            parent.kill()
            parent.wait()
            assert not alive_for(fd, 1.0), "the child outlived its SIGKILLed parent"
        finally:
            os.close(fd)


def test_parent_execs_child_dies(pidfd_backend: str) -> None:
    # An exec ends every other thread (the keeper) and closes the
    # close-on-exec pidfds: the program the parent was is gone.
    if pidfd_backend == "fork":
        pytest.skip("covered by test_paths_that_cannot_raise")
    with cleanup(marker()) as mark:
        parent, info, fd = start_parent({"die_with_parent": True}, "exec", mark, pidfd_backend)
        try:
            assert info["die"] == expected_die(pidfd_backend)
            assert not alive_for(fd, 1.0), "the child outlived its parent's exec"
            assert parent.poll() is None  # the parent itself runs on, as sleep
        finally:
            os.close(fd)
            parent.kill()
            parent.wait()


def test_without_it_the_child_survives_its_parent() -> None:
    # What the stdlib does too: the orphan runs on.
    for module in ("pidproc", "subprocess"):
        with cleanup(marker()) as mark:
            parent, _, fd = start_parent({}, "main", mark, None, module)
            try:
                parent.kill()
                parent.wait()
                assert alive_for(fd, 1.0), module
            finally:
                os.close(fd)


def _prctl_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def test_spawning_thread_ending_does_not_count(pidfd_backend: str) -> None:
    if pidfd_backend == "fork":
        pytest.skip("covered by test_paths_that_cannot_raise")
    box: list[pidproc.Popen] = []
    t = threading.Thread(
        target=lambda: box.append(pidproc.Popen(["sleep", "30"], die_with_parent=True))
    )
    t.start()
    t.join()
    p = box[0]
    try:
        assert p.die_with_parent == expected_die(pidfd_backend)
        time.sleep(0.3)
        assert p.poll() is None, "killed when the thread that spawned it ended"
    finally:
        p.kill()
        p.wait()
    assert p.returncode == -signal.SIGKILL


def test_the_usual_pdeathsig_dies_with_its_thread() -> None:
    # The stdlib's recipe, preexec_fn=prctl(PR_SET_PDEATHSIG): it forks, and
    # the signal fires when the *thread* that spawned ends.
    box: list[subprocess.Popen[bytes]] = []
    t = threading.Thread(
        target=lambda: box.append(subprocess.Popen(["sleep", "30"], preexec_fn=_prctl_pdeathsig))
    )
    t.start()
    t.join()
    assert box[0].wait(timeout=10) == -signal.SIGKILL


def test_pdeathsig_child_gets_the_callers_signal_mask() -> None:
    # The keeper thread blocks every signal; the child must start with the
    # mask of the thread that asked, as the stdlib's children do.
    code = "print(next(l for l in open('/proc/self/status') if l.startswith('SigBlk')).split()[1])"
    if "clone" not in USABLE:
        pytest.skip("no clone path here")
    with pidproc.use_backend("clone"):  # never autokill: the keeper thread clones
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        try:
            p = pidproc.Popen([PY, "-c", code], stdout=subprocess.PIPE, die_with_parent=True)
            blocked = int(p.communicate()[0], 16)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        assert p.die_with_parent == "pdeathsig"
        assert blocked & (1 << (signal.SIGUSR1 - 1))
        p = pidproc.Popen([PY, "-c", code], stdout=subprocess.PIPE, die_with_parent=True)
        assert not int(p.communicate()[0], 16) & (1 << (signal.SIGUSR1 - 1))


def test_parent_gone_during_the_spawn_child_kills_itself() -> None:
    # The getppid() check: a request naming another parent stands for one
    # that died between clone and prctl; the child must not run the program.
    if "clone3" not in USABLE and "clone" not in USABLE:
        pytest.skip("no clone3 or clone path here")
    spec = ChildSpec(
        argv=[b"true"], exec_paths=[b"/bin/true"], envp=None, cwd=None, stdin_fd=-1,
        stdout_fd=-1, stderr_fd=-1, keep_fds=(), close_fds=False, restore_signals=False,
        new_session=False, pgid=-1, umask=-1, uid=None, gid=None, groups=None,
    )  # fmt: skip
    for parent_pid, code in ((os.getpid(), 0), (1, -signal.SIGKILL)):
        request = SpawnRequest(spec)
        r = request.struct
        r.pdeathsig, r.parent_pid, r.via_keeper = signal.SIGKILL, parent_pid, 1
        fn = lib.pidproc_spawn_clone3 if "clone3" in USABLE else lib.pidproc_spawn_clone
        assert fn(r) == 0 and r.err_step == 0
        try:
            result = _posix.waitid(_posix.P_PIDFD, r.pidfd, _posix.WEXITED)
        finally:
            os.close(r.pidfd)
        assert result is not None
        got = result.si_status if result.si_code == _posix.CLD_EXITED else -result.si_status
        assert got == code, parent_pid
    assert lib.pidproc_keeper_running() == 1


@needs_core
def test_keeper_handover_from_many_threads() -> None:
    # Threads spawning through the keeper at once are served one at a time
    # (_lifecycle.c), each getting its own child and status.
    if "clone" not in USABLE:
        pytest.skip("no clone path here")
    results: dict[int, list[tuple[str | None, int]]] = {}

    def spawn(n: int) -> None:
        results[n] = []
        for i in range(5):
            p = pidproc.Popen(["sh", "-c", f"exit {n * 10 + i}"], die_with_parent=True)
            results[n].append((p.die_with_parent, p.wait()))

    with pidproc.use_backend("clone"):  # never autokill: the keeper thread clones
        threads = [threading.Thread(target=spawn, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == {n: [("pdeathsig", n * 10 + i) for i in range(5)] for n in range(4)}


@needs_core
def test_keeper_spawn_names_its_child() -> None:
    # The keeper does not wait for the exec: the asking thread does, woken
    # from the child's exec (CLONE_CHILD_CLEARTID), and learns the pid from
    # the child itself.  That pid must be the one the pidfd names, a child
    # of this process that goes on to run the program.  (Like a vfork
    # parent, the asking thread wakes when the child lets go of our memory,
    # a moment before the new program is mapped: /proc/PID/exe may still
    # name the old one just after Popen returns, as it may for a plain
    # spawn.)
    if "clone" not in USABLE:
        pytest.skip("no clone path here")
    sleep = os.path.realpath("/bin/sleep")
    with pidproc.use_backend("clone"):  # never autokill: the keeper thread clones
        for _ in range(30):
            p = pidproc.Popen(["/bin/sleep", "30"], die_with_parent=True)
            try:
                with open(f"/proc/self/fdinfo/{p.pidfd}") as f:
                    named = next(int(line.split()[1]) for line in f if line.startswith("Pid:"))
                with open(f"/proc/{p.pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                deadline = time.monotonic() + 10
                while (exe := os.readlink(f"/proc/{p.pid}/exe")) != sleep:
                    assert time.monotonic() < deadline, exe
                    time.sleep(0.001)
            finally:
                p.kill()
                p.wait()
            assert p.die_with_parent == "pdeathsig"
            assert (named, ppid) == (p.pid, os.getpid())


@needs_core
@pytest.mark.parametrize("path", ["clone3", "clone"])
def test_keeper_spawn_errors_are_the_stdlibs(path: str, tmp_path: Path, no_leaks: None) -> None:
    # A child of the keeper that fails before exec reports the error to the
    # thread that asked, which reaps it: the stdlib's exception, nothing left.
    if path not in USABLE:
        pytest.skip(f"no {path} path here")
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    cases: list[dict[str, Any]] = [
        {"args": [str(tmp_path / "missing")]},
        {"args": ["true"], "cwd": str(tmp_path / "no-such-dir")},
        {"args": [str(script)]},
    ]
    with pidproc.use_backend(path):
        for kw in cases:
            with pytest.raises(OSError) as want:
                subprocess.Popen(**kw)
            with pytest.raises(OSError) as got:
                pidproc.Popen(**kw, die_with_parent=True)
            assert (type(got.value), got.value.errno, got.value.filename, str(got.value)) == (
                type(want.value), want.value.errno, want.value.filename, str(want.value)
            ), kw  # fmt: skip
        assert pidproc.run(["true"], die_with_parent=True).returncode == 0


@needs_core
def test_keeper_child_killed_before_its_first_instruction() -> None:
    # Such a child never told its pid: the asking thread names it through
    # its pidfd (waitid WNOWAIT), a child killed before exec as the stdlib
    # reports one (Popen returns, wait() says SIGKILL); with SIGCHLD ignored
    # the kernel has reaped it, no pid can be named, and the spawn fails as
    # a clone that could not be made (EAGAIN).  Never pid 0, nothing left.
    if not CGROUP_OK or "clone3" not in USABLE:
        pytest.skip("needs a writable cgroup2 directory and the clone3 path")
    got = run_program("lifecycle_options_killed_at_birth", env=env_for(None))
    if not got["killed_at_birth"]:
        pytest.skip("this kernel does not kill a child born into a cgroup killed before")
    assert got == {
        "killed_at_birth": True,
        "named": ["pdeathsig", True, True, True],
        "reaped_by_kernel": ["BlockingIOError", errno.EAGAIN],
        "fds_left": [],
        "children_left": [],
    }


THREAD_STATE = "grep ^Cpus_allowed_list: /proc/$$/status; cut -d' ' -f19 /proc/$$/stat"


def thread_state_of_child(module: Any, **kw: Any) -> str:
    """The CPU affinity and nice value a child of this thread starts with."""
    out: str = module.run(["sh", "-c", THREAD_STATE], capture_output=True, text=True, **kw).stdout
    return out


def in_thread(fn: Any) -> Any:
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join()
    return box[0]


@needs_core
@pytest.mark.parametrize("path", ["clone3", "clone"])
def test_die_with_parent_child_has_the_calling_threads_affinity_and_nice(path: str) -> None:
    # Linux keeps both per thread and a child inherits the cloning thread's:
    # a child the keeper thread clones gets the caller's, as the stdlib's
    # child of that thread does.
    if path not in USABLE:
        pytest.skip(f"no {path} path here")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one CPU allowed here: no narrower affinity to give a thread")
    with pidproc.use_backend(path):
        pidproc.run(["true"], die_with_parent=True)  # the keeper, started from here

        def narrowed_and_nicer() -> tuple[str, str, str | None]:
            os.sched_setaffinity(0, {cpus[-1]})  # this thread only
            os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 3)
            p = pidproc.Popen(
                ["sh", "-c", THREAD_STATE], stdout=subprocess.PIPE, text=True, die_with_parent=True
            )
            out = p.communicate()[0]
            return thread_state_of_child(subprocess), out, p.die_with_parent

        want, got, mechanism = in_thread(narrowed_and_nicer)
        assert got == want, mechanism
        assert want.split()[1] == str(cpus[-1])
        # This thread again: its own affinity and nice value, if the keeper
        # may lower its nice value again (CAP_SYS_NICE; else it keeps the
        # higher one, as documented).
        want = thread_state_of_child(subprocess)
        got = thread_state_of_child(pidproc, die_with_parent=True)

    if in_thread(may_lower_nice):
        assert got == want
    else:
        assert got.split()[:2] == want.split()[:2]
        assert int(got.split()[2]) == int(want.split()[2]) + 3


def may_lower_nice() -> bool:
    here = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, here + 1)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, here)
    except PermissionError:
        return False
    return True


@needs_core
@pytest.mark.parametrize("path", ["clone3", "clone"])
def test_without_cap_sys_nice_the_keeper_keeps_a_higher_nice(path: str) -> None:
    # Lowering a nice value needs CAP_SYS_NICE: once the keeper took on a
    # nicer thread's value, a child for a less nice thread runs at it.
    if path not in USABLE:
        pytest.skip(f"no {path} path here")
    if not PRIVILEGED:
        pytest.skip("runs as root, then drops CAP_SYS_NICE")
    got = run_program("lifecycle_options_nice_nocap", path, env=env_for(None))
    std, ours = got["nicer thread"]
    assert ours == std
    std_main, ours_main = got["main thread"]
    if path == "clone3" and _lifecycle.fact("clone3_flags"):
        assert ours_main == std_main  # autokill: cloned by the main thread itself
    else:
        assert ours_main == std == std_main + 3


@needs_core
def test_keeper_after_fork() -> None:
    # A forked child has no keeper thread (only the forking thread survives
    # fork): its first die_with_parent spawn starts one of its own.
    out = subprocess.run(
        [PY, program("lifecycle_options_keeper_fork")],
        capture_output=True, text=True, env=env_for(None),
    )  # fmt: skip
    assert out.stdout.strip() == "3", out.stderr


# ---- kill_tree -------------------------------------------------------------------

TREE_MODES = ["cgroup", "process_group", "killpg"]


@pytest.fixture(params=TREE_MODES)
def tree_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    mode: str = request.param
    if mode == "cgroup" and not CGROUP_OK:
        pytest.skip("no writable cgroup2 directory here (root, or a delegated slice)")
    if mode != "cgroup":
        monkeypatch.setattr(_lifecycle, "_USE_CGROUP", False)
    if mode == "killpg":
        monkeypatch.setattr(_lifecycle, "_USE_PIDFD_GROUP_SIGNAL", False)
    return mode


def expected_tree(backend: str, mode: str) -> str:
    if mode == "cgroup" and backend in ("pidfd_spawn", "clone3"):
        return "cgroup"
    return "process_group"


def expected_tree_path(backend: str, mode: str) -> str:
    if expected_tree(backend, mode) == "cgroup":
        return "clone3"
    if backend == "fork" and not _stdlib.TAKES_PROCESS_GROUP:
        return "never"  # 3.10's stdlib spawn cannot start a process group
    return backend


SHELL_JOBS = "sleep {m} & sleep {m} & echo started; wait"


def test_run_timeout_leaves_nothing_the_stdlib_leaves_the_jobs(
    own_group_paths: str, tree_mode: str
) -> None:
    backend = own_group_paths
    if expected_tree_path(backend, tree_mode) == "never":
        with pytest.raises(pidproc.BackendUnavailable):
            pidproc.run(["sh", "-c", "true"], kill_tree=True)
        return
    with cleanup(marker()) as mark:
        t0 = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired) as caught:
            pidproc.run(
                ["sh", "-c", SHELL_JOBS.format(m=mark)],
                timeout=3, capture_output=True, kill_tree=True,
            )  # fmt: skip
        assert caught.value.stdout == b"started\n"  # the jobs ran before the timeout
        assert time.monotonic() - t0 < 30  # no pipe kept communicate() waiting
        assert gone_soon(mark), f"left running: {sleepers(mark)}"
    with cleanup(marker()) as mark:
        with pytest.raises(subprocess.TimeoutExpired) as caught:
            subprocess.run(["sh", "-c", SHELL_JOBS.format(m=mark)], timeout=3, capture_output=True)
        assert caught.value.stdout == b"started\n"
        assert len(sleepers(mark)) == 2, "the stdlib now kills the tree?"


def test_mechanism_and_path(own_group_paths: str, tree_mode: str) -> None:
    backend = own_group_paths
    path = expected_tree_path(backend, tree_mode)
    if path == "never":
        pytest.skip("3.10's stdlib spawn has no process_group: see the test above")
    with pidproc.Popen(["sleep", "30"], kill_tree=True) as p:
        if expected_tree(backend, tree_mode) == "process_group":
            assert os.getpgid(p.pid) == p.pid  # a group of its own
        else:
            with open(f"/proc/{p.pid}/cgroup") as f:
                assert f"/pidproc-{os.getpid()}/" in f.read()  # a cgroup of its own
        p.kill()
    assert (p.backend, p.kill_tree) == (path, expected_tree(backend, tree_mode))


def test_setsid_grandchild(tree_mode: str) -> None:
    with cleanup(marker()) as mark:
        p = pidproc.Popen(
            [PY, program("lifecycle_options_setsid"), mark], stdout=subprocess.PIPE, kill_tree=True
        )
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        assert len(wait_sleepers(mark, 1)) == 1
        p.kill()
        p.communicate()
        if tree_mode == "cgroup":
            assert p.kill_tree == "cgroup"
            assert gone_soon(mark), "the setsid grandchild escaped the cgroup"
        else:
            # A process group cannot hold what left it: it survives.
            assert p.kill_tree == "process_group"
            time.sleep(0.2)
            assert len(sleepers(mark)) == 1


@pytest.mark.parametrize("method", ["terminate", "send_signal_usr1", "kill_without_cgroup_kill"])
def test_signals_reach_the_whole_tree(
    tree_mode: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if method == "kill_without_cgroup_kill":
        if tree_mode != "cgroup":
            pytest.skip("cgroup mode only")
        monkeypatch.setattr(_cgroup, "_USE_CGROUP_KILL", False)  # as before Linux 5.14
    with cleanup(marker()) as mark:
        p = pidproc.Popen(
            ["sh", "-c", SHELL_JOBS.format(m=mark)], stdout=subprocess.PIPE, kill_tree=True
        )
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        assert len(wait_sleepers(mark, 2)) == 2
        if method == "terminate":
            p.terminate()
        elif method == "send_signal_usr1":
            p.send_signal(signal.SIGUSR1)  # sh and sleep die of it too
        else:
            p.kill()
        p.communicate(timeout=30)
        assert p.returncode in (-signal.SIGTERM, -signal.SIGUSR1, -signal.SIGKILL)
        assert gone_soon(mark)


def test_tree_outliving_its_child(tree_mode: str) -> None:
    # The child exits at once, its background job runs on.  In a cgroup the
    # job can still be killed through the Popen after the reap; a process
    # group is out of reach once the child is reaped (its id may be reused).
    with cleanup(marker()) as mark:
        p = pidproc.Popen(["sh", "-c", f"sleep {mark} >/dev/null & exit 4"], kill_tree=True)
        assert p.wait(timeout=30) == 4
        assert len(wait_sleepers(mark, 1)) == 1
        p.kill()
        if tree_mode == "cgroup":
            assert gone_soon(mark)
            tree = p._lifecycle.cgroup if p._lifecycle else None
            assert tree is not None
            path = tree.path
            # A killed job's command line empties (its memory is let go)
            # before it leaves its cgroup: wait for the second step too.
            assert emptied_soon(path)
            del p, tree
            collect()
            # Empty and collected: back in the pool, or removed.
            where = _cgroup._place
            assert where is not None
            assert path in [pooled[0] for pooled in where.pool] or not os.path.isdir(path)
        else:
            time.sleep(0.2)
            assert len(sleepers(mark)) == 1


def test_one_child_after_another(tree_mode: str) -> None:
    # Each child killed as a tree; the next one runs normally.  (In cgroup
    # mode: a cgroup once killed is never given to another child, which
    # Linux 6.18 would kill at birth.)
    for _ in range(3):
        p = pidproc.Popen(["sleep", "30"], kill_tree=True)
        fd = _posix.pidfd_open(p.pid)
        try:
            assert alive_for(fd, 0.2)
        finally:
            os.close(fd)
        p.kill()
        assert p.wait() == -signal.SIGKILL
        # A plain, finished child gives its cgroup back to the next.
        with pidproc.Popen(["true"], kill_tree=True) as q:
            pass
        assert q.returncode == 0


@pytest.mark.skipif(not CGROUP_OK, reason="no writable cgroup2 directory here")
@pytest.mark.parametrize(
    "how", ["killed", "not-waited", "job-killed", "after-cleanup", "in-flight"]
)
def test_cgroups_are_removed_at_exit(how: str) -> None:
    # not-waited: the cgroup of a Popen still held at exit, whose child has
    # exited.  job-killed: a tree killed just before exit, still dying then.
    # after-cleanup: a spawn by an atexit handler that runs after pidproc's
    # cleanup (pidproc-<pid> made again, and removed at the reap).
    # in-flight: the cleanup while a spawn into a cgroup is on its way.
    out = subprocess.run(
        [PY, program("lifecycle_options_at_exit"), how],
        capture_output=True,
        text=True,
        env=env_for(None),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 2, out.stderr  # an atexit handler's error: exit 0
    mode, path = out.stdout.split()
    assert mode == "cgroup", out.stderr
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path)), "pidproc-<pid> left behind"


@contextlib.contextmanager
def another_group() -> Iterator[int]:
    """The id of a process group that is not ours nor new: a helper's (in
    our session: a process may only join a group of its own session)."""
    helper = subprocess.Popen(["sleep", "60"], process_group=0)  # type: ignore[call-arg]
    try:
        yield helper.pid
    finally:
        helper.kill()
        helper.wait()


def test_cgroup_mode_allows_any_process_group() -> None:
    if not CGROUP_OK:
        pytest.skip("no writable cgroup2 directory here")
    if not _stdlib.TAKES_PROCESS_GROUP:
        pytest.skip("process_group is 3.11+")
    # The child joins another process group; the tree is its cgroup alone,
    # so killing the tree leaves the rest of that group alone.
    with another_group() as pgid:
        p = pidproc.Popen(["sleep", "30"], kill_tree=True, process_group=pgid)
        assert p.kill_tree == "cgroup" and os.getpgid(p.pid) == pgid
        p.kill()
        assert p.wait() == -signal.SIGKILL
        assert os.getpgid(pgid) == pgid  # the group's leader lives on


def test_process_group_mode_refuses_another_group(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _stdlib.TAKES_PROCESS_GROUP:
        pytest.skip("process_group is 3.11+")
    monkeypatch.setattr(_lifecycle, "_USE_CGROUP", False)
    with another_group() as pgid, pytest.raises(ValueError, match="process_group"):
        pidproc.Popen(["true"], kill_tree=True, process_group=pgid)
    # A group of its own is what kill_tree makes anyway.
    for extra in ({"process_group": 0}, {"start_new_session": True}):
        with pidproc.Popen(["true"], kill_tree=True, **extra) as p:  # type: ignore[arg-type]
            pass
        assert p.returncode == 0 and p.kill_tree == "process_group"


def test_with_preexec_fn_a_process_group() -> None:
    # preexec_fn forks (the fork path): no cgroup there, a process group.
    with cleanup(marker()) as mark:
        p = pidproc.Popen(
            ["sh", "-c", SHELL_JOBS.format(m=mark)], stdout=subprocess.PIPE,
            preexec_fn=lambda: None, kill_tree=True,
        )  # fmt: skip
        assert (p.backend, p.kill_tree) == ("fork", "process_group")
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        assert len(wait_sleepers(mark, 2)) == 2
        p.kill()
        p.communicate()
        assert gone_soon(mark)


@needs_core
def test_asyncio_kill_tree_and_die_with_parent() -> None:
    async def main(mark: str) -> tuple[int, str | None, str | None]:
        p = await aio.create_subprocess_shell(
            SHELL_JOBS.format(m=mark), stdout=aio.PIPE, kill_tree=True, die_with_parent=True
        )
        assert p.stdout is not None
        assert await p.stdout.readline() == b"started\n"
        assert len(wait_sleepers(mark, 2)) == 2
        popen = p._transport.get_extra_info("subprocess")  # type: ignore[attr-defined]
        p.kill()
        return await p.wait(), popen.kill_tree, popen.die_with_parent

    with cleanup(marker()) as mark:
        rc, tree, die = asyncio.run(main(mark))
        assert rc == -signal.SIGKILL
        assert tree in ("cgroup", "process_group") and die in ("autokill", "pdeathsig")
        assert gone_soon(mark)


# ---- no_new_privs ---------------------------------------------------------------

NNP = "print(next(l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')).split()[1])"


def test_no_new_privs(backend: str) -> None:
    if backend in ("fork", "pid"):
        pytest.skip("covered by test_paths_that_cannot_raise")
    out = pidproc.run([PY, "-c", NNP], capture_output=True, text=True, no_new_privs=True)
    assert out.stdout == "1\n"
    p = pidproc.Popen(["true"], no_new_privs=True)
    p.wait()
    assert p.backend == die_path(backend)
    assert p.no_new_privs == ("clone_nnp" if p.backend == "clone3" and KERNEL_71 else "prctl")
    if not _no_new_privs_here():
        # Without it the child inherits ours (0), as with the stdlib.
        assert pidproc.run([PY, "-c", NNP], capture_output=True, text=True).stdout == "0\n"


def test_no_new_privs_with_preexec_fn() -> None:
    p = pidproc.Popen([PY, "-c", NNP], stdout=subprocess.PIPE, text=True,
                      preexec_fn=lambda: None, no_new_privs=True)  # fmt: skip
    assert p.communicate()[0] == "1\n"
    assert (p.backend, p.no_new_privs) == ("fork", "prctl")


# ---- what cannot be honoured ----------------------------------------------------


@pytest.mark.parametrize("forced", ["fork", "pid"])
def test_paths_that_cannot_raise(forced: str, no_leaks: None) -> None:
    if forced not in USABLE:
        pytest.skip(f"no {forced} path here")
    with pidproc.use_backend(forced):
        for option in ("die_with_parent", "no_new_privs"):
            with pytest.raises(pidproc.BackendUnavailable, match=option):
                pidproc.Popen(["true"], **{option: True}, stdout=subprocess.PIPE)
        if forced == "pid":
            with pytest.raises(pidproc.BackendUnavailable, match="kill_tree"):
                pidproc.Popen(["true"], kill_tree=True, stdout=subprocess.PIPE)


def test_contradicting_arguments(no_leaks: None) -> None:
    with pytest.raises(ValueError, match="preexec_fn"):
        pidproc.Popen(["true"], die_with_parent=True, preexec_fn=lambda: None,
                      stdout=subprocess.PIPE)  # fmt: skip


@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 not installed")
@needs_core
def test_no_clone3_nor_clone_here() -> None:
    # A sandbox denying both (EPERM): the options needing pidproc's own child
    # raise, naming why; kill_tree takes a process group on the fork path.
    rules: dict[str, seccomp.Rule] = {"clone3": errno.EPERM, "clone": (errno.EPERM, 0, 0x1000)}
    r = seccomp.run_filtered(rules, program=program("lifecycle_options_denied"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for option in ("die_with_parent", "no_new_privs"):
        kind, code, message = out[option]
        assert (kind, code) == ("PermissionError", errno.EPERM), out[option]
        assert "clone3" in message and "EPERM" in message
    if _stdlib.TAKES_PROCESS_GROUP:
        assert out["kill_tree"] == ["ok", "fork", "process_group"]


@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 not installed")
@pytest.mark.skipif(not CGROUP_OK, reason="no writable cgroup2 directory here")
def test_cgroup_birth_refused_falls_to_a_process_group() -> None:
    # CLONE_INTO_CGROUP refused (a kernel before 5.7 says EINVAL): probed
    # once, then kill_tree holds the tree by a process group, and says so.
    out = subprocess.run(
        [PY, program("lifecycle_options_cgroup_refused")],
        capture_output=True, text=True, env=env_for(None),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == [USABLE[0], "process_group"]
    assert "EINVAL" in out.stdout


@pytest.mark.skipif(not CGROUP_OK, reason="no writable cgroup2 directory here")
def test_cgroup_mode_where_sigchld_is_ignored() -> None:
    # The kernel reaps the probe child of CLONE_INTO_CGROUP itself: that is
    # no answer about cgroups, and no reason to fail the spawn.
    assert run_program("lifecycle_options_sigchld_ignored", env=env_for(None)) == ["cgroup"] * 2


@pytest.mark.skipif(not CGROUP_OK, reason="no writable cgroup2 directory here")
def test_cgroup_fds_kept_within_the_budget_and_not_after_fork() -> None:
    # A cgroup keeps its directory's and its cgroup.events' fds (pooled
    # too), never in the top quarter of the fd range; a forked child
    # closes the ones its parent's pool kept.
    got = run_program("lifecycle_options_cgroup_fds", env=env_for(None))
    assert got["near_limit"] == ["cgroup", True, []]
    assert got["near_limit_killed"] and got["near_limit_after"] == []
    assert got["pooled"] == [8, 16, True]
    assert got["after_200"]
    assert got["in_forked_child"] == 0


@pytest.mark.skipif(not CGROUP_OK, reason="no writable cgroup2 directory here")
@pytest.mark.parametrize("how", ["signal", "kill"])
def test_a_cgroup_being_signalled_is_not_reused(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # One thread signals a tree while another reaps its child and a third
    # spawning could take the emptied cgroup from the pool: the signal must
    # never reach the new child.  The first thread is held where the race
    # would bite: between finding its tree unreleased and reaching the
    # members (signal) or cgroup.kill (kill).
    p = pidproc.Popen(["sleep", "30"], kill_tree=True)
    assert p.kill_tree == "cgroup"
    tree = p._lifecycle.cgroup
    entered, go = threading.Event(), threading.Event()
    members, builtins_open = _cgroup.Tree._members, open

    def held_members(self: _cgroup.Tree) -> list[int]:
        if self is tree and how == "signal":
            entered.set()
            go.wait(10)
        return members(self)

    def held_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if how == "kill" and str(path).endswith("/cgroup.kill") and str(path).startswith(tree.path):
            entered.set()
            go.wait(10)
        return builtins_open(path, *args, **kwargs)

    monkeypatch.setattr(_cgroup.Tree, "_members", held_members)
    monkeypatch.setattr(_cgroup, "open", held_open, raising=False)
    sig = signal.SIGTERM if how == "signal" else signal.SIGKILL
    if how == "kill":
        os.kill(p.pid, signal.SIGTERM)  # dies by itself; the tree's kill still runs
    signaller = threading.Thread(target=p.send_signal, args=(sig,))
    signaller.start()
    try:
        assert entered.wait(10)
        assert p.wait(timeout=10) == -signal.SIGTERM
        q = pidproc.Popen(["sleep", "30"], kill_tree=True)
    finally:
        go.set()
        signaller.join(10)
    try:
        time.sleep(0.2)
        assert q.poll() is None, f"the new child got the old tree's signal ({q.returncode})"
    finally:
        q.kill()
        q.wait()


@pytest.mark.skipif(
    sys.implementation.name != "pypy",
    reason="PyPy's own: its fork_exec casts process_group to a C int (CPython refuses 2**32)",
)
def test_process_group_mode_judges_the_group_pypy_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyPy casts process_group=2**32 to 0, a new group: kill_tree's own
    # group then.  2**32 + 1 is group 1, another one, refused as such.
    monkeypatch.setattr(_lifecycle, "_USE_CGROUP", False)
    code = "import os; print(os.getpgid(0) == os.getpid())"
    with pidproc.Popen(
        [PY, "-c", code], stdout=subprocess.PIPE, kill_tree=True, process_group=2**32
    ) as p:
        out = p.communicate()[0]
    assert (p.kill_tree, out.strip(), p.returncode) == ("process_group", b"True", 0)
    with pytest.raises(ValueError, match=f"process_group={2**32 + 1} would put it in another"):
        pidproc.Popen(["true"], kill_tree=True, process_group=2**32 + 1)


@pytest.mark.skipif(not CGROUP_OK, reason="no writable cgroup2 directory here")
def test_remembered_choice_follows_knobs_and_forced_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # The mechanism chosen is remembered between spawns, keyed on what can
    # change it: each change below is seen by the very next spawn.
    from pidproc._spawn import state

    def spawn(**kwargs: Any) -> tuple[str, str | None]:
        with pidproc.Popen(["true"], kill_tree=True, **kwargs) as p:
            pass
        assert p.returncode == 0
        return p.backend, p.kill_tree

    # Where pidfd_spawn is the first path (glibc 2.39+), a process group is
    # started by it; else by clone3. A cgroup always needs clone3.
    first = "pidfd_spawn" if "pidfd_spawn" in USABLE else "clone3"
    monkeypatch.delenv("PIDPROC_BACKEND", raising=False)
    with pidproc.use_backend(None):
        assert spawn() == ("clone3", "cgroup")
        assert spawn() == ("clone3", "cgroup")  # remembered, still right
        monkeypatch.setattr(_lifecycle, "_USE_CGROUP", False)
        assert spawn() == (first, "process_group")
        monkeypatch.setattr(_lifecycle, "_USE_CGROUP", True)
        assert spawn() == ("clone3", "cgroup")
        monkeypatch.setattr(state, "_USE_CLONE3", False)
        assert spawn()[1] == "process_group"
        monkeypatch.setattr(state, "_USE_CLONE3", True)
        assert spawn() == ("clone3", "cgroup")
        if _stdlib.TAKES_PROCESS_GROUP:
            assert spawn(process_group=0) == ("clone3", "cgroup")
    if "clone" in USABLE:
        monkeypatch.setenv("PIDPROC_BACKEND", "clone")
        with pidproc.use_backend(None):
            assert spawn() == ("clone", "process_group")
        monkeypatch.delenv("PIDPROC_BACKEND")
    with pidproc.use_backend("fork"):
        if _stdlib.TAKES_PROCESS_GROUP:
            assert spawn() == ("fork", "process_group")
        else:  # 3.10's stdlib spawn cannot start a process group
            with pytest.raises(pidproc.BackendUnavailable, match="kill_tree"):
                spawn()
    with pidproc.use_backend(None):
        assert spawn() == ("clone3", "cgroup")


# ---- the pidfd budget -----------------------------------------------------------


@needs_core
def test_budget_never_costs_an_option() -> None:
    # Above three quarters of the fd limit a pidfd is given up (the child
    # held by its PID), except where the option needs it: a process group
    # signalled through it; autokill (7.1) is not chosen there at all.
    got = run_program("lifecycle_options_budget", env=env_for(None))
    assert got["plain"][:2] == [USABLE[0] + "-no-pidfd", False]
    assert got["kill_tree"][1:3] == [True, "process_group"]
    assert got["die_with_parent"][3] == "pdeathsig"


# ---- rusage ---------------------------------------------------------------------


@needs_core
def test_rusage(backend: str) -> None:
    # In a small parent: until its exec, a vfork-style child (every path,
    # and the stdlib's) counts its parent's resident pages in ru_maxrss.
    got = run_program("lifecycle_options_rusage", env=env_for(backend))
    assert got["backend"] == backend
    assert got["touch_before_reap"] is None and got["burn_before_reap"] is None
    if backend == "pid":
        assert got["touch"] is got["idle"] is got["burn"] is None  # the stdlib's waitpid
        return
    touch, idle, burn = got["touch"], got["idle"], got["burn"]
    assert touch[0] >= 200 * 1024  # KiB, as os.wait4 gives it
    assert idle[0] < 100 * 1024
    assert burn[1] >= 0.15  # its CPU time, user and system


@needs_core
def test_rusage_is_a_struct_rusage() -> None:
    p = pidproc.Popen(["true"])
    assert p.rusage is None  # not reaped yet
    p.wait()
    assert isinstance(p.rusage, resource.struct_rusage)


def test_rusage_none_when_reaped_elsewhere(pidfd_backend: str) -> None:
    p = pidproc.Popen(["true"])
    with pidproc.use_backend(None):
        os.waitpid(p.pid, 0)
    assert p.wait() == 0
    assert p.rusage is None


def test_defaults_change_nothing() -> None:
    p = pidproc.Popen(["true"])
    p.wait()
    assert (p.die_with_parent, p.kill_tree, p.no_new_privs) == (None, None, None)
    assert p._lifecycle is None


# ---- Linux 7.1: CLONE_PIDFD_AUTOKILL, CLONE_AUTOREAP, CLONE_NNP ---------------


@needs_71
def test_autokill_child_status_and_waits() -> None:
    for code, want in (("exit 7", 7), ("kill -9 $$", -signal.SIGKILL)):
        p = pidproc.Popen(["sh", "-c", code], die_with_parent=True)
        assert p.die_with_parent == ("autokill" if PRIVILEGED else "pdeathsig")
        assert p.wait(timeout=30) == want
    p = pidproc.Popen(["sleep", "30"], die_with_parent=True)
    assert p.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.1)
    p.terminate()
    assert p.wait() == -signal.SIGTERM
    if p.die_with_parent == "autokill":
        assert p.rusage is None  # the kernel reaped it: no waitid, no usage


@needs_71
def test_autokill_dropped_popen_keeps_running() -> None:
    if not PRIVILEGED:
        pytest.skip("needs CAP_SYS_ADMIN for autokill without no_new_privs")
    p = pidproc.Popen(["sleep", "30"], die_with_parent=True)
    pid, fd = p.pid, _posix.pidfd_open(p.pid)
    del p
    collect()
    try:
        # The stdlib keeps a running child's Popen (subprocess._active), and
        # with it the pidfd: dropping it does not kill.
        assert alive_for(fd, 0.3)
        _posix.pidfd_send_signal(fd, signal.SIGKILL)
        assert not alive_for(fd, 10)
    finally:
        os.close(fd)
    subprocess._cleanup()  # type: ignore[attr-defined]
    assert all(getattr(q, "pid", None) != pid for q in subprocess._active)  # type: ignore[attr-defined]


@needs_71
def test_autokill_without_cap_sys_admin() -> None:
    # The kernel allows AUTOKILL without CAP_SYS_ADMIN only with CLONE_NNP.
    # pidproc never adds no_new_privs unasked: the parent-death signal holds
    # the child instead; asked for, AUTOKILL + NNP.
    if not PRIVILEGED:
        pytest.skip("runs as root, then drops CAP_SYS_ADMIN")
    got = run_program("lifecycle_options_capdrop", env=env_for(None))
    assert got["die"] == ["pdeathsig", None, "0" if not _no_new_privs_here() else "1"]
    assert got["die_nnp"] == ["autokill", "clone_nnp", "1"]


@needs_71
def test_autokill_survives_a_fork_of_the_parent() -> None:
    # A forked copy of the parent would hold the clone pidfd too (the same
    # open file) and keep the child alive after the parent's death: pidproc
    # closes those pidfds in forked children.
    with cleanup(marker()) as mark:
        parent, info, fd = start_parent({"die_with_parent": True}, "fork", mark, None)
        try:
            assert info["die"] == ("autokill" if PRIVILEGED else "pdeathsig")
            parent.kill()
            parent.wait()
            assert not alive_for(fd, 1.0)
        finally:
            os.close(fd)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(parent.pid, signal.SIGKILL)  # the forked copy


@needs_71
def test_autokill_with_kill_tree_and_no_new_privs() -> None:
    with cleanup(marker()) as mark:
        p = pidproc.Popen(
            ["sh", "-c", SHELL_JOBS.format(m=mark)], stdout=subprocess.PIPE,
            die_with_parent=True, kill_tree=True, no_new_privs=True,
        )  # fmt: skip
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        assert (p.die_with_parent, p.no_new_privs) == ("autokill", "clone_nnp")
        with open(f"/proc/{p.pid}/status") as f:
            assert "NoNewPrivs:\t1" in f.read()
        p.kill()
        p.communicate()
        assert p.returncode == -signal.SIGKILL
        assert gone_soon(mark)
