"""Install real seccomp filters, as container runtimes do, for fault tests.

A filter is irreversible and inherited by children, so it is only ever
installed in a throw-away child interpreter::

    r = run_filtered({"clone3": errno.ENOSYS}, "import pidproc; ...")

Rules are ``{syscall: errno}`` (deny every call) or ``{syscall: (errno,
arg_index, mask)}`` (deny only calls whose argument ``arg_index`` has any bit
of ``mask`` set, e.g. ``clone`` with CLONE_PIDFD).  Built on libseccomp
(``libseccomp.so.2``, part of every Debian base system) through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

Rule = int | tuple[int, int, int]

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7


def SCMP_ACT_ERRNO(err: int) -> int:  # noqa: N802 - the C macro's name
    return 0x00050000 | (err & 0x0000FFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _lib() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def available() -> bool:
    return _lib() is not None


def install(rules: dict[str, Rule]) -> None:
    """Install the filter in this process (irreversible)."""
    lib = _lib()
    if lib is None:
        raise OSError("libseccomp.so.2 is not installed")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp),
    ]  # fmt: skip
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        for name, rule in rules.items():
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                raise ValueError(f"unknown syscall {name!r}")
            if isinstance(rule, int):
                rc = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(rule), nr, 0, None)
            else:
                err, arg, mask = rule
                # "any bit of mask set": deny unless (arg & mask) == 0.  libseccomp
                # has no "!=", so add one rule per bit.
                rc = 0
                bit = 1
                while bit <= mask and rc == 0:
                    if mask & bit:
                        cmp = (_ArgCmp * 1)(_ArgCmp(arg, SCMP_CMP_MASKED_EQ, bit, bit))
                        rc = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(err), nr, 1, cmp)
                    bit <<= 1
            if rc < 0:
                raise OSError(-rc, f"seccomp_rule_add({name}) failed")
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise OSError(-rc, "seccomp_load failed")
    finally:
        lib.seccomp_release(ctx)


PRELUDE = (
    "import sys; sys.path.insert(0, {root!r})\n"
    "from tests import seccomp\n"
    "seccomp.install({rules!r})\n"
    "del sys.path[0]\n"
)


def run_filtered(
    rules: dict[str, Rule], code: str, *, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter behind the filter."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prelude = PRELUDE.format(root=root, rules=rules)
    full_env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
