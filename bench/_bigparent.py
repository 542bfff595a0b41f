"""S4's parent: a Python process holding SIZE bytes of written memory.

usage: python _bigparent.py SIZE

Started by bench_spawn.py so that the test process itself stays small.  It
allocates and writes SIZE bytes (every page is touched, so fork has every
page table entry to copy), then answers one JSON request per line on stdin,
one JSON answer per line on the protocol fd (a dup of the original stdout;
fd 1 itself is pointed at stderr so that children cannot write into the
protocol):

{"cmd": "hello"}                               -> {"rss": bytes}
{"cmd": "spawn", "module": "pidproc"|"stdlib", "kwargs": {...}, "n": N}
    N times Popen(["/bin/true"], **kwargs).wait(), each timed
                                               -> {"samples": [seconds...], "backend": ...}
{"cmd": "ids", "module": ..., "kwargs": {...}} -> {"stdout": "uid\\ngid\\ngroups\\n"}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pidproc

MODULES: dict[str, Any] = {"pidproc": pidproc, "stdlib": subprocess}


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def spawn(mod: Any, kwargs: dict[str, Any], n: int) -> dict[str, Any]:
    clock = time.perf_counter
    samples = []
    backend = None
    for _ in range(n):
        t0 = clock()
        p = mod.Popen(["/bin/true"], **kwargs)
        rc = p.wait()
        samples.append(clock() - t0)
        if rc != 0:
            return {"error": f"/bin/true exited {rc}"}
        backend = getattr(p, "backend", None)
    return {"samples": samples, "backend": backend}


def ids(mod: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    out = mod.run(
        ["/bin/sh", "-c", "id -u; id -g; id -G"], stdout=subprocess.PIPE, text=True, **kwargs
    )
    return {"stdout": out.stdout, "rc": out.returncode}


def main() -> None:
    size = int(sys.argv[1])
    proto = os.fdopen(os.dup(1), "w")  # os.dup: not inheritable
    os.dup2(2, 1)
    ballast = bytearray(b"\x01") * size  # written, so resident
    answers: dict[str, Any]
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["cmd"] == "hello":
                answers = {"rss": rss_bytes()}
            elif req["cmd"] == "spawn":
                answers = spawn(MODULES[req["module"]], req["kwargs"], req["n"])
            elif req["cmd"] == "ids":
                answers = ids(MODULES[req["module"]], req["kwargs"])
            else:
                answers = {"error": f"unknown request {req!r}"}
        except Exception as e:  # report, do not die: the test shows it
            answers = {"error": f"{type(e).__name__}: {e}"}
        proto.write(json.dumps(answers) + "\n")
        proto.flush()
    assert ballast[size // 2] == 1


if __name__ == "__main__":
    main()
