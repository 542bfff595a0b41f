"""Tries to become root again after a drop (setuid, seteuid, setresuid,
setgid, setgroups): prints each attempt's fate, then the ids it runs with.
Run by tests/test_security.py through ``python -c`` (its text), as the
unprivileged user may be unable to read the tree."""

import os

for name, call in [
    ("setuid", lambda: os.setuid(0)),
    ("seteuid", lambda: os.seteuid(0)),
    ("setresuid", lambda: os.setresuid(0, 0, 0)),
    ("setgid", lambda: os.setgid(0)),
    ("setgroups", lambda: os.setgroups([0])),
]:
    try:
        call()
        print(name, "REGAINED")
    except PermissionError:
        print(name, "denied")
print(os.getresuid(), os.getresgid(), sorted(os.getgroups()))
