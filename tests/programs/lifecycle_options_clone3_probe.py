"""Does clone3 take the flags in argv[1] (with CLONE_PIDFD, no exit
signal)?  A raw clone3 without CLONE_VM, whose child exits at once; prints
0 or the errno.  Run by tests/test_lifecycle_options.py, which must know
the kernel's answer without asking pidproc."""

from __future__ import annotations

import ctypes
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
flags = int(sys.argv[1])
pidfd = ctypes.c_int(-1)
args = ctypes.create_string_buffer(
    struct.pack("=8Q", flags | 0x1000, ctypes.addressof(pidfd), 0, 0, 0, 0, 0, 0)
)
pid = libc.syscall(435, args, 64)  # clone3
if pid == 0:
    os._exit(0)
print(0 if pid > 0 else ctypes.get_errno())
