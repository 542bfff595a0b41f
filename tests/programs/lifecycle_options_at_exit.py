"""kill_tree children, then exit: prints the mechanism and the last child's
cgroup directory, which must be gone, with its ``pidproc-<pid>`` parent,
once this process has exited.  Run by tests/test_lifecycle_options.py.

argv[1], how the last child ends:

- ``killed``: killed and waited for.
- ``not-waited``: exited, never waited for, its Popen still held at exit.
- ``job-killed``: the child exited, its background job (holding 256 MiB,
  which it lets go before it leaves its cgroup) is killed just before exit.
- ``after-cleanup``: spawned and waited for by an atexit handler that runs
  after pidproc's own cleanup at exit (registered before pidproc was
  imported).
- ``in-flight``: the cleanup at exit runs (called here) while a cgroup is
  given to a spawn that has not returned (as in a daemon thread): it stays
  for that spawn, whose child then runs in it.
"""

from __future__ import annotations

import atexit
import os
import sys

how = sys.argv[1]


def after_cleanup() -> None:
    q = pidproc.Popen(["true"], kill_tree=True)
    assert q._lifecycle is not None and q._lifecycle.cgroup is not None
    print(q.kill_tree, q._lifecycle.cgroup.path, flush=True)
    assert q.wait() == 0


if how == "after-cleanup":
    atexit.register(after_cleanup)  # before pidproc's: runs after it

import pidproc  # noqa: E402

HOLDER = (
    "b = bytearray(256 << 20); b[::4096] = b'x' * len(b[::4096]); "
    "print('ready', flush=True); import time; time.sleep(60)"
)

for _ in range(3):
    pidproc.run(["true"], kill_tree=True)
if how == "job-killed":
    # The job's stdout is our pipe: its "ready" says it holds the memory.
    p = pidproc.Popen(
        ["sh", "-c", f'"{sys.executable}" -c "{HOLDER}" & exit 0'],
        kill_tree=True,
        stdout=pidproc.PIPE,
    )
    assert p.wait() == 0
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
elif how == "in-flight":
    from pidproc import _cgroup

    tree = _cgroup.new_tree()  # taken for a spawn that has not returned yet
    _cgroup._cleanup_at_exit()  # the interpreter exiting meanwhile
    assert os.path.isdir(tree.path), "removed under a spawn on its way"
    real_new_tree = _cgroup.new_tree
    _cgroup.new_tree = lambda: tree  # that spawn goes on now
    try:
        p = pidproc.Popen(["true"], kill_tree=True)
    finally:
        _cgroup.new_tree = real_new_tree
    assert p._lifecycle is not None and p._lifecycle.cgroup is tree
elif how != "after-cleanup":
    p = pidproc.Popen(["sleep", "30"] if how == "killed" else ["true"], kill_tree=True)
if how != "after-cleanup":
    assert p._lifecycle is not None and p._lifecycle.cgroup is not None
    print(p.kill_tree, p._lifecycle.cgroup.path, flush=True)
if how == "killed":
    p.kill()
    p.wait()
elif how == "in-flight":
    assert p.wait() == 0  # the reap removes it, and pidproc-<pid> (cleaned up already)
elif how == "not-waited":
    # Exited, not reaped: waited for without WEXITED's reap (WNOWAIT).
    os.waitid(os.P_PIDFD, p.pidfd, os.WEXITED | os.WNOWAIT)
elif how == "job-killed":
    p.kill()
