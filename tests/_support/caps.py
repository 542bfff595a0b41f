"""Dropping a capability from a root process, for the programs in
``tests/programs/`` that show what pidproc does without it.

Only the stdlib and ctypes: call it before any thread starts (capabilities
are per thread; threads started later inherit the caller's)."""

from __future__ import annotations

import ctypes
import struct

CAP_SYS_ADMIN = 21
CAP_SYS_NICE = 23
_PR_CAPBSET_DROP = 24
_CAPABILITY_VERSION_3 = 0x20080522


def drop_capability(cap: int) -> None:
    """Drop cap from this thread's bounding, effective and permitted sets."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    hdr = ctypes.create_string_buffer(struct.pack("Ii", _CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(24)
    assert libc.capget(hdr, data) == 0
    words = list(struct.unpack("6I", data.raw))
    words[0] &= ~(1 << cap)  # effective
    words[1] &= ~(1 << cap)  # permitted
    assert libc.capset(hdr, ctypes.create_string_buffer(struct.pack("6I", *words))) == 0
