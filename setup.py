# cffi has no pyproject-only build hook yet (cffi issue 55): this is the glue.
from __future__ import annotations

import ast
import os
import sysconfig
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

# The .pth file site runs at interpreter start-up; its one line does nothing
# unless PIDPROC_PATCH is set (to anything but "" or "0"), and then runs
# src/pidproc/_pth_hook.py (README: "Whole process trees").
PTH = "pidproc-patch.pth"
HOOK = os.path.join("src", "pidproc", "_pth_hook.py")


def pth_line() -> str:
    with open(HOOK, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    # Without docstrings and comments: site compiles the whole line at every
    # start-up, the variable set or not.
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and len(body) > 1 and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body.pop(0)
    code = ast.unparse(tree)
    # site executes a line that starts with "import"; the variable is tested
    # first, so that without it nothing runs or is imported.
    test = 'os.environ.get("PIDPROC_PATCH", "0") not in ("", "0")'
    return f'import os; {test} and exec({code!r}, {{"__name__": "pidproc-patch.pth"}})\n'


class build_py_with_pth(build_py):  # noqa: N801  (a setuptools command)
    """build_py that also writes the .pth at the top of the build directory,
    so that it lands at the top of site-packages, the only place site reads
    .pth files from."""

    def _write_pth(self, directory: str) -> str:
        target = os.path.join(directory, PTH)
        if not self.dry_run:
            os.makedirs(directory, exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(pth_line())
        return target

    def run(self) -> None:
        super().run()
        self._write_pth(self.build_lib)
        if getattr(self, "editable_mode", False):
            # An editable wheel (PEP 660) holds a .pth naming the source tree
            # and whatever lies in its own top directory, where setuptools
            # points install_lib while it builds one; build_lib is dropped.
            top = self.get_finalized_command("install").install_lib
            if top:
                self._write_pth(top)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


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
