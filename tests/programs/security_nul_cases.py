"""Popen calls with a NUL byte somewhere (argv[1]: their keyword arguments,
a list of dicts as Python literals) through the stdlib and every path
usable here, each between two marks written to /dev/null, then one call
that spawns: prints each ValueError.  Run under strace by
tests/test_security_env_args.py, which counts the spawns between marks."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pidproc

cases = ast.literal_eval(sys.argv[1])
marks = os.open("/dev/null", os.O_WRONLY)
paths = pidproc.backends()  # probes spawn: done before the first mark
for i, name in enumerate(["stdlib", *paths]):
    module = subprocess if name == "stdlib" else pidproc
    with pidproc.use_backend(None if name == "stdlib" else name):
        for j, kwargs in enumerate(cases):
            os.write(marks, b"BEGIN %d %d" % (i, j))
            try:
                module.Popen(**kwargs)
            except ValueError as e:
                print(name, j, type(e).__name__, e)
            os.write(marks, b"END %d %d" % (i, j))
        os.write(marks, b"BEGIN %d control" % i)
        module.call(["true"])
        os.write(marks, b"END %d control" % i)
