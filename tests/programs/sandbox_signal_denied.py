"""Signals with pidfd_send_signal denied (run behind a seccomp filter), on
the clone3, clone and fork paths: prints, per path, the errno the denied
call gave and the return codes of a terminated child, a child killed
while another thread waits for it, and a child reaped behind Popen's back.
Run by tests/test_sandbox_faults.py."""

from __future__ import annotations

import os
import threading
import time

import pidproc
from pidproc import _posix


def check(name: str) -> None:
    with pidproc.use_backend(name):
        p = pidproc.Popen(["sleep", "10"])
        assert p.pidfd is not None and p.backend == name
        try:
            _posix.pidfd_send_signal(p.pidfd, 0)
        except OSError as e:
            denied = e.errno
        p.terminate()
        codes: list[object] = [p.wait(timeout=10)]
        # A waiter blocked in waitid holds the wait lock: kill() from another
        # thread must neither wait for it nor be skipped.
        p = pidproc.Popen(["sleep", "10"])
        t = threading.Thread(target=lambda: codes.append(p.wait()))
        t.start()
        time.sleep(0.05)
        p.kill()
        t.join(10)
        codes.append(t.is_alive())
        # Reaped behind our back: the PID is no longer certainly ours.
        p = pidproc.Popen(["true"])
        os.waitpid(p.pid, 0)
        p.kill()
        codes.append(p.returncode)
        print(name, denied, codes)


for name in ("clone3", "clone", "fork"):
    if name in pidproc.backends():  # without the C core: fork alone
        check(name)
