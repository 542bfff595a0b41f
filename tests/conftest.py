"""Shared fixtures: every spawn path usable here, and leak accounting."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

import pidproc

from ._support import core
from ._support.leaks import children, collect, live_fds

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


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves an fd, a zombie or a running child behind."""

    collect()
    before_fds = live_fds()
    before_children = {pid for pid, _ in children()}
    yield
    collect()
    leaked = live_fds() - before_fds
    assert not leaked, leaked
    left = [(pid, st) for pid, st in children() if pid not in before_children]
    assert not left, f"children left behind: {left}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Without the C core: how many tests skipped for want of it."""
    if core.MISSING is None:
        return
    skipped = terminalreporter.stats.get("skipped", [])
    n = sum(1 for r in skipped if core.MISSING in str(r.longrepr))
    terminalreporter.write_line(f"{n} skipped for want of pidproc's C core: {core.MISSING}")
