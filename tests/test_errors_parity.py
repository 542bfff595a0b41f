"""Bad input raises what the stdlib raises, and leaves nothing behind.

Every case runs through ``subprocess`` and through ``pidproc`` on each path;
the exception type, errno, filename, message and args must match, and the
``no_leaks`` fixture fails the test on any leaked fd, zombie or child.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pidproc

from ._support.outcome import outcome
from ._support.programs import bad_programs
from .conftest import PY


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    files = bad_programs(tmp_path_factory.mktemp("errors"))
    yield {**files, "file": files["noexec"]}


def finished(module: Any, make_args: Callable[[], dict[str, Any]]) -> tuple[Any, ...]:
    """The outcome of a Popen made with fresh arguments and run to its end."""
    kwargs = make_args()

    def run() -> Any:
        with module.Popen(**kwargs) as p:
            p.communicate(timeout=10)
        return p.returncode

    return outcome(run)


CASES: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "missing-program": lambda s: {"args": ["pidproc-no-such-program"]},
    "missing-absolute": lambda s: {"args": ["/nonexistent/prog"]},
    "missing-in-env-path": lambda s: {"args": ["true"], "env": {"PATH": "/nonexistent"}},
    "directory-as-program": lambda s: {"args": [s["dir"]]},
    "not-executable": lambda s: {"args": [s["noexec"]]},
    "bad-interpreter": lambda s: {"args": [s["badinterp"]]},
    "exec-format": lambda s: {"args": [s["garbage"]]},
    "file-as-path-dir": lambda s: {"args": [s["file"] + "/x"]},
    "bad-cwd": lambda s: {"args": ["true"], "cwd": "/nonexistent"},
    "cwd-is-file": lambda s: {"args": ["true"], "cwd": s["file"]},
    "bad-cwd-and-program": lambda s: {"args": ["/nonexistent/prog"], "cwd": "/nonexistent"},
    "bad-executable": lambda s: {"args": ["true"], "executable": "/nonexistent/exe"},
    "nul-in-arg": lambda s: {"args": ["true", "a\0b"]},
    "nul-in-program": lambda s: {"args": ["tr\0ue"]},
    "nul-in-executable": lambda s: {"args": ["true"], "executable": "tr\0ue"},
    "nul-in-env-value": lambda s: {"args": ["true"], "env": {"A": "x\0y"}},
    "nul-in-env-key": lambda s: {"args": ["true"], "env": {"A\0": "x"}},
    "equals-in-env-key": lambda s: {"args": ["true"], "env": {"A=B": "x"}},
    "int-in-args": lambda s: {"args": ["true", 5]},
    "int-env-key": lambda s: {"args": ["true"], "env": {5: "x"}},
    "int-cwd": lambda s: {"args": ["true"], "cwd": 5},
    "nul-in-cwd": lambda s: {"args": ["true"], "cwd": "/tmp\0x"},
    "negative-pass-fd": lambda s: {"args": ["true"], "pass_fds": [-1]},
    "closed-pass-fd": lambda s: {"args": ["true"], "pass_fds": [987]},
    "closed-stdin-fd": lambda s: {"args": ["true"], "stdin": 987},
    "closed-stdout-fd": lambda s: {"args": ["true"], "stdout": 987, "stderr": subprocess.PIPE},
    "empty-args": lambda s: {"args": []},
    "pathlike-with-shell": lambda s: {"args": pathlib.Path("/bin/true"), "shell": True},
    "unknown-user": lambda s: {"args": ["true"], "user": "pidproc-no-such-user"},
    "unknown-group": lambda s: {"args": ["true"], "group": "pidproc-no-such-group"},
    "bad-extra-group": lambda s: {"args": ["true"], "extra_groups": ["pidproc-no-such-group"]},
    "negative-uid": lambda s: {"args": ["true"], "user": -5},
    "bad-umask-type": lambda s: {"args": ["true"], "umask": "x"},
    "huge-umask": lambda s: {"args": ["true"], "umask": 2**40},
    "huge-negative-umask": lambda s: {"args": ["true"], "umask": -(2**40)},
    "exit-code": lambda s: {"args": [PY, "-c", "raise SystemExit(42)"]},
    "killed": lambda s: {"args": [PY, "-c", "import os; os.kill(os.getpid(), 9)"]},
}
if os.geteuid() != 0:
    CASES["setuid-denied"] = lambda s: {"args": ["true"], "user": 0}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_outcome_as_stdlib(
    backend: str, case: str, scratch: dict[str, str], no_leaks: None
) -> None:
    def make() -> dict[str, Any]:
        return CASES[case](scratch)

    assert finished(pidproc, make) == finished(subprocess, make)


def test_chdir_failure_names_cwd_and_exec_failure_names_program(backend: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        pidproc.Popen(["true"], cwd="/nonexistent-dir")
    assert info.value.filename == "/nonexistent-dir"
    with pytest.raises(FileNotFoundError) as info:
        pidproc.Popen(["/nonexistent-prog"])
    assert info.value.filename == "/nonexistent-prog"


def test_pipes_closed_after_failure(backend: str, no_leaks: None) -> None:
    for _ in range(50):
        with pytest.raises(FileNotFoundError):
            pidproc.Popen(
                ["/nonexistent-prog"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="process_group is new in 3.11")
def test_bad_process_group(backend: str, no_leaks: None) -> None:
    def make() -> dict[str, Any]:
        return {"args": ["true"], "process_group": 999999}

    assert finished(pidproc, make) == finished(subprocess, make)
