"""kill_tree in a program that ignores SIGCHLD (the kernel then reaps every
child itself, the probe children included): two spawns in a row, each
printed as its mechanism, or the exception it raised, as JSON.  Run by
tests/test_lifecycle_options.py."""

from __future__ import annotations

import json
import signal

import pidproc

signal.signal(signal.SIGCHLD, signal.SIG_IGN)
seen: list[object] = []
for _ in range(2):
    try:
        p = pidproc.Popen(["sleep", "30"], kill_tree=True)
    except Exception as e:  # noqa: BLE001  # reported, not raised
        seen.append(f"{type(e).__name__}: {e}")
        continue
    p.kill()
    p.wait()
    seen.append(p.kill_tree)
print(json.dumps(seen))
