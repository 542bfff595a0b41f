"""Privilege drops are all or nothing, on every spawn path.

With ``user=``, ``group=``, ``extra_groups=`` the child sets the groups, then
the gid, then the uid, and reads each back.  These tests check, against the
stdlib in the same process:

- after a drop, ``/proc/<child>/status`` shows the requested ids in all four
  slots (real, effective, saved, fs), the requested groups and no
  capabilities: the program cannot regain root;
- when a step is denied by a real seccomp filter (EPERM), the caller gets the
  stdlib's exception, the program never ran and no process is left;
- when a filter fakes success (``SECCOMP_RET_ERRNO(0)``: the call returns 0
  and changes nothing), the stdlib runs the program with root's ids; pidproc's
  own child reads the ids back and refuses (PermissionError).  The ``fork``
  path is the stdlib's child and behaves as the stdlib.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pidproc

from ._support import seccomp
from ._support.features import runnable_by_anyone
from ._support.outcome import outcome as outcome_of
from ._support.programs import program, source

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="changing uid/gid/groups needs root (CAP_SETUID, CAP_SETGID)"
)

# Programs any uid can run (the pyenv interpreters live under /root, 0700).
SLEEP = shutil.which("sleep", path="/usr/bin:/bin") or "/bin/sleep"
TOUCH = shutil.which("touch", path="/usr/bin:/bin") or "/usr/bin/touch"

STATUS_KEYS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapAmb")


def credentials(pid: int) -> dict[str, list[str]]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in STATUS_KEYS:
                out[key] = value.split()
    return out


def dropped(module: Any, kwargs: dict[str, Any]) -> dict[str, list[str]]:
    """The credentials of a running child spawned with ``kwargs``."""
    with module.Popen([SLEEP, "30"], **kwargs) as p:
        try:
            return credentials(p.pid)
        finally:
            p.kill()


MANY = list(range(1000, 1300))  # longer than the list the child compares one by one
# PyPy's fork_exec takes 64 extra groups at most (its build finds no
# NGROUPS_MAX in the headers it reads): more is its ValueError.
PYPY = sys.implementation.name == "pypy"
PYPY_MAX_GROUPS = 64

CASES: dict[str, dict[str, Any]] = {
    "all-three": {"user": 65534, "group": 65534, "extra_groups": [65534, 100]},
    "by-name": {"user": "nobody", "group": "nogroup", "extra_groups": ["users"]},
    "user-only": {"user": 65534},
    "group-only": {"group": 100},
    "extra-groups-only": {"extra_groups": [100, 5]},
    "extra-groups-empty": {"user": 65534, "extra_groups": []},
    "unsorted-duplicates": {"user": 1234, "group": 4321, "extra_groups": [9, 3, 9, 100, 3]},
    "many-groups": {"user": 1234, "group": 4321, "extra_groups": MANY},
    "64-groups": {"user": 1234, "group": 4321, "extra_groups": MANY[:PYPY_MAX_GROUPS]},
    "ids-above-2-31": {"user": 3_000_000_000, "group": 3_000_000_001, "extra_groups": [2**31]},
    "root-to-root": {"user": 0, "group": 0, "extra_groups": [0]},
}


def expected(kwargs: dict[str, Any]) -> dict[str, list[str]]:
    """What the kernel must show: the requested ids, or the caller's."""
    import grp
    import pwd

    def uid(u: Any) -> int:
        return u if isinstance(u, int) else pwd.getpwnam(u).pw_uid

    def gid(g: Any) -> int:
        return g if isinstance(g, int) else grp.getgrnam(g).gr_gid

    u = uid(kwargs["user"]) if "user" in kwargs else os.getuid()
    g = gid(kwargs["group"]) if "group" in kwargs else os.getgid()
    groups = (
        sorted(gid(x) for x in kwargs["extra_groups"])
        if "extra_groups" in kwargs
        else sorted(os.getgroups())
    )
    return {"Uid": [str(u)] * 4, "Gid": [str(g)] * 4, "Groups": [str(x) for x in groups]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_drop_shows_requested_ids_only(backend: str, case: str) -> None:
    kwargs = CASES[case]
    if PYPY and len(kwargs.get("extra_groups", ())) > PYPY_MAX_GROUPS:
        theirs = outcome_of(lambda: dropped(subprocess, kwargs))
        assert theirs[0] is ValueError and theirs[3] == "too many groups"
        assert outcome_of(lambda: dropped(pidproc, kwargs)) == theirs
        return
    ours = dropped(pidproc, kwargs)
    assert ours == dropped(subprocess, kwargs)
    assert {k: ours[k] for k in ("Uid", "Gid", "Groups")} == expected(kwargs)
    if ours["Uid"][0] != "0":
        # Dropped to a user: no capability left to regain root with.
        assert {ours[k][0] for k in ("CapPrm", "CapEff", "CapAmb")} == {"0000000000000000"}


@pytest.fixture
def caller_groups() -> Iterator[list[int]]:
    """The caller holds supplementary groups of its own for the test."""
    saved = os.getgroups()
    os.setgroups([4242, 100])
    try:
        yield sorted(os.getgroups())
    finally:
        os.setgroups(saved)


@pytest.mark.parametrize("case", ["user-only", "group-only", "all-three", "extra-groups-empty"])
def test_caller_groups_kept_or_replaced_as_stdlib(
    backend: str, case: str, caller_groups: list[int]
) -> None:
    """``user=``/``group=`` alone leave the caller's supplementary groups in
    place (the stdlib calls setgroups only for ``extra_groups``): the same
    here, so code moving over keeps exactly its current behaviour."""
    kwargs = CASES[case]
    ours = dropped(pidproc, kwargs)
    assert ours == dropped(subprocess, kwargs)
    assert {k: ours[k] for k in ("Uid", "Gid", "Groups")} == expected(kwargs)
    kept = "extra_groups" not in kwargs
    assert (ours["Groups"] == [str(g) for g in caller_groups]) == kept


@pytest.mark.parametrize("kwargs", [{"user": 2**32 - 1}, {"group": 2**32 - 1}])
def test_all_ones_id_changes_nothing_as_in_stdlib(backend: str, kwargs: dict[str, int]) -> None:
    """4294967295 is (uid_t)-1: the stdlib's setreuid(-1, -1) leaves the ids
    alone and the program runs as the caller.  A pitfall, kept for parity
    (and not mistaken for a failed drop by the read-back check)."""
    ours = dropped(pidproc, kwargs)
    assert ours == dropped(subprocess, kwargs)
    assert ours["Uid"] == [str(os.getuid())] * 4 and ours["Gid"] == [str(os.getgid())] * 4


# Run by nobody, who may not read the tree: from its text.
REGAIN = source("security_regain_root")


def test_dropped_program_cannot_regain_root(backend: str) -> None:
    python = next((p for p in ("/usr/bin/python3",) if os.path.exists(p)), None)
    if python is None or not runnable_by_anyone(python):
        pytest.skip("no Python interpreter here that an unprivileged user may run")
    kwargs: dict[str, Any] = {"user": 65534, "group": 65534, "extra_groups": [100]}
    ours = pidproc.check_output([python, "-c", REGAIN], text=True, cwd="/", **kwargs)
    assert ours == subprocess.check_output([python, "-c", REGAIN], text=True, cwd="/", **kwargs)
    assert "REGAINED" not in ours
    assert ours.splitlines()[-1] == "(65534, 65534, 65534) (65534, 65534, 65534) [100]"


# ---- a step that fails under a real seccomp filter --------------------------


@pytest.fixture
def marker_dir() -> Iterator[str]:
    # Writable by whatever uid the program would run as, had a drop
    # half-happened, and reachable by it: the temp directory only if every
    # directory above it lets others through (a runner's TMPDIR is often
    # inside a 0700 one), else /tmp.
    parent = tempfile.gettempdir()
    above = [parent, *map(str, Path(parent).parents)]
    if not all(os.stat(a).st_mode & 0o001 for a in above):
        parent = "/tmp"
    d = tempfile.mkdtemp(prefix="pidproc-drop-", dir=parent)
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d)


def _filtered(rule: dict[str, seccomp.Rule], marker_dir: str) -> dict[str, Any]:
    if not seccomp.available():
        pytest.skip("libseccomp.so.2 is not installed")
    r = seccomp.run_filtered(
        rule, program=program("security_filtered_drop"), args=[marker_dir, TOUCH]
    )
    assert r.returncode == 0, r.stderr
    report: dict[str, Any] = json.loads(r.stdout)
    # The filtered interpreter used every path this process uses.
    assert {k.rsplit("-", 1)[0] for k in report} == {"stdlib", *pidproc.backends()}
    return report


def _refused_many_on_pypy(report: dict[str, Any]) -> None:
    """PyPy: the "many" request (300 groups) is refused before any child."""
    for key, result in report.items():
        if key.endswith("-many"):
            assert result["result"] == ["ValueError", None, None, None], key
            assert not result["program ran"] and not result["children left"], key


@pytest.mark.parametrize("syscall", ["setgroups", "setregid", "setreuid"])
def test_denied_step_never_runs_the_program(syscall: str, marker_dir: str) -> None:
    report = _filtered({syscall: errno.EPERM}, marker_dir)
    if PYPY:
        _refused_many_on_pypy(report)
    for size in ("few",) if PYPY else ("few", "many"):
        stdlib = report[f"stdlib-{size}"]
        # The filter works: the stdlib's child failed at that step.
        assert stdlib["result"][:2] == ["PermissionError", errno.EPERM], stdlib
        for key, outcome in report.items():
            if key.endswith(size):
                assert outcome == stdlib, key
                assert not outcome["program ran"] and not outcome["children left"], key
    assert os.listdir(marker_dir) == []


@pytest.mark.parametrize("syscall", ["setgroups", "setregid", "setreuid"])
def test_faked_success_is_caught(syscall: str, marker_dir: str) -> None:
    """SECCOMP_RET_ERRNO(0): the call returns 0 and changes nothing.  The
    stdlib's child trusts the return value and runs the program as root;
    pidproc's child reads the ids back and refuses."""
    report = _filtered({syscall: 0}, marker_dir)
    if PYPY:
        _refused_many_on_pypy(report)
    for size in ("few",) if PYPY else ("few", "many"):
        stdlib = report[f"stdlib-{size}"]
        assert stdlib["result"] == ["ran", 0] and stdlib["program ran"], stdlib
        for name in pidproc.backends():
            outcome = report[f"{name}-{size}"]
            if name in ("fork", "pid"):
                # The stdlib's own child code: same behaviour as the stdlib.
                assert outcome == stdlib, name
                continue
            assert outcome["result"][:3] == ["PermissionError", errno.EPERM, os.strerror(1)]
            assert not outcome["program ran"] and not outcome["children left"], name
