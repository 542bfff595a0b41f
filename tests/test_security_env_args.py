"""Environment and arguments reach the program exactly as the stdlib passes them.

- the child's environment block (``/proc/self/environ``, raw bytes) equals
  the stdlib child's, for a given env (str, bytes, mixed and duplicate keys,
  empty) and for the inherited one after run-time changes made through
  ``os.environ``, ``os.environb``, ``os.putenv`` and ``os.unsetenv``; the
  program is looked up on the same PATH;
- no shell unless ``shell=True``: argv (``/proc/<pid>/cmdline``) and the
  executable (``/proc/<pid>/exe``) of the running program equal the
  stdlib's, and shell metacharacters arrive literally;
- a NUL byte anywhere is rejected before anything is spawned: strace sees
  no clone/fork/vfork between the call and the exception, on every path.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pidproc

from ._support.programs import program
from .conftest import PY

CAT = shutil.which("cat", path="/usr/bin:/bin") or "/bin/cat"
ECHO = shutil.which("echo", path="/usr/bin:/bin") or "/bin/echo"


def environ_of(module: Any, **kwargs: Any) -> bytes:
    return bytes(module.check_output([CAT, "/proc/self/environ"], **kwargs))


def outcome(module: Any, env: Any) -> bytes | str:
    try:
        return environ_of(module, env=env)
    except ValueError as e:
        return str(e)


GIVEN: dict[str, Callable[[], dict[Any, Any]]] = {
    "str": lambda: {"A": "1", "EMPTY": "", "UNI": "é", "EQ": "a=b=c"},
    "bytes": lambda: {b"B": b"2", b"RAW": b"\xff\xfe", b"EQ": b"x=y"},
    "mixed-duplicate-key": lambda: {"DUP": "str", b"DUP": b"bytes", "Z": b"v"},
    "empty": lambda: {},
    "empty-key": lambda: {"": "no-name", "K": "v"},
    "path-like-value": lambda: {"P": pathlib.Path("/some/where")},
    "os.environ-itself": lambda: os.environ,  # type: ignore[dict-item]
}


@pytest.mark.parametrize("case", sorted(GIVEN))
def test_given_env_passed_exactly(backend: str, case: str) -> None:
    env = GIVEN[case]()
    # cwd: the stdlib's _posixsubprocess child (never posix_spawn).
    ours = environ_of(pidproc, env=env, cwd="/")
    assert ours == environ_of(subprocess, env=env, cwd="/")
    theirs = outcome(subprocess, env)
    if theirs != outcome(pidproc, env):
        # 3.13+ hands this call to os.posix_spawn, which refuses an empty
        # name; the same call with cwd= passes it (above), as pidproc's own
        # children do.  (Paths fork and pid are the stdlib's: they raise too.)
        assert case == "empty-key" and backend in ("clone3", "clone", "pidfd_spawn")
        assert theirs == "illegal environment variable name"
        assert outcome(pidproc, env) == ours
    if case != "os.environ-itself":
        encoded = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
        assert ours == b"".join(e + b"\0" for e in encoded)


@contextlib.contextmanager
def environ_changed() -> Iterator[None]:
    """Run-time changes, some seen by os.environ only, some by C only."""
    saved = dict(os.environb)
    try:
        os.environ["PIDPROC_T_SET"] = "through os.environ"
        os.environb[b"PIDPROC_T_BYTES"] = b"\xfe raw"
        os.putenv("PIDPROC_T_PUTENV", "C only")  # not in os.environ
        os.environ["PIDPROC_T_UNSET"] = "gone in C"
        os.unsetenv("PIDPROC_T_UNSET")  # still in os.environ
        os.environ.pop("PIDPROC_T_NEVER", None)
        yield
    finally:
        for key in [k for k in os.environb if k not in saved]:
            del os.environb[key]
        os.unsetenv("PIDPROC_T_PUTENV")
        os.environb.update(saved)


def test_inherited_env_after_runtime_changes(backend: str) -> None:
    with environ_changed():
        ours = environ_of(pidproc)
        assert ours == environ_of(subprocess)
        # The stdlib passes the C environ (execv), not os.environ.
        entries = ours.split(b"\0")
        assert b"PIDPROC_T_SET=through os.environ" in entries
        assert b"PIDPROC_T_BYTES=\xfe raw" in entries
        assert b"PIDPROC_T_PUTENV=C only" in entries
        assert not [e for e in entries if e.startswith(b"PIDPROC_T_UNSET=")]
        # Passing os.environ explicitly gives its own view instead.
        explicit = environ_of(pidproc, env=os.environ).split(b"\0")
        assert b"PIDPROC_T_UNSET=gone in C" in explicit
        assert not [e for e in explicit if e.startswith(b"PIDPROC_T_PUTENV=")]


@pytest.fixture(scope="module")
def two_path_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    dirs = []
    for name in ("first", "second"):
        d = tmp_path_factory.mktemp(name)
        prog = d / "pidproc-which-dir"
        prog.write_text(f"#!/bin/sh\necho {name}\n")
        prog.chmod(0o755)
        dirs.append(str(d))
    return dirs[0], dirs[1]


def test_program_found_on_the_same_path(backend: str, two_path_dirs: tuple[str, str]) -> None:
    first, second = two_path_dirs
    prog = ["pidproc-which-dir"]

    def both(**kwargs: Any) -> str:
        ours = pidproc.check_output(prog, text=True, **kwargs)
        assert ours == subprocess.check_output(prog, text=True, **kwargs)
        return str(ours).strip()

    saved = os.environ["PATH"]
    try:
        os.environ["PATH"] = f"{second}:{saved}"
        assert both() == "second"
        assert both(env={"PATH": first}) == "first"
        # The lookup reads os.environ, even when C's PATH was changed alone.
        os.putenv("PATH", f"{first}:{saved}")
        assert both() == "second"
    finally:
        os.environ["PATH"] = saved


# ---- arguments and shells ---------------------------------------------------

METACHARS = [
    "$(touch MARK)", "`touch MARK`", "a;touch MARK", "*", "|", ">MARK", "&&", "",
    "sp ace", "\\", "'\"", "~", "$HOME", "\t\n", "-c",
]  # fmt: skip


def running(module: Any, args: Any, **kwargs: Any) -> tuple[list[bytes], str]:
    """argv and executable of the running program, as the kernel has them."""
    with module.Popen(args, stdin=subprocess.PIPE, **kwargs) as p:
        try:
            # The parent wakes up inside execve, before the kernel has laid
            # out the new argv (cmdline reads empty for a moment): wait for it.
            deadline = time.monotonic() + 10
            while True:
                with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")[:-1]
                if argv or time.monotonic() > deadline:
                    return argv, os.readlink(f"/proc/{p.pid}/exe")
                time.sleep(0.001)
        finally:
            p.kill()


SLEEPER = "import time; time.sleep(30)"
ARGS: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "list-with-metacharacters": lambda: ([PY, "-c", SLEEPER, *METACHARS], {}),
    "str-no-shell": lambda: ("cat", {}),
    "bytes": lambda: ([os.fsencode(CAT), b"-"], {}),
    "path-like": lambda: (pathlib.Path(CAT), {}),
    "executable-override": lambda: (["not-cat", "-"], {"executable": CAT}),
    "shell-str": lambda: ("cat; true $(echo MARK)", {"shell": True}),
    "shell-list": lambda: (["cat; true", "zero", "one two"], {"shell": True}),
    "shell-executable": lambda: ("cat; true", {"shell": True, "executable": "/bin/bash"}),
}


@pytest.mark.parametrize("case", sorted(ARGS))
def test_argv_and_executable_match_stdlib(backend: str, case: str, tmp_path: pathlib.Path) -> None:
    args, kwargs = ARGS[case]()
    ours = running(pidproc, args, cwd=tmp_path, **kwargs)
    assert ours == running(subprocess, args, cwd=tmp_path, **kwargs)
    if not kwargs.get("shell"):
        expected = [args] if isinstance(args, (str, bytes, os.PathLike)) else args
        assert ours[0] == [os.fsencode(a) for a in expected]
        assert not (tmp_path / "MARK").exists()
    else:
        assert ours[0][:2] == [os.fsencode(kwargs.get("executable", "/bin/sh")), b"-c"]


def test_metacharacters_arrive_literally(backend: str, tmp_path: pathlib.Path) -> None:
    ours = pidproc.check_output([ECHO, *METACHARS], cwd=tmp_path, text=True)
    assert ours == subprocess.check_output([ECHO, *METACHARS], cwd=tmp_path, text=True)
    assert ours == " ".join(METACHARS) + "\n"
    assert list(tmp_path.iterdir()) == []
    # Positive control: with shell=True the same text is interpreted.
    pidproc.check_call("touch MARK", shell=True, cwd=tmp_path)
    assert (tmp_path / "MARK").exists()


def test_no_splitting_without_shell(backend: str) -> None:
    def error(module: Any) -> tuple[Any, ...]:
        with pytest.raises(FileNotFoundError) as info:
            module.Popen(f"{ECHO} hello")
        return type(info.value), info.value.errno, info.value.filename

    assert error(pidproc) == error(subprocess)


# ---- NUL bytes: rejected before any process exists -------------------------

NUL_CASES: list[dict[str, Any]] = [
    dict(args=["true", "a\0b"]),
    dict(args=[b"true", b"a\0b"]),
    dict(args=["tr\0ue"]),
    dict(args="tr\0ue"),
    dict(args=["true"], executable="tr\0ue"),
    dict(args="true\0", shell=True),
    dict(args=["true"], env={"A": "x\0y"}),
    dict(args=["true"], env={"A\0": "x"}),
    dict(args=["true"], env={b"B": b"\0"}),
    dict(args=["true"], env={"PATH": "/bin\0"}),
    dict(args=["true"], cwd="/tm\0p"),
    dict(args=["true"], user=0, cwd="/\0"),
]


def test_nul_rejected_before_anything_is_spawned(tmp_path: pathlib.Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    log = tmp_path / "trace"
    r = subprocess.run(
        [strace, "-f", "-qq", "-o", str(log), "-e", "trace=clone,clone3,fork,vfork,write",
         sys.executable, program("security_nul_cases"), repr(NUL_CASES)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"strace cannot trace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    paths = ["stdlib", *pidproc.backends()]
    # Every case raised ValueError on every path, with the stdlib's message.
    lines = [line.split(" ", 2) for line in r.stdout.splitlines()]
    assert len(lines) == len(paths) * len(NUL_CASES)
    by_case: dict[str, set[str]] = {}
    for _, j, message in lines:
        by_case.setdefault(j, set()).add(message)
    assert all(len(messages) == 1 for messages in by_case.values()), by_case
    # Spawn syscalls between each pair of marks.
    spans: dict[str, int] = {}
    current = None
    for line in log.read_text().splitlines():
        mark = re.search(r'write\(\d+, "(BEGIN|END) ([^"]+)"', line)
        if mark:
            current = mark.group(2) if mark.group(1) == "BEGIN" else None
            if current is not None:
                spans[current] = 0
        elif current is not None and re.search(r"\b(clone3?|v?fork)\(", line):
            spans[current] += 1
    assert len(spans) == len(paths) * (len(NUL_CASES) + 1)
    spawned = {mark: n for mark, n in spans.items() if n and not mark.endswith("control")}
    assert not spawned, spawned
    # The controls prove that a spawn is seen where one happens.
    assert all(spans[f"{i} control"] for i in range(len(paths)))
