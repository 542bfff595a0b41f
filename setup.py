# cffi has no pyproject-only build hook yet (cffi issue 55): this is the glue.
from __future__ import annotations

import os
import sysconfig
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

# Processed by site at interpreter start; it does nothing unless
# PIDPROC_PATCH is set (README: "Whole process trees").
PTH = "pidproc-patch.pth"
PTH_SOURCE = os.path.join("src", PTH)


class build_py_with_pth(build_py):  # noqa: N801  (a setuptools command)
    """build_py that also puts the .pth at the top of the build directory,
    so that it lands at the top of site-packages, the only place site reads
    .pth files from.  The same file is used for editable installs."""

    def run(self) -> None:
        super().run()
        self.copy_file(PTH_SOURCE, os.path.join(self.build_lib, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]

    def get_output_mapping(self) -> dict[str, str]:
        # Read by editable installs (PEP 660): the file to place, and from where.
        mapping: dict[str, str] = dict(super().get_output_mapping())
        mapping[os.path.join(self.build_lib, PTH)] = PTH_SOURCE
        return mapping


options: dict[str, Any] = {}
# One wheel for every CPython 3.10+: the module cffi builds uses the stable ABI
# (_core.abi3.so), so the wheel is tagged cp310-abi3.  A free-threaded
# interpreter has no stable ABI (cffi builds a version-specific module there).
if not sysconfig.get_config_var("Py_GIL_DISABLED"):
    options["bdist_wheel"] = {"py_limited_api": "cp310"}

setup(
    cffi_modules=["build_ffi.py:ffibuilder"],
    cmdclass={"build_py": build_py_with_pth},
    options=options,
)
