"""The switch between the normal run and the long one, and the stress report.

``PIDPROC_STRESS=1`` makes the loops of the reliability tests long (the
``stress`` nox session sets it); without it they stay short enough for CI.

With ``PIDPROC_STRESS_REPORT=<file>`` each reliability test appends one JSON
line per class of fault or input it tried; ``python -m tests.stress <file>``
prints them as a table (case by case, stdlib against pidproc).  A test records before it
asserts, so a failing class shows up in the table with its divergences.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict

STRESS = os.environ.get("PIDPROC_STRESS", "") not in ("", "0")
NOT_OURS = "(not pidproc)"  # in a class name: the stdlib's own behaviour, for reference
_REPORT = os.environ.get("PIDPROC_STRESS_REPORT")


def scale(normal: int, stress: int) -> int:
    """The loop count for this run."""
    return stress if STRESS else normal


def record(klass: str, cases: int, divergences: int = 0, leaked: int = 0) -> None:
    """One line of the report: a class of fault or input, how many cases were
    tried, how many differed from the stdlib, how many fds/zombies/children
    were left behind."""
    if not _REPORT:
        return
    line = {"class": klass, "cases": cases, "divergences": divergences, "leaked": leaked}
    with open(_REPORT, "a") as f:
        f.write(json.dumps(line) + "\n")


def table(path: str) -> str:
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    with open(path) as f:
        for line in f:
            item = json.loads(line)
            row = rows[item["class"]]
            row[0] += item["cases"]
            row[1] += item["divergences"]
            row[2] += item["leaked"]
    head = ("fault or input class", "cases tried", "divergences", "fds/zombies leaked")
    width = max([len(head[0]), *map(len, rows)])
    out = [f"| {head[0]:<{width}} | {head[1]} | {head[2]} | {head[3]} |"]
    out.append(f"|{'-' * (width + 2)}|------------:|------------:|-------------------:|")
    total = [0, 0, 0]
    for klass in sorted(rows):
        cases, div, leaked = rows[klass]
        if NOT_OURS not in klass:  # the stdlib's own failures are shown, not counted
            total = [total[0] + cases, total[1] + div, total[2] + leaked]
        out.append(f"| {klass:<{width}} | {cases:>11} | {div:>11} | {leaked:>18} |")
    name = "total (pidproc)"
    out.append(f"| {name:<{width}} | {total[0]:>11} | {total[1]:>11} | {total[2]:>18} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(sys.argv[1]))
