"""Faults from real sandboxes: seccomp filters as container runtimes install.

Each scenario runs a fresh interpreter behind a real filter (``tests/_support/seccomp.py``)
that runs one battery of Popen uses (spawn, wait with and without timeout,
poll, signals, communicate, run, the usual errors, close_fds and pass_fds,
user=) through the stdlib and through pidproc on every path usable there.
The outcomes must equal the stdlib's under the same filter and the stdlib's
without any filter, and each run must leave no fd, zombie or child behind.

What seccomp cannot express: the flags of clone3 live in ``struct
clone_args`` in memory, which a filter never sees, so a 5.3/5.4 kernel's
EINVAL for CLONE_CLEAR_SIGHAND is produced by a supervisor thread instead
(SECCOMP_RET_USER_NOTIF), which reads the struct and answers.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ._support import core, seccomp
from ._support.features import IN_PRIVATE_PID_NS, PRIVATE_PID_NS, private_pid_ns
from ._support.programs import program
from .conftest import PY, USABLE
from .stress import NOT_OURS, record

pytestmark = pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 not installed")

CLONE_PIDFD = 0x1000
P_PIDFD = 3

ALL_PIDFD = {
    "clone3": errno.ENOSYS,
    "clone": (errno.EINVAL, 0, CLONE_PIDFD),
    "pidfd_open": errno.ENOSYS,
    "pidfd_send_signal": errno.ENOSYS,
    "waitid": (errno.EINVAL, 0, "==", P_PIDFD),
}

CLONES = {"clone3", "clone"}
STDLIB_SPAWN = {"fork", "pid"}  # the paths on which the stdlib itself spawns
PIDFD_PATHS = {"pidfd_spawn", "clone3", "clone", "fork"}

# name: (rules, the paths the filter takes away from those usable without it)
SCENARIOS: dict[str, tuple[dict[str, seccomp.Rule], set[str]]] = {
    "clone3-ENOSYS": ({"clone3": errno.ENOSYS}, {"clone3"}),
    "clone3-EPERM": ({"clone3": errno.EPERM}, {"clone3"}),
    "no-CLONE_PIDFD": ({"clone3": errno.ENOSYS, "clone": (errno.EINVAL, 0, CLONE_PIDFD)}, CLONES),
    "no-CLONE_PIDFD-EPERM": (
        {"clone3": errno.EPERM, "clone": (errno.EPERM, 0, CLONE_PIDFD)},
        CLONES,
    ),
    # pidfd_open is how pidproc checks for pidfds at all (as Go does): without
    # it every pidfd path is given up, even though CLONE_PIDFD still works.
    "pidfd_open-ENOSYS": ({"pidfd_open": errno.ENOSYS}, PIDFD_PATHS),
    "pidfd_open-EPERM": ({"pidfd_open": errno.EPERM}, PIDFD_PATHS),
    # Signals go by kill(pid) while the child is certainly unreaped.
    "pidfd_send_signal-ENOSYS": ({"pidfd_send_signal": errno.ENOSYS}, set()),
    "pidfd_send_signal-EPERM": ({"pidfd_send_signal": errno.EPERM}, set()),
    # waitid(P_PIDFD) alone (the stdlib waits with wait4, untouched): EINVAL
    # is what a 5.3 kernel says for the unknown idtype.
    "waitid-P_PIDFD-EINVAL": ({"waitid": (errno.EINVAL, 0, "==", P_PIDFD)}, PIDFD_PATHS),
    "waitid-P_PIDFD-EPERM": ({"waitid": (errno.EPERM, 0, "==", P_PIDFD)}, PIDFD_PATHS),
    "all-pidfd": (ALL_PIDFD, PIDFD_PATHS),
    # Pre-5.9 kernels: close_fds walks /proc/self/fd instead.
    "close_range-ENOSYS": ({"close_range": errno.ENOSYS}, set()),
    "close_range-EPERM": ({"close_range": errno.EPERM}, set()),
}


@pytest.fixture(scope="module")
def batteries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every scenario's battery, run side by side (they mostly sleep)."""
    scratch = tmp_path_factory.mktemp("faults")
    (scratch / "noexec").write_text("#!/bin/sh\n")

    def run(rules: dict[str, seccomp.Rule]) -> dict[str, Any]:
        r = seccomp.run_filtered(
            rules,
            program=program("sandbox_battery"),
            timeout=120,
            env={"PIDPROC_SCRATCH": str(scratch)},
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    jobs = {"unfiltered": {}, **{name: s[0] for name, s in SCENARIOS.items()}}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(run, rules) for name, rules in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module")
def unfiltered(batteries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return batteries["unfiltered"]


def test_battery_without_filter_matches_the_stdlib(unfiltered: dict[str, Any]) -> None:
    """The baseline itself: every path equals the stdlib with no filter."""
    base = unfiltered["stdlib"]
    assert base["exit"] == ["ok", 3]
    assert base["timeout"] == ["ok", [None, -15, -15, -15]]
    assert base["communicate_timeout"] == ["ok", ["part\n", -9]]
    assert base["close_fds"] == ["ok", ["0", "1", "2", "other"]]
    assert base["inherit"] == ["ok", ["0", "1", "2", "other", "r", "w"]]
    assert base["pass_fds"] == ["ok", ["0", "1", "2", "other", "w"]]
    for name, got in unfiltered["paths"].items():
        assert got == base, name
    before, after = unfiltered["leaked"]
    assert before == after


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_paths_behave_as_without_the_filter(
    scenario: str, batteries: dict[str, dict[str, Any]], unfiltered: dict[str, Any]
) -> None:
    rules, removed = SCENARIOS[scenario]
    got = batteries[scenario]
    base, stdlib = unfiltered["stdlib"], got["stdlib"]
    # glibc's posix_spawn (2.34+) tries clone3 and falls back to clone on
    # ENOSYS only: under an EPERM filter (older Docker profiles) every call
    # the stdlib hands to os.posix_spawn (3.13: an absolute path, no cwd...)
    # fails with EPERM.  That is the stdlib's own behaviour there, and that of
    # the paths that are its spawn (pid, fork); pidproc's own paths have none.
    broken = {key for key in base if stdlib[key] != base[key]}
    expected = {name: stdlib if name in STDLIB_SPAWN else base for name in got["paths"]}
    divergences = [
        (path, key)
        for path, battery in got["paths"].items()
        for key in base
        if battery.get(key) != expected[path][key]
    ]
    before, after = got["leaked"]
    checks = len(got["paths"]) * len(base)
    record(f"seccomp: {scenario}", checks, len(divergences), before != after)
    if broken:
        record(f"seccomp: {scenario}, the stdlib itself {NOT_OURS}", len(base), len(broken))
    if rules.get("clone3") == errno.EPERM:
        assert all(stdlib[key][:2] == ["PermissionError", errno.EPERM] for key in broken), broken
    else:
        assert not broken
    usable = [b for b in unfiltered["usable"] if b not in removed]
    # A clone3 EPERM retires pidfd_spawn at its first spawn (glibc's goes
    # through clone3 and falls back to clone on ENOSYS only); forced, it
    # then says it cannot work here.
    retired = "pidfd_spawn" in usable and rules.get("clone3") == errno.EPERM
    if "pidfd_spawn" in usable and removed & CLONES:
        # glibc's pidfd_spawn goes through clone3 (then clone, on ENOSYS
        # only): whether it stays listed depends on the errno; its requests
        # are replayed on the next path when it fails.
        usable.remove("pidfd_spawn")
        got["usable"] = [b for b in got["usable"] if b != "pidfd_spawn"]
        if got["default"][0] == "pidfd_spawn":
            got["default"][0] = usable[0]
    assert got["usable"] == usable
    assert got["default"] == [usable[0], usable[0] != "pid"]
    for path, battery in got["paths"].items():
        if retired and path == "pidfd_spawn":
            # Every spawn says the forced path cannot work here; the rest is as ever.
            unavailable = {k for k, v in battery.items() if v[0] == "BackendUnavailable"}
            assert unavailable, battery
            assert all(battery[k] == expected[path][k] for k in set(base) - unavailable), battery
            continue
        assert battery == expected[path], path
    assert before == after


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM], ids=["ENOSYS", "EPERM"])
def test_pidfd_send_signal_denied_falls_back_to_kill(err: int) -> None:
    r = seccomp.run_filtered({"pidfd_send_signal": err}, program=program("sandbox_signal_denied"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    paths = [name for name in ("clone3", "clone", "fork") if name in USABLE]
    assert lines == [f"{name} {err} [-15, -9, False, 0]" for name in paths]


# The PID-reuse race, with pidfd_send_signal denied.  The worst moment: A is
# alive when kill() polls it, then dies, is reaped behind Popen's back and
# B takes its PID, all before kill() falls back to kill(pid).  The hook on
# poll() puts all of that exactly there.
@pytest.mark.skipif(not private_pid_ns(), reason=PRIVATE_PID_NS)
@pytest.mark.parametrize(
    "backend_name",
    [pytest.param("clone3", marks=core.needs_core), pytest.param("clone", marks=core.needs_core),
     "fork"],
)  # fmt: skip
def test_denied_pidfd_send_signal_never_kills_a_recycled_pid(backend_name: str) -> None:
    r = seccomp.run_filtered(
        {"pidfd_send_signal": errno.ENOSYS},
        program=program("sandbox_reuse_denied"),
        env={"PIDPROC_BACKEND": backend_name},
        prefix=IN_PRIVATE_PID_NS,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "survived"


@core.needs_core
def test_forcing_a_denied_path_says_why() -> None:
    r = seccomp.run_filtered(
        {"clone3": errno.EPERM, "clone": (errno.EPERM, 0, CLONE_PIDFD)},
        program=program("sandbox_forced_but_denied"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "clone3 spawn path 'clone3' was forced but cannot work here: clone3() answered EPERM",
        "clone spawn path 'clone' was forced but cannot work here: clone() answered EPERM",
    ]


# ---- clone3 without CLONE_CLEAR_SIGHAND (Linux 5.3, 5.4) ----------------

CLEAR_SIGHAND = 0x100000000


@core.needs_core
def test_clone3_without_clear_sighand_resets_handlers_in_the_child(tmp_path: Path) -> None:
    """A kernel that rejects CLONE_CLEAR_SIGHAND with EINVAL: clone3 is retried
    without it once, remembered, and the child resets the handlers itself."""
    strace = shutil.which("strace")
    trace = tmp_path / "trace"
    cmd = [PY, program("sandbox_clear_sighand"), str(CLEAR_SIGHAND)]
    if strace:
        cmd = [strace, "-f", "-qq", "-o", str(trace), "-e", "trace=rt_sigaction,execve", *cmd]
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    if strace and r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"ptrace is not permitted here: {r.stderr[:200]}")
    assert r.returncode == 0, r.stderr
    # One clone3 with the flag (refused), then only without it.
    assert r.stdout.split() == ["True", f"['{hex(CLEAR_SIGHAND)}',", "'0x0',", "'0x0',", "'0x0']"]
    if strace:
        # The child (which then execs sh) put SIGUSR1 back to SIG_DFL itself.
        lines = trace.read_text().splitlines()
        sh_pids = {ln.split()[0] for ln in lines if re.search(r'execve\("[^"]*/sh"', ln)}
        assert len(sh_pids) == 4, lines  # three pidproc children and the stdlib's
        reset = {
            ln.split()[0]
            for ln in lines
            if "rt_sigaction(SIGUSR1, {sa_handler=SIG_DFL" in ln and ln.split()[0] in sh_pids
        }
        assert len(reset) >= 3, [ln for ln in lines if "SIGUSR1" in ln]


def test_python_children_see_the_filter() -> None:
    """The fixture itself: the filter really is in force in the child."""
    code = (
        "from pidproc import _posix\n"
        "try:\n    _posix.pidfd_open(0)\nexcept OSError as e:\n    print(e.errno)\n"
    )
    r = seccomp.run_filtered({"pidfd_open": errno.EPERM}, code)
    assert r.stdout.strip() == str(errno.EPERM), r.stderr
