"""Smoke test of an installed pidproc, run by ``nox -s build`` in a fresh venv.

    <venv>/bin/python tools/smoke.py [--abi3]

Run from outside the source tree, so that the ``pidproc`` imported is the
installed one (this is checked).  It imports pidproc, spawns a child held by
a pidfd, reads ``Popen.backend``, waits for the exit status, and checks the
installed ``pidproc-patch.pth``: a Python child started with
``PIDPROC_PATCH=1`` runs patched, one started without it does not import
pidproc at all.  ``--abi3`` also requires the stable-ABI module
(``_core.abi3.so``), as the wheel ships it.  Prints one line; exits non-zero
with the reason on any failure.
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig

CHILD = (
    "import subprocess, sys; "
    "print('pidproc' in sys.modules, "
    "subprocess.Popen.__module__.split('.')[0])"
)


def fail(message: str) -> None:
    sys.exit(f"smoke: FAILED on {sys.executable}: {message}")


def child_report(patch: str | None) -> str:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_PATCH"}
    if patch is not None:
        env["PIDPROC_PATCH"] = patch
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        fail(f"child with PIDPROC_PATCH={patch!r} exited {out.returncode}: {out.stderr}")
    return out.stdout.strip()


def main() -> None:
    abi3 = "--abi3" in sys.argv[1:]
    site = os.path.realpath(sysconfig.get_paths()["purelib"])

    import pidproc
    import pidproc._core as core

    where = os.path.realpath(pidproc.__file__)
    if not where.startswith(site + os.sep):
        fail(f"pidproc imported from {where}, not from the venv's {site}")
    if abi3 and not str(core.__file__).endswith(".abi3.so"):
        fail(f"the compiled core is {core.__file__}, not a stable-ABI module")
    if not os.path.isfile(os.path.join(site, "pidproc-patch.pth")):
        fail(f"pidproc-patch.pth is not installed at the top of {site}")

    paths = pidproc.backends()
    with pidproc.Popen([sys.executable, "-c", "import sys; sys.exit(7)"]) as p:
        if p.backend not in paths or p.backend == "pid":
            fail(f"the child took the path {p.backend!r} (usable here: {paths})")
        if not isinstance(p.pidfd, int) or p.pidfd < 0:
            fail(f"the child has no pidfd: {p.pidfd!r}")
        pidfd = p.pidfd
        rc = p.wait(timeout=30)
    if rc != 7:
        fail(f"wait() returned {rc}, the child exited 7")

    bare = child_report(None)
    off = child_report("0")
    tree = child_report("1")
    if bare != "False subprocess" or off != "False subprocess":
        fail(f"without PIDPROC_PATCH a child reported {bare!r} / {off!r}")
    if tree != "True pidproc":
        fail(f"with PIDPROC_PATCH=1 a child reported {tree!r}")

    print(
        f"smoke: ok {platform.python_implementation()} {platform.python_version()}"
        f" pidproc {pidproc.__version__} ({os.path.basename(str(core.__file__))}):"
        f" backend {p.backend}, pidfd {pidfd}, wait() {rc};"
        " PIDPROC_PATCH=1 child patched, unset/0 untouched"
    )


if __name__ == "__main__":
    main()
