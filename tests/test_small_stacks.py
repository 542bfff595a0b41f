"""Spawning from threads and processes with little stack.

The clone3/clone child needs a stack of its own.  It used to be a 32 KiB
buffer in the spawning C frame: from a thread made with
``threading.stack_size(32768)`` (the smallest CPython 3.10-3.13 accept) that frame
jumped over the guard page into whatever lay below, a segfault or silent
corruption.  The child's stack now comes from a pool (_stack.c).  A failure
here kills the interpreter, so every case runs in a fresh one, the same
script once with the stdlib and once with pidproc on each path, and the two
must agree.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from pidproc._core import lib
from pidproc._spawn import state as _backends

from . import child_stack
from ._support import seccomp
from ._support.programs import program
from .conftest import PY, USABLE


@functools.cache
def smallest_thread_stack() -> int:
    """The smallest thread stack the stdlib spawns from: the smallest size
    threading.stack_size() accepts (32 KiB up to 3.13; a CPython that keeps
    margins for its C stack protection may refuse it, or need more room to
    run Popen at all), found with the stdlib in a fresh interpreter."""
    probe = (
        "import subprocess, sys, threading\n"
        "threading.stack_size(int(sys.argv[1]))\n"
        "t = threading.Thread(target=subprocess.run, args=(['true'],), kwargs={'check': True})\n"
        "t.start(); t.join()\n"
    )
    previous = threading.stack_size()
    try:
        for size in range(32768, 16 << 20, 4096):
            try:
                threading.stack_size(size)
            except ValueError:
                continue
            r = subprocess.run([PY, "-c", probe, str(size)], capture_output=True, text=True)
            if r.returncode == 0 and not r.stderr:
                return size
        raise AssertionError("the stdlib spawned from no thread stack size")
    finally:
        threading.stack_size(previous)


def path_param(name: str) -> object:
    """One spawn path, skipped (with the reason) where it cannot work here."""
    why = None if name in USABLE else (_backends.reason(name) or "not usable here")
    return pytest.param(name, marks=pytest.mark.skipif(why is not None, reason=str(why)))


PATHS = [path_param(name) for name in _backends.BACKENDS]
CLONE_PATHS = [path_param(name) for name in ("clone3", "clone")]


def run_program(
    name: str, path: str | None, *args: str, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """tests/programs/<name>.py in a fresh interpreter, spawning through the
    stdlib when ``path`` is None, else through pidproc forced onto ``path``."""
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    if path is not None:
        env["PIDPROC_BACKEND"] = path
    module = "subprocess" if path is None else "pidproc"
    argv = [PY, program(name), module, *args]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120, preexec_fn=preexec
    )


# ---- one spawn from a thread with the smallest stack ----------------------

# Each case (tests/programs/small_stacks_thread.py): a set-up in the main
# thread, before the small thread exists, then the call made in the small
# thread; what it returns (or the error it raises) is printed and compared
# between the stdlib and pidproc.
CASES = [
    "plain",
    "missing program",
    "every option, new session",
    "every option, close_range denied",
    "every option, process group",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", PATHS)
def test_spawn_from_a_thread_with_the_smallest_stack(path: str, case: str) -> None:
    if "process group" in case and sys.version_info < (3, 11):
        pytest.skip("process_group= is 3.11+")
    if "close_range" in case and not seccomp.available():
        pytest.skip("libseccomp.so.2 is not installed")
    size = str(smallest_thread_stack())
    stdlib = run_program("small_stacks_thread", None, case, size)
    assert stdlib.returncode == 0, stdlib.stderr
    ours = run_program("small_stacks_thread", path, case, size)
    assert ours.returncode == 0, f"rc {ours.returncode}: {ours.stderr}"
    assert ours.stdout == stdlib.stdout
    assert ours.stdout.startswith(("(3, ", "('FileNotFoundError', 2, 'no-such-program-here')"))


@pytest.mark.parametrize("path", PATHS)
def test_the_forced_path_is_the_one_taken_from_a_small_thread(path: str) -> None:
    r = run_program("small_stacks_forced_path", path, str(smallest_thread_stack()))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == repr([(path, 0)])


# ---- the main thread under the smallest RLIMIT_STACK ----------------------

ADDR_NO_RANDOMIZE = 0x0040000


def _no_aslr_and_stack_limit(kib: int) -> Callable[[], None]:
    def pre() -> None:
        # Without address randomisation the interpreter's own stack use is
        # the same from run to run, so "the smallest limit" is one number.
        ctypes.CDLL(None).personality(ADDR_NO_RANDOMIZE)
        resource.setrlimit(resource.RLIMIT_STACK, (kib * 1024, kib * 1024))

    return pre


def _personality_works() -> bool:
    r = subprocess.run([PY, "-c", "pass"], preexec_fn=_no_aslr_and_stack_limit(8192))
    return r.returncode == 0


@pytest.fixture(scope="module")
def smallest_stack_limit_kib() -> int:
    """The smallest RLIMIT_STACK (KiB) under which the stdlib spawns (its
    interpreter starts, imports pidproc too and runs the program)."""
    if not _personality_works():
        pytest.skip("personality(ADDR_NO_RANDOMIZE) is refused here")

    def works(kib: int) -> bool:
        r = run_program("small_stacks_main", None, preexec=_no_aslr_and_stack_limit(kib))
        return r.returncode == 0 and r.stdout.strip() == "ok"

    lo, hi = 8, 1024  # the stdlib fails at lo and works at hi
    assert works(hi) and not works(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if works(mid) else (mid, hi)
    return hi


@pytest.mark.parametrize("path", PATHS)
def test_spawn_in_the_main_thread_under_the_smallest_stack_limit(
    path: str, smallest_stack_limit_kib: int
) -> None:
    limit = _no_aslr_and_stack_limit(smallest_stack_limit_kib)
    r = run_program("small_stacks_main", path, preexec=limit)
    assert r.returncode == 0, f"{smallest_stack_limit_kib} KiB: rc {r.returncode} {r.stderr}"
    assert r.stdout.strip() == "ok"


# ---- the pool: many at once, more than it holds, fork --------------------


@pytest.mark.parametrize("path", PATHS)
def test_many_threads_with_small_stacks_spawning_at_once(path: str) -> None:
    r = run_program("small_stacks_many_threads", path, str(smallest_thread_stack()))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


# Every child waits in execve until `n` are waiting: `n` spawns hold a
# stack at once.  Beyond the pool's 64, each spawn maps its own.
@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed")
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_more_spawns_at_once_than_the_pool_holds(path: str) -> None:
    r = run_program("small_stacks_held", path, "80", str(smallest_thread_stack()))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed")
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_pool_survives_a_fork_taken_while_other_threads_spawn(path: str) -> None:
    """os.fork() while 4 threads are inside a spawn, holding stacks: in the
    forked child those threads are gone; it spawns from small threads,
    many at once, and from its main thread; the parent goes on too."""
    r = run_program("small_stacks_held", path, "4", str(smallest_thread_stack()), "fork")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "0"]


@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed")
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_a_stack_that_cannot_be_mapped_leaves_the_spawn_to_the_stdlib(path: str) -> None:
    """ENOMEM from the pool is transient, as for the spawn syscall itself:
    the stdlib's spawn runs instead (then held by a pidfd, the fork path),
    and the failed mappings are all undone."""
    r = run_program("small_stacks_no_guard_page", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[('fork', 4)] 0"


# ---- the child's stack use, measured --------------------------------------


@pytest.mark.parametrize("scenario", child_stack.SCENARIOS)
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_the_child_uses_a_quarter_of_its_stack_at_most(path: str, scenario: str) -> None:
    """The measurement the stack size rests on (python -m tests.child_stack),
    rerun: a change to the child that needs more stack fails here."""
    if child_stack.SCENARIOS[scenario].denies_close_range and not seccomp.available():
        pytest.skip("libseccomp.so.2 is not installed")
    used = child_stack.measure(scenario, path)
    if used is None:
        pytest.skip("needs root")
    assert 0 < used <= lib.pidproc_child_stack_size() // 4, used
