"""Four bursts of 3 MiB on stdout (a 0..255 pattern, or CRLF lines with
argv[1] "text"), each followed by "burst <i>" on stderr and a 0.15 s pause.
Run by tests/test_communicate.py."""

from __future__ import annotations

import os
import sys
import time

text = sys.argv[1:] == ["text"]
chunk = b"line\r\n" * 600000 if text else bytes(range(256)) * 4096 * 3
for i in range(4):
    view = memoryview(chunk)
    while view:
        view = view[os.write(1, view) :]
    os.write(2, b"burst %d\n" % i)
    time.sleep(0.15)
