"""What ``import pidproc`` loads: Popen and its spawn machinery, nothing more.

Under ``PIDPROC_PATCH=1`` every Python process pays ``import pidproc``, so
the modules below are kept off that path: the stdlib's costly ones (each
cost more than the rest of the import: ``dataclasses``, ``inspect`` and what
they pull in, ``typing``, ``asyncio``) are imported on first use, as are
pidproc's own toolkit, asyncio and lifecycle parts.  Checked in a fresh
interpreter, against what it had loaded before (``site`` may load some).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import PY

# Modules `import pidproc` must not load (each is loaded on first use).
NOT_AT_IMPORT = frozenset(
    {
        # the stdlib
        "asyncio",
        "ast",
        "dataclasses",
        "dis",
        "inspect",
        "linecache",
        "re",  # 3.10's subprocess does not import it; 3.11+'s does
        "socket",
        "struct",
        "tokenize",
        "typing",
        "zlib",
        # pidproc's own parts
        "pidproc.asyncio",
        "pidproc._aio_transport",
        "pidproc._cgroup",
        "pidproc._lifecycle",
        "pidproc._peer",
        "pidproc._pidfd",
        "pidproc._pidfd_info",
        "pidproc._waitmany",
    }
)

LOADED_BY_IMPORT = (
    "import subprocess, sys\n"
    "before = set(sys.modules)\n"
    "import pidproc\n"
    "print(*sorted(set(sys.modules) - before))\n"
)


@pytest.mark.parametrize("core", ["core", "no-core"])
def test_import_pidproc_loads_no_more_than_it_needs(core: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_PATCH"}
    env.pop("PIDPROC_NO_EXTENSION", None)
    if core == "no-core":
        env["PIDPROC_NO_EXTENSION"] = "1"  # the pure-Python mode imports the same modules
    done = subprocess.run(
        [PY, "-c", LOADED_BY_IMPORT], env=env, capture_output=True, text=True, check=True
    )
    loaded = set(done.stdout.split())
    assert "pidproc._popen" in loaded  # the check saw the import happen
    assert not loaded & NOT_AT_IMPORT, sorted(loaded & NOT_AT_IMPORT)
