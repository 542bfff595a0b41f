"""The numbers and layouts pidproc hands to the kernel, against this machine's headers.

pidproc's Python code spells out what the stdlib does not export: socket
option numbers, ioctl numbers (whose encoding differs between CPU
architectures), the layout of ``struct pidfd_info``, advice values,
namespace flags; its C core falls back to syscall numbers of its own where
old headers lack them.  Each is compared here with the value the C headers
of this machine give (the kernel's UAPI headers, linux-libc-dev on Debian,
and glibc's), compiled and run with its C compiler, so that a value that is
only right on x86_64 fails on the CPU it is wrong for.  A value these
headers do not define yet is skipped, naming the headers' version; the
behaviour tests (test_peer.py, test_pidfd_handle.py) check the same values
against a running kernel that has the feature.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

import pidproc
from pidproc import _peer, _pidfd, _pidfd_info

from ._support.core import needs_core
from .conftest import PY

PROGRAM = textwrap.dedent(
    r"""
    #define _GNU_SOURCE
    #include <limits.h>
    #include <stddef.h>
    #include <stdio.h>
    #include <sys/syscall.h>
    #include <sys/socket.h>
    #include <linux/ioctl.h>
    #include <linux/mman.h>
    #include <linux/pidfd.h>
    #include <linux/sched.h>
    #include <linux/version.h>

    #define SHOW(name) printf("%s %lld\n", #name, (long long)(name))
    #define FIELD(type, field) \
        printf("%s.%s %lld\n", #type, #field, (long long)offsetof(struct type, field))

    int main(void)
    {
        printf("LINUX_VERSION_CODE %lld\n", (long long)LINUX_VERSION_CODE);
    #ifdef SO_PASSPIDFD
        SHOW(SO_PASSPIDFD);
    #endif
    #ifdef SO_PEERPIDFD
        SHOW(SO_PEERPIDFD);
    #endif
    #ifdef SCM_PIDFD
        SHOW(SCM_PIDFD);
    #endif
        SHOW(MADV_WILLNEED);
    #ifdef MADV_COLD
        SHOW(MADV_COLD);
        SHOW(MADV_PAGEOUT);
    #endif
    #ifdef MADV_COLLAPSE
        SHOW(MADV_COLLAPSE);
    #endif
        SHOW(CLONE_NEWNS);
        SHOW(CLONE_NEWCGROUP);
        SHOW(CLONE_NEWUTS);
        SHOW(CLONE_NEWIPC);
        SHOW(CLONE_NEWUSER);
        SHOW(CLONE_NEWPID);
        SHOW(CLONE_NEWNET);
    #ifdef CLONE_NEWTIME
        SHOW(CLONE_NEWTIME);
    #endif
    #ifdef PIDFD_NONBLOCK
        SHOW(PIDFD_NONBLOCK);
    #endif
        SHOW(IOV_MAX); /* the kernel's UIO_MAXIOV, as glibc has it */
        /* The ioctl encoding is the architecture's (asm/ioctl.h). */
        printf("PIDFD_GET_INFO_VER0 %lld\n", (long long)_IOC(_IOC_READ | _IOC_WRITE, 0xFF, 11, 64));
        printf("PIDFD_GET_USER_NAMESPACE_ENCODED %lld\n", (long long)_IO(0xFF, 9));
    #ifdef PIDFD_GET_USER_NAMESPACE
        SHOW(PIDFD_GET_USER_NAMESPACE);
    #endif
    #ifdef PIDFD_GET_INFO
        SHOW(PIDFD_INFO_PID);
        SHOW(PIDFD_INFO_CREDS);
        SHOW(PIDFD_INFO_CGROUPID);
        printf("PIDFD_GET_INFO.type %lld\n", (long long)_IOC_TYPE(PIDFD_GET_INFO));
        printf("PIDFD_GET_INFO.nr %lld\n", (long long)_IOC_NR(PIDFD_GET_INFO));
        printf("PIDFD_GET_INFO.dir %lld\n", (long long)_IOC_DIR(PIDFD_GET_INFO));
        FIELD(pidfd_info, mask);
        FIELD(pidfd_info, cgroupid);
        FIELD(pidfd_info, pid);
        FIELD(pidfd_info, tgid);
        FIELD(pidfd_info, ppid);
        FIELD(pidfd_info, ruid);
        FIELD(pidfd_info, rgid);
        FIELD(pidfd_info, euid);
        FIELD(pidfd_info, egid);
        FIELD(pidfd_info, suid);
        FIELD(pidfd_info, sgid);
        FIELD(pidfd_info, fsuid);
        FIELD(pidfd_info, fsgid);
    #endif
    #ifdef PIDFD_INFO_EXIT
        SHOW(PIDFD_INFO_EXIT);
        FIELD(pidfd_info, exit_code);
    #endif
    #ifdef PIDFD_INFO_SIZE_VER0
        SHOW(PIDFD_INFO_SIZE_VER0);
    #endif
        SHOW(__NR_pidfd_open);
        SHOW(__NR_pidfd_send_signal);
        SHOW(__NR_clone3);
        SHOW(__NR_close_range);
        SHOW(__NR_pidfd_getfd);
        SHOW(__NR_process_madvise);
        return 0;
    }
    """
)


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Every value PROGRAM prints, by name."""
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler here")
    where = tmp_path_factory.mktemp("abi")
    src, exe = where / "abi.c", where / "abi"
    src.write_text(PROGRAM)
    built = subprocess.run([cc, "-o", str(exe), str(src)], capture_output=True, text=True)
    if built.returncode != 0 and "No such file" in built.stderr:
        pytest.skip(f"the kernel's headers are not installed: {built.stderr.strip()[:200]}")
    assert built.returncode == 0, built.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def _version(code: int) -> str:
    return f"{code >> 16}.{(code >> 8) & 0xFF}"


def _need(headers: dict[str, int], name: str, since: str) -> int:
    if name not in headers:
        # The reason names the headers, not the constant (the test's id has
        # it): a reason naming a kernel feature reads as the kernel lacking it.
        pytest.skip(
            f"the C headers here (Linux {_version(headers['LINUX_VERSION_CODE'])}) "
            f"predate this value (Linux {since})"
        )
    return headers[name]


@pytest.mark.parametrize(
    ("name", "ours", "since"),
    [
        ("SO_PASSPIDFD", _peer.SO_PASSPIDFD, "6.5"),
        ("SO_PEERPIDFD", _peer.SO_PEERPIDFD, "6.5"),
        ("SCM_PIDFD", _peer.SCM_PIDFD, "6.5, in glibc 2.39's sys/socket.h"),
    ],
)
def test_socket_option_numbers(headers: dict[str, int], name: str, ours: int, since: str) -> None:
    assert ours == _need(headers, name, since)


@pytest.mark.parametrize(
    ("name", "ours", "since"),
    [
        ("MADV_WILLNEED", pidproc.Advice.WILLNEED, "2.6"),
        ("MADV_COLD", pidproc.Advice.COLD, "5.4"),
        ("MADV_PAGEOUT", pidproc.Advice.PAGEOUT, "5.4"),
        ("MADV_COLLAPSE", pidproc.Advice.COLLAPSE, "6.1"),
    ],
)
def test_advice_values(headers: dict[str, int], name: str, ours: int, since: str) -> None:
    assert ours == _need(headers, name, since)


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("CLONE_NEWNS", pidproc.Namespace.MNT),
        ("CLONE_NEWCGROUP", pidproc.Namespace.CGROUP),
        ("CLONE_NEWUTS", pidproc.Namespace.UTS),
        ("CLONE_NEWIPC", pidproc.Namespace.IPC),
        ("CLONE_NEWUSER", pidproc.Namespace.USER),
        ("CLONE_NEWPID", pidproc.Namespace.PID),
        ("CLONE_NEWNET", pidproc.Namespace.NET),
        ("CLONE_NEWTIME", pidproc.Namespace.TIME),
    ],
)
def test_namespace_flags(headers: dict[str, int], name: str, ours: int) -> None:
    assert ours == _need(headers, name, "5.6")


def test_pidfd_open_flag_and_the_iovec_limit(headers: dict[str, int]) -> None:
    assert _pidfd._MAX_IOV == headers["IOV_MAX"]
    assert _pidfd.PIDFD_NONBLOCK == _need(headers, "PIDFD_NONBLOCK", "5.10")


def test_ioctl_numbers_in_this_architectures_encoding(headers: dict[str, int]) -> None:
    # Written out by hand in pidproc (the headers that define them are
    # recent); their encoding comes from asm/ioctl.h, which is per CPU.
    assert _pidfd_info.PIDFD_GET_INFO == headers["PIDFD_GET_INFO_VER0"]
    assert _pidfd._PIDFD_GET_USER_NAMESPACE == headers["PIDFD_GET_USER_NAMESPACE_ENCODED"]


def test_pidfd_get_user_namespace_is_the_headers(headers: dict[str, int]) -> None:
    assert _pidfd._PIDFD_GET_USER_NAMESPACE == _need(headers, "PIDFD_GET_USER_NAMESPACE", "6.11")


def test_pidfd_get_info_is_the_headers_ioctl_at_the_first_size(headers: dict[str, int]) -> None:
    # The headers' PIDFD_GET_INFO carries the size of their (newer, longer)
    # struct; the kernel takes any published size, pidproc sends the first.
    _need(headers, "PIDFD_INFO_PID", "6.13")
    number = _pidfd_info.PIDFD_GET_INFO
    assert (number >> 8) & 0xFF == headers["PIDFD_GET_INFO.type"]
    assert number & 0xFF == headers["PIDFD_GET_INFO.nr"]
    assert _pidfd_info._LAYOUT.size == _need(headers, "PIDFD_INFO_SIZE_VER0", "6.13")


def _offsets(layout: struct.Struct) -> list[int]:
    """The offset of each field of a packed (=) struct format."""
    fmt = layout.format.lstrip("=")
    codes = [c for count, c in _expand(fmt) for _ in range(count)]
    return [struct.calcsize("=" + "".join(codes[:i])) for i in range(len(codes))]


def _expand(fmt: str) -> list[tuple[int, str]]:
    out, digits = [], ""
    for ch in fmt:
        if ch.isdigit():
            digits += ch
        else:
            out.append((int(digits or 1), ch))
            digits = ""
    return out


PIDFD_INFO_FIELDS = (
    "mask cgroupid pid tgid ppid ruid rgid euid egid suid sgid fsuid fsgid exit_code".split()
)


def test_pidfd_info_layout(headers: dict[str, int]) -> None:
    _need(headers, "PIDFD_INFO_PID", "6.13")
    flags = [_pidfd_info.PIDFD_INFO_PID, _pidfd_info.PIDFD_INFO_CREDS]
    assert flags == [headers["PIDFD_INFO_PID"], headers["PIDFD_INFO_CREDS"]]
    assert _pidfd_info.PIDFD_INFO_CGROUPID == headers["PIDFD_INFO_CGROUPID"]
    offsets = dict(zip(PIDFD_INFO_FIELDS, _offsets(_pidfd_info._LAYOUT), strict=True))
    assert len(offsets) == len(PIDFD_INFO_FIELDS)
    for field in PIDFD_INFO_FIELDS[:-1]:
        assert offsets[field] == headers[f"pidfd_info.{field}"], field
    assert _pidfd_info.PIDFD_INFO_EXIT == _need(headers, "PIDFD_INFO_EXIT", "6.15")
    assert offsets["exit_code"] == headers["pidfd_info.exit_code"]


C_SOURCES = Path(__file__).resolve().parents[1] / "src" / "pidproc" / "_c"


@pytest.mark.parametrize(
    "name",
    [
        "__NR_pidfd_open",
        "__NR_pidfd_send_signal",
        "__NR_clone3",
        "__NR_close_range",
        "__NR_pidfd_getfd",
        "__NR_process_madvise",
    ],
)
def test_syscall_numbers_the_c_core_falls_back_to(headers: dict[str, int], name: str) -> None:
    # The C core defines these itself where <sys/syscall.h> is older than
    # the syscall, with the numbers shared by every architecture but alpha.
    if not C_SOURCES.is_dir():
        pytest.skip("the C sources are not here (an installed copy)")
    files = sorted([*C_SOURCES.glob("*.c"), *C_SOURCES.glob("*.h")])
    source = "".join(p.read_text() for p in files)
    fallbacks = re.findall(rf"#define {name} (\d+)", source)
    assert fallbacks, f"no fallback for {name} in {C_SOURCES}"
    assert {int(n) for n in fallbacks} == {headers[name]}


@needs_core  # process_madvise: Python has no such call
def test_madvise_willneed_is_accepted_by_the_kernel(tmp_path: Path) -> None:
    # process_madvise takes four advice values and refuses every other one
    # with EINVAL: COLD and PAGEOUT are exercised in test_pidfd_handle.py.
    data = tmp_path / "data"
    data.write_bytes(os.urandom(1 << 20))
    child = textwrap.dedent(
        """
        import ctypes, mmap, sys
        with open(sys.argv[1], "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        print(ctypes.addressof(ctypes.c_char.from_buffer(m)), len(m), flush=True)
        sys.stdin.readline()
        """
    )
    p = pidproc.Popen(
        [PY, "-c", child, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdin is not None
    try:
        addr, length = map(int, p.stdout.readline().split())
        with pidproc.PidFd.from_popen(p) as pf:
            try:
                done = pf.madvise([(addr, length)], pidproc.Advice.WILLNEED)
            except OSError as e:
                if "5.10" in str(e):
                    pytest.skip(str(e))
                raise
            assert done == length
    finally:
        p.stdin.write("\n")
        p.stdin.close()
        p.wait()
        p.stdout.close()
