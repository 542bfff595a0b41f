"""peer_pidfd() and set_pass_pidfd() on a socketpair (run behind a seccomp
filter that answers as a kernel before 6.5): prints, as JSON, ["ok"] or
the errno and message of each.  Run by tests/test_peer.py."""

from __future__ import annotations

import json
import socket
from typing import Any

import pidproc

a, b = socket.socketpair()
out: list[list[Any]] = []
for op in (lambda: pidproc.peer_pidfd(a), lambda: pidproc.set_pass_pidfd(b)):
    try:
        op()
        out.append(["ok"])
    except OSError as e:
        out.append([e.errno, str(e)])
print(json.dumps(out))
