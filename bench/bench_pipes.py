"""S6, S7: data through pipes, where pidproc runs the stdlib's own _communicate.

S6  ``run([...], capture_output=True)`` of a Python child writing 256 MiB
    to stdout in 1 MiB writes.  Also pidproc with ``pipesize=1 MiB``
    (F_SETPIPE_SZ; the stdlib has the same argument), to see whether a bigger
    pipe buys anything when the reader takes 32 KiB per read.
S7  ``communicate(input, timeout=60)`` with a chatty child: it echoes every
    input line at once (``python -u``, one write per line) and reports
    progress on stderr every 16 lines, so the parent juggles three pipes
    through many small reads and writes.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from types import ModuleType
from typing import Any

from _compare import Scenario, Side, Target, compare, quick

import pidproc

MIB = 1 << 20
PATTERN = bytes(range(256)) * (MIB // 256)  # 1 MiB; order errors show up

WRITER = """\
import os, sys
left = int(sys.argv[1])
chunk = bytes(range(256)) * 4096
while left:
    view = memoryview(chunk)[: min(left, len(chunk))]
    left -= len(view)
    while view:
        view = view[os.write(1, view):]
"""

CHATTY = """\
import sys
out, err = sys.stdout.buffer, sys.stderr.buffer
for i, line in enumerate(sys.stdin.buffer):
    out.write(line)
    if i % 16 == 0:
        err.write(b"progress %d\\n" % i)
"""


def capture(mod: ModuleType, size: int, expected: bytes, label: str, **kwargs: Any) -> Side:
    argv = [sys.executable, "-c", WRITER, str(size)]

    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            cp = mod.run(argv, capture_output=True, **kwargs)
            out.append(time.perf_counter() - t0)
            assert cp.returncode == 0 and cp.stderr == b"", cp.stderr
            assert cp.stdout == expected, f"{label}: {len(cp.stdout)} bytes, not the pattern"
            del cp
        return out

    return Side(label, run)


def test_s6_capture_output(benchmark: Any) -> None:
    size = MIB if quick(benchmark) else 256 * MIB
    expected = PATTERN * (size // MIB)
    compare(
        benchmark,
        Scenario(
            "S6",
            f"run(..., capture_output=True) of {size // MIB} MiB on stdout",
            "one run(), child start-up included, in seconds",
            [
                capture(pidproc, size, expected, "pidproc"),
                capture(subprocess, size, expected, "stdlib"),
                capture(pidproc, size, expected, "pidproc, pipesize=1 MiB", pipesize=MIB),
            ],
            [Target.at_most("stdlib", 1.00)],
            rounds=16,
            per_round=1,
            quick_per_round=1,
            note="the third side is for information: a 1 MiB pipe (F_SETPIPE_SZ)",
        ),
    )


def chatty(mod: ModuleType, data: bytes, lines: int) -> Side:
    argv = [sys.executable, "-u", "-c", CHATTY]
    pipe = subprocess.PIPE

    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            p = mod.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe)
            stdout, stderr = p.communicate(data, timeout=60)
            out.append(time.perf_counter() - t0)
            assert p.returncode == 0, stderr[-500:]
            assert stdout == data
            assert stderr.count(b"\n") == math.ceil(lines / 16)
        return out

    return Side("pidproc" if mod is pidproc else "stdlib", run)


def test_s7_communicate_chatty(benchmark: Any) -> None:
    lines = 2_000 if quick(benchmark) else 50_000
    data = b"".join(b"%07d %s\n" % (i, b"x" * 55) for i in range(lines))
    compare(
        benchmark,
        Scenario(
            "S7",
            f"communicate(input, timeout) with a chatty child ({lines} lines in and out)",
            "one Popen + communicate(3 MiB in, echoed line by line), in seconds"
            if lines == 50_000
            else "one Popen + communicate, in seconds",
            [chatty(pidproc, data, lines), chatty(subprocess, data, lines)],
            [Target.at_most("stdlib", 1.00)],
            rounds=30,
            per_round=1,
            quick_per_round=1,
        ),
    )
