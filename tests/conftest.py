"""Shared fixtures: every spawn path usable here, and leak accounting."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pidproc

# Paths that exist in this process (pidfd_spawn only with glibc 2.39+).
USABLE = pidproc.backends()
# Test programs: real binaries, not the pyenv shim.
PY = sys.executable


@pytest.fixture(params=USABLE)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per spawn path, forced."""
    with pidproc.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[b for b in USABLE if b != "pid"])
def pidfd_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Once per spawn path that holds the child by a pidfd, forced."""
    with pidproc.use_backend(request.param):
        yield request.param


def bad_programs(d: Path) -> dict[str, str]:
    """Files in ``d`` that are programs only in name: not executable, a
    missing interpreter, not an executable format (plus ``d`` itself)."""
    noexec = d / "noexec.sh"
    noexec.write_text("#!/bin/sh\necho hi\n")
    noexec.chmod(0o644)
    badinterp = d / "badinterp"
    badinterp.write_text("#!/nonexistent/interpreter\n")
    badinterp.chmod(0o755)
    garbage = d / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not an executable")
    garbage.chmod(0o755)
    return {
        "dir": str(d),
        "noexec": str(noexec),
        "badinterp": str(badinterp),
        "garbage": str(garbage),
    }


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def children() -> list[tuple[int, str]]:
    """(pid, state letter) of every direct child of this process."""
    out = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            out.append((pid, state))
    return out


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves an fd, a zombie or a running child behind."""
    import gc

    gc.collect()
    before_fds = open_fds()
    before_children = {pid for pid, _ in children()}
    yield
    gc.collect()
    leaked = open_fds() - before_fds
    # An fd opened by the listing itself is gone by now; anything else is ours.
    assert not {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}, leaked
    left = [(pid, st) for pid, st in children() if pid not in before_children]
    assert not left, f"children left behind: {left}"
