"""Children reaped behind a Popen's back and PIDs reused on demand, inside
a PID namespace of our own (where root may write ns_last_pid).

Only the stdlib: the programs in ``tests/programs/`` use it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any


def foreign_reaper(
    stop: threading.Event, pause: float, reaped: threading.Event | None = None
) -> threading.Thread:
    """A thread, started, that reaps every child of this process with
    os.wait() (looking again ``pause`` seconds later when there is none)
    until ``stop`` is set; it sets ``reaped`` after each reap."""

    def reap() -> None:
        while not stop.is_set():
            try:
                os.wait()
                if reaped is not None:
                    reaped.set()
            except ChildProcessError:
                time.sleep(pause)

    thread = threading.Thread(target=reap, daemon=True)
    thread.start()
    return thread


def recycle(pid: int) -> subprocess.Popen[bytes]:
    """A new ``sleep 30``, a stdlib child, that gets ``pid`` (which must be
    free: its last holder reaped)."""
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    b = subprocess.Popen(["sleep", "30"])
    assert b.pid == pid, (pid, b.pid)
    return b


def call_everything(a: Any) -> None:
    """kill(), poll(), wait() and terminate() on the Popen ``a``, whose PID
    another process may hold by now."""
    a.kill()
    a.poll()
    a.wait(timeout=5)
    a.terminate()


def survives(b: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether ``b`` still runs ``seconds`` later (a signal takes a moment
    to land); it is killed and reaped either way."""
    try:
        b.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        return True
    finally:
        b.kill()
        b.wait()
