"""What the tests share, one job a module.

``leaks`` counts fds and children (also inside the programs the tests run),
``outcome`` describes what a call did so that pidproc's can be compared with
the stdlib's, ``features`` probes the kernel and the system for what a test
needs, ``programs`` finds and runs the programs in ``tests/programs/`` and
``seccomp`` installs real seccomp filters; ``caps`` drops a capability in
a program; ``core`` marks the tests that need pidproc's C core.  Fixtures live in
``tests/conftest.py``.
"""
