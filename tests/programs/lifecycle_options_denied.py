"""Each lifecycle option on a plain spawn, behind whatever seccomp filter
the caller installed; prints, as JSON, the path and mechanism, or the
exception's type, errno and message.  Run by tests/test_lifecycle_options.py."""

from __future__ import annotations

import json
from typing import Any

import pidproc

out: dict[str, list[Any]] = {}
for option in ("die_with_parent", "no_new_privs", "kill_tree"):
    try:
        with pidproc.Popen(["true"], **{option: True}) as p:
            pass
        out[option] = ["ok", p.backend, getattr(p, option)]
    except OSError as e:
        out[option] = [type(e).__name__, e.errno, str(e)]
print(json.dumps(out))
