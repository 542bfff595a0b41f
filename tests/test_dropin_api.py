"""`import pidproc as subprocess` keeps existing code working."""

from __future__ import annotations

import inspect
import subprocess

import pytest

import pidproc

from .conftest import PY

OURS = {"Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}


def test_every_public_name_is_there() -> None:
    for name in subprocess.__all__:
        assert hasattr(pidproc, name), name
        if name not in OURS:
            # Constants and exceptions are the stdlib's own objects, so
            # `except subprocess.CalledProcessError` catches ours.
            assert getattr(pidproc, name) is getattr(subprocess, name), name
    assert set(subprocess.__all__) <= set(pidproc.__all__)


def test_popen_is_a_stdlib_popen() -> None:
    assert issubclass(pidproc.Popen, subprocess.Popen)
    with pidproc.Popen([PY, "-c", "pass"]) as p:
        assert isinstance(p, subprocess.Popen)
    assert p.returncode == 0


LIFECYCLE = ["die_with_parent", "kill_tree", "no_new_privs"]


def test_popen_takes_every_stdlib_parameter() -> None:
    ours = inspect.signature(pidproc.Popen).parameters
    theirs = inspect.signature(subprocess.Popen).parameters
    # The stdlib's, in its order, then pidproc's lifecycle options.
    assert list(ours) == [*theirs, *LIFECYCLE]
    for name, param in theirs.items():
        assert ours[name].default == param.default, name
    for name in LIFECYCLE:
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert ours[name].default is False, name


def test_helpers_keep_their_stdlib_signatures() -> None:
    for name in OURS - {"Popen"}:
        assert inspect.signature(getattr(pidproc, name)) == inspect.signature(
            getattr(subprocess, name)
        ), name


@pytest.mark.parametrize(
    "call",
    [
        lambda: pidproc.run([PY, "-c", "pass"]),
        lambda: pidproc.call([PY, "-c", "pass"]),
        lambda: pidproc.check_call([PY, "-c", "pass"]),
        lambda: pidproc.check_output([PY, "-c", "print(1)"]),
        lambda: pidproc.getoutput("echo 1"),
        lambda: pidproc.getstatusoutput("echo 1"),
    ],
    ids=["run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"],
)
def test_helpers_go_through_pidproc_popen(call, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    made: list[pidproc.Popen] = []
    original = pidproc.Popen._execute_child

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pidproc.Popen, "_execute_child", spy)
    call()
    assert len(made) == 1
    assert made[0].backend in pidproc.BACKENDS
    assert made[0].returncode == 0


def test_called_process_error_is_the_stdlibs() -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        pidproc.check_call([PY, "-c", "raise SystemExit(3)"])
    assert info.value.returncode == 3


def test_timeout_expired_is_the_stdlibs() -> None:
    cmd = [PY, "-c", "import time; time.sleep(5)"]
    with pytest.raises(subprocess.TimeoutExpired) as info:
        pidproc.run(cmd, timeout=0.2)
    # As in the stdlib, run() reports what was left of the timeout at wait().
    assert info.value.cmd == cmd
    assert 0 < info.value.timeout <= 0.2


def test_text_mode_communicate_and_encoding(backend: str) -> None:
    code = (
        "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper()); sys.stderr.write('é')"
    )
    with pidproc.Popen(
        [PY, "-c", code],
        stdin=pidproc.PIPE,
        stdout=pidproc.PIPE,
        stderr=pidproc.PIPE,
        encoding="utf-8",
        errors="strict",
    ) as p:
        out, err = p.communicate("hello\n", timeout=10)
    assert (out, err, p.returncode) == ("HELLO\n", "é", 0)
    assert p.backend == backend


def test_communicate_timeout_then_finish(backend: str) -> None:
    code = "import sys, time; print('a', flush=True); time.sleep(0.5); print('b')"
    with pidproc.Popen([PY, "-c", code], stdout=pidproc.PIPE, text=True) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            p.communicate(timeout=0.05)
        out, _ = p.communicate(timeout=10)
    assert out == "a\nb\n"


def test_stderr_to_stdout_and_devnull(backend: str) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    r = pidproc.run([PY, "-c", code], stdout=pidproc.PIPE, stderr=pidproc.STDOUT, text=True)
    assert sorted(r.stdout.split()) == ["err", "out"]
    r = pidproc.run([PY, "-c", code], stdout=pidproc.DEVNULL, stderr=pidproc.PIPE, text=True)
    assert (r.stdout, r.stderr) == (None, "err\n")


def test_shell_and_executable(backend: str) -> None:
    r = pidproc.run("echo $0 $1; exit 7", shell=True, capture_output=True, text=True)
    assert r.returncode == 7 and r.stdout.startswith("/bin/sh")
    r = pidproc.run(["whatever-name", "-c", "import sys; print(sys.argv[0])"], executable=PY,
                    capture_output=True, text=True)  # fmt: skip
    assert r.stdout.strip() == "-c"


def test_pipesize(backend: str) -> None:
    import fcntl

    with pidproc.Popen([PY, "-c", "pass"], stdout=pidproc.PIPE, pipesize=1 << 20) as p:
        assert fcntl.fcntl(p.stdout.fileno(), fcntl.F_GETPIPE_SZ) == 1 << 20  # type: ignore[union-attr]
