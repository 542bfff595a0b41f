"""The pidfd_spawn path (glibc 2.39+), and pidproc on CPython 3.14 and 3.15.

pidfd_spawn is pidproc's first choice on every current distribution, but
this machine's glibc (2.36) lacks it: the tests that need it skip here,
saying why, and run for real in the Debian roots of tools/distros.py
(trixie: glibc 2.41; sid: glibc 2.43), which set
PIDPROC_REQUIRE_PIDFD_SPAWN=1 so that a missing path fails instead.

The last section is about the running CPython rather than glibc: the private
hooks pidproc overrides must still be called the way this stdlib calls
them, and its waiting must compose with 3.15's own pidfd wait.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import pidproc
from pidproc import _posix
from pidproc._native import lib
from pidproc._spawn import state as _backends
from pidproc._spawn.paths import _leaks_pidfd_on_exec_failure
from pidproc._spawn.request import SpawnRequest, build_spec

from ._support import core
from ._support.features import has_pidfd_get_info, unshare_works
from ._support.leaks import children, open_fds
from ._support.pids import foreign_reaper
from ._support.programs import program
from .conftest import PY, USABLE

HAVE = "pidfd_spawn" in USABLE
REQUIRED = os.environ.get("PIDPROC_REQUIRE_PIDFD_SPAWN") == "1"
WHY = _backends.reason("pidfd_spawn") or "pidfd_spawn is switched off (_USE_PIDFD_SPAWN)"
needs_pidfd_spawn = pytest.mark.skipif(
    not HAVE and not REQUIRED, reason=f"no pidfd_spawn path here: {WHY}"
)
OTHERS = [b for b in pidproc.BACKENDS if b != "pidfd_spawn"]
# A spawn in a fresh interpreter that prints the path it took.
PRINT_PATH = "import pidproc\nwith pidproc.Popen(['true']) as p: pass\nprint(p.backend)"


@pytest.fixture
def default_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No path forced, whatever PIDPROC_BACKEND says (the forced reruns set it)."""
    monkeypatch.delenv("PIDPROC_BACKEND", raising=False)
    with pidproc.use_backend(None):
        yield


@pytest.fixture
def garbage(tmp_path: Path) -> str:
    """An executable file that is no program: execve says ENOEXEC, so the
    failure happens in the child, after the clone."""
    path = tmp_path / "garbage"
    path.write_bytes(b"\x00\x01\x02 not a program")
    path.chmod(0o755)
    return str(path)


def _zombies_and_children() -> set[int]:
    return {pid for pid, _state in children()}


# ---- plain spawns take pidfd_spawn; every other path can still be forced ----


@needs_pidfd_spawn
def test_pidfd_spawn_is_the_first_path(default_path: None) -> None:
    assert pidproc.backends()[0] == "pidfd_spawn", WHY
    assert _backends.reason("pidfd_spawn") is None


@needs_pidfd_spawn
def test_plain_spawns_take_pidfd_spawn(default_path: None, tmp_path: Path) -> None:
    """Every request posix_spawn can express, with the behaviour checked."""
    with pidproc.Popen(["sh", "-c", "echo $$"], stdout=pidproc.PIPE) as p:
        out = p.stdout.read()  # type: ignore[union-attr]
    assert p.backend == "pidfd_spawn" and p.returncode == 0
    assert int(out) == p.pid  # pidfd_getpid named the right process

    r = pidproc.run(["cat"], input=b"abc", capture_output=True, timeout=30)
    assert (r.stdout, r.returncode) == (b"abc", 0)

    script = tmp_path / "prog"
    script.write_text("#!/bin/sh\npwd\necho $GREETING\n")
    script.chmod(0o755)
    r = pidproc.run(["./prog"], cwd=tmp_path, env={"GREETING": "hi"}, capture_output=True)
    assert r.stdout.decode().split() == [str(tmp_path), "hi"], r.stderr

    rfd, wfd = os.pipe()
    try:
        code = f"import os; os.write({wfd}, b'kept')"
        with pidproc.Popen([PY, "-c", code], pass_fds=(wfd,)) as p:
            pass
        assert os.read(rfd, 10) == b"kept"
    finally:
        os.close(rfd)
        os.close(wfd)
    assert p.backend == "pidfd_spawn"

    with pidproc.Popen([PY, "-c", "import os; print(os.getsid(0) == os.getpid())"],
                       stdout=pidproc.PIPE, start_new_session=True) as p:  # fmt: skip
        assert p.stdout.read().strip() == b"True"  # type: ignore[union-attr]
    assert p.backend == "pidfd_spawn"


@needs_pidfd_spawn
def test_the_first_executable_candidate_on_path_is_run(default_path: None, tmp_path: Path) -> None:
    """As the stdlib's child: a PATH entry that is not executable is passed
    over, and the next one runs, through pidfd_spawn itself."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").write_text("#!/bin/sh\necho first\n")  # not executable
    (second / "tool").write_text("#!/bin/sh\necho second\n")
    (second / "tool").chmod(0o755)
    env = {"PATH": f"{first}:{second}:/usr/bin:/bin"}
    for mod in (subprocess, pidproc):
        with mod.Popen(["tool"], env=env, stdout=subprocess.PIPE) as p:
            assert p.stdout.read() == b"second\n"  # type: ignore[union-attr]
    assert p.backend == "pidfd_spawn"  # type: ignore[attr-defined]


@needs_pidfd_spawn
def test_requests_posix_spawn_cannot_express_take_the_next_path(default_path: None) -> None:
    next_best = [b for b in pidproc.backends() if b != "pidfd_spawn"][0]
    with pidproc.Popen(["true"], umask=0o077) as p:
        pass
    assert p.backend == next_best
    with pidproc.Popen(["true"], user=os.geteuid()) as p:
        pass
    assert p.backend == next_best
    with pidproc.Popen(["true"], preexec_fn=lambda: None) as p:
        pass
    assert p.backend == "fork"


@needs_pidfd_spawn
@pytest.mark.parametrize("name", OTHERS)
def test_every_other_path_can_still_be_forced(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in pidproc.backends(), _backends.reason(name)
    with pidproc.use_backend(name):
        with pidproc.Popen(["sh", "-c", "exit 3"]) as p:
            pass
    assert (p.backend, p.returncode) == (name, 3)

    env = dict(os.environ, PIDPROC_BACKEND=name)
    r = subprocess.run([PY, "-c", PRINT_PATH], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == name, r.stderr


STRACE = shutil.which("strace")


@needs_pidfd_spawn
@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_pidfd_spawn_is_one_clone3_that_returns_the_pidfd(tmp_path: Path) -> None:
    out = tmp_path / "trace"
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    cmd = [str(STRACE), "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,pidfd_open", "-o",
           str(out), PY, "-c", PRINT_PATH]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"ptrace is not permitted here: {r.stderr[:200]}")
    assert r.stdout.strip() == "pidfd_spawn", r.stderr
    text = out.read_text()
    spawns = [ln for ln in text.splitlines() if re.search(r"\b(clone3?|v?fork)\(", ln)]
    assert len(spawns) == 1 and "clone3(" in spawns[0], text
    m = re.search(r"flags=([A-Z_|0-9]+)", spawns[0])
    assert m and {"CLONE_VM", "CLONE_VFORK", "CLONE_PIDFD"} <= set(m.group(1).split("|"))
    child = re.search(r"\) = (\d+)$", spawns[0]) or re.search(r"= (\d+)\s*$", text)
    assert child, text
    assert f"pidfd_open({child.group(1)}," not in text  # the pidfd came with the child


UNNAMED_PID = 2**31 - 1  # _pidfd_spawn.c: a child reaped by someone else before it was named


@needs_pidfd_spawn
@pytest.mark.parametrize("disposition", ["ignored", "handled"])
def test_while_sigchld_is_not_default_the_next_path_names_the_child(
    default_path: None, disposition: str
) -> None:
    """pidfd_spawn returns no pid, and pidfd_getpid cannot name a child that
    was reaped already (SIGCHLD ignored, or a handler reaping with
    waitpid(-1)): then the next path spawns, whose clone returns the pid."""
    import signal

    handler: Any = signal.SIG_IGN if disposition == "ignored" else (lambda *_: None)
    previous = signal.signal(signal.SIGCHLD, handler)
    try:
        for _ in range(20):
            p = pidproc.Popen(["sh", "-c", "echo $$"], stdout=pidproc.PIPE)
            out = p.communicate()[0]
            assert int(out) == p.pid
            assert p.backend == "clone3"
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert pidproc.backends()[0] == "pidfd_spawn"
    with pidproc.Popen(["true"]) as p:
        pass
    assert p.backend == "pidfd_spawn"


@needs_pidfd_spawn
def test_a_reaper_thread_never_makes_a_program_run_twice(
    default_path: None, tmp_path: Path
) -> None:
    """A thread reaping with os.wait() may take a child that exits at once
    before pidfd_getpid names it.  The program has run: it must not be run
    again on another path, and its Popen must never name another process."""
    import threading

    stop = threading.Event()
    log = tmp_path / "ran"
    thread = foreign_reaper(stop, 0.0002)
    spawned = []
    try:
        for _ in range(200):
            p = pidproc.Popen(["sh", "-c", f"echo $$ >> {log}; exit 3"])
            spawned.append((p, p.wait(timeout=30)))
    finally:
        stop.set()
        thread.join(5)
    ran = [int(line) for line in log.read_text().split()]
    assert len(ran) == 200  # each program ran exactly once
    for p, code in spawned:
        assert p.backend == "pidfd_spawn"
        assert p.pid in ran or p.pid == UNNAMED_PID
        assert code in (3, 0)  # 0: reaped elsewhere on a kernel before 6.15, as the stdlib says
    assert pidproc.backends()[0] == "pidfd_spawn"


@needs_pidfd_spawn
def test_clone3_denied_by_a_filter_retires_pidfd_spawn() -> None:
    """glibc's pidfd_spawn clones with clone3 and passes EPERM (a seccomp
    filter) through: after the first such spawn it is no longer tried."""
    from ._support import seccomp

    if not seccomp.available():
        pytest.skip("libseccomp.so.2 not installed")
    denied = program("pidfd_spawn_path_clone3_denied")
    r = seccomp.run_filtered({"clone3": errno.EPERM}, program=denied)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "pidfd_spawn",
        "clone 5",
        "clone pidfd_spawn uses clone3, which answers EPERM here",
    ]


# ---- failures: nothing leaks, errors as the stdlib's ----


def _exec_request(path: str) -> SpawnRequest:
    spec = build_spec(
        args=[path], executable=path, env=None, cwd=None, pass_fds=(), close_fds=True,
        fds=(-1, -1, -1), restore_signals=True, start_new_session=False, process_group=-1,
        uid=None, gid=None, gids=None, umask=-1,
    )  # fmt: skip
    return SpawnRequest(spec)


@needs_pidfd_spawn
def test_exec_failure_inside_pidfd_spawn_leaks_no_fd_and_no_zombie(garbage: str) -> None:
    """200 spawns that glibc clones and whose exec fails: glibc reaps the
    child and (2.40+) closes the pidfd; pidproc hands nothing out."""
    fds, kids = open_fds(), _zombies_and_children()
    for _ in range(200):
        request = _exec_request(garbage)
        rc = lib.pidproc_spawn_pidfd_spawn(request.struct)
        r = request.struct
        assert (rc, r.err_step, r.err_errno, r.pidfd) == (
            0,
            lib.PIDPROC_STEP_EXEC,
            errno.ENOEXEC,
            -1,
        )
    assert open_fds() == fds
    assert _zombies_and_children() == kids


@needs_pidfd_spawn
def test_exec_failure_through_popen_is_the_stdlibs_error_and_leaks_nothing(
    default_path: None, garbage: str
) -> None:
    with pytest.raises(OSError) as theirs:
        subprocess.Popen([garbage])
    fds, kids = open_fds(), _zombies_and_children()
    for _ in range(200):
        with pytest.raises(OSError) as ours:
            pidproc.Popen([garbage])
        assert type(ours.value) is type(theirs.value)
        assert ours.value.args == theirs.value.args
        assert ours.value.filename == theirs.value.filename == garbage
    assert open_fds() == fds
    assert _zombies_and_children() == kids


@needs_pidfd_spawn
@pytest.mark.parametrize("case", ["missing program", "missing cwd", "cwd is a file"])
def test_failures_pidfd_spawn_cannot_name_are_replayed_exactly(
    default_path: None, tmp_path: Path, case: str
) -> None:
    kwargs: dict[str, Any] = {
        "missing program": {"args": [str(tmp_path / "nope")]},
        "missing cwd": {"args": ["true"], "cwd": str(tmp_path / "nope")},
        "cwd is a file": {"args": ["true"], "cwd": "/etc/hostname"},
    }[case]
    errors = []
    for mod in (subprocess, pidproc):
        with pytest.raises(OSError) as e:
            mod.Popen(**kwargs)
        errors.append((type(e.value), e.value.args, e.value.filename))
    assert errors[0] == errors[1]


def _can_unmount_proc() -> bool:
    return unshare_works("--mount", "--propagation", "private", then=("umount", "-l", "/proc"))


@needs_pidfd_spawn
@pytest.mark.skipif(not has_pidfd_get_info(), reason="kernel without PIDFD_GET_INFO (6.13)")
@pytest.mark.skipif(not _can_unmount_proc(), reason="needs root and unshare --mount")
def test_the_pid_is_known_without_proc() -> None:
    """pidfd_getpid reads /proc/self/fdinfo; without /proc the kernel names
    the child instead (PIDFD_GET_INFO), and the path stays pidfd_spawn."""
    code = (
        "import os, pidproc\n"
        "assert not os.path.exists('/proc/self')\n"
        "p = pidproc.Popen(['sh', '-c', 'echo $$'], stdout=pidproc.PIPE)\n"
        "out = p.communicate()[0]\n"
        "print(p.backend, p.pid, int(out), p.returncode)\n"
    )
    shell = 'umount -l /proc && exec "$0" -c "$1"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, PY, code]
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    backend, pid, child_says, rc = r.stdout.split()
    assert (backend, pid, rc) == ("pidfd_spawn", child_says, "0")


@pytest.mark.parametrize(
    ("version", "leaks"),
    [("2.38", False), ("2.39", True), ("2.39.9000", True), ("2.40", False), ("2.41", False),
     ("2.43", False), ("3.0", False), ("2.3", False), ("2.39-foo", False)],
)  # fmt: skip
def test_the_bz31695_guard_matches_every_2_39(version: str, leaks: bool) -> None:
    """glibc 2.39 leaks the pidfd when exec fails (fixed in 2.40); a glibc
    whose version says 2.39 never gets the path (it cannot be told from a
    build with the fix backported).  No 2.39 root here: the mapping is what
    can be checked, with the running glibc below."""
    assert _leaks_pidfd_on_exec_failure(version) is leaks


def test_the_bz31695_guard_holds_for_this_glibc() -> None:
    version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    number = version.split()[-1] if version else ""
    if _leaks_pidfd_on_exec_failure(number):
        assert "pidfd_spawn" not in pidproc.backends()
        assert "BZ 31695" in (_backends.reason("pidfd_spawn") or "")
    elif core.MISSING is not None:
        assert "pidfd_spawn" not in pidproc.backends()
    elif lib.pidproc_pidfd_spawn_available() and _backends._USE_PIDFD_SPAWN:
        assert "pidfd_spawn" in pidproc.backends(), _backends.reason("pidfd_spawn")
    else:
        assert "pidfd_spawn" not in pidproc.backends()


# ---- CPython 3.14/3.15: the hooks pidproc overrides ----


@pytest.mark.parametrize(
    ("hook", "caller"),
    [("_execute_child", "__init__"), ("_internal_poll", "poll"), ("_wait", "wait"),
     ("send_signal", "terminate"), ("send_signal", "kill")],
)  # fmt: skip
def test_every_hook_we_override_is_still_called_by_this_stdlib(hook: str, caller: str) -> None:
    """An override of a method the stdlib no longer calls would never run."""
    assert hook in vars(pidproc.Popen)
    assert hook in getattr(subprocess.Popen, caller).__code__.co_names


@pytest.mark.parametrize("timeout", [10**10, sys.maxsize, math.inf])
def test_wait_with_a_huge_timeout(backend: str, timeout: float) -> None:
    """gh-154836 (3.15's suite): a timeout beyond what poll() and
    Lock.acquire take must wait, not overflow."""
    with pidproc.Popen(["true"]) as p:
        assert p.wait(timeout=timeout) == 0
    assert p.backend == backend
    assert pidproc.run(["true"], timeout=1e10).returncode == 0


SLEEPER = [PY, "-c", "import time; time.sleep(0.3)"]


def test_a_pidfd_held_child_is_waited_on_its_own_pidfd(pidfd_backend: str) -> None:
    """3.15's _wait opens a second pidfd by PID (_wait_pidfd); ours polls the
    one the child came with, so neither pidfd_open nor 3.15's hook nor the
    stdlib's sleep loop runs, on any version."""
    p = pidproc.Popen(SLEEPER)
    hook = getattr(subprocess.Popen, "_wait_pidfd", None)
    with (
        mock.patch(
            "os.pidfd_open", side_effect=AssertionError("pidfd_open"), create=True
        ) as opened,
        mock.patch.object(_posix, "pidfd_open", side_effect=AssertionError("pidfd_open")) as ours,
        mock.patch("time.sleep", side_effect=AssertionError("sleep")) as slept,
        mock.patch.object(subprocess.Popen, "_wait_pidfd", create=hook is None) as hooked,
    ):
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=0.001)
        started = time.monotonic()
        assert p.wait(timeout=30) == 0
    assert not opened.called and not ours.called and not slept.called and not hooked.called
    assert time.monotonic() - started < 5
    p.__exit__(None, None, None)


@pytest.mark.skipif(
    not hasattr(subprocess.Popen, "_wait_pidfd"),
    reason=f"CPython {sys.version_info[0]}.{sys.version_info[1]} has no Popen._wait_pidfd (3.15+)",
)
def test_a_child_without_pidfd_gets_the_stdlibs_own_pidfd_wait() -> None:
    """On path "pid" pidproc is the stdlib, so 3.15's pidfd wait does the
    waiting, reached through our _wait rather than replaced by it."""
    original = subprocess.Popen._wait_pidfd  # type: ignore[attr-defined]
    with pidproc.use_backend("pid"):
        p = pidproc.Popen(SLEEPER)
    assert p.pidfd is None
    with mock.patch.object(
        subprocess.Popen, "_wait_pidfd", autospec=True, side_effect=original
    ) as hooked:
        assert p.wait(timeout=30) == 0
    hooked.assert_called_once()
