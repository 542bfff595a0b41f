"""die_with_parent without CAP_SYS_ADMIN (dropped here, from a root
process): alone, and with no_new_privs.  Prints, as JSON, the mechanisms
and the child's NoNewPrivs for each.  Run by tests/test_lifecycle_options.py."""

from __future__ import annotations

import ctypes
import json
import struct
import sys
from typing import Any

libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(24, 21, 0, 0, 0)  # PR_CAPBSET_DROP, CAP_SYS_ADMIN
hdr = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))  # version 3
data = ctypes.create_string_buffer(24)
assert libc.capget(hdr, data) == 0
words = list(struct.unpack("6I", data.raw))
words[0] &= ~(1 << 21)  # effective
words[1] &= ~(1 << 21)  # permitted
assert libc.capset(hdr, ctypes.create_string_buffer(struct.pack("6I", *words))) == 0

import pidproc  # noqa: E402

NNP = "print(next(l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')).split()[1])"
out: dict[str, list[Any]] = {}
cases: dict[str, dict[str, bool]] = {
    "die": {"die_with_parent": True},
    "die_nnp": {"die_with_parent": True, "no_new_privs": True},
}
for name, opts in cases.items():
    p = pidproc.Popen([sys.executable, "-c", NNP], stdout=-1, text=True, **opts)
    out[name] = [p.die_with_parent, p.no_new_privs, p.communicate()[0].strip()]
print(json.dumps(out))
