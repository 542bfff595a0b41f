"""Install real seccomp filters, as container runtimes do, for fault tests.

A filter is irreversible and inherited by children, so it is only ever
installed in a throw-away child interpreter::

    r = run_filtered({"clone3": errno.ENOSYS}, "import pidproc; ...")
    r = run_filtered({"clone3": errno.ENOSYS}, program=program("x"), args=["a"])

Rules are ``{syscall: errno}`` (deny every call), ``{syscall: (errno,
arg_index, mask)}`` (deny only calls whose argument ``arg_index`` has any bit
of ``mask`` set, e.g. ``clone`` with CLONE_PIDFD) or ``{syscall: (errno,
arg_index, "==", value)}`` (deny only calls whose argument equals ``value``,
e.g. ``waitid`` with idtype P_PIDFD).  Built on libseccomp
(``libseccomp.so.2``, part of every Debian base system) through ctypes.

A filter sees only the syscall's registers, never memory they point to, so
the flags inside clone3's ``struct clone_args`` are out of its reach.
:func:`veto_clone3_flags` answers clone3 from a supervisor thread instead
(SECCOMP_RET_USER_NOTIF, Linux 5.5), which can read the struct.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Rule = int | tuple[int, int, int] | tuple[int, int, str, int]

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1


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


def _filter_lib() -> Any:
    """libseccomp with the prototypes every filter needs."""
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
    return lib


def install(rules: dict[str, Rule]) -> None:
    """Install the filter in this process (irreversible)."""
    lib = _filter_lib()
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
            elif len(rule) == 4:
                err, arg, op, value = rule  # type: ignore[misc]
                if op != "==":
                    raise ValueError(f"unknown comparison {op!r}")
                cmp = (_ArgCmp * 1)(_ArgCmp(arg, SCMP_CMP_EQ, value, 0))
                rc = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(err), nr, 1, cmp)
            else:
                err, arg, mask = rule  # type: ignore[misc]
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


class _SeccompData(ctypes.Structure):
    _fields_ = [
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class _Notif(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", _SeccompData),
    ]


class _NotifResp(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


def _notify_lib() -> Any:
    """libseccomp with the prototypes the user-notification helpers need
    too (libseccomp 2.5+: set only where they are used)."""
    lib = _filter_lib()
    lib.seccomp_notify_fd.argtypes = [ctypes.c_void_p]
    lib.seccomp_notify_receive.argtypes = [ctypes.c_int, ctypes.POINTER(_Notif)]
    lib.seccomp_notify_respond.argtypes = [ctypes.c_int, ctypes.POINTER(_NotifResp)]
    return lib


def _load_notify_filter(lib: Any, syscall: bytes) -> int:
    """Load a filter that hands every ``syscall`` of this thread (and the
    threads it starts later) to a supervisor; returns the notification fd."""
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    try:
        nr = lib.seccomp_syscall_resolve_name(syscall)
        rc = lib.seccomp_rule_add_array(ctx, SCMP_ACT_NOTIFY, nr, 0, None)
        if rc < 0:
            raise OSError(-rc, f"seccomp_rule_add({syscall.decode()}, NOTIFY) failed")
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise OSError(-rc, "seccomp_load failed")
        return int(lib.seccomp_notify_fd(ctx))
    finally:
        lib.seccomp_release(ctx)


def veto_clone3_flags(flags: int, err: int) -> list[int]:
    """From now on, this thread's clone3 calls whose ``clone_args.flags`` has
    any bit of ``flags`` set fail with ``err``; the others run as usual.

    Returns the list the supervisor appends every flags word it sees to.
    The calling thread must not start threads afterwards (pthread_create uses
    clone3 and would wait for a supervisor that needs the GIL it holds).
    """
    lib = _notify_lib()
    seen: list[int] = []
    handoff: list[int] = []
    ready = threading.Event()

    def supervise() -> None:
        ready.wait()
        fd = handoff[0]
        req, resp = _Notif(), _NotifResp()
        while True:
            ctypes.memset(ctypes.byref(req), 0, ctypes.sizeof(req))
            if lib.seccomp_notify_receive(fd, ctypes.byref(req)) < 0:
                continue  # the caller died meanwhile (ENOENT) or EINTR
            # Same address space: read clone_args.flags straight from memory.
            word = ctypes.c_uint64.from_address(req.data.args[0]).value
            seen.append(word)
            resp.id, resp.val = req.id, 0
            if word & flags:
                resp.error, resp.flags = -err, 0
            else:
                resp.error, resp.flags = 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE
            lib.seccomp_notify_respond(fd, ctypes.byref(resp))

    # Started before the filter exists: creating it uses clone3 itself.
    threading.Thread(target=supervise, daemon=True).start()
    handoff.append(_load_notify_filter(lib, b"clone3"))
    ready.set()
    return seen


def hold_execve(n: int) -> tuple[threading.Semaphore, threading.Event]:
    """From now on, the first ``n`` execve calls of this process's children
    (of this thread and the threads it starts later) wait in the kernel,
    before anything is executed, until the returned event is set; later
    calls go on at once.  The semaphore is released once per call held, so
    the caller can wait until ``n`` children are stuck before exec: with
    CLONE_VFORK, ``n`` spawns in progress at the same time.
    """
    lib = _notify_lib()
    held = threading.Semaphore(0)
    go = threading.Event()
    handoff: list[int] = []
    ready = threading.Event()

    def respond(fd: int, notif_id: int) -> None:
        resp = _NotifResp()
        resp.id, resp.val, resp.error = notif_id, 0, 0
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE
        lib.seccomp_notify_respond(fd, ctypes.byref(resp))

    def release_later(fd: int, notif_id: int) -> None:
        go.wait()
        respond(fd, notif_id)

    def supervise() -> None:
        ready.wait()
        fd = handoff[0]
        req = _Notif()
        count = 0
        while True:
            ctypes.memset(ctypes.byref(req), 0, ctypes.sizeof(req))
            if lib.seccomp_notify_receive(fd, ctypes.byref(req)) < 0:
                continue  # the caller died meanwhile (ENOENT) or EINTR
            if count < n and not go.is_set():
                count += 1
                threading.Thread(target=release_later, args=(fd, req.id), daemon=True).start()
                held.release()
            else:
                respond(fd, req.id)

    threading.Thread(target=supervise, daemon=True).start()
    handoff.append(_load_notify_filter(lib, b"execve"))
    ready.set()
    return held, go


PRELUDE = (
    "import sys; sys.path.insert(0, {root!r})\n"
    "from tests._support import seccomp\n"
    "seccomp.install({rules!r})\n"
    "del sys.path[0]\n"
)
# A program file runs as ``python FILE ARGS`` would run it, behind the filter:
# its own folder in place of the current directory that -c puts first.
RUN_FILE = (
    "import os, runpy\n"
    "sys.argv = [{path!r}, *{args!r}]\n"
    "sys.path[0] = os.path.dirname({path!r})\n"
    "runpy.run_path({path!r}, run_name='__main__')\n"
)


def run_filtered(
    rules: dict[str, Rule],
    code: str = "",
    *,
    program: str | None = None,
    args: Sequence[str] = (),
    timeout: float = 60,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``code``, or the file ``program`` with ``args``, in a fresh
    interpreter behind the filter (``prefix``, e.g. an ``unshare`` command
    line, goes in front of the interpreter)."""
    root = str(Path(__file__).resolve().parents[2])
    prelude = PRELUDE.format(root=root, rules=rules)
    if program is not None:
        code = RUN_FILE.format(path=program, args=list(args))
    full_env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    full_env.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
