"""What a process holds: its fds and its children, read from /proc; and
the fds a child finds open.

Only the stdlib: the programs in ``tests/programs/`` use it too."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from typing import Any

LS = shutil.which("ls", path="/usr/bin:/bin") or "/bin/ls"


def collect() -> None:
    """gc.collect() as often as this interpreter needs for the finalizers
    (``__del__``) of everything unreachable to have run: once on CPython;
    on PyPy a finalizer runs only after the collection that found its
    object, and may free more, so three times."""
    for _ in range(1 if sys.implementation.name == "cpython" else 3):
        gc.collect()


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def live_fds() -> set[int]:
    """The fds open now, less the one the listing itself used (closed by
    the time it is looked at)."""
    return {fd for fd in open_fds() if os.path.exists(f"/proc/self/fd/{fd}")}


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


def child_fds(module: Any, **kwargs: Any) -> dict[int, str]:
    """{fd: readlink target} as a child spawned through ``module``
    (subprocess or pidproc) with ``kwargs`` sees them itself."""
    with module.Popen([LS, "-l", "/proc/self/fd/"], stdout=subprocess.PIPE, **kwargs) as p:
        out = p.communicate()[0].decode()
    assert p.returncode == 0
    fds = {}
    for line in out.splitlines():
        if " -> " not in line:
            continue
        left, target = line.split(" -> ", 1)
        fd = int(left.split()[-1])
        if target == f"/proc/{p.pid}/fd":
            continue  # ls's own directory handle
        fds[fd] = "<stdout pipe>" if fd == 1 else target
    return fds
