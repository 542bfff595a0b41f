"""pidproc.asyncio: asyncio subprocesses on pidfds, and pidproc.patch() under asyncio."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import pidproc
import pidproc.asyncio as pa
from pidproc import _aio_transport
from pidproc._pidfd import _EXIT_INFO_KEPT

from ._support.features import IN_PRIVATE_PID_NS, PRIVATE_PID_NS, private_pid_ns
from ._support.leaks import children, collect
from ._support.programs import program
from .conftest import PY, USABLE

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """asyncio.run, without 3.12's child-watcher DeprecationWarnings
    (the stdlib side of a comparison may touch them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(coro)  # type: ignore[arg-type]


def popen_of(proc: asyncio.subprocess.Process) -> Any:
    transport = proc._transport  # type: ignore[attr-defined]
    return transport.get_extra_info("subprocess")


def selector_map(loop: asyncio.AbstractEventLoop) -> Any:
    return loop._selector.get_map()  # type: ignore[attr-defined]


@pytest.fixture
def not_patched() -> Iterator[None]:
    assert not pidproc._patch.is_patched()
    yield
    pidproc.unpatch()
    assert not _aio_transport.installed()


# ---- the Process API ---------------------------------------------------------


def test_exec_streams_returncode_pid_pidfd(backend: str, no_leaks: None) -> None:
    """The stdlib's Process API on every spawn path; the exit is watched
    through a pidfd registered in the running loop (the ``pid`` path gets
    one from pidfd_open)."""
    code = "import sys; print(sys.stdin.read().upper()); print('e', file=sys.stderr); sys.exit(3)"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        p = await pa.create_subprocess_exec(
            PY, "-c", code, stdin=pa.PIPE, stdout=pa.PIPE, stderr=pa.PIPE
        )
        assert isinstance(p, asyncio.subprocess.Process) and isinstance(p, pa.Process)
        popen = popen_of(p)
        assert isinstance(popen, pidproc.Popen) and popen.backend == backend
        assert p.pid == popen.pid and p.returncode is None
        fd = p.pidfd
        assert isinstance(fd, int)
        assert fd in selector_map(loop), "the pidfd is not watched by the loop"
        assert "pidfd" in os.readlink(f"/proc/self/fd/{fd}")
        out, err = await p.communicate(b"hello")
        assert (out, err, p.returncode) == (b"HELLO\n", b"e\n", 3)
        assert p.pidfd is None and fd not in selector_map(loop)  # closed once reaped

    run(main())


def test_shell_and_stdlib_defaults(no_leaks: None) -> None:
    async def main() -> tuple[Any, ...]:
        p = await pa.create_subprocess_shell("echo $((6*7)); exit 5", stdout=pa.PIPE)
        out, err = await p.communicate()
        q = await pa.create_subprocess_exec("true")  # no pipes at all
        assert q.stdin is None and q.stdout is None and q.stderr is None
        return out, err, p.returncode, await q.wait()

    assert run(main()) == (b"42\n", None, 5, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"universal_newlines": True},
        {"shell": True},
        {"bufsize": 1},
        {"text": True},
        {"encoding": "utf-8"},
        {"errors": "strict"},
    ],
)
def test_argument_errors_match_the_stdlib(kwargs: dict[str, Any], no_leaks: None) -> None:
    async def message(create: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> str:
        with pytest.raises(ValueError) as info:
            await create(*args, **kw)
        return str(info.value)

    async def main() -> None:
        for ours, theirs, first in [
            (pa.create_subprocess_exec, asyncio.create_subprocess_exec, "true"),
            (pa.create_subprocess_shell, asyncio.create_subprocess_shell, "true"),
        ]:
            kw = dict(kwargs)
            if ours is pa.create_subprocess_shell and "shell" in kw:
                kw["shell"] = False
            assert await message(ours, first, **kw) == await message(theirs, first, **kw)
        assert await message(pa.create_subprocess_shell, ["true"]) == await message(
            asyncio.create_subprocess_shell, ["true"]
        )

    run(main())


def test_spawn_errors_are_the_stdlibs_and_leave_nothing(no_leaks: None) -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError) as ours:
            await pa.create_subprocess_exec("/nonexistent/prog", stdout=pa.PIPE)
        with pytest.raises(FileNotFoundError) as theirs:
            await asyncio.create_subprocess_exec("/nonexistent/prog", stdout=pa.PIPE)
        assert str(ours.value) == str(theirs.value)

    run(main())


def test_no_child_watcher_and_no_thread(no_leaks: None) -> None:
    """20 children at once: no thread is started (3.10/3.11's default
    ThreadedChildWatcher starts one per child), no SIGCHLD handler is set."""
    handler = signal.getsignal(signal.SIGCHLD)

    async def main() -> list[int]:
        before = threading.active_count()
        procs = [await pa.create_subprocess_exec("sleep", "0.2") for _ in range(20)]
        assert threading.active_count() == before
        return [await p.wait() for p in procs]

    assert run(main()) == [0] * 20
    assert signal.getsignal(signal.SIGCHLD) == handler


# ---- signals -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["terminate", "kill", "send_signal"])
def test_signals(backend: str, how: str, no_leaks: None) -> None:
    expected = {
        "terminate": -signal.SIGTERM,
        "kill": -signal.SIGKILL,
        "send_signal": -signal.SIGUSR1,
    }

    async def main() -> int:
        p = await pa.create_subprocess_exec("sleep", "30")
        if how == "send_signal":
            p.send_signal(signal.SIGUSR1)
        else:
            getattr(p, how)()
        return await asyncio.wait_for(p.wait(), 10)

    assert run(main()) == expected[how]


def test_signal_after_exit_is_the_stdlibs(no_leaks: None) -> None:
    """Once the transport has finished, asyncio raises ProcessLookupError;
    ours too.  (Between the exit and that, a signal is a no-op: the child is
    reaped, so pidfd_send_signal is not even tried.)"""

    async def after_exit(create: Callable[..., Awaitable[Any]]) -> str:
        p = await create("true")
        await p.wait()
        try:
            p.terminate()  # may come before the transport finished: nothing happens
        except ProcessLookupError:
            pass
        for _ in range(3):
            await asyncio.sleep(0)  # the transport finishes
        try:
            p.terminate()
        except ProcessLookupError:
            return "ProcessLookupError"
        return "no error"

    assert run(after_exit(pa.create_subprocess_exec)) == run(
        after_exit(asyncio.create_subprocess_exec)
    )


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("mode", ["pidproc.asyncio", "patched"])
def test_signals_go_through_pidfd_send_signal(mode: str, tmp_path: Any) -> None:
    log = tmp_path / "strace.log"
    r = subprocess.run(
        ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=kill,tgkill,pidfd_send_signal"]
        + [PY, program("asyncio_strace_signal"), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"strace cannot trace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    pid = r.stdout.split()[0]
    calls = [line for line in log.read_text().splitlines() if "SIGUSR2" in line]
    assert any("pidfd_send_signal(" in c for c in calls), calls
    assert not any(f"kill({pid}, SIGUSR2" in c for c in calls), calls


# ---- PID reuse (gh-127049) ---------------------------------------------------

REUSE_RUNS = [("stdlib", None), ("patched", None)] + [("pidproc", b) for b in USABLE]


@pytest.fixture(scope="module")
def reuse_outcomes() -> dict[tuple[str, str | None], str]:
    """Every run of programs/asyncio_reuse.py, each in its own PID namespace, side by side."""
    if not private_pid_ns():
        pytest.skip(PRIVATE_PID_NS)
    procs = {}
    for mode, backend_name in REUSE_RUNS:
        env = dict(os.environ)
        env.pop("PIDPROC_BACKEND", None)
        if backend_name is not None:
            env["PIDPROC_BACKEND"] = backend_name
        cmd = [*IN_PRIVATE_PID_NS, PY, program("asyncio_reuse"), mode]
        procs[mode, backend_name] = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    out = {}
    for key, p in procs.items():
        stdout, stderr = p.communicate(timeout=60)
        out[key] = stdout.strip() if p.returncode == 0 else f"rc {p.returncode}: {stderr}"
    return out


@pytest.mark.skipif(
    sys.version_info >= (3, 14),
    reason="asyncio 3.14 checks the returncode before os.kill: this reproduction no longer fires",
)
def test_stdlib_asyncio_signals_a_recycled_pid(reuse_outcomes: dict[Any, str]) -> None:
    """The race is real here: asyncio's kill() hits B, which merely got A's PID."""
    assert reuse_outcomes["stdlib", None] == "killed"


@pytest.mark.parametrize("backend_name", USABLE)
def test_recycled_pid_is_never_signalled(backend_name: str, reuse_outcomes: dict[Any, str]) -> None:
    assert reuse_outcomes["pidproc", backend_name] == "survived"


def test_recycled_pid_is_never_signalled_by_patched_asyncio(
    reuse_outcomes: dict[Any, str],
) -> None:
    assert reuse_outcomes["patched", None] == "survived"


# ---- cancellation and timeouts -----------------------------------------------


def test_wait_for_timeouts_then_kill(no_leaks: None) -> None:
    async def main() -> tuple[int | None, int]:
        p = await pa.create_subprocess_exec("sleep", "30", stdin=pa.PIPE, stdout=pa.PIPE)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.wait(), 0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.communicate(), 0.05)
        still = p.returncode
        p.kill()
        return still, await asyncio.wait_for(p.wait(), 10)

    assert run(main()) == (None, -signal.SIGKILL)


def test_cancelled_waiter_leaves_the_child_alone(no_leaks: None) -> None:
    async def main() -> tuple[int | None, int]:
        p = await pa.create_subprocess_exec("sh", "-c", "read x; exit 7", stdin=pa.PIPE)
        task = asyncio.ensure_future(p.wait())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rc_after_cancel = p.returncode
        assert p.stdin is not None
        p.stdin.write(b"x\n")
        await p.stdin.drain()
        return rc_after_cancel, await asyncio.wait_for(p.wait(), 10)

    assert run(main()) == (None, 7)


def test_cancelled_while_connecting_pipes_kills_and_reaps(no_leaks: None) -> None:
    """Cancelled after the spawn, before the pipes are connected: the child
    is killed and reaped before CancelledError propagates, as asyncio does."""

    async def main() -> None:
        before = {pid for pid, _ in children()}
        task = asyncio.ensure_future(
            pa.create_subprocess_exec("sleep", "30", stdin=pa.PIPE, stdout=pa.PIPE)
        )
        await asyncio.sleep(0)  # the task spawns, then awaits its pipes
        spawned = {pid for pid, _ in children()} - before
        assert len(spawned) == 1, spawned
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not spawned & {pid for pid, _ in children()}

    run(main())


# ---- many, threads, closed loops ---------------------------------------------


def test_a_thousand_at_once(no_leaks: None) -> None:
    """1,000 children alive at once (cat on stdin/stdout pipes: 3 fds each)."""
    n = 1000
    need = 4 * n + 100
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    async def main() -> None:
        procs = await asyncio.gather(
            *(pa.create_subprocess_exec("cat", stdin=pa.PIPE, stdout=pa.PIPE) for _ in range(n))
        )
        alive = {pid for pid, st in children() if st != "Z"}
        assert {p.pid for p in procs} <= alive
        outs = await asyncio.gather(*(p.communicate(b"%d" % i) for i, p in enumerate(procs)))
        assert [o for o, _ in outs] == [b"%d" % i for i in range(n)]
        assert [p.returncode for p in procs] == [0] * n
        assert all(p.pidfd is None for p in procs)

    try:
        run(main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_event_loops_in_several_threads(no_leaks: None) -> None:
    results: dict[int, list[tuple[bytes, int]]] = {}
    errors: list[BaseException] = []

    async def worker(k: int) -> list[tuple[bytes, int]]:
        async def one(i: int) -> tuple[bytes, int]:
            p = await pa.create_subprocess_exec(
                "sh", "-c", 'echo "$1"; exit "$2"', "sh", f"{k}.{i}", str(i), stdout=pa.PIPE
            )
            out, _ = await p.communicate()
            return out, await p.wait()

        return await asyncio.gather(*(one(i) for i in range(25)))

    def thread(k: int) -> None:
        try:
            results[k] = asyncio.run(worker(k))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=thread, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for k in range(4):
        assert results[k] == [(f"{k}.{i}\n".encode(), i) for i in range(25)]


def test_loop_closed_while_children_run(no_leaks: None) -> None:
    """The loop is closed under running children: closing or dropping their
    Process then kills and reaps them and closes every fd."""
    loop = asyncio.new_event_loop()

    async def start() -> list[pa.Process]:
        procs = [await pa.create_subprocess_exec("sleep", "30", stdout=pa.PIPE) for _ in range(3)]
        procs.append(await pa.create_subprocess_exec("sh", "-c", "sleep 0.1", stdout=pa.PIPE))
        return procs

    procs = loop.run_until_complete(start())
    pids = {p.pid for p in procs}
    loop.close()
    # The last one exits by itself, unnoticed: a zombie (waited for, not
    # slept for: the machine may be busy).
    deadline = time.monotonic() + 10
    while (procs[3].pid, "Z") not in children() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (procs[3].pid, "Z") in children()
    assert {p.pid for p in procs[:3]} <= {pid for pid, st in children() if st != "Z"}
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "unclosed transport", as asyncio
        procs[0]._transport.close()  # type: ignore[attr-defined]  # closed explicitly
        assert procs[0].pid not in {pid for pid, _ in children()}
        del procs
        collect()  # the others: collected
    assert time.monotonic() - t0 < 3
    assert not pids & {pid for pid, _ in children()}


def test_loop_closed_on_the_thread_path(monkeypatch: Any, tmp_path: Any, no_leaks: None) -> None:
    """Without pidfds a thread waits for each child, as asyncio's
    ThreadedChildWatcher does, and keeps its transport alive until the exit:
    after a closed loop the children run to their end and are reaped."""
    monkeypatch.setattr(_aio_transport, "_USE_PIDFD", False)
    loop = asyncio.new_event_loop()
    # The children end when told to, after the loop is closed: a fixed sleep
    # could end before the last one is even started on a slow machine.
    go = tmp_path / "go"
    wait_for_go = f"while [ ! -e {go} ]; do sleep 0.02; done"

    async def start() -> list[pa.Process]:
        return [
            await pa.create_subprocess_exec("sh", "-c", wait_for_go, stdout=pa.PIPE)
            for _ in range(3)
        ]

    procs = loop.run_until_complete(start())
    pids = {p.pid for p in procs}
    waiters = [t for t in threading.enumerate() if t.name.startswith("pidproc-asyncio-wait-")]
    loop.close()
    go.touch()
    assert len(waiters) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del procs
        for t in waiters:
            t.join(10)
        collect()
    assert not pids & {pid for pid, _ in children()}


def test_a_pidfd_readable_before_it_can_be_reaped_does_not_spin(
    monkeypatch: Any, no_leaks: None
) -> None:
    """Another thread inside the Popen's wait() holds its lock: the loop
    looks again after growing pauses instead of spinning on the readable
    pidfd, and notices the exit once the lock is free. Counted in calls of
    the readable callback, not in CPU time, which a loaded virtual machine
    inflates."""
    looks: list[None] = []
    readable = _aio_transport.PidfdSubprocessTransport._pidfd_readable

    def counted(self: Any) -> None:
        looks.append(None)
        readable(self)

    monkeypatch.setattr(_aio_transport.PidfdSubprocessTransport, "_pidfd_readable", counted)

    async def main() -> tuple[int, int | None, int]:
        p = await pa.create_subprocess_exec("sleep", "0.05")
        popen = popen_of(p)
        popen._waitpid_lock.acquire()
        try:
            # Counted from the child's exit on (a zombie: its pidfd readable),
            # however long an emulated machine takes to get there.
            deadline = time.monotonic() + 60
            while (p.pid, "Z") not in children():
                assert time.monotonic() < deadline, "the child never exited"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.55)
            held = len(looks)
            unknown = p.returncode
        finally:
            popen._waitpid_lock.release()
        return held, unknown, await asyncio.wait_for(p.wait(), 10)

    held, unknown, rc = run(main())
    assert unknown is None and rc == 0
    # Pauses of 2, 4, ... ms capped at 50 ms: about 15 looks in 0.55 s; a
    # loop spinning on the fd would look thousands of times.
    assert 2 <= held <= 30, f"{held} looks at the pidfd while it could not be reaped"


def test_thread_fallback(monkeypatch: Any, no_leaks: None) -> None:
    """Without pidfds a thread waits, as asyncio's ThreadedChildWatcher does."""
    monkeypatch.setattr(_aio_transport, "_USE_PIDFD", False)

    async def main() -> tuple[list[str], int, bytes]:
        p = await pa.create_subprocess_exec("sleep", "30")
        names = [t.name for t in threading.enumerate() if str(p.pid) in t.name]
        p.terminate()
        rc = await asyncio.wait_for(p.wait(), 10)
        q = await pa.create_subprocess_exec("echo", "hi", stdout=pa.PIPE)
        out, _ = await q.communicate()
        return names, rc, out

    names, rc, out = run(main())
    assert len(names) == 1 and rc == -signal.SIGTERM and out == b"hi\n"


# ---- pidproc.patch() ---------------------------------------------------------


def test_patch_puts_asyncio_on_pidfds(not_patched: None, no_leaks: None) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        before = threading.active_count()
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "print(input()[::-1])", stdin=pa.PIPE, stdout=pa.PIPE
        )
        assert threading.active_count() == before  # no watcher thread
        popen = popen_of(p)
        watched = popen.pidfd in selector_map(loop)
        out, _ = await p.communicate(b"abc\n")
        t, proto = await loop.subprocess_shell(asyncio.SubprocessProtocol, "exit 4")
        rc = await t._wait()  # type: ignore[attr-defined]
        t.close()
        return type(popen), popen.backend, watched, out, p.returncode, rc, type(t)

    with pidproc.patched():
        popen_cls, backend, watched, out, rc, shell_rc, tcls = run(main())
    assert popen_cls is pidproc.Popen and backend != "pid" and watched
    assert (out, rc, shell_rc) == (b"cba\n", 0, 4)
    assert issubclass(tcls, pa.PidfdSubprocessTransport)

    # Unpatched again: asyncio's own transport and Popen.
    async def plain() -> tuple[Any, Any]:
        p = await asyncio.create_subprocess_exec("true")
        await p.wait()
        return type(p._transport), type(popen_of(p))  # type: ignore[attr-defined]

    tcls, popen_cls = run(plain())
    assert not issubclass(tcls, pa.PidfdSubprocessTransport)
    assert popen_cls is subprocess.Popen


def test_patch_in_another_thread_and_nested(not_patched: None, no_leaks: None) -> None:
    pidproc.patch()
    with pidproc.patched():
        assert _aio_transport.installed()
    assert _aio_transport.installed()
    out: list[Any] = []

    async def main() -> None:
        p = await asyncio.create_subprocess_exec("sh", "-c", "exit 9")
        out.append((await p.wait(), type(popen_of(p))))

    t = threading.Thread(target=lambda: asyncio.run(main()))
    t.start()
    t.join(30)
    pidproc.unpatch()
    assert not _aio_transport.installed()
    assert out == [(9, pidproc.Popen)]


# ---- wait_pidfd --------------------------------------------------------------


def test_wait_pidfd_reaps_our_child(no_leaks: None) -> None:
    async def main() -> tuple[int | None, int | None, int | None]:
        a = pidproc.Popen(["sh", "-c", "exit 6"])
        with pidproc.PidFd.from_popen(a) as pf:
            rc = await pa.wait_pidfd(pf)
        b = pidproc.Popen(["sh", "-c", "kill -TERM $$"])
        assert b.pidfd is not None
        rc_b = await pa.wait_pidfd(b.pidfd)  # a number: the caller keeps it
        os.fstat(b.pidfd)
        b.wait()
        return rc, rc_b, a.wait()

    rc, rc_b, popen_rc = run(main())
    assert rc == 6 and rc_b == -signal.SIGTERM
    assert popen_rc == (6 if _EXIT_INFO_KEPT else 0)  # reaped behind its back


def test_wait_pidfd_for_a_process_that_is_not_our_child(no_leaks: None) -> None:
    """Its status comes from PIDFD_INFO_EXIT (Linux 6.15+) once its own
    parent reaps it; while it is an unreaped zombie the loop does not spin."""

    async def main() -> tuple[int | None, float, float]:
        parent = await pa.create_subprocess_exec(
            PY, program("asyncio_grandparent"), stdin=pa.PIPE, stdout=pa.PIPE
        )
        assert parent.stdout is not None and parent.stdin is not None
        pid = int(await parent.stdout.readline())
        pf = pidproc.PidFd.open(pid)  # alive: its parent waits for us first
        parent.stdin.write(b"go\n")
        t0, cpu0 = time.monotonic(), time.process_time()
        rc = await asyncio.wait_for(pa.wait_pidfd(pf), 10)
        took, cpu = time.monotonic() - t0, time.process_time() - cpu0
        pf.close()
        parent.kill()
        await parent.wait()
        return rc, took, cpu

    rc, took, cpu = run(main())
    if _EXIT_INFO_KEPT:
        assert rc == 7
        assert took >= 0.45, f"returned {took:.3f} s in, before the parent reaped it"
    else:
        assert rc is None
    assert cpu < 0.2, f"{cpu:.3f} s of CPU while waiting: the loop spun"


def test_wait_pidfd_cancelled_and_shared(no_leaks: None) -> None:
    """A timeout leaves the process alone; two waits on one PidFd, and a
    wait on a Process's own pidfd, all end at the exit."""

    async def main() -> tuple[int | None, ...]:
        p = await pa.create_subprocess_exec("sh", "-c", "read x; exit 3", stdin=pa.PIPE)
        assert p.pidfd is not None and p.stdin is not None
        with pidproc.PidFd(os.dup(p.pidfd)) as pf:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(pa.wait_pidfd(pf), 0.05)
            assert p.returncode is None
            w1 = asyncio.ensure_future(pa.wait_pidfd(pf))
            w2 = asyncio.ensure_future(pa.wait_pidfd(pf))
            await asyncio.sleep(0.02)
            p.stdin.write(b"x\n")
            r1, r2 = await asyncio.wait_for(asyncio.gather(w1, w2), 10)
        return r1, r2, await asyncio.wait_for(p.wait(), 10)

    got = run(main())
    if _EXIT_INFO_KEPT:
        assert got == (3, 3, 3)
    else:
        # Before 6.15 only the reaper learns the status: the Process's own
        # transport (the two waits see the exit, not the status: None), or
        # the waits (the Process then reads 0, as the stdlib does for a child
        # reaped behind its back).
        assert got in ((None, None, 3), (3, 3, 0))


def test_wait_pidfd_rejects_other_things() -> None:
    async def main() -> None:
        with pytest.raises(TypeError):
            await pa.wait_pidfd("3")  # type: ignore[arg-type]

    run(main())


def test_public_module_is_not_the_stdlib_shadowed() -> None:
    import asyncio as stdlib_asyncio

    assert stdlib_asyncio.__name__ == "asyncio" and pa.__name__ == "pidproc.asyncio"
    assert pa._asyncio is stdlib_asyncio  # type: ignore[attr-defined]
    assert set(pa.__all__) <= set(dir(pa))
    code = "import pidproc.asyncio, asyncio; print(asyncio.__file__)"
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    assert "pidproc" not in r.stdout
