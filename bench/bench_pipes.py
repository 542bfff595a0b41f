"""S6, S7: data through pipes, communicate() and capture_output.

S6  ``run([...], capture_output=True)`` of a Python child writing 256 MiB
    to stdout in 1 MiB writes.  Also the "pipe floor": the same child read
    with a plain ``p.stdout.read()`` (one pipe, no loop: what the pipe and
    the child allow), on a default pipe and on a 1 MiB one.
S6b the common case: ``run([...], capture_output=True)`` of 1 KiB
    (``head -c 1024 /dev/zero``).
S6c ``communicate(input=64 MiB)`` through ``cat``.
S6d peak RSS (VmHWM) of a fresh Python process that captures 256 MiB with
    ``run(capture_output=True)``, one process per sample: the stdlib holds
    the output twice at the end (its chunks, then their join).
S7  ``communicate(input, timeout=60)`` with a chatty child: it echoes every
    input line at once (``python -u``, one write per line) and reports
    progress on stderr every 16 lines, so the parent juggles three pipes
    through many small reads and writes.

S6 and S7 also report this process's CPU time per operation: the loop's
own cost, which a loaded machine blurs less than the wall time.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _compare import Batch, Scenario, Side, Target, compare, quick

import pidproc

MIB = 1 << 20
# This process's CPU seconds per operation: on a loaded machine the steadier
# measure of the loop itself (the child's work and the waits are not in it).
PARENT_CPU = "parent CPU s per operation"
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

    def run(n: int) -> Batch:
        out, cpu = [], []
        for _ in range(n):
            c0, t0 = time.process_time(), time.perf_counter()
            cp = mod.run(argv, capture_output=True, **kwargs)
            out.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert cp.returncode == 0 and cp.stderr == b"", cp.stderr
            assert cp.stdout == expected, f"{label}: {len(cp.stdout)} bytes, not the pattern"
            del cp
        return Batch(out, {PARENT_CPU: statistics.median(cpu)})

    return Side(label, run)


def pipe_floor(size: int, expected: bytes, label: str, pipesize: int = -1) -> Side:
    """The same child read with p.stdout.read(): one pipe, no loop."""
    argv = [sys.executable, "-c", WRITER, str(size)]

    def run(n: int) -> Batch:
        out, cpu = [], []
        for _ in range(n):
            c0, t0 = time.process_time(), time.perf_counter()
            with subprocess.Popen(argv, stdout=subprocess.PIPE, pipesize=pipesize) as p:
                data = p.stdout.read()
            out.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert p.returncode == 0 and data == expected, f"{label}: {len(data)} bytes"
            del data
        return Batch(out, {PARENT_CPU: statistics.median(cpu)})

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
                pipe_floor(size, expected, "pipe floor: p.stdout.read()"),
                pipe_floor(size, expected, "pipe floor, 1 MiB pipe", pipesize=MIB),
            ],
            [Target.faster("stdlib", 1.8)],
            rounds=16,
            per_round=1,
            quick_per_round=1,
            note="the pipe floors read stdout alone with p.stdout.read(), on a default pipe "
            "and on one grown to 1 MiB (pipesize=): how fast the child and the pipe go",
            context=[("stdlib", "pipe floor: p.stdout.read()")],
        ),
    )


def test_s6b_capture_output_small(benchmark: Any) -> None:
    head = shutil.which("head")
    if head is None:
        pytest.skip("no head(1) on PATH")
    argv = [head, "-c", "1024", "/dev/zero"]

    def side(mod: ModuleType) -> Side:
        def run(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                cp = mod.run(argv, capture_output=True)
                out.append(time.perf_counter() - t0)
                assert cp.returncode == 0 and cp.stdout == bytes(1024) and cp.stderr == b""
            return out

        return Side("pidproc" if mod is pidproc else "stdlib", run)

    compare(
        benchmark,
        Scenario(
            "S6b",
            "run(..., capture_output=True) of 1 KiB (head -c 1024), the common case",
            "one run(), child start-up included, in seconds",
            [side(pidproc), side(subprocess)],
            [Target.at_most("stdlib", 1.00)],
            rounds=30,
            per_round=20,
            quick_per_round=1,
        ),
    )


def test_s6c_communicate_input_through_cat(benchmark: Any) -> None:
    size = MIB if quick(benchmark) else 64 * MIB
    data = PATTERN * (size // MIB)
    pipe = subprocess.PIPE

    def side(mod: ModuleType) -> Side:
        def run(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                with mod.Popen(["cat"], stdin=pipe, stdout=pipe) as p:
                    stdout, _ = p.communicate(data)
                out.append(time.perf_counter() - t0)
                assert p.returncode == 0 and stdout == data
                del stdout
            return out

        return Side("pidproc" if mod is pidproc else "stdlib", run)

    compare(
        benchmark,
        Scenario(
            "S6c",
            f"communicate(input={size // MIB} MiB) through cat",
            "one Popen + communicate(), in seconds",
            [side(pidproc), side(subprocess)],
            [Target.faster("stdlib", 1.5)],
            rounds=16,
            per_round=1,
            quick_per_round=1,
        ),
    )


# Run in a fresh interpreter per sample: captures argv[2] bytes through
# argv[1]'s run() and prints the process's peak RSS (VmHWM) in KiB.
PEAK_RSS = """\
import sys
mod = __import__(sys.argv[1])
size = int(sys.argv[2])
cp = mod.run([sys.executable, "-c", sys.argv[3], str(size)], capture_output=True)
assert len(cp.stdout) == size and cp.returncode == 0
with open("/proc/self/status") as f:
    print(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
"""


def peak_rss(mod: ModuleType, size: int) -> Side:
    name = mod.__name__
    env = dict(os.environ)
    # The fresh interpreter imports the same pidproc as this one.
    here = str(Path(pidproc.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)

    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            cp = subprocess.run(
                [sys.executable, "-c", PEAK_RSS, name, str(size), WRITER],
                capture_output=True, env=env, check=True,
            )  # fmt: skip
            out.append(int(cp.stdout) / 1024)
        return out

    return Side("pidproc" if mod is pidproc else "stdlib", run)


def test_s6d_peak_rss_capturing(benchmark: Any) -> None:
    size = MIB if quick(benchmark) else 256 * MIB
    compare(
        benchmark,
        Scenario(
            "S6d",
            f"peak RSS capturing {size // MIB} MiB (run(capture_output=True)), fresh process",
            "the VmHWM of one fresh Python process that imports the module and captures, in MiB",
            [peak_rss(pidproc, size), peak_rss(subprocess, size)],
            [Target.at_most("stdlib", 1.00, quantity="peak RSS")],
            rounds=8,
            per_round=1,
            quick_per_round=1,
            unit="MiB",
        ),
    )


def chatty(mod: ModuleType, data: bytes, lines: int) -> Side:
    argv = [sys.executable, "-u", "-c", CHATTY]
    pipe = subprocess.PIPE

    def run(n: int) -> Batch:
        out, cpu = [], []
        for _ in range(n):
            c0, t0 = time.process_time(), time.perf_counter()
            p = mod.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe)
            stdout, stderr = p.communicate(data, timeout=60)
            out.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert p.returncode == 0, stderr[-500:]
            assert stdout == data
            assert stderr.count(b"\n") == math.ceil(lines / 16)
        return Batch(out, {PARENT_CPU: statistics.median(cpu)})

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
