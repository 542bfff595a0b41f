"""Process groups, sessions and the controlling terminal, as the stdlib's.

A throw-away interpreter is made a session leader with a pseudo-terminal
as its controlling terminal (``setsid`` + ``TIOCSCTTY``), so that there is
a terminal and a foreground process group to compare.  There it spawns a
program through the stdlib and through every path, with
``start_new_session``, ``process_group`` (3.11+) and combinations the kernel
refuses, and reads ``/proc/<child>/stat``: process group, session,
controlling terminal (tty_nr) and the terminal's foreground group (tpgid).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import pidproc

from ._support.programs import program
from .conftest import PY


def run_under_terminal() -> dict[str, Any]:
    master, slave = os.openpty()
    r, w = os.pipe()
    try:
        p = subprocess.Popen(
            [PY, program("security_sessions_terminal"), str(w)],
            stdin=slave, stdout=slave, stderr=subprocess.PIPE,
            start_new_session=True, pass_fds=[w],
        )  # fmt: skip
        os.close(slave)
        os.close(w)
        slave = w = -1
        with open(r, "rb", closefd=False) as f:
            out = f.read()
        _, err = p.communicate(timeout=60)
    finally:
        for fd in (master, slave, r, w):
            if fd >= 0:
                os.close(fd)
    assert p.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    return report


def test_groups_sessions_terminal_match_stdlib() -> None:
    report = run_under_terminal()
    stdlib = report.pop("stdlib")
    assert sorted(report) == sorted(b for b in pidproc.backends())
    for path, outcome in report.items():
        assert outcome == stdlib, path
    # What the stdlib does, spelled out (so the comparison compares something).
    here = {"pgrp": "parent", "session": "parent", "tty": "parent", "tpgid": "parent"}
    assert stdlib["default"] == {**here, "foreground after": "parent"}
    alone = {"pgrp": "child", "session": "child", "tty": 0, "tpgid": "none"}
    assert stdlib["new-session"] == {**alone, "foreground after": "parent"}
    if sys.version_info >= (3, 11):
        assert stdlib["process-group-0"] == {**here, "pgrp": "child", "foreground after": "parent"}
        assert stdlib["process-group-of-parent"] == stdlib["default"]
        for refused in ("new-session-and-group-0", "group-in-other-session",
                        "group-that-does-not-exist"):  # fmt: skip
            assert stdlib[refused][:2] == ["PermissionError", 1], refused


@pytest.mark.skipif(sys.version_info < (3, 11), reason="process_group= is new in 3.11")
def test_process_group_error_leaves_nothing(backend: str) -> None:
    """A refused setpgid: the stdlib's exception, no child left behind."""
    from ._support.leaks import children

    before = children()

    def error(module: Any) -> tuple[Any, ...]:
        with pytest.raises(OSError) as info:
            module.Popen(["true"], process_group=1)
        e = info.value
        return type(e), e.errno, e.strerror, e.filename

    assert error(pidproc) == error(subprocess)
    assert children() == before
