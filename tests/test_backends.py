"""Choosing, forcing and probing the spawn paths."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import pidproc
from pidproc._spawn import state as _backends

from ._support.programs import program
from .conftest import PY, USABLE


def run_py(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python ARGV`` without PIDPROC_BACKEND, with ``env`` added."""
    full_env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    full_env.update(env)
    return subprocess.run([PY, *argv], env=full_env, capture_output=True, text=True)


def test_backends_are_best_first_and_end_with_pid() -> None:
    found = pidproc.backends()
    assert found == [b for b in pidproc.BACKENDS if b in found]
    assert found[-1] == "pid"
    assert {"clone", "fork", "pid"} <= set(found)  # Linux 5.4+ with pidfds, as here


def test_default_path_is_the_best_one() -> None:
    with pidproc.use_backend(None):
        p = pidproc.Popen(["true"])
        p.wait()
    assert p.backend == pidproc.backends()[0]


@pytest.mark.parametrize("name", USABLE)
def test_environment_variable_forces_a_path(name: str) -> None:
    r = run_py("-c", "import pidproc; p = pidproc.Popen(['true']); p.wait(); print(p.backend)",
               PIDPROC_BACKEND=name)  # fmt: skip
    assert r.stdout.strip() == name, r.stderr


def test_unknown_path_is_a_clear_error() -> None:
    r = run_py("-c", "import pidproc; pidproc.Popen(['true'])", PIDPROC_BACKEND="posix_spawn")
    assert "ValueError: PIDPROC_BACKEND='posix_spawn': unknown spawn path" in r.stderr
    with pytest.raises(ValueError, match="unknown spawn path"):
        with pidproc.use_backend("vfork"):
            pass


@pytest.mark.skipif("pidfd_spawn" in USABLE, reason="glibc here has pidfd_spawn (2.39+)")
def test_forcing_a_path_that_cannot_work_here_says_why() -> None:
    with pidproc.use_backend("pidfd_spawn"):
        with pytest.raises(pidproc.BackendUnavailable, match=r"pidfd_spawn \(2\.39\+\)"):
            pidproc.Popen(["true"])
    assert _backends.reason("pidfd_spawn")


@pytest.mark.parametrize("knob", ["_USE_PIDFD_SPAWN", "_USE_CLONE3", "_USE_CLONE", "_USE_FORK"])
def test_each_knob_skips_its_path(knob: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backends, knob, False)
    with pidproc.use_backend(None):
        p = pidproc.Popen(["true"])
        p.wait()
    skipped = knob[len("_USE_") :].lower()
    assert p.backend != skipped
    assert p.backend == pidproc.backends()[0]


def test_preexec_fn_takes_the_fork_path_with_a_pidfd(backend: str) -> None:
    marker = []
    p = pidproc.Popen(["true"], preexec_fn=lambda: marker.append(1))
    expected = "pid" if backend == "pid" else "fork"
    assert p.backend == expected
    assert (p.pidfd is not None) == (expected == "fork")
    assert p.wait() == 0
    assert marker == []  # it ran in the child, not here


def test_transient_failure_is_not_cached() -> None:
    """EMFILE while creating the pidfd says nothing about the kernel: the next
    spawn, with the limit raised, takes the best path again."""
    r = run_py(program("backends_transient_emfile"))
    lines = r.stdout.split("\n")
    assert lines[0] == f"error {__import__('errno').EMFILE}", r.stderr
    best = USABLE[0]
    assert lines[1] == f"{best} {best}"


STRACE = shutil.which("strace")
needs_strace = pytest.mark.skipif(STRACE is None, reason="strace is not installed")


def trace(tmp_path: Path, code: str, backend: str) -> str:
    out = tmp_path / "trace"
    env = {k: v for k, v in os.environ.items()}
    env["PIDPROC_BACKEND"] = backend
    cmd = [str(STRACE), "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,pidfd_open"]
    r = subprocess.run([*cmd, "-o", str(out), PY, "-c", code], env=env, capture_output=True)
    if r.returncode != 0 and b"ptrace" in r.stderr:
        pytest.skip(f"ptrace is not permitted here: {r.stderr.decode()[:200]}")
    assert r.returncode == 0, r.stderr
    return out.read_text()


SPAWN = "import pidproc; pidproc.Popen(['true']).wait()"
SPAWN_AS_USER = "import pidproc; pidproc.Popen(['true'], user=0, group=0, extra_groups=[]).wait()"


def _flags(line: str) -> set[str]:
    m = re.search(r"flags=([A-Z_|0-9]+)", line)
    assert m, line
    return set(m.group(1).split("|"))


@needs_strace
@pytest.mark.skipif("clone3" not in USABLE, reason="no clone3 path here")
@pytest.mark.parametrize("code", [SPAWN, SPAWN_AS_USER], ids=["plain", "user-group"])
def test_clone3_path_issues_clone3_with_pidfd_vm_vfork(tmp_path: Path, code: str) -> None:
    text = trace(tmp_path, code, "clone3")
    spawns = [ln for ln in text.splitlines() if re.search(r"\b(clone3?|v?fork)\(", ln)]
    assert len(spawns) == 1, text  # one clone3, and no fork for user=/group=
    assert "clone3(" in spawns[0]
    assert {"CLONE_VM", "CLONE_VFORK", "CLONE_PIDFD"} <= _flags(spawns[0])
    child = re.search(r"\) = (\d+)$", spawns[0])
    assert child, spawns[0]
    # The pidfd came with the child: nobody opened one for it afterwards.
    assert f"pidfd_open({child.group(1)}," not in text


@needs_strace
@pytest.mark.parametrize("code", [SPAWN, SPAWN_AS_USER], ids=["plain", "user-group"])
def test_clone_path_issues_legacy_clone_with_pidfd_vm_vfork(tmp_path: Path, code: str) -> None:
    text = trace(tmp_path, code, "clone")
    spawns = [ln for ln in text.splitlines() if re.search(r"\b(clone3?|v?fork)\(", ln)]
    assert len(spawns) == 1, text
    assert re.search(r"\bclone\(", spawns[0])
    assert {"CLONE_VM", "CLONE_VFORK", "CLONE_PIDFD"} <= _flags(spawns[0])


@needs_strace
def test_fork_path_opens_the_pidfd_after_the_stdlib_spawn(tmp_path: Path) -> None:
    text = trace(tmp_path, SPAWN, "fork")
    child = re.search(r"(?:vfork\(\)|clone3?\(.*\)|fork\(\))\s+= (\d+)", text)
    assert child, text
    assert re.search(rf"pidfd_open\({child.group(1)}, 0\)\s+= \d+", text), text
