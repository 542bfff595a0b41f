"""The report of ``nox -s bench``: written when benchmarks ran enabled.

In the normal test run (``--benchmark-disable``) the bench files are
correctness tests and nothing is written.  With ``--benchmark-enable`` the
results collected by _compare.compare() become bench/results/latest.{md,json,png}
at the end of the session (partial.* when only some scenarios ran: -k, one
file), and the Markdown is printed after pytest's summary.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import _compare
import _report
import pytest

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_state: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    _state["start"] = time.monotonic()
    _state["loadavg_start"] = os.getloadavg()
    capman = config.pluginmanager.getplugin("capturemanager")

    def write(text: str) -> None:
        # Progress must reach the terminal through pytest's output capture.
        if capman is None:
            _compare._write_stderr(text)
            return
        with capman.global_and_fixture_disabled():
            sys.stderr.write(text)
            sys.stderr.flush()

    _compare.progress_writer = write


def pytest_deselected(items: list[pytest.Item]) -> None:
    _state["deselected"] = True


def pytest_collection_finish(session: pytest.Session) -> None:
    files = {Path(str(item.path)).name for item in session.items}
    everything = {p.name for p in Path(__file__).resolve().parent.glob("bench_*.py")}
    _state["partial"] = _state.get("deselected", False) or not everything <= files


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    results = [r for r in _compare.RESULTS if not r.quick]
    if not results:
        return
    # A run of some scenarios (-k, one file) must not replace the full report.
    stem = "partial" if _state.get("partial") else "latest"
    info = _report.machine()
    info["loadavg_start"] = _state.get("loadavg_start", info["loadavg"])
    command = os.environ.get("PIDPROC_BENCH_COMMAND") or " ".join(
        ["python -m pytest", *sys.argv[1:]]
    )
    text, notes = _report.write(
        results, RESULTS_DIR, info, command, time.monotonic() - _state["start"], stem
    )
    _state["report"] = (text, notes)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if "report" not in _state:
        return
    text, notes = _state["report"]
    terminalreporter.write_sep("=", "pidproc benchmark report")
    terminalreporter.write_line(text)
    for note in notes:
        terminalreporter.write_line(note)
