"""communicate() and capture_output through pidproc's own loop, with the
stdlib as the reference: every case runs the same call through
``subprocess`` and through ``pidproc`` and compares what comes out (the
bytes or text, the return code, the exception and what it carries).

pidproc reads and writes with fewer, larger calls, grows the pipes of large
streams and keeps partial output in its own form between calls; none of
that may show, except where a test looks for it on purpose (the pipe sizes).
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pidproc
from pidproc import _communicate, _stdlib

from ._support.outcome import outcome
from ._support.programs import program
from .conftest import PY

PIPE = subprocess.PIPE
MIB = 1 << 20

WRITER = program("communicate_writer")  # n, step, stderr bytes, exit status
LATE_READER = program("communicate_late_reader")  # reads stdin once told on a fd

FAST = _communicate.stdlib_semantics() is not None
needs_fast = pytest.mark.skipif(
    not FAST,
    reason="this CPython's Popen._communicate is not one pidproc recognises: its own loop runs",
)


def pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def through_both(call: Callable[[Any], Any]) -> tuple[Any, Any]:
    """(pidproc's outcome, the stdlib's) of the same call."""
    theirs = outcome(lambda: call(subprocess))
    return outcome(lambda: call(pidproc)), theirs


def used_fast_loop(p: subprocess.Popen[Any]) -> bool:
    return getattr(p, "_pidproc_exchange", None) is not None


# ---- the same bytes, on every spawn path ----------------------------------------


CASES = {
    # name: (Popen keyword arguments, communicate keyword arguments)
    "stdout-only+timeout": (dict(stdout=PIPE), dict(timeout=60)),
    "stderr-only+timeout": (dict(stderr=PIPE), dict(timeout=60)),
    "both": (dict(stdout=PIPE, stderr=PIPE), {}),
    "both+timeout": (dict(stdout=PIPE, stderr=PIPE), dict(timeout=60)),
    "stderr-to-stdout+timeout": (dict(stdout=PIPE, stderr=subprocess.STDOUT), dict(timeout=60)),
    "stdin+stdout": (dict(stdin=PIPE, stdout=PIPE), {}),
    "all-three": (dict(stdin=PIPE, stdout=PIPE, stderr=PIPE), dict(timeout=60)),
}


@pytest.mark.parametrize("size", [0, 65536, 3 * MIB + 17])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_output_as_stdlib(case: str, size: int, no_leaks: None) -> None:
    same_output(case, size)


@pytest.mark.parametrize("case", ["all-three", "both+timeout"])
def test_same_output_on_every_path(backend: str, case: str, no_leaks: None) -> None:
    """The loop is the same on every path; the final wait is the path's."""
    same_output(case, 3 * MIB + 17)


def same_output(case: str, size: int) -> None:
    popen_kw, comm_kw = CASES[case]

    def call(mod: Any) -> Any:
        with mod.Popen([PY, WRITER, str(size), "4096", "300", "3"], **popen_kw) as p:
            out, err = p.communicate(**comm_kw)
        return out, err, p.returncode

    ours, theirs = through_both(call)
    assert ours == theirs
    assert ours[0] == "ok"
    if popen_kw.get("stdout") == PIPE:
        assert ours[1][0].startswith(pattern(size))


@pytest.mark.parametrize("size", [0, 100, 5 * MIB + 3])
def test_input_and_output_at_once_do_not_deadlock(backend: str, size: int, no_leaks: None) -> None:
    """Input and output each far beyond a pipe: the child (cat) blocks on
    its stdout unless the loop reads while it writes."""
    data = pattern(size)

    def call(mod: Any) -> Any:
        with mod.Popen(
            [PY, "-c", "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)"
             "; sys.stderr.buffer.write(b'x' * 200000)"],
            stdin=PIPE, stdout=PIPE, stderr=PIPE,
        ) as p:  # fmt: skip
            out, err = p.communicate(data, timeout=120)
        return out == data, len(err), p.returncode

    ours, theirs = through_both(call)
    assert ours == theirs == ("ok", (True, 200000, 0))


@pytest.mark.parametrize(
    "call",
    [
        lambda mod: mod.run([PY, WRITER, "2000000", "65536", "10", "0"], capture_output=True),
        lambda mod: mod.check_output([PY, WRITER, "70000", "7", "0", "0"], timeout=60),
        lambda mod: mod.run(
            [PY, "-c", "import sys; print(sys.stdin.read().upper())"],
            input="abc\r\ndef", capture_output=True, text=True, timeout=60,
        ),
        lambda mod: mod.getoutput("printf 'a\\r\\nb'; printf err >&2"),
    ],
    ids=["run", "check_output", "run-text-input", "getoutput"],
)  # fmt: skip
def test_capture_through_run_check_output_getoutput(
    call: Callable[[Any], Any], no_leaks: None
) -> None:
    ours, theirs = through_both(lambda mod: _comparable(call(mod)))
    assert ours == theirs
    assert ours[0] == "ok"


def _comparable(result: Any) -> Any:
    if isinstance(result, subprocess.CompletedProcess):
        return (result.args, result.returncode, result.stdout, result.stderr)
    return result


# ---- text -----------------------------------------------------------------------


TEXT_CHILD = (
    "import sys; data = sys.stdin.buffer.read(); "
    "sys.stdout.buffer.write(data + b'one\\r\\ntwo\\rthree\\n\\xff\\xfe end'); "
    "sys.stderr.buffer.write(b'e\\r\\n' * 70000)"
)


@pytest.mark.parametrize(
    "text_kw",
    [
        dict(text=True),
        dict(universal_newlines=True),
        dict(encoding="latin-1"),
        dict(encoding="utf-8", errors="replace"),
        dict(encoding="utf-8", errors="strict"),  # raises UnicodeDecodeError, same place
        dict(encoding="utf-16", errors="surrogateescape"),
    ],
    ids=str,
)
def test_text_mode_same_as_stdlib(text_kw: dict[str, Any]) -> None:
    def call(mod: Any) -> Any:
        with mod.Popen(
            [PY, "-c", TEXT_CHILD], stdin=PIPE, stdout=PIPE, stderr=PIPE, **text_kw
        ) as p:
            return p.communicate("héllo\r\nwörld\n" * 5000, timeout=60), p.returncode

    ours, theirs = through_both(call)
    assert ours == theirs


# ---- input of every kind ----------------------------------------------------------


ECHO = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"


@pytest.mark.parametrize(
    "make_input",
    [
        lambda: None,
        lambda: b"",
        lambda: b"bytes" * 30000,
        lambda: bytearray(b"bytearray" * 30000),
        lambda: memoryview(b"0123456789" * 30000),
        lambda: memoryview(b"0123456789" * 30000)[5:-5],
        lambda: memoryview(bytearray(b"xy" * 10)).cast("c"),
        lambda: memoryview(array.array("i", range(50000))),  # not bytes: per version
        lambda: memoryview(b"0123456789" * 3000)[::2],  # not contiguous
        lambda: array.array("B", b"abc" * 1000),
        lambda: "a str in binary mode",
        lambda: 12345,
    ],
    ids=[
        "None", "empty", "bytes", "bytearray", "memoryview", "memoryview-slice",
        "memoryview-c", "memoryview-int", "memoryview-strided", "array", "str", "int",
    ],
)  # fmt: skip
def test_input_kinds_same_as_stdlib(make_input: Callable[[], Any], no_leaks: None) -> None:
    def call(mod: Any) -> Any:
        with mod.Popen([PY, "-c", ECHO], stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
            try:
                return p.communicate(make_input(), timeout=60), p.returncode
            finally:
                p.kill()

    ours, theirs = through_both(call)
    assert ours == theirs


@needs_fast
def test_plain_input_takes_the_fast_loop_and_odd_input_the_stdlibs() -> None:
    for data, fast in ((b"abc", True), (memoryview(array.array("i", [1, 2])), False)):
        with pidproc.Popen([PY, "-c", ECHO], stdin=PIPE, stdout=PIPE) as p:
            try:
                p.communicate(data, timeout=60)
            except Exception:  # noqa: BLE001,S110 - only which loop ran matters here
                pass
            p.kill()
        assert used_fast_loop(p) is fast


# ---- timeouts ---------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.005)


@pytest.mark.parametrize("text", [False, True])
def test_timeouts_keep_partial_output_and_a_later_call_gets_all(
    backend: str, text: bool, no_leaks: None
) -> None:
    """Short timeouts while the child writes in bursts: each TimeoutExpired
    carries what was read so far (bytes, even in text mode), and the call
    that finishes returns every byte once."""
    full = (b"line\r\n" * 600000 if text else pattern(3 * MIB)) * 4
    argv = [PY, program("communicate_bursts")] + (["text"] if text else [])
    with pidproc.Popen(argv, stdout=PIPE, stderr=PIPE, text=text) as p:
        seen: list[int] = []
        while True:
            try:
                out, err = p.communicate(timeout=0.05)
                break
            except subprocess.TimeoutExpired as e:
                assert e.timeout == 0.05
                if e.output is not None:
                    assert isinstance(e.output, bytes)
                    assert full.startswith(e.output)
                    seen.append(len(e.output))
                if e.stderr is not None:
                    assert isinstance(e.stderr, bytes)
    assert seen == sorted(seen)
    bursts = b"burst 0\nburst 1\nburst 2\nburst 3\n"
    if text:
        assert (out, err) == (full.decode().replace("\r\n", "\n"), bursts.decode())
    else:
        assert (out, err) == (full, bursts)


def test_input_left_at_a_timeout_as_stdlib() -> None:
    """Input the child had not read when the timeout came: CPython 3.14+
    sends the rest in the next communicate(); earlier ones leave stdin
    as it is, so the child never sees its end (the next call times out
    too).  Either way pidproc does what the running stdlib does."""
    sem = _communicate.stdlib_semantics()
    # Long where the rest is sent (the call ends when it is done), short
    # where it cannot end.
    second_timeout = 1.0 if sem is not None and not sem.stdin_while_pending else 60.0

    def call(mod: Any) -> Any:
        r, w = os.pipe()
        try:
            with mod.Popen([PY, LATE_READER, str(r)], stdin=PIPE, stdout=PIPE, pass_fds=[r]) as p:
                try:
                    try:
                        p.communicate(b"x" * (3 * MIB), timeout=0.3)
                    except subprocess.TimeoutExpired as e:
                        first = ("timeout", e.output)
                    os.write(w, b"g")
                    try:
                        second = ("ok", p.communicate(timeout=second_timeout))
                    except subprocess.TimeoutExpired as e:
                        second = ("timeout", e.output)
                    return first, second, p.stdin.closed
                finally:
                    p.kill()
        finally:
            os.close(r)
            os.close(w)

    ours, theirs = through_both(call)
    assert ours == theirs
    assert ours[0] == "ok"


def test_timeout_output_none_or_bytes_as_stdlib() -> None:
    """Before anything is read, TimeoutExpired.output is None; once a stream
    was read (even only its end), it is bytes.  Child: closes stdout, keeps
    stderr open silently."""
    code = "import os, time; os.close(1); time.sleep(60)"

    def call(mod: Any) -> Any:
        p = mod.Popen([PY, "-c", code], stdout=PIPE, stderr=PIPE)
        try:
            wait_for(lambda: not os.path.exists(f"/proc/{p.pid}/fd/1"), "the child to close fd 1")
            try:
                p.communicate(timeout=0.2)
            except subprocess.TimeoutExpired as e:
                return e.output, e.stderr, e.timeout, p.stdout.closed, p.stderr.closed
        finally:
            p.kill()
            p.communicate()

    ours, theirs = through_both(call)
    assert ours == theirs


@pytest.mark.parametrize("timeout", [0, -1, 1e-9])
def test_zero_and_negative_timeouts_as_stdlib(timeout: float) -> None:
    def call(mod: Any) -> Any:
        p = mod.Popen([PY, "-c", "import time; time.sleep(60)"], stdout=PIPE, stderr=PIPE)
        try:
            try:
                p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as e:
                return "timeout", e.output, e.stderr, e.timeout
            return "finished"
        finally:
            p.kill()
            p.communicate()

    ours, theirs = through_both(call)
    assert ours == theirs


def test_timeout_in_the_final_wait_as_stdlib() -> None:
    """The pipes end (the child hands them to nobody and closes them) but
    the child lives on: the final wait() times out."""
    code = "import os, time; os.close(1); os.close(2); time.sleep(60)"

    def call(mod: Any) -> Any:
        p = mod.Popen([PY, "-c", code], stdout=PIPE, stderr=PIPE)
        try:
            wait_for(lambda: not os.path.exists(f"/proc/{p.pid}/fd/2"), "the child to close fd 2")
            try:
                p.communicate(timeout=0.3)
            except subprocess.TimeoutExpired as e:
                # The time left when the wait started, or (newer CPythons)
                # the caller's timeout.
                return "timeout", e.output, e.stderr, e.timeout == 0.3
            return "finished"
        finally:
            p.kill()
            p.communicate()

    ours, theirs = through_both(call)
    assert ours == theirs
    assert ours[1][0] == "timeout"


def test_communicate_again_after_the_end_returns_the_same(no_leaks: None) -> None:
    def call(mod: Any) -> Any:
        with mod.Popen([PY, WRITER, "3000000", "65536", "5", "0"], stdout=PIPE, stderr=PIPE) as p:
            first = p.communicate(timeout=60)
            second = p.communicate(timeout=60)
            third = p.communicate()
        return first == second == third, len(first[0]), first[1]

    ours, theirs = through_both(call)
    assert ours == theirs == ("ok", (True, 3000000, b"eeeee"))


# ---- stdin: broken pipe, closed, input after start --------------------------------


@pytest.mark.parametrize("timeout", [None, 60])
def test_broken_pipe_on_input_is_ignored_as_stdlib(
    backend: str, timeout: float | None, no_leaks: None
) -> None:
    """The child exits without reading: writing the input fails with EPIPE,
    which communicate() swallows, closing stdin."""

    def call(mod: Any) -> Any:
        with mod.Popen(
            [PY, "-c", "import os; os.close(0); os.write(1, b'bye')"], stdin=PIPE, stdout=PIPE
        ) as p:
            out, err = p.communicate(b"x" * (8 * MIB), timeout=timeout)
            return out, err, p.stdin.closed, p.returncode

    ours, theirs = through_both(call)
    assert ours == theirs == ("ok", (b"bye", None, True, 0))


@pytest.mark.parametrize("data", [None, b"input"])
def test_stdin_closed_before_communicate_as_stdlib(data: bytes | None) -> None:
    def call(mod: Any) -> Any:
        with mod.Popen([PY, "-c", ECHO], stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
            p.stdin.close()
            try:
                return p.communicate(data, timeout=60)
            finally:
                p.kill()
                p.wait()

    ours, theirs = through_both(call)
    assert ours == theirs


def test_writes_before_communicate_are_flushed_first() -> None:
    def call(mod: Any) -> Any:
        with mod.Popen([PY, "-c", ECHO], stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
            p.stdin.write(b"before-" * 1000)
            return p.communicate(b"during" * 50000, timeout=60)

    ours, theirs = through_both(call)
    assert ours == theirs


def test_input_after_communication_started_raises_as_stdlib() -> None:
    def call(mod: Any) -> Any:
        with mod.Popen([PY, "-c", "import time; time.sleep(60)"], stdin=PIPE, stdout=PIPE) as p:
            try:
                p.communicate(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            try:
                return p.communicate(b"late", timeout=1)
            finally:
                p.kill()

    ours, theirs = through_both(call)
    assert ours == theirs
    assert ours[0] is ValueError


def test_stdout_closed_before_communicate_as_stdlib() -> None:
    def call(mod: Any) -> Any:
        with mod.Popen([PY, WRITER, "10", "10", "10", "0"], stdout=PIPE, stderr=PIPE) as p:
            p.stdout.close()
            return p.communicate(timeout=60)

    ours, theirs = through_both(call)
    assert ours == theirs


# ---- KeyboardInterrupt --------------------------------------------------------------


@pytest.fixture
def interrupt_after() -> Iterator[Callable[[float], None]]:
    """Raise KeyboardInterrupt in the main thread after ``delay`` seconds,
    as a ^C would (SIGALRM with a handler that raises it)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)

    def arm(delay: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, delay)

    try:
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("mod", [pidproc, subprocess], ids=["pidproc", "stdlib"])
@pytest.mark.parametrize("timeout", [None, 60])
def test_keyboard_interrupt_leaves_the_object_usable(
    mod: Any, timeout: float | None, interrupt_after: Callable[[float], None], no_leaks: None
) -> None:
    """A ^C in communicate() (the stdlib as the reference): the output read
    so far is kept, the pipes stay open and blocking, and a later
    communicate() returns all of it.  The child has written its first part
    and waits for a byte the parent sends only after the interrupt, so the
    interrupt lands while the loop waits in poll."""
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    try:
        with mod.Popen(
            [PY, program("communicate_two_halves"), str(go_r), str(ready_w)],
            stdin=subprocess.DEVNULL, stdout=PIPE, stderr=PIPE, pass_fds=[go_r, ready_w],
        ) as p:  # fmt: skip
            assert os.read(ready_r, 1) == b"r"
            interrupt_after(0.3)
            with pytest.raises(KeyboardInterrupt):
                p.communicate(timeout=timeout)
            assert p.returncode is None
            for stream in (p.stdout, p.stderr):
                assert not stream.closed
                assert os.get_blocking(stream.fileno())
            if mod is pidproc and FAST:
                assert used_fast_loop(p)
            os.write(go_w, b"g")
            out, err = p.communicate(timeout=60)
    finally:
        for fd in (go_r, go_w, ready_r, ready_w):
            os.close(fd)
    assert out == pattern(4096) + pattern(2 * MIB)
    assert err == b"done"
    assert p.returncode == 0


@pytest.mark.parametrize("mod", [pidproc, subprocess], ids=["pidproc", "stdlib"])
def test_keyboard_interrupt_with_input_pending_leaves_stdin_open_and_blocking(
    mod: Any, interrupt_after: Callable[[float], None], no_leaks: None
) -> None:
    """Interrupted while the child does not read its input yet: stdin stays
    open, blocking as it was (pidproc writes it non-blocking meanwhile), and
    the Popen can still be ended and collected."""
    r, w = os.pipe()
    try:
        with mod.Popen(
            [PY, LATE_READER, str(r)], stdin=PIPE, stdout=PIPE, stderr=PIPE, pass_fds=[r]
        ) as p:
            interrupt_after(0.5)
            with pytest.raises(KeyboardInterrupt):
                p.communicate(b"x" * (4 * MIB), timeout=60)
            assert not p.stdin.closed
            assert os.get_blocking(p.stdin.fileno())
            assert p.returncode is None
            p.kill()
            out, err = p.communicate(timeout=60)
    finally:
        os.close(r)
        os.close(w)
    assert (out, err, p.returncode) == (b"", b"", -signal.SIGKILL)


def test_signal_without_exception_does_not_disturb(no_leaks: None) -> None:
    """EINTR in poll, read or write is retried (PEP 475), as in the stdlib."""
    got: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        with pidproc.Popen(
            [PY, program("communicate_signals_parent")], stdin=PIPE, stdout=PIPE, stderr=PIPE
        ) as p:
            out, err = p.communicate(b"y" * (4 * MIB), timeout=60)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert out == b"x" * 2000000
    assert got


# ---- pipe sizes: grown for large streams, never when the caller chose one --------

# After its output (or input) the child reports the size of that pipe.
PIPE_SIZE = program("communicate_pipe_size")


def pipe_sizes() -> tuple[int, int]:
    """A new pipe's size and what pidproc grows one to here; skip where
    growing is refused."""
    with open("/proc/sys/fs/pipe-max-size") as f:
        size = min(int(f.read()), MIB)
    r, w = os.pipe()
    try:
        default = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
    except OSError as e:
        pytest.skip(f"F_SETPIPE_SZ to {size} refused here ({e}): pipes stay as they are")
    finally:
        os.close(r)
        os.close(w)
    return default, size


@needs_fast
def test_a_large_output_grows_its_pipe_a_small_one_does_not() -> None:
    default, size = pipe_sizes()
    for n, expected in ((1000, default), (8 * MIB, size)):
        cp = pidproc.run([PY, PIPE_SIZE, "out", str(n)], capture_output=True, timeout=60)
        assert len(cp.stdout) == n
        assert int(cp.stderr) == expected, n


@needs_fast
def test_a_large_input_grows_its_pipe_a_small_one_does_not() -> None:
    default, size = pipe_sizes()
    for n, expected in ((1000, default), (8 * MIB, size)):
        cp = pidproc.run([PY, PIPE_SIZE, "in"], input=bytes(n), capture_output=True, timeout=60)
        assert cp.stdout == b"%d %d" % (n, expected)


@needs_fast
def test_a_pipesize_the_caller_chose_is_never_changed() -> None:
    pipe_sizes()
    chosen = 2 * 65536
    cp = pidproc.run(
        [PY, PIPE_SIZE, "out", str(8 * MIB)], capture_output=True, timeout=60, pipesize=chosen
    )
    assert int(cp.stderr) == chosen
    cp = pidproc.run(
        [PY, PIPE_SIZE, "in"],
        input=bytes(8 * MIB),
        capture_output=True,
        timeout=60,
        pipesize=chosen,
    )
    assert cp.stdout == b"%d %d" % (8 * MIB, chosen)


# ---- where the stdlib's own loop runs ----------------------------------------------


@needs_fast
def test_the_fast_loop_runs_for_popens_own_streams() -> None:
    with pidproc.Popen([PY, "-c", "pass"], stdout=PIPE, stderr=PIPE) as p:
        p.communicate()
    assert used_fast_loop(p)


def test_an_unrecognised_stdlib_runs_its_own_loop(
    monkeypatch: pytest.MonkeyPatch, no_leaks: None
) -> None:
    """Where the running CPython's loop is not one pidproc knows, its own
    runs: same results, no state of pidproc's."""
    monkeypatch.setattr(_communicate, "stdlib_semantics", lambda: None)
    with pidproc.Popen([PY, WRITER, "3000000", "65536", "7", "2"], stdout=PIPE, stderr=PIPE) as p:
        out, err = p.communicate(timeout=60)
    assert not used_fast_loop(p)
    assert (out, err, p.returncode) == (pattern(3000000), b"e" * 7, 2)


def test_streams_popen_did_not_make_get_the_stdlibs_loop() -> None:
    """A test double in place of a stream (as CPython's own tests do) is
    only ever called the way the stdlib calls it."""
    from unittest import mock

    with pidproc.Popen([PY, "-h"], stdin=PIPE, stdout=PIPE) as p, open(os.devnull, "wb") as null:
        with mock.patch.object(p, "stdin") as fake:
            fake.flush.side_effect = BrokenPipeError
            fake.fileno.return_value = null.fileno()
            p.communicate(b"stuff")
            fake.flush.assert_called_once_with()
    assert not used_fast_loop(p)


@needs_fast
def test_the_stdlib_internals_the_loop_relies_on_still_hold() -> None:
    """What pidproc's loop takes from the stdlib beyond its recognised
    source: the methods it calls and the attributes it keeps, as it uses
    them."""
    assert _stdlib.STDLIB_COMMUNICATE is subprocess.Popen._communicate  # type: ignore[attr-defined]
    with pidproc.Popen([PY, "-c", ECHO], stdin=PIPE, stdout=PIPE, text=True) as p:
        assert p._communication_started is False  # type: ignore[attr-defined]
        assert p._input is None  # type: ignore[attr-defined]
        p._save_input("é\r\n")  # type: ignore[attr-defined]
        assert (p._input, p._input_offset) == ("é\r\n".encode(p.stdin.encoding), 0)  # type: ignore[attr-defined]
        with pytest.raises(subprocess.TimeoutExpired) as info:
            p._check_timeout(0.0, 7, [b"ab"], [], skip_check_and_raise=True)  # type: ignore[attr-defined]
        assert (info.value.timeout, info.value.output, info.value.stderr) == (7, b"ab", None)
        assert p._translate_newlines(b"a\r\nb\rc", "ascii", "strict") == "a\nb\nc"  # type: ignore[attr-defined]
        p.communicate()


def test_fingerprint_ignores_comment_lines_and_indent_not_code() -> None:
    def fp(text: str) -> str:
        return _communicate.fingerprint_lines(text.splitlines(keepends=True))

    plain = "def f(x):\n    return x + 1\n"
    assert fp(plain) == fp("def f(x):\n\n    # why\n    return x + 1\n")
    assert fp(plain) == fp("    def f(x):\n        return x + 1\n")  # a method's indent
    assert fp(plain) != fp("def f(x):\n    return x + 2\n")
    assert fp(plain) != fp("def f(x):\n    if x:\n        return x + 1\n")
    assert _communicate._fingerprint(len) is None  # no Python source


def test_fingerprint_covers_the_whole_function(tmp_path: Any) -> None:
    """The lines hashed run from the def to the function's last line,
    nested functions included, and a change anywhere in them counts."""
    import importlib.util

    def load(text: str, name: str) -> Any:
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.f

    body = "def f(x):\n    def g():\n        return x\n    return g\n"
    tail = "def f(x):\n    def g():\n        return x\n    return g\n\nY = 1\n"
    changed = "def f(x):\n    def g():\n        return x\n    return g()\n"
    a, b, c = load(body, "fp_a"), load(tail, "fp_b"), load(changed, "fp_c")
    assert _communicate._fingerprint(a) == _communicate._fingerprint(b)  # code after f: not f
    assert _communicate._fingerprint(a) != _communicate._fingerprint(c)


# The CPythons whose loop was read and whose fingerprint is in the table.
_READ = {
    "3.10.13",
    "3.11.2",
    "3.11.7",
    "3.12.1",
    "3.12.10",
    "3.13.0",
    "3.13.5",
    "3.14.10",
    "3.15.2",
}


def test_each_cpython_read_is_recognised() -> None:
    """A change to how the fingerprint is taken must keep every CPython
    that was read recognised (else its own loop would quietly run)."""
    import platform

    if platform.python_version() not in _READ:
        pytest.skip(f"CPython {platform.python_version()} is not among those read")
    assert FAST
