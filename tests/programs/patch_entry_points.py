"""Every way a program spawns (subprocess, os.popen, asyncio, names taken
from subprocess before pidproc is imported), with pidproc.patch() per
argv[1] (none, patch, patch-unpatch): prints, as JSON, each call's result
and, for each spawn, whether it went through pidproc's Popen.  Run by
tests/test_patch.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from subprocess import Popen as EarlyPopen
from subprocess import check_output as early_check_output
from subprocess import run as early_run
from typing import Any


class EarlySubclass(subprocess.Popen):  # type: ignore[type-arg]
    pass


# Imported only now: the names above were taken from the stdlib before.
import pidproc  # noqa: E402

POPEN_CODE = os.path.realpath(sys.modules["pidproc._popen"].__file__ or "")
seen: list[bool] = []


def hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "subprocess.Popen":
        frame = sys._getframe(1)
        while frame is not None:
            if os.path.realpath(frame.f_code.co_filename) == POPEN_CODE:
                seen.append(True)
                return
            frame = frame.f_back  # type: ignore[assignment]
        seen.append(False)


sys.addaudithook(hook)


async def aio_exec() -> list[Any]:
    p = await asyncio.create_subprocess_exec(
        "sh", "-c", "echo exec; exit 3", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await p.communicate()
    return [out.decode(), p.returncode]


async def aio_shell() -> list[Any]:
    p = await asyncio.create_subprocess_shell("echo shell; exit 5", stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    return [out.decode(), p.returncode]


def popen_file() -> list[Any]:
    f = os.popen("echo popen; exit 2")
    return [f.read(), f.close()]


def waited(p: Any) -> Any:
    with p:
        return p.wait()


CALLS: dict[str, Callable[[], Any]] = {
    "subprocess.Popen": lambda: waited(subprocess.Popen(["sh", "-c", "exit 6"])),
    "subprocess.run": lambda: subprocess.run(["sh", "-c", "exit 4"]).returncode,
    "subprocess.call": lambda: subprocess.call(["sh", "-c", "exit 9"]),
    "subprocess.check_call": lambda: subprocess.check_call(["true"]),
    "subprocess.check_output": lambda: subprocess.check_output(["echo", "out"]).decode(),
    "subprocess.getoutput": lambda: subprocess.getoutput("echo get"),
    "subprocess.getstatusoutput": lambda: subprocess.getstatusoutput("echo st; exit 1"),
    "run imported before": lambda: early_run(["sh", "-c", "exit 8"]).returncode,
    "check_output imported before": lambda: early_check_output(["echo", "e"]).decode(),
    "os.popen": popen_file,
    "asyncio.create_subprocess_exec": lambda: asyncio.run(aio_exec()),
    "asyncio.create_subprocess_shell": lambda: asyncio.run(aio_shell()),
    "Popen imported before": lambda: waited(EarlyPopen(["true"])),
    "subclass defined before": lambda: waited(EarlySubclass(["true"])),
}

mode = sys.argv[1]
if mode in ("patch", "patch-unpatch"):
    pidproc.patch()
if mode == "patch-unpatch":
    pidproc.unpatch()
report = {}
for name, call in CALLS.items():
    del seen[:]
    result = call()
    report[name] = {"result": result, "spawns": list(seen)}
print(json.dumps(report))
