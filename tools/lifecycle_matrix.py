"""Which mechanism honours each lifecycle option here, on every spawn path.

For the default path and each path forced in turn, spawns ``true`` with
``die_with_parent``, ``kill_tree`` and ``no_new_privs`` one at a time and
prints the path taken and the mechanism the Popen reports (or the exception
raised), then ``Popen.rusage.ru_maxrss`` of a child that touched 200 MiB.
The kernel facts the choice rests on come first (``--json``: all of it,
the exceptions' messages whole).  Run it on each kernel
(``tools/kernels.py --kernel 7.2 --run "python3 /src/tools/lifecycle_matrix.py"``)
to fill a table of option x kernel x mechanism.

    PYTHONPATH=$PWD/src python3 tools/lifecycle_matrix.py [--json]
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pidproc
from pidproc import _lifecycle
from pidproc._native import lib

OPTIONS = ("die_with_parent", "kill_tree", "no_new_privs")
# Touches 200 MiB page by page, so that they count in its peak RSS.
TOUCH = "b = bytearray(200 << 20); b[::4096] = b'x' * (len(b) // 4096)"


def one(forced: str | None, option: str) -> str:
    try:
        with pidproc.use_backend(forced), pidproc.Popen(["true"], **{option: True}) as p:
            pass
    except Exception as e:  # what the option raises here is the answer
        return f"{type(e).__name__}: {e}"
    return f"{p.backend}: {getattr(p, option)} (exit {p.returncode})"


def rusage(forced: str | None) -> str:
    with pidproc.use_backend(forced):
        p = pidproc.Popen([sys.executable, "-c", TOUCH])
    p.wait()
    ru = p.rusage
    return f"{p.backend}: " + ("None" if ru is None else f"ru_maxrss {ru.ru_maxrss // 1024} MiB")


def matrix() -> dict[str, Any]:
    facts = {n: _lifecycle.fact(n) for n in ("clone3_flags", "group_signal", "cgroup_birth")}
    rows: dict[str, dict[str, str]] = {}
    for forced in [None, *pidproc.backends()]:
        row = {option: one(forced, option) for option in OPTIONS}
        row["rusage"] = rusage(forced)
        rows[forced or "default"] = row
    return {
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "paths": pidproc.backends(),
        "cap_sys_admin": lib.pidproc_has_capability(_lifecycle.CAP_SYS_ADMIN) == 1,
        "facts": facts,
        "cgroup": "usable" if facts["cgroup_birth"] else _lifecycle.Lifecycle.cgroup_reason(),
        "rows": rows,
    }


def main(argv: list[str]) -> int:
    out = matrix()
    if "--json" in argv:
        print(json.dumps(out, indent=1))
        return 0
    head = {k: v for k, v in out.items() if k != "rows"}
    print(" ".join(f"{k}={v}" for k, v in head.items()))
    print()
    print("| path forced | " + " | ".join([*OPTIONS, "rusage"]) + " |")
    print("|---" * (len(OPTIONS) + 2) + "|")
    for forced, row in out["rows"].items():
        cells = (v if len(v) <= 80 else v[:77] + "..." for v in row.values())
        print(f"| {forced} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
