"""pidproc without its C core (PIDPROC_NO_EXTENSION=1 at import), in a fresh
interpreter: the C paths are unusable and say why, every child is still held
by a pidfd (the fork path), and what only the core can do raises ENOSYS
naming it.  (``nox -s tests-nocore`` runs the whole suite on an install
without the core.)

Where the interpreter's os has no pidfd_open either (PyPy), the core is
what makes the pidfd calls: without it there is no pidfd at all, children
are held by their PID (the ``pid`` path, the stdlib's behaviour) and the
calls say they need the core."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest

import pidproc

from ._support.programs import run_program

C_PATHS = ("pidfd_spawn", "clone3", "clone")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    env = {**os.environ, "PIDPROC_NO_EXTENSION": "1"}
    env.pop("PIDPROC_BACKEND", None)
    return dict(run_program("nocore_report", env=env, timeout=60))


def test_the_core_is_not_loaded_and_the_c_paths_say_why(report: dict[str, Any]) -> None:
    assert report["loaded"] is False
    assert report["missing"] == "the C core is not loaded: PIDPROC_NO_EXTENSION=1 is set"
    for name in C_PATHS:
        assert report["reasons"][name] == report["missing"], name
    if report["native"]:
        assert report["backends"] == ["fork", "pid"]
        assert report["reasons"]["fork"] is None
    else:
        assert report["backends"] == ["pid"]
        assert "pidfd_open" in report["reasons"]["fork"]


def test_the_child_is_held_by_a_pidfd_on_the_fork_path(report: dict[str, Any]) -> None:
    assert report["spawn"] == (["fork", True] if report["native"] else ["pid", False])
    assert report["returncode"] == 7


def test_a_forced_c_path_is_refused_with_the_reason(report: dict[str, Any]) -> None:
    assert report["forced"] == (
        "spawn path 'clone3' was forced but cannot work here: " + report["missing"]
    )


def test_the_toolkit_says_what_needs_the_core(report: dict[str, Any]) -> None:
    if not report["native"]:
        assert report["open"] == [
            errno.ENOSYS,
            f"[Errno 38] pidfd_open needs pidproc's C core: {report['missing']}",
        ]
        return
    assert report["pid"] is True  # /proc/self/fdinfo, no C needed
    for call, syscall in (("getfd", "pidfd_getfd"), ("madvise", "process_madvise")):
        err, message = report[call]
        assert err == errno.ENOSYS
        assert message == f"[Errno 38] {syscall} needs pidproc's C core: {report['missing']}"


def test_only_the_loader_imports_the_core() -> None:
    """Every other module goes through ``_native``, so that none of them
    fails to import where the core is missing."""
    package = Path(pidproc.__file__).parent
    direct = re.compile(
        r"^\s*(from\s+\.+_core\s+import|from\s+\.+\s+import\s+_core\b|import\s+pidproc\._core)",
        re.M,
    )
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "_native.py" and direct.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
