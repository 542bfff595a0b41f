"""Bad input, differential: generated Popen calls through the stdlib and pidproc.

Hypothesis draws Popen calls, valid and invalid (missing programs,
directories and non-executables as programs, bad cwd, NUL bytes in args and
env, ``=`` in env keys, bad fds in pass_fds, unknown users and groups, odd
umask values, wrong types), runs each through ``subprocess`` and through
``pidproc`` on every path usable here, and requires the same outcome: the
same exception type, errno, filename and message, or the same return code
and output.  Each call must leave no fd and no child behind.

``PIDPROC_STRESS=1`` draws many more examples.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pidproc

from ._support.leaks import children, live_fds
from ._support.outcome import outcome
from ._support.programs import bad_programs
from .conftest import USABLE
from .stress import STRESS, record

HAS_PGID = "process_group" in inspect.signature(subprocess.Popen).parameters
ROOT = os.geteuid() == 0
CLOSED_FD = 987


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("fuzz")
    d.chmod(0o755)  # reachable after a drop to nobody
    files = bad_programs(d)
    script = d / "script.sh"
    script.write_text('#!/bin/sh\necho script "$@"; exit 7\n')
    script.chmod(0o755)
    # An inheritable fd that stays open for the whole module, for pass_fds.
    rd, wr = os.pipe()
    os.set_inheritable(wr, True)
    try:
        yield {
            **files,
            "script": str(script),
            "open_fd": wr,
        }
    finally:
        os.close(rd)
        os.close(wr)


# ---- what a call is made of ---------------------------------------------------

# Programs are chosen by name and resolved against the scratch directory, so
# the drawn examples stay printable and replayable.
PROGRAMS = {
    "true": ["true"],
    "false": ["false"],
    "echo": ["echo", "out"],
    "sh-exit": ["sh", "-c", "echo $X; pwd; umask; exit 3"],
    "sh-stderr": ["sh", "-c", "echo err >&2; echo out"],
    "id": ["id"],
    "fds": ["sh", "-c", "ls /proc/self/fd", "sh"],  # extra args: positional, unused
    "env": ["env"],
    "sig": ["sh", "-c", "kill -USR1 $$"],
    "missing": ["pidproc-no-such-program"],
    "missing-abs": ["/nonexistent/prog"],
    "dir": ["{dir}"],
    "noexec": ["{noexec}"],
    "badinterp": ["{badinterp}"],
    "garbage": ["{garbage}"],
    "script": ["{script}", "a b"],
    "file-as-dir": ["{noexec}/x"],
    "empty-name": [""],
    "nul-name": ["tr\0ue"],
}

texts = st.sampled_from(["a", "", "x y", "é", "=", "$X", "-n"])
bad_texts = st.sampled_from(["a\0b", 5, 1.5, None, b"bytes", pathlib.Path("/bin/true")])


def either(draw: st.DrawFn, good: Any, bad: Any, bad_in: int = 8) -> Any:
    """Mostly a valid value; one draw in ``bad_in`` an invalid one, so that an
    example usually carries at most one or two bad inputs (with several, the
    first one checked decides, and that order is compared too)."""
    # Not 0 nor the top: hypothesis draws the bounds far more often.
    if draw(st.integers(0, bad_in - 1)) == bad_in // 2:
        return draw(bad if isinstance(bad, st.SearchStrategy) else st.sampled_from(bad))
    return draw(good if isinstance(good, st.SearchStrategy) else st.sampled_from(good))


@st.composite
def popen_calls(draw: st.DrawFn) -> dict[str, Any]:
    """A description of one Popen call (symbolic: placeholders in braces)."""
    call: dict[str, Any] = {}
    program = draw(st.sampled_from(sorted(PROGRAMS)))
    args: Any = list(PROGRAMS[program])
    args += draw(st.lists(texts, max_size=2))
    if draw(st.integers(0, 9)) == 5:
        args.append(draw(bad_texts))
    form = either(draw, ["list", "list", "list", "tuple", "str", "bytes", "path"], ["bad"], 12)
    if form == "tuple":
        args = tuple(args)
    elif form == "str":
        args = args[0] if isinstance(args[0], str) else "true"
    elif form == "bytes":
        args = [os.fsencode(a) if isinstance(a, str) else a for a in args]
    elif form == "path":
        args = [pathlib.Path(args[0]) if isinstance(args[0], str) and args[0] else "true"]
    elif form == "bad":
        args = draw(st.sampled_from([5, [], None, [None]]))
    call["args"] = args
    if draw(st.integers(0, 3)) == 0:
        call["shell"] = draw(st.booleans())
    if draw(st.integers(0, 5)) == 0:
        call["executable"] = either(draw, ["/bin/sh", "sh"], ["/nonexistent/exe", "s\0h", 5], 2)
    if draw(st.booleans()):
        call["cwd"] = either(
            draw,
            ["{dir}", "/", b"/", pathlib.Path("/")],
            ["/nonexistent", "{noexec}", "/tmp\0x", 5],
            3,
        )
    if draw(st.integers(0, 3)) == 1:
        call["env"] = draw(
            st.dictionaries(
                st.sampled_from(["X"] * 10 + ["PATH", "LANG", "", b"Y"] + ["A=B", "K\0", 5]),
                st.sampled_from(["1"] * 10 + ["", "/nonexistent", "/usr/bin:/bin", b"b", "v\0", 5]),
                max_size=3,
            )
        )
    if draw(st.booleans()):
        call["close_fds"] = draw(st.booleans())
    if draw(st.integers(0, 2)) == 0:
        call["pass_fds"] = either(
            draw,
            [(), ["{open_fd}"], ["{open_fd}", "{open_fd}"]],
            [[-1], [CLOSED_FD], [2**31], [2**70], ["x"], [1.5], 5, ["{open_fd}", 0]],
            3,
        )
    for stream in ("stdin", "stdout", "stderr"):
        good: list[Any] = [None, subprocess.PIPE, subprocess.PIPE, subprocess.DEVNULL]
        if stream == "stderr":
            good.append(subprocess.STDOUT)
        call[stream] = either(draw, good, [CLOSED_FD, -5, "x", 2**40], 24)
    if draw(st.integers(0, 3)) == 0:
        call["user"] = either(
            draw, [0, 65534, "nobody", "root"], ["pidproc-no-user", -5, 2**40, 1.5, ""], 3
        )
    if draw(st.integers(0, 3)) == 0:
        call["group"] = either(
            draw, [0, 65534, "nogroup", "root"], ["pidproc-no-group", -5, 2**40, 1.5], 3
        )
    if draw(st.integers(0, 4)) == 0:
        call["extra_groups"] = either(
            draw,
            [[], [0], ["nogroup", 0], [65534, 65534]],
            [["pidproc-no-group"], [2**40], [-5], 5],
            3,
        )
    if draw(st.booleans()):
        call["umask"] = either(
            draw, [-1, 0, 0o22, 0o777, 0o7777, -2], [2**31, -(2**31) - 1, 2**70, "x", 1.5], 3
        )
    if draw(st.integers(0, 3)) == 0:
        call["start_new_session"] = draw(st.booleans())
    if HAS_PGID and draw(st.integers(0, 3)) == 0:
        call["process_group"] = either(draw, [0, -1], [999999, 2**31, -5, "x"], 2)
    if draw(st.integers(0, 3)) == 0:
        call["restore_signals"] = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        call["text"] = True
    return call


def resolve(value: Any, s: dict[str, Any]) -> Any:
    """Fill the scratch placeholders into a drawn call."""
    if isinstance(value, str):
        if value == "{open_fd}":
            return s["open_fd"]
        return value.format(**s) if "{" in value else value
    if isinstance(value, list):
        return [resolve(v, s) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, s) for v in value)
    if isinstance(value, dict):
        return {resolve(k, s): resolve(v, s) for k, v in value.items()}
    return value


def finished(module: Any, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The outcome of the Popen run to its end: return code and output."""
    text = kwargs.get("text", False)
    give = kwargs.get("stdin") == subprocess.PIPE
    data: Any = ("in" if text else b"in") if give else None

    def run() -> tuple[Any, ...]:
        with module.Popen(**kwargs) as p:
            out, err = p.communicate(data, timeout=20)
        return (p.returncode, out, err)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pass_fds overriding close_fds", alike in both
        return outcome(run)


def run_leak_checked(module: Any, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], int]:
    """The outcome, and how many fds and children the call left behind
    (closed and reaped here, so that they do not pile up)."""
    fds, kids = live_fds(), {pid for pid, _ in children()}
    result = finished(module, dict(kwargs))
    leaked = live_fds() - fds
    for fd in leaked:
        os.close(fd)
    left = [pid for pid, _ in children() if pid not in kids]
    for pid in left:
        os.waitpid(pid, 0)
    return result, len(leaked) + len(left)


# 3.12 reads process_group as a C long and truncates it to pid_t (2**32 became
# 0: a new group), fixed in 3.13; pidproc refuses such values as 3.13 does.
PGID_QUIRK = sys.version_info[:2] == (3, 12)


# PyPy's fork_exec casts an extra group that fits a C long to gid_t (2**32
# became 0: root's group); pidproc refuses it, as PyPy refuses a larger one.
GROUPS_QUIRK = sys.implementation.name == "pypy"


def known_quirk(kwargs: dict[str, Any]) -> bool:
    pgid = kwargs.get("process_group")
    if PGID_QUIRK and isinstance(pgid, int) and not -(2**31) <= pgid < 2**31:
        return True
    groups = kwargs.get("extra_groups")
    return (
        GROUPS_QUIRK
        and isinstance(groups, list)
        and any(type(g) is int and 2**32 <= g < 2**63 for g in groups)
    )


def check(call: dict[str, Any], scratch: dict[str, Any], tally: dict[str, int]) -> None:
    kwargs = resolve(call, scratch)
    # cat, or sh without arguments, must never read the test runner's stdin.
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if known_quirk(kwargs):
        tally["quirks"] = tally.get("quirks", 0) + 1
        return
    with pidproc.use_backend(None):
        expected, stdlib_leaked = run_leak_checked(subprocess, kwargs)
    diverged, leaked = [], 0
    for name in USABLE:
        with pidproc.use_backend(name):
            got, left = run_leak_checked(pidproc, kwargs)
        if got != expected:
            diverged.append((name, got))
        # 3.10's Popen leaks its pipes when a user or group lookup fails
        # (fixed in 3.11); pidproc inherits that code, and nothing more.
        leaked += max(left - stdlib_leaked, 0)
    tally["cases"] += 1
    tally["divergences"] += len(diverged)
    tally["leaked"] += leaked
    assert diverged == [], f"stdlib: {expected}"
    assert not leaked


EXAMPLES = 5000 if STRESS else 60


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, int]]:
    counts = {"cases": 0, "divergences": 0, "leaked": 0}
    yield counts
    record("generated Popen calls (hypothesis)", counts["cases"] * len(USABLE),
           counts["divergences"], counts["leaked"])  # fmt: skip
    if counts.get("quirks"):
        # Not run: known and deliberate, so counted as divergences here.
        what = (
            "PyPy extra_groups beyond gid_t (refused, not cast)" if GROUPS_QUIRK
            else "3.12 process_group beyond a C int (refused, as 3.13)"
        )  # fmt: skip
        record(f"generated calls: {what}",
               counts["quirks"] * len(USABLE), counts["quirks"] * len(USABLE))  # fmt: skip


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not STRESS,  # the same examples in every CI run; new ones in stress
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(call=popen_calls())
def test_same_outcome_as_the_stdlib(
    call: dict[str, Any], scratch: dict[str, Any], tally: dict[str, int]
) -> None:
    check(call, scratch, tally)


# ---- each class of bad input, forced at least once --------------------------

CLASSES: dict[str, Callable[[], dict[str, Any]]] = {
    "missing program": lambda: {"args": ["pidproc-no-such-program"]},
    "directory as program": lambda: {"args": ["{dir}"]},
    "non-executable": lambda: {"args": ["{noexec}"]},
    "bad cwd": lambda: {"args": ["true"], "cwd": "/nonexistent"},
    "NUL in args": lambda: {"args": ["true", "a\0b"]},
    "NUL in env": lambda: {"args": ["true"], "env": {"A": "x\0y"}},
    "= in env key": lambda: {"args": ["true"], "env": {"A=B": "x"}},
    "bad fd in pass_fds": lambda: {"args": ["true"], "pass_fds": [CLOSED_FD]},
    "huge fd in pass_fds": lambda: {"args": ["true"], "pass_fds": [2**31]},
    "unknown user": lambda: {"args": ["true"], "user": "pidproc-no-user"},
    "unknown group": lambda: {"args": ["true"], "group": "pidproc-no-group"},
    "odd umask": lambda: {"args": ["sh", "-c", "umask"], "umask": 0o7777, "stdout": -1},
    "wrong type": lambda: {"args": ["true"], "cwd": 5},
}


# Divergences hypothesis found, kept as fixed cases (each failed before its fix).
FOUND: dict[str, Callable[[], dict[str, Any]]] = {
    "pass_fds beyond a C int": lambda: {"args": ["true"], "pass_fds": [2**31]},
    "stdio fd beyond a C int": lambda: {"args": ["true"], "stdout": 2**40},
    "stdio fd beyond a C long": lambda: {"args": ["true"], "stdin": 2**70},
    "stdio fd checked before umask": lambda: {"args": ["true"], "stderr": 2**40, "umask": "x"},
    "pass_fds not ints": lambda: {"args": ["true"], "pass_fds": ["x"]},
    "pass_fds not ints, umask too": lambda: {"args": ["true"], "pass_fds": ["x"], "umask": 2**31},
    "executable NUL before argv type": lambda: {"args": ["true", 5], "executable": "s\0h"},
    "empty argv with an executable": lambda: {"args": [], "executable": "/bin/sh"},
}
# Where the stdlib hands the call to os.posix_spawn (a program path with a
# directory, no cwd, ids, umask...; close_fds=False, or any from 3.13), the
# checks, their order and the error reports are os.posix_spawn's.
SPAWNED: dict[str, Any] = {"args": ["/bin/sh", "-c", "exit 0"], "close_fds": False}
FOUND.update(
    {
        "posix_spawn: a bad stdio fd names the program": lambda: {**SPAWNED, "stdout": CLOSED_FD},
        "posix_spawn: umask compared, not converted": lambda: {**SPAWNED, "umask": "x"},
        "posix_spawn: any negative umask": lambda: {**SPAWNED, "umask": -(2**40)},
        "posix_spawn: argv before env": lambda: {
            "args": ["/bin/true", None], "close_fds": False, "env": {"A": 5},
        },
        "posix_spawn: '=' first in an env name": lambda: {**SPAWNED, "env": {"=A": "x"}},
        "posix_spawn: empty env name": lambda: {**SPAWNED, "env": {"": "x"}},
        "posix_spawn: empty argv[0]": lambda: {
            "args": [""], "executable": "/bin/true", "close_fds": False,
        },
        "posix_spawn: missing program": lambda: {"args": ["/nonexistent/prog"], "close_fds": False},
    }
)  # fmt: skip
if HAS_PGID:
    FOUND["process group before umask"] = lambda: {
        "args": ["true"], "umask": -(2**31) - 1, "process_group": 2**40,
    }  # fmt: skip


def check_one(call: dict[str, Any], scratch: dict[str, Any], label: str) -> None:
    """check() for one call, recorded for the stress table under ``label``."""
    counts = {"cases": 0, "divergences": 0, "leaked": 0}
    try:
        check(call, scratch, counts)
    finally:
        record(label, counts["cases"] * len(USABLE), counts["divergences"], counts["leaked"])


@pytest.mark.parametrize("case", sorted(FOUND))
def test_found_by_hypothesis(case: str, scratch: dict[str, Any]) -> None:
    check_one(FOUND[case](), scratch, "cases hypothesis found (each failed before its fix)")


@pytest.mark.parametrize("klass", sorted(CLASSES))
def test_each_input_class(klass: str, scratch: dict[str, Any]) -> None:
    check_one(CLASSES[klass](), scratch, f"input class: {klass}")


def test_generator_reaches_the_invalid_classes() -> None:
    """The strategy really draws every kind of bad input listed above."""
    seen: set[str] = set()

    @settings(max_examples=1000, database=None, deadline=None, derandomize=True)
    @given(call=popen_calls())
    def collect(call: dict[str, Any]) -> None:
        args = call["args"]
        first = args[0] if isinstance(args, (list, tuple)) and args else args
        if first in ("{dir}", "{noexec}", "pidproc-no-such-program"):
            seen.add(str(first))
        if call.get("cwd") == "/nonexistent":
            seen.add("bad cwd")
        if any(isinstance(a, str) and "\0" in a for a in (args if isinstance(args, list) else [])):
            seen.add("nul arg")
        if any(isinstance(k, str) and "=" in k for k in call.get("env", {})):
            seen.add("= in env key")
        if call.get("pass_fds") in ([CLOSED_FD], [-1], [2**31]):
            seen.add("bad pass_fds")
        if call.get("user") == "pidproc-no-user" or call.get("group") == "pidproc-no-group":
            seen.add("unknown id")
        if call.get("umask") in (0o7777, 2**31, 2**70, "x"):
            seen.add("odd umask")

    collect()
    assert seen >= {
        "{dir}", "{noexec}", "pidproc-no-such-program", "bad cwd", "nul arg", "= in env key",
        "bad pass_fds", "unknown id", "odd umask",
    }  # fmt: skip
