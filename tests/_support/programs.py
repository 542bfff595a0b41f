"""The programs in ``tests/programs/``, found wherever the tree is (a
checkout, a copy in a Debian root, /src in a kernel VM), never from the
current directory."""

from __future__ import annotations

from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"


def program(name: str) -> str:
    """The path of ``tests/programs/<name>.py``, to run as
    ``[sys.executable, program(name), *args]``."""
    path = PROGRAMS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    return str(path)


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
