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
import textwrap
import threading
from collections.abc import Callable

import pytest

from pidproc._core import lib
from pidproc._spawn import state as _backends

from . import child_stack, seccomp
from .conftest import PY, USABLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


IS_ROOT = os.geteuid() == 0


def path_param(name: str) -> object:
    """One spawn path, skipped (with the reason) where it cannot work here."""
    why = None if name in USABLE else (_backends.reason(name) or "not usable here")
    return pytest.param(name, marks=pytest.mark.skipif(why is not None, reason=str(why)))


PATHS = [path_param(name) for name in _backends.BACKENDS]
CLONE_PATHS = [path_param(name) for name in ("clone3", "clone")]


def run_script(code: str, path: str | None, *, preexec: Callable[[], None] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``code`` in a fresh interpreter; ``mod`` there is subprocess when
    ``path`` is None, else pidproc forced onto ``path``."""
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_BACKEND"}
    if path is not None:
        env["PIDPROC_BACKEND"] = path
    prelude = textwrap.dedent(f"""\
        import errno, os, signal, subprocess, sys, threading
        sys.path.insert(0, {ROOT!r})
        from tests import seccomp
        del sys.path[0]
        import pidproc
        mod = subprocess if {path is None!r} else pidproc
        """)
    return subprocess.run([PY, "-c", prelude + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec)  # fmt: skip


# ---- one spawn from a thread with the smallest stack ----------------------

# Each case: setup (main thread, before the small thread exists), then the
# call made in the small thread; what it returns (or the error it raises) is
# printed and compared between the stdlib and pidproc.
_MANY_FDS = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(2000)]
"""
# What the child sees, in a form that is the same for both spawners.
_REPORT = (
    'echo "X=$X"; pwd; umask; ls /proc/self/fd | sort -n | tr "\\n" " "; echo; id -u; id -G;'
    " set -- $(cat /proc/$$/stat); echo session=$([ $6 = $1 ] && echo own || echo inherited)"
    " group=$([ $5 = $1 ] && echo own || echo inherited);"
    " exit 3"
)
_IDS = "user=65534, group=65534, extra_groups=[1, 2, 3]," if IS_ROOT else ""
_HEAVY = (
    f"mod.run(['sh', '-c', {_REPORT!r}], capture_output=True, close_fds=True,"
    " pass_fds=(fds[3], fds[1500]), cwd='/tmp', env={'X': 'y', 'PATH': '/usr/bin:/bin'},"
    f" umask=0o27, restore_signals=True, {_IDS} GROUP)"
)
CASES = {
    "plain": ("", "mod.run(['sh', '-c', 'echo ran; exit 3'], capture_output=True)"),
    "missing program": ("", "mod.run(['no-such-program-here'])"),
    "every option, new session": (_MANY_FDS, _HEAVY.replace("GROUP", "start_new_session=True")),
    "every option, close_range denied": (
        'seccomp.install({"close_range": errno.ENOSYS})\n' + _MANY_FDS,
        _HEAVY.replace("GROUP", "start_new_session=True"),
    ),
    "every option, process group": (_MANY_FDS, _HEAVY.replace("GROUP", "process_group=0")),
}

_THREAD = """
{setup}
threading.stack_size({size})
out = []
def spawn():
    try:
        r = {call}
        out.append((r.returncode, r.stdout))
    except OSError as e:
        out.append((type(e).__name__, e.errno, e.filename))
t = threading.Thread(target=spawn)
t.start()
t.join()
print(repr(out[0]))
"""


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", PATHS)
def test_spawn_from_a_thread_with_the_smallest_stack(path: str, case: str) -> None:
    setup, call = CASES[case]
    if "process_group" in call and sys.version_info < (3, 11):
        pytest.skip("process_group= is 3.11+")
    if "seccomp" in setup and not seccomp.available():
        pytest.skip("libseccomp.so.2 is not installed")
    code = _THREAD.format(setup=setup, size=smallest_thread_stack(), call=call)
    stdlib = run_script(code, None)
    assert stdlib.returncode == 0, stdlib.stderr
    ours = run_script(code, path)
    assert ours.returncode == 0, f"rc {ours.returncode}: {ours.stderr}"
    assert ours.stdout == stdlib.stdout
    assert ours.stdout.startswith(("(3, ", "('FileNotFoundError', 2, 'no-such-program-here')"))


@pytest.mark.parametrize("path", PATHS)
def test_the_forced_path_is_the_one_taken_from_a_small_thread(path: str) -> None:
    r = run_script(
        f"""
        threading.stack_size({smallest_thread_stack()})
        out = []
        def spawn():
            p = mod.Popen(['true'])
            out.append((p.backend, p.wait()))
        t = threading.Thread(target=spawn)
        t.start()
        t.join()
        print(out)
        """,
        path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == repr([(path, 0)])


# ---- the main thread under the smallest RLIMIT_STACK ----------------------

_MAIN = "r = mod.run(['sh', '-c', 'exit 3']); assert r.returncode == 3, r; print('ok')"
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
        r = run_script(_MAIN, None, preexec=_no_aslr_and_stack_limit(kib))
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
    r = run_script(_MAIN, path, preexec=_no_aslr_and_stack_limit(smallest_stack_limit_kib))
    assert r.returncode == 0, f"{smallest_stack_limit_kib} KiB: rc {r.returncode} {r.stderr}"
    assert r.stdout.strip() == "ok"


# ---- the pool: many at once, more than it holds, fork --------------------

_MANY_THREADS = """
threading.stack_size(SIZE)
start = threading.Barrier(24)
codes = []
def spawn(i):
    start.wait()
    for j in range(8):
        codes.append(mod.run(['sh', '-c', f'exit {(i + j) % 7}']).returncode)
threads = [threading.Thread(target=spawn, args=(i,)) for i in range(24)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sorted(codes) == sorted((i + j) % 7 for i in range(24) for j in range(8)))
"""


@pytest.mark.parametrize("path", PATHS)
def test_many_threads_with_small_stacks_spawning_at_once(path: str) -> None:
    r = run_script(_MANY_THREADS.replace("SIZE", str(smallest_thread_stack())), path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


# Every child waits in execve until `n` are waiting: `n` spawns hold a
# stack at once.  Beyond the pool's 64, each spawn maps its own.
_HELD = """
held, go = seccomp.hold_execve({n})
threading.stack_size({size})
codes = []
def spawn():
    codes.append(mod.run(['true']).returncode)
threads = [threading.Thread(target=spawn) for _ in range({n})]
for t in threads:
    t.start()
for _ in range({n}):
    assert held.acquire(timeout=60), "children never reached execve"
{while_held}
go.set()
for t in threads:
    t.join()
print(codes == [0] * {n})
"""


@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed")
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_more_spawns_at_once_than_the_pool_holds(path: str) -> None:
    r = run_script(_HELD.format(n=80, size=smallest_thread_stack(), while_held=""), path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed")
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_pool_survives_a_fork_taken_while_other_threads_spawn(path: str) -> None:
    """os.fork() while 4 threads are inside a spawn, holding stacks: in the
    forked child those threads are gone; it spawns from small threads,
    many at once, and from its main thread; the parent goes on too."""
    after_fork = """
    pid = os.fork()
    if pid == 0:
        ok = True
        try:
            threading.stack_size(SIZE)
            results = []
            def again():
                for _ in range(20):
                    results.append(mod.run(['sh', '-c', 'exit 5']).returncode)
            ts = [threading.Thread(target=again) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            ok = results == [5] * 160 and mod.run(['true']).returncode == 0
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    """
    after_fork = textwrap.dedent(after_fork).replace("SIZE", str(smallest_thread_stack()))
    code = _HELD.format(n=4, size=smallest_thread_stack(), while_held=after_fork)
    code += "print(mod.run(['true']).returncode)\n"
    r = run_script(code, path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "0"]


_NO_GUARD_PAGE = """
def mappings():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)
for _ in range(20):  # the stdlib's spawn, which runs below: its allocations first
    subprocess.Popen(["sh", "-c", "exit 4"]).wait()
# Making a stack's guard page (one page, PROT_NONE) fails from now on: the
# pool cannot map a stack, which is ENOMEM.  Only that size: the dynamic
# loader of the child's sh makes PROT_NONE too, of the holes between the
# segments of a library (64 KiB on aarch64, whose libraries are aligned so).
seccomp.install({"mprotect": (errno.ENOMEM, {1: os.sysconf("SC_PAGE_SIZE"), 2: 0})})
before = mappings()  # libseccomp loaded
got = []
for _ in range(20):
    p = mod.Popen(["sh", "-c", "exit 4"])
    got.append((p.backend, p.wait()))
print(sorted(set(got)), mappings() - before)
"""


@pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed")
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_a_stack_that_cannot_be_mapped_leaves_the_spawn_to_the_stdlib(path: str) -> None:
    """ENOMEM from the pool is transient, as for the spawn syscall itself:
    the stdlib's spawn runs instead (then held by a pidfd, the fork path),
    and the failed mappings are all undone."""
    r = run_script(_NO_GUARD_PAGE, path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[('fork', 4)] 0"


# ---- the child's stack use, measured --------------------------------------


@pytest.mark.parametrize("scenario", child_stack.SCENARIOS)
@pytest.mark.parametrize("path", CLONE_PATHS)
def test_the_child_uses_a_quarter_of_its_stack_at_most(path: str, scenario: str) -> None:
    """The measurement the stack size rests on (python -m tests.child_stack),
    rerun: a change to the child that needs more stack fails here."""
    if "close_range" in child_stack.SCENARIOS[scenario][0] and not seccomp.available():
        pytest.skip("libseccomp.so.2 is not installed")
    used = child_stack.measure(scenario, path)
    if used is None:
        pytest.skip("needs root")
    assert 0 < used <= lib.pidproc_child_stack_size() // 4, used
