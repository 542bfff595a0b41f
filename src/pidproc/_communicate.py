"""``Popen._communicate`` at pipe speed: the loop that feeds stdin and
collects stdout and stderr for ``communicate()``, ``run()``,
``check_output()`` and friends.

The stdlib's loop (POSIX) reads 32 KiB per wake-up and writes 512 bytes per
wake-up, appends each chunk read to a list and joins the list at the end.
For large outputs that loop, not the pipe, is the cost, and the join holds
the output twice in memory.  This one does the same exchange with fewer,
larger system calls and one copy less:

- A stream is "large" once one read fills a whole default pipe (64 KiB) or
  it passes 1 MiB.  From then on its pipe is grown with ``F_SETPIPE_SZ``
  (to at most 1 MiB and ``/proc/sys/fs/pipe-max-size``; never a pipe whose
  size the caller chose with ``pipesize=``), it is read 1 MiB at a time, and
  appended to an ``io.BytesIO``, whose ``getvalue()`` hands over its own
  buffer: no final join, and the output is held once.
- ``input`` is written as much as the pipe takes per wake-up, from a
  memoryview (never copied): our end of the stdin pipe is non-blocking
  meanwhile (and blocking again if the call ends before the input does).  A
  stdin pipe for a large input is grown as above.

Left out, having shown no gain on the workloads of S6, S6b and S6c when
tried: reading each pipe until it is empty rather than once per wake-up,
reading into one reused buffer with ``os.readv`` rather than 1 MiB reads,
and the pidfd in the poll set (the pipes end before the child is reapable,
so it saves no system call).

Semantics are the stdlib's, and the stdlib's own methods do the parts that
define them (``_save_input``, ``_check_timeout``, ``wait``,
``_translate_newlines``).  The loop differs in small ways between CPython
versions (see ``_Semantics``); the running one is recognised by a hash of
its source lines (blank and comment lines left out), and anything not
recognised, as well as streams or input of a kind Popen itself never
makes (a mock, a non-byte memoryview), runs the stdlib's own
``_communicate``.
"""

from __future__ import annotations

import fcntl
import functools
import io
import math
import os
import select
import subprocess
import types
from time import monotonic as _time

from ._stdlib import STDLIB_COMMUNICATE, slots_repr

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

# The first read of a stream asks for a default pipe's worth: a read that
# gets all of it means the pipe was full, and the stream is large.
_SMALL_READ = 64 * 1024
_LARGE = 1024 * 1024  # a stream past this much is large too
_LARGE_READ = 1024 * 1024  # the read size of a large stream
_GROWN_PIPE = 1024 * 1024  # what a large stream's pipe is grown to, at most


class _Semantics:
    """Where CPython versions' ``_communicate`` differ, as they do it.

    A plain class: ``dataclasses`` is not imported on ``import pidproc``."""

    __slots__ = (
        "flush_closed_ok",
        "stdin_while_pending",
        "timeout_at_zero",
        "wait_keeps_timeout",
        "eof_counts",
        "guarded_close",
        "offset_at_end",
    )

    def __init__(
        self,
        flush_closed_ok: bool,  # stdin.flush() on a closed stdin: ignored, not ValueError
        stdin_while_pending: bool,  # stdin fed while saved input remains, not only with input=
        timeout_at_zero: bool,  # no time left (<= 0) is a timeout, not only < 0
        wait_keeps_timeout: bool,  # TimeoutExpired from the final wait names orig_timeout
        eof_counts: bool,  # the EOF read counts as output read (TimeoutExpired.output b"")
        guarded_close: bool,  # errors closing a finished pipe ignored
        offset_at_end: bool,  # input offset saved when the loop ends, not per write
    ) -> None:
        self.flush_closed_ok = flush_closed_ok
        self.stdin_while_pending = stdin_while_pending
        self.timeout_at_zero = timeout_at_zero
        self.wait_keeps_timeout = wait_keeps_timeout
        self.eof_counts = eof_counts
        self.guarded_close = guarded_close
        self.offset_at_end = offset_at_end

    def __repr__(self) -> str:
        return slots_repr(self)


_V310 = _Semantics(False, False, False, False, True, False, False)
# Fingerprints (see fingerprint_lines) of the stdlib's POSIX _communicate, and of
# the module-level helpers it calls, in the CPython versions that were read.
_KNOWN: dict[str, tuple[_Semantics, dict[str, str]]] = {
    # 3.10.13, 3.11.2, 3.11.7, 3.12.1, 3.12.10, 3.13.0
    "843e5e58684856d7": (_V310, {}),
    # 3.13.5: the final wait's TimeoutExpired carries the caller's timeout
    "fd30279253486fa4": (_Semantics(False, False, False, True, True, False, False), {}),
    # 3.14.10: also a closed stdin, memoryviews cast to bytes, input resumed
    # after a timeout, timeout at zero
    "f0ffb5824281b403": (_Semantics(True, True, True, True, True, False, False), {}),
    # 3.15.2: the loop moved to module-level helpers
    "1c47e1623cddd9ba": (
        _Semantics(True, True, True, True, False, True, True),
        {
            "_communicate_io_posix": "612166c7dc9b0655",
            "_flush_stdin": "673c3c1f959653b1",
            "_make_input_view": "a0ffa76ff373a20d",
            "_deadline_remaining": "a5497e451f4f2fe7",
        },
    ),
}


def _fingerprint(func: Any) -> str | None:
    """A hash of the function's source text; None where there is no
    source to read (a builtin, a module without its .py)."""
    code: Any = getattr(func, "__code__", None)
    if getattr(code, "co_filename", None) is None:  # PyPy's builtins have a code without it
        return None
    try:  # at the first communicate(), not at import: linecache imports tokenize
        import linecache
        import zlib  # noqa: F401  (for fingerprint_lines)
    except OSError:  # no fd free to open them: not recognised, as an unreadable source
        return None

    lines = linecache.getlines(code.co_filename, getattr(func, "__globals__", None))
    last = _last_line(code)
    if not lines or last > len(lines):
        return None
    return fingerprint_lines(lines[code.co_firstlineno - 1 : last])


def _last_line(code: types.CodeType) -> int:
    """The function's last line: the highest line any of its code objects
    (nested ones included) has code on."""
    last = code.co_firstlineno
    for _, _, line in code.co_lines():
        if line is not None and line > last:
            last = line
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def fingerprint_lines(lines: list[str]) -> str:
    """A hash of source lines, each stripped, blank and comment-only lines
    left out: only a change of code (or of a comment at a line's end)
    changes it.  Plain text and zlib's two checksums, not tokenize and a
    cryptographic hash: this runs at the first communicate() of every
    process, and tokenizing the stdlib's loop cost more than a spawn."""
    import zlib  # first communicate() only

    kept = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            kept.append(text)
    data = "\n".join(kept).encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _recognise() -> _Semantics | None:
    known = _KNOWN.get(_fingerprint(STDLIB_COMMUNICATE) or "")
    if known is None:
        return None
    semantics, helpers = known
    for name, expected in helpers.items():
        if _fingerprint(getattr(subprocess, name, None)) != expected:
            return None
    return semantics


@functools.cache
def stdlib_semantics() -> _Semantics | None:
    """The running stdlib's semantics, or None: not recognised, so the
    stdlib's own loop runs.  Read at the first use, not at import."""
    return _recognise()


@functools.cache
def _pipe_max() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size", "rb") as f:
            return min(_GROWN_PIPE, int(f.read()))
    except (OSError, ValueError):
        return _GROWN_PIPE


def _grow_pipe(fd: int) -> None:
    """Grow a pipe for a large stream; best effort (over the per-user pipe
    budget an unprivileged grow fails, and the pipe works as it is)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _pipe_max())
    except OSError:
        pass


# What Popen itself puts in stdin/stdout/stderr: anything else (a test's
# mock) gets the stdlib's loop, which only calls their methods.
_STREAM_TYPES = (io.BufferedReader, io.BufferedWriter, io.FileIO, io.TextIOWrapper)
_BYTE_FORMATS = ("B", "b", "c")


def _fast_input(proc: Any, input: Any) -> bool:
    """Input the fast loop takes exactly as the stdlib does: what it can
    write as plain bytes.  Other input (a non-byte or non-contiguous
    memoryview, a str in binary mode) goes to the stdlib, which writes,
    casts or raises as it does."""
    if input is None or not proc.stdin:
        return True
    if proc.text_mode:
        return type(input) is str
    if type(input) in (bytes, bytearray):
        return True
    if type(input) is memoryview:
        return input.ndim == 1 and input.c_contiguous and input.format in _BYTE_FORMATS
    return False


class _Sink:
    """One output stream's bytes so far.  Small: a list of chunks, as the
    stdlib keeps them.  Large: an io.BytesIO (see the module docstring)."""

    __slots__ = ("stream", "chunks", "size", "bio", "seen", "grow")

    def __init__(self, stream: Any, grow: bool) -> None:
        self.stream = stream
        self.chunks: list[bytes] = []
        self.size = 0
        self.bio: io.BytesIO | None = None
        self.seen = False  # read at least once: TimeoutExpired gets bytes, not None
        self.grow = grow

    def value(self) -> bytes:
        if self.bio is not None:
            return self.bio.getvalue()
        return b"".join(self.chunks)

    def seq(self) -> list[bytes]:
        """The stdlib's list of chunks, as its _check_timeout takes it."""
        return [self.value()] if self.seen else []

    def read(self, fd: int) -> bool:
        """One read: poll said there is data or the end.  True at the end."""
        if self.bio is not None:
            data = os.read(fd, _LARGE_READ)
            if not data:
                return True
            self.bio.write(data)
            return False
        data = os.read(fd, _SMALL_READ)
        n = len(data)
        if not n:
            return True
        self.chunks.append(data)
        self.seen = True
        self.size += n
        if n == _SMALL_READ or self.size >= _LARGE:
            self._go_large(fd)
        return False

    # The order of the stores below keeps the sink whole wherever a
    # KeyboardInterrupt lands: value() and read() look at bio first.

    def _go_large(self, fd: int) -> None:
        if self.grow:
            _grow_pipe(fd)
        bio = io.BytesIO()
        for chunk in self.chunks:
            bio.write(chunk)
        self.bio = bio
        self.chunks = []

    def finish(self) -> None:
        """At the end: the bytes as one object, held once."""
        if self.bio is not None:
            self.chunks = [self.bio.getvalue()]
            self.bio = None


class _Exchange:
    """What communicate() has read so far, kept on the Popen between calls
    (a timeout or KeyboardInterrupt leaves the rest to a later call)."""

    __slots__ = ("out", "err")

    def __init__(self, proc: Any) -> None:
        grow = getattr(proc, "pipesize", -1) <= 0
        self.out = _Sink(proc.stdout, grow) if proc.stdout else None
        self.err = _Sink(proc.stderr, grow) if proc.stderr else None


def _timed_out(proc: Any, ex: _Exchange, endtime: float, orig_timeout: Any) -> None:
    """Raise TimeoutExpired with what was read so far, as the stdlib does."""
    proc._check_timeout(
        endtime,
        orig_timeout,
        None if ex.out is None else ex.out.seq(),
        None if ex.err is None else ex.err.seq(),
        skip_check_and_raise=True,
    )
    raise RuntimeError("_check_timeout(..., skip_check_and_raise=True) did not raise")


def _close(stream: Any, sem: _Semantics, guard: type[BaseException]) -> None:
    if sem.guarded_close:
        try:
            stream.close()
        except guard:
            pass
    else:
        stream.close()


def communicate(
    proc: Any, input: Any, endtime: float | None, orig_timeout: float | None
) -> tuple[Any, Any]:
    """``Popen._communicate(input, endtime, orig_timeout)``."""
    sem = stdlib_semantics()
    ex: _Exchange | None = getattr(proc, "_pidproc_exchange", None)
    started = proc._communication_started
    if sem is None or (started and ex is None):
        # Not recognised, or the stdlib's loop ran the first call: it goes on.
        return STDLIB_COMMUNICATE(proc, input, endtime, orig_timeout)
    if not started and (
        not all(
            s is None or type(s) in _STREAM_TYPES for s in (proc.stdin, proc.stdout, proc.stderr)
        )
        or not _fast_input(proc, input)
    ):
        return STDLIB_COMMUNICATE(proc, input, endtime, orig_timeout)

    stdin = proc.stdin
    if stdin and not started:
        # Flush what the caller wrote to stdin before; this may block.
        try:
            stdin.flush()
        except BrokenPipeError:
            pass  # communicate() ignores BrokenPipeError
        except ValueError:
            if not (sem.flush_closed_ok and stdin.closed):
                raise
        if not input:
            try:
                stdin.close()
            except BrokenPipeError:
                pass
    if ex is None:
        ex = _Exchange(proc)
        proc._pidproc_exchange = ex

    proc._save_input(input)
    data = proc._input
    if sem.stdin_while_pending:
        feed = bool(stdin and not stdin.closed and data)
    else:
        feed = bool(stdin and input)

    poller = select.poll()
    sinks: dict[int, _Sink] = {}
    stdin_fd = -1
    view: memoryview | None = None
    offset = 0
    try:
        if feed:
            view = memoryview(data)
            offset = proc._input_offset
            stdin_fd = stdin.fileno()
            os.set_blocking(stdin_fd, False)
            if len(view) - offset > _SMALL_READ and getattr(proc, "pipesize", -1) <= 0:
                _grow_pipe(stdin_fd)
            poller.register(stdin_fd, select.POLLOUT)
        for sink in (ex.out, ex.err):
            if sink is not None and not sink.stream.closed:
                fd = sink.stream.fileno()
                poller.register(fd, select.POLLIN)
                sinks[fd] = sink
        waiting = len(sinks) + (1 if feed else 0)

        while waiting:
            if endtime is None:
                ms = None
            else:
                remaining = endtime - _time()
                if remaining < 0 or (remaining == 0 and sem.timeout_at_zero):
                    _timed_out(proc, ex, endtime, orig_timeout)
                ms = math.ceil(remaining * 1e3) if remaining > 0 else 0
            ready = poller.poll(ms)
            if endtime is not None and _time() > endtime:
                _timed_out(proc, ex, endtime, orig_timeout)

            for fd, _ in ready:
                if fd == stdin_fd:
                    assert view is not None
                    try:
                        offset += os.write(fd, view[offset:])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        done = True
                    else:
                        if not sem.offset_at_end:
                            proc._input_offset = offset
                        done = offset >= len(view)
                    if done:
                        poller.unregister(fd)
                        waiting -= 1
                        stdin_fd = -1
                        _close(stdin, sem, BrokenPipeError)
                else:
                    sink = sinks[fd]
                    if sink.read(fd):
                        poller.unregister(fd)
                        waiting -= 1
                        if sem.eof_counts:
                            sink.seen = True
                        sink.finish()
                        _close(sink.stream, sem, OSError)
        if feed and sem.offset_at_end:
            proc._input_offset = offset
    except subprocess.TimeoutExpired:
        # Where the offset is saved at the end, a timeout saves it too; any
        # other exception leaves the one the call started with.
        if feed and sem.offset_at_end:
            proc._input_offset = offset
        raise
    finally:
        # A stdin still open goes back to blocking, for a later call or for
        # the caller's own writes.
        if feed and not stdin.closed:
            os.set_blocking(stdin.fileno(), True)

    try:
        proc.wait(timeout=None if endtime is None else endtime - _time())
    except subprocess.TimeoutExpired as exc:
        if sem.wait_keeps_timeout and orig_timeout is not None:  # (always given here)
            exc.timeout = orig_timeout
        raise

    stdout = None if ex.out is None else ex.out.value()
    stderr = None if ex.err is None else ex.err.value()
    if proc.text_mode:
        if stdout is not None:
            stdout = proc._translate_newlines(stdout, proc.stdout.encoding, proc.stdout.errors)
        if stderr is not None:
            stderr = proc._translate_newlines(stderr, proc.stderr.encoding, proc.stderr.errors)
    return (stdout, stderr)
