"""cffi build script for pidproc's C spawn core (API mode, out of line).

``ffibuilder`` is picked up by setup.py (``cffi_modules``); running this file
directly builds ``pidproc._core`` in place for quick local work.
"""

from __future__ import annotations

import platform
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
PKG = HERE / "src" / "pidproc"
CSRC = PKG / "_c"  # the C core: sources and headers
SOURCES = [
    "_child.c",
    "_clone.c",
    "_lifecycle.c",
    "_parent.c",
    "_pidfd_spawn.c",
    "_stack.c",
    "_toolkit.c",
]


def _libraries() -> list[str]:
    # dlsym moved into libc proper in glibc 2.34; older ones need libdl.
    lib, version = platform.libc_ver()
    if lib == "glibc" and version and tuple(map(int, version.split(".")[:2])) < (2, 34):
        return ["dl"]
    return []


ffibuilder = FFI()
ffibuilder.cdef((CSRC / "_core.h").read_text())
ffibuilder.set_source(
    "pidproc._core",
    '#include "_internal.h"\n',
    sources=[str((CSRC / name).relative_to(HERE)) for name in SOURCES],
    include_dirs=[str(CSRC)],
    libraries=_libraries(),
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    # Quick local build: the compiled module lands next to the sources.
    import subprocess
    import sys

    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=HERE, check=True)
