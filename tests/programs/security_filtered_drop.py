"""Privilege drops, few and many groups, through the stdlib and every path
usable here (run behind a seccomp filter that denies or fakes one step),
each running ``touch`` (argv[2]) on a marker in argv[1]: prints, as JSON,
what each spawn gave, whether the program ran and the children left.  Run
by tests/test_security.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pidproc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.leaks import children  # noqa: E402

marker_dir, touch = sys.argv[1], sys.argv[2]
requests: dict[str, dict[str, Any]] = {
    "few": dict(user=65534, group=65534, extra_groups=[100]),
    "many": dict(user=1234, group=4321, extra_groups=list(range(1000, 1300))),
}
report = {}
for name in ["stdlib", *pidproc.backends()]:
    for size, kwargs in requests.items():
        marker = os.path.join(marker_dir, f"{name}-{size}")
        before = children()
        result: list[Any]
        try:
            if name == "stdlib":
                p = subprocess.Popen([touch, marker], cwd="/", **kwargs)
            else:
                with pidproc.use_backend(name):
                    p = pidproc.Popen([touch, marker], cwd="/", **kwargs)
            p.wait()
            result = ["ran", p.returncode]
        except Exception as e:  # noqa: BLE001 - the test names what it expects
            described = (getattr(e, a, None) for a in ("errno", "strerror", "filename"))
            result = [type(e).__name__, *described]
        report[f"{name}-{size}"] = {
            "result": result,
            "program ran": os.path.exists(marker),
            "children left": [c for c in children() if c not in before],
        }
print(json.dumps(report))
