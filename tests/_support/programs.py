"""The programs in ``tests/programs/``, found wherever the tree is (a
checkout, a copy in a Debian root, /src in a kernel VM), never from the
current directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"


def program(name: str) -> str:
    """The path of ``tests/programs/<name>.py``, to run as
    ``[sys.executable, program(name), *args]``."""
    path = PROGRAMS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    return str(path)


def run_program(name: str, *args: str, **kwargs: Any) -> Any:
    """Run ``tests/programs/<name>.py`` with ``args`` under this interpreter
    (``kwargs`` go to ``subprocess.run``) and return what it printed, read
    as JSON.  It must exit 0; if not, its stderr is the failure."""
    r = subprocess.run(
        [sys.executable, program(name), *args], capture_output=True, text=True, **kwargs
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def source(name: str) -> str:
    """The text of ``tests/programs/<name>.py``, for ``python -c``: where the
    program runs as a user who cannot read the tree, or where ``-c`` itself
    is what is tested."""
    return Path(program(name)).read_text(encoding="utf-8")


def bad_programs(d: Path) -> dict[str, str]:
    """Files in ``d`` that are programs only in name: not executable, a
    missing interpreter, not an executable format (plus ``d`` itself)."""
    noexec = d / "noexec.sh"
    noexec.write_text("#!/bin/sh\necho hi\n")
    noexec.chmod(0o644)
    badinterp = d / "badinterp"
    badinterp.write_text("#!/nonexistent/interpreter\n")
    badinterp.chmod(0o755)
    garbage = d / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not an executable")
    garbage.chmod(0o755)
    return {
        "dir": str(d),
        "noexec": str(noexec),
        "badinterp": str(badinterp),
        "garbage": str(garbage),
    }
