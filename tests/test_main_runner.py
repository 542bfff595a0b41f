"""``python -m pidproc``: a program runs as it would without it, on pidproc.

Each case runs the same program twice, ``python PROGRAM`` and ``python -m
pidproc PROGRAM``, and compares stdout, stderr (tracebacks included) and the
exit status; the one line allowed to differ is the program's own report of
which Popen class ``subprocess.Popen`` is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ._support.programs import source
from .conftest import PY

PROGRAM = source("main_runner_subject")


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("runner")
    (d / "prog.py").write_text(PROGRAM)
    (d / "modprog.py").write_text(PROGRAM)
    (d / "pkg").mkdir()
    (d / "pkg" / "__init__.py").write_text("")
    (d / "pkg" / "__main__.py").write_text(PROGRAM)
    (d / "app").mkdir()
    (d / "app" / "__main__.py").write_text(PROGRAM)
    with zipfile.ZipFile(d / "app.zip", "w") as z:
        z.writestr("__main__.py", PROGRAM)
    (d / "bad.py").write_text("x = (1,\n")
    return d


def run(args: list[str], cwd: Path, stdin: str | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [PY, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr


def compare(
    args: list[str], cwd: Path, stdin: str | None = None, options: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    """The interpreter's options, then the program, with and without us."""
    code, out, err = run([*options, *args], cwd, stdin)
    ours_code, ours_out, ours_err = run([*options, "-m", "pidproc", *args], cwd, stdin)
    if "POPEN subprocess" in out:
        assert "POPEN pidproc._popen" in ours_out  # the patch took
        ours_out = ours_out.replace("POPEN pidproc._popen", "POPEN subprocess")
    assert (ours_code, ours_out, ours_err) == (code, out, err)
    return code, out, err


HOW = {
    "script": ["prog.py"],
    "module": ["-m", "modprog"],
    "package": ["-m", "pkg"],
    "directory": ["app"],
    "zip": ["app.zip"],
    "code": ["-c", PROGRAM],
    "glued-code": ["-c" + PROGRAM],
    "stdin": ["-"],
}


@pytest.mark.parametrize("how", list(HOW))
@pytest.mark.parametrize("what", ["ok", "raise", "exit", "exit-message", "chained"])
def test_runs_as_without_it(place: Path, how: str, what: str) -> None:
    args = HOW[how] if how != "stdin" else ["-"]
    stdin = PROGRAM if how == "stdin" else None
    code, out, err = compare([*args, "an arg", what], place, stdin)
    assert "child 3" in out
    assert code == {"ok": 0, "raise": 1, "exit": 7, "exit-message": 1, "chained": 1}[what]
    if what in ("raise", "chained"):
        assert err.startswith("Traceback (most recent call last):")
        assert "pidproc" not in err
        assert "ValueError: boom" in err


def test_keyboard_interrupt_kills_by_sigint_as_without_it(place: Path) -> None:
    code, _, err = compare(["prog.py", "interrupt"], place)
    assert code == -signal.SIGINT
    assert err.rstrip().endswith("KeyboardInterrupt")


def test_syntax_error_and_missing_program(place: Path) -> None:
    code, _, err = compare(["bad.py"], place)
    assert code == 1
    assert err.lstrip().startswith('File "') and "SyntaxError" in err
    assert "Traceback" not in err  # as the interpreter prints it: no frames
    code, _, err = compare(["no-such-file.py"], place)
    assert code == 2 and "can't open file" in err
    code, _, err = compare(["-m", "no_such_module_here"], place)
    assert code == 1 and "No module named no_such_module_here" in err


@pytest.mark.skipif(sys.version_info < (3, 11), reason="-P is new in 3.11")
def test_safe_path_adds_no_directory(place: Path) -> None:
    _, out, _ = compare(["prog.py"], place, options=("-P",))
    assert f"path0 {str(place)!r}" not in out
    compare(["-c", "import sys; print(sys.path[:2])"], place, options=("-P",))


def test_usage(place: Path) -> None:
    code, out, _ = run(["-m", "pidproc", "--help"], place)
    assert code == 0 and out.startswith("usage:")
    for bad in ([], ["-m"], ["-c"], ["--frobnicate"]):
        code, _, err = run(["-m", "pidproc", *bad], place)
        assert code == 2, bad
        assert "usage:" in err and "error:" in err


def test_children_are_not_patched(place: Path) -> None:
    """Only the program's own process is: a Python child runs the stdlib."""
    child = "import subprocess; print(type(subprocess.Popen(['true'])).__module__)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    _, out, _ = run(["-m", "pidproc", "-c", parent], place)
    assert out.strip() == "subprocess"


def pytest_available() -> bool:
    probe = [PY, "-c", "import pytest"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(not pytest_available(), reason="pytest is not installed for sys.executable")
def test_a_whole_pytest_run_on_pidproc(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(source("main_runner_pytest_example"))
    env: dict[str, Any] = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [PY, "-m", "pidproc", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # pytest's "tests failed"
    assert "1 failed, 1 passed" in proc.stdout
