"""Nothing leaks into a child: what it finds in /proc/self/fd, on every path.

The child lists its own descriptors with their targets (``ls -l
/proc/self/fd``).  While the parent holds pidproc's own descriptors (the
pidfds of live Popens on every path, PidFd objects, a peer pidfd), the child
must see exactly what the stdlib's child sees, never a pidfd, and nothing
but 0-2, ``pass_fds`` and (with ``close_fds=False``) the parent's
inheritable descriptors; ``pass_fds`` become inheritable in the child only.
A second test spawns from two threads at once: the pidfds, pipes and
``pass_fds`` of children being spawned in one thread never reach the
children spawned in the other.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import pidproc
from pidproc._spawn import state as _backends
from pidproc._spawn.paths import BY_NAME

from ._support import seccomp
from ._support.leaks import child_fds
from ._support.programs import program

SLEEP = shutil.which("sleep", path="/usr/bin:/bin") or "/bin/sleep"


def is_pidfd(target: str) -> bool:
    # anon_inode:[pidfd] before Linux 6.9, pidfd:[inode] on pidfs.
    return "pidfd" in target


def inheritable_fds() -> set[int]:
    out = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.get_inheritable(int(name)):
                out.add(int(name))
    return out


@pytest.fixture
def pidproc_fds() -> Iterator[set[int]]:
    """pidproc's own descriptors, alive while the child is spawned."""
    held: list[Any] = []
    fds: set[int] = set()
    with contextlib.ExitStack() as stack:
        for name in _backends.backends():
            if name == "pid":
                continue
            with pidproc.use_backend(name):
                p = stack.enter_context(
                    pidproc.Popen([SLEEP, "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                )
            stack.callback(p.kill)
            assert p.pidfd is not None
            fds.add(p.pidfd)
            handle = pidproc.PidFd.from_popen(p)
            held.append(handle)
            fds.add(handle.fileno())
        own = pidproc.PidFd.open(os.getpid())
        held.append(own)
        fds.add(own.fileno())
        a, b = socket.socketpair()
        stack.enter_context(a)
        stack.enter_context(b)
        with contextlib.suppress(OSError):  # SO_PEERPIDFD: Linux 6.5+
            peer = pidproc.peer_pidfd(a)
            held.append(peer)
            fds.add(peer.fileno())
        yield fds
        for h in held:
            h.close()


@pytest.fixture
def fds_to_pass() -> Iterator[tuple[int, int]]:
    """(an inheritable fd, a non-inheritable one)."""
    r, w = os.pipe()
    os.set_inheritable(r, True)
    yield r, w
    os.close(r)
    os.close(w)


FD_CASES = {
    "close_fds": {"close_fds": True},
    "no-close_fds": {"close_fds": False},
    "pass-inheritable": {"pass_fds": "inheritable"},
    "pass-non-inheritable": {"pass_fds": "non-inheritable"},
    "pass-both-no-close_fds": {"pass_fds": "both", "close_fds": False},
}


@pytest.mark.filterwarnings("ignore:pass_fds overriding close_fds:RuntimeWarning")
@pytest.mark.parametrize("case", sorted(FD_CASES))
def test_child_sees_exactly_what_it_should(
    backend: str, case: str, pidproc_fds: set[int], fds_to_pass: tuple[int, int]
) -> None:
    kwargs = dict(FD_CASES[case])
    inh, non_inh = fds_to_pass
    passed = {"inheritable": [inh], "non-inheritable": [non_inh], "both": [inh, non_inh]}
    kwargs["pass_fds"] = passed.get(kwargs.get("pass_fds", ""), [])
    parent_inheritable = inheritable_fds()
    assert inh in parent_inheritable and not pidproc_fds & parent_inheritable

    ours = child_fds(pidproc, **kwargs)
    assert ours == child_fds(subprocess, **kwargs)
    assert not [t for t in ours.values() if is_pidfd(t)], ours
    assert not pidproc_fds & (set(ours) - set(kwargs["pass_fds"]))
    allowed = {0, 1, 2, *kwargs["pass_fds"]}
    if kwargs.get("close_fds") is False and not kwargs["pass_fds"]:
        allowed |= parent_inheritable  # (pass_fds turns close_fds back on)
    assert set(ours) == allowed
    # Made inheritable for the child only.
    assert not os.get_inheritable(non_inh)


def test_pidfds_passed_explicitly_are_inherited(pidfd_backend: str) -> None:
    """The only way one reaches a child: pass_fds."""
    with pidproc.Popen([SLEEP, "30"]) as a:
        try:
            assert a.pidfd is not None
            seen = child_fds(pidproc, pass_fds=[a.pidfd])
            assert is_pidfd(seen[a.pidfd])
            assert not os.get_inheritable(a.pidfd)
        finally:
            a.kill()


def test_no_leak_between_threads_spawning_at_once() -> None:
    """Thread A spawns children with pipes and pass_fds (and runs path
    probes) without pause while the main thread spawns
    listers with close_fds=False on every path: no lister ever sees a pidfd,
    a pipe of A's, A's pass_fds, or anything the parent does not hold
    inheritable."""
    paths = [b for b in pidproc.backends() if b != "pid"]
    if not paths:
        pytest.skip("no pidfd spawn path here")
    r, w = os.pipe()
    allowed = {0, 1, 2} | inheritable_fds()
    assert r not in allowed and w not in allowed
    stop = threading.Event()
    spawned_a = 0
    errors: list[BaseException] = []

    def spawn_a() -> None:
        nonlocal spawned_a
        try:
            while not stop.is_set():
                # The path forced by the main thread at the moment (use_backend
                # is process-wide): both threads go through the same one.
                a = pidproc.Popen(
                    ["/bin/true"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=[w]
                )
                a.communicate()
                spawned_a += 1
                _backends._probe_pidfd_wait()  # pidfd_open of ourselves
                for name in paths:
                    if name in ("clone3", "clone"):
                        _backends._probe_by_spawning(BY_NAME[name])  # a probe child and its pidfd
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    seen: list[dict[int, str]] = []
    thread = threading.Thread(target=spawn_a)
    thread.start()
    try:
        for _ in range(50):
            for name in pidproc.backends():
                with pidproc.use_backend(name):
                    seen.append(child_fds(pidproc, close_fds=False))
    finally:
        stop.set()
        thread.join()
        os.close(r)
        os.close(w)
    assert not errors, errors
    assert spawned_a > 0
    for fds in seen:
        assert set(fds) <= allowed, fds
        assert not [t for t in fds.values() if is_pidfd(t)], fds


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM])
def test_close_fds_without_close_range(err: int) -> None:
    """close_range missing (before 5.9) or denied by seccomp: the child
    lists /proc/self/fd instead, and still closes everything it should."""
    if not seccomp.available():
        pytest.skip("libseccomp.so.2 is not installed")
    r = seccomp.run_filtered({"close_range": err}, program=program("security_fds_close_fallback"))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert sorted(report) == sorted(["stdlib", *pidproc.backends()])
    for name, seen in report.items():
        assert seen == [[0, 1, 2], [0, 1, 2, 300]], name
