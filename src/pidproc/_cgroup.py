"""A cgroup2 directory per ``kill_tree`` child: where, and what it can do.

Where.  The cgroup2 hierarchy is found through ``/proc/self/mountinfo``
(it may be mounted at ``/sys/fs/cgroup``, ``/sys/fs/cgroup/unified`` or
anywhere else) and this process's own cgroup through ``/proc/self/cgroup``.
pidproc creates ``pidproc-<pid>`` below its own cgroup and one numbered
cgroup per child inside it.  That needs write access to our own cgroup
directory: root, or a delegated subtree (systemd's ``Delegate=yes``, a user
service manager's slice).  Elsewhere :func:`place` answers None with the
reason, and kill_tree uses a process group instead (``_lifecycle``).

What.  The child enters its cgroup at birth (``CLONE_INTO_CGROUP``, Linux
5.7), so every descendant, even one that called ``setsid()`` or daemonised,
is in it.  :meth:`Tree.kill` writes ``cgroup.kill`` (5.14: the kernel kills
every member, forks in progress included); other signals go to each member
in turn (``cgroup.procs``), each through a pidfd whose process is checked to
still be a member, read again until a pass finds no one new.

Lifetime.  A cgroup is given back once its child has been reaped and it is
empty (``cgroup.events``: ``populated 0``): kept in a small pool for the next
child (a ``mkdir`` + ``rmdir`` costs ~50 us, a tenth of a spawn), or removed
beyond it.  A cgroup keeps its directory fd (for ``clone3``) and its
``cgroup.events`` fd (read again with ``pread``) open, in the pool too: an
``open`` of a cgroup file costs 5 to 15 us, twice per child otherwise.
Those fds obey the rule of the pidfds (``_fdbudget``): one that lands in
the top quarter of the fd range is closed after the spawn, and the path
used instead.  A forked child closes the pool's fds it inherited.

Never pooled once ``cgroup.kill`` was written to it: measured on Linux 6.18,
a child born later into such a cgroup (``CLONE_INTO_CGROUP``) is killed at
once (one moved in through ``cgroup.procs`` is not), so a killed cgroup is
removed and the next child gets a new one.  Nor while a signal to its
members is on its way (``Tree.kill``, ``Tree.signal``): a reap in another
thread may empty it meanwhile, and the signal must not reach the tree of the
next child to take it.  One whose descendants outlive the
child stays, and can still be signalled through the Popen, until it is
empty; it is removed when its Popen is collected, at a later kill_tree
spawn, or at the latest at interpreter exit.  At exit every cgroup of ours
that no process is in goes, a held Popen's too (not one a spawn in another
thread is on its way into), and one we killed is given
up to a second to empty (a killed process leaves its cgroup only after
it has let its memory go); one whose processes live on stays, and so does
``pidproc-<pid>`` around it.  An atexit handler that runs after that
cleanup may still spawn: ``pidproc-<pid>`` is made again, and such a
cgroup is removed at its child's reap, never pooled.  Directories left by a process
that was killed are removed the next time a process in the same cgroup
creates its own (``pidproc-<pid>`` of a pid that no longer exists, when
empty).  A forked child never removes its parent's cgroups.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import select
import signal
import threading
import time

from . import _fdbudget, _posix

_MOUNTINFO = "/proc/self/mountinfo"
_SELF_CGROUP = "/proc/self/cgroup"
_POOL_MAX = 8
# A tree whose members keep forking: stop after this many passes over
# cgroup.procs (each pass signals everyone it finds).
_MAX_PASSES = 64
# At exit: how long the trees we killed may take to empty, all together
# (a process dying in uninterruptible sleep can take longer; its cgroup
# then stays, as one whose tree outlives us does).
_EXIT_WAIT_S = 1.0
# Knob: False makes Tree.kill signal each member instead of writing
# cgroup.kill, as on kernels before 5.14 (tests run that path here).
_USE_CGROUP_KILL = True


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def own_cgroup() -> tuple[str, str] | None:
    """(directory of this process's cgroup2, its path in the hierarchy), or
    None where there is no cgroup2 hierarchy or it is not mounted here."""
    try:
        with open(_SELF_CGROUP) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None or not path.startswith("/"):
        return None  # cgroup v1 only, or an unreachable cgroup ("(unreachable)")
    try:
        with open(_MOUNTINFO) as f:
            mounts = f.read().splitlines()
    except OSError:
        return None
    for line in mounts:
        left, sep, right = line.partition(" - ")
        if not sep or right.split(" ", 1)[0] != "cgroup2":
            continue
        fields = left.split(" ")
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        if root == "/":
            return os.path.join(mountpoint, path.lstrip("/")).rstrip("/") or "/", path
        if path == root or path.startswith(root.rstrip("/") + "/"):
            rest = path[len(root) :].lstrip("/")
            return os.path.join(mountpoint, rest).rstrip("/"), path
    return None


class _Place:
    """``pidproc-<pid>`` below our own cgroup, the pool, the leftovers."""

    def __init__(self, directory: str, hierarchy_path: str, pid: int) -> None:
        self.pid = pid
        self.base = os.path.join(directory, f"pidproc-{pid}")
        self.hierarchy_base = f"{hierarchy_path.rstrip('/')}/pidproc-{pid}"
        self.numbers = itertools.count()
        # (path, its directory's fd, its cgroup.events fd), -1 for an fd not kept.
        self.pool: list[tuple[str, int, int]] = []
        self.leftovers: set[str] = set()
        # Killed, not yet removed: at exit, worth waiting for (a killed
        # process leaves its cgroup only after it has let its memory go).
        self.dying: set[str] = set()
        # Given to a spawn that has not returned yet: empty, but not to be
        # removed at exit (a daemon thread may be spawning into it).
        self.unborn: set[str] = set()
        # Set by the cleanup at exit: an atexit handler that runs after it
        # may still spawn; its cgroups are removed at the reap, not pooled.
        self.closed = False
        self.lock = threading.Lock()

    def forget(self, path: str) -> None:
        """A cgroup emptied for good (given back, removed or gone): no longer
        a leftover, dying or unborn.  With the lock held."""
        self.leftovers.discard(path)
        self.dying.discard(path)
        self.unborn.discard(path)


_place: _Place | None = None
_place_lock = threading.Lock()
_why_not: str | None = None
# Our pid, kept by the fork hook at the end: read at every kill_tree spawn
# and reap, where a getpid() syscall each would cost more than the check.
_pid = os.getpid()


def place() -> _Place | None:
    """Where this process's per-child cgroups go, created on first use; None
    (see :func:`why_not`) where no writable cgroup2 directory exists."""
    global _place, _why_not
    current = _place
    if current is not None and current.pid == _pid:
        return current
    with _place_lock:
        pid = _pid
        if _place is not None and _place.pid == pid:
            return _place
        _place = None  # a forked child: its parent's place is not its own
        found = own_cgroup()
        if found is None:
            _why_not = "no cgroup2 hierarchy mounted here (see /proc/self/mountinfo)"
            return None
        directory, hierarchy_path = found
        _sweep_dead(directory)
        candidate = _Place(directory, hierarchy_path, pid)
        try:
            os.mkdir(candidate.base, 0o755)
        except FileExistsError:
            pass  # ours from an earlier process with our pid, now dead: reuse it
        except OSError as e:
            _why_not = f"cannot create a cgroup in {directory}: {os.strerror(e.errno or 0)}"
            return None
        _place = candidate
        _why_not = None
        return _place


def why_not() -> str | None:
    return _why_not


def _sweep_dead(directory: str) -> None:
    """Remove the empty ``pidproc-<pid>`` trees of processes that are gone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith("pidproc-") or not name[8:].isdigit():
            continue
        pid = int(name[8:])
        if pid == _pid or _alive(pid):
            continue
        base = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            for child in os.listdir(base):
                if child.isdigit():
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(base, child))
            os.rmdir(base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: someone's, alive
    return True


_GONE, _EMPTY, _POPULATED = "gone", "empty", "populated"


def _state(path: str) -> str:
    """cgroup.events says whether any live process is in the cgroup (plain
    os calls, no file object)."""
    try:
        fd = os.open(path + "/cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return _GONE
    try:
        events = os.read(fd, 256)
    finally:
        os.close(fd)
    return _EMPTY if b"populated 0" in events else _POPULATED


def _state_of_fd(fd: int) -> str:
    """As :func:`_state`, through a kept ``cgroup.events`` fd: each read
    from offset 0 is made afresh; one of a removed cgroup fails (ENODEV)."""
    try:
        events = os.pread(fd, 256, 0)
    except OSError:
        return _GONE
    return _EMPTY if b"populated 0" in events else _POPULATED


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


class Tree:
    """One child's cgroup.  Safe to signal from any thread."""

    __slots__ = (
        "path", "_place", "_owner", "_released", "_killed", "_signalling", "_dir_fd",
        "_events_fd", "_fresh_fds", "__weakref__",
    )  # fmt: skip

    def __init__(self, where: _Place, path: str, dir_fd: int = -1, events_fd: int = -1) -> None:
        self._place = where
        self.path = path
        self._owner = where.pid
        self._released = False
        self._killed = False  # being killed or killed: never reused (module docstring)
        # Threads signalling the members now: the cgroup is not pooled while
        # any is, or it could reach another child's tree (release).
        self._signalling = 0
        self._dir_fd = dir_fd
        self._events_fd = events_fd
        self._fresh_fds = False  # opened for this child: not yet held to the fd budget

    @property
    def hierarchy_path(self) -> str:
        """The cgroup's path as /proc/<pid>/cgroup names it."""
        return f"{self._place.hierarchy_base}/{os.path.basename(self.path)}"

    def dir_fd(self) -> int:
        """The directory's fd, for clone3's cgroup field (the Tree's: the
        caller does not close it)."""
        if self._dir_fd < 0:
            self._dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._fresh_fds = True
        return self._dir_fd

    def _open_fds(self) -> None:
        """A new cgroup's fds: the directory (raises as ``dir_fd``) and
        ``cgroup.events`` (without it, the path is read at the reap)."""
        self.dir_fd()
        try:
            self._events_fd = os.open(self.path + "/cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass

    def born(self) -> None:
        """The spawn returned, its child is in the cgroup: from now on the
        cleanup at exit judges it by its members.  Fds opened for this child
        are held to the budget now (``trim``)."""
        with self._place.lock:
            self._place.unborn.discard(self.path)
        if self._fresh_fds:
            self.trim()

    def trim(self) -> None:
        """After the spawn: fds opened for this child that landed in the top
        quarter of the fd range are given up (``_fdbudget``), as a pidfd
        there would be; the paths serve instead.  A pooled cgroup's fds
        were held to the budget when they were opened."""
        if not self._fresh_fds:
            return
        self._fresh_fds = False
        if _fdbudget.fits(max(self._dir_fd, self._events_fd)):
            return
        for fd in (self._dir_fd, self._events_fd):
            if fd >= 0 and not _fdbudget.fits(fd):
                if fd == self._dir_fd:
                    self._dir_fd = -1
                else:
                    self._events_fd = -1
                _close(fd)

    def _close_fds(self) -> None:
        fds = self._dir_fd, self._events_fd
        self._dir_fd = self._events_fd = -1
        _close(*fds)

    # ---- signals ---------------------------------------------------------

    # A reap in another thread may give the cgroup back (release) while a
    # signal is on its way: from then on, a spawn may take it from the pool
    # for another child.  So kill() and signal() check _released and mark
    # the cgroup in one step under the place's lock, and release() pools
    # no cgroup so marked; it removes it, and the late signal finds nothing.

    def kill(self) -> None:
        with self._place.lock:
            if self._released:
                return  # emptied and given back: another child's now, or gone
            self._killed = True
            self._place.dying.add(self.path)
        if _USE_CGROUP_KILL:
            try:
                with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                    f.write("1")
                return
            except FileNotFoundError:
                if not os.path.isdir(self.path):
                    return  # removed: nothing left to kill
                # No cgroup.kill (before 5.14): one member at a time.
        self.signal(signal.SIGKILL, skip_pid=None)

    def signal(self, sig: int, skip_pid: int | None) -> None:
        """Send sig to every member but skip_pid (the child itself, while
        unreaped: Popen signals it through its own pidfd)."""
        lock = self._place.lock
        with lock:
            if self._released:
                return
            self._signalling += 1
        try:
            done: set[int] = set()
            for _ in range(_MAX_PASSES):
                fresh = [pid for pid in self._members() if pid not in done and pid != skip_pid]
                if not fresh:
                    return
                for pid in fresh:
                    done.add(pid)
                    self._signal_member(pid, sig)
        finally:
            with lock:
                self._signalling -= 1

    def _members(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(line) for line in f.read().split()]
        except FileNotFoundError:
            return []

    def _signal_member(self, pid: int, sig: int) -> None:
        """Through a pidfd, and only if the process it names is in this
        cgroup: the pidfd is opened first, the membership read next, and the
        signal sent through the pidfd last, which fails if its process was
        reaped meanwhile; so a member that exited and whose PID went to
        someone outside the tree is never signalled."""
        try:
            fd = _posix.pidfd_open(pid)
        except OSError:
            return  # gone, or no pidfd: it exited between the listing and here
        try:
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    here = any(
                        line == "0::" + self.hierarchy_path for line in f.read().splitlines()
                    )
            except OSError:
                return
            if here:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    _posix.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)

    # ---- the end ---------------------------------------------------------

    def release(self) -> bool:
        """Give the cgroup back if it is empty (after the child's reap).
        True once given back or not ours; False while members remain."""
        if self._released:
            return True
        where = self._place
        if self._owner != _pid:
            self._released = True  # a forked child's copy: the parent's to remove
            self._close_fds()
            return True
        state = _state_of_fd(self._events_fd) if self._events_fd >= 0 else _state(self.path)
        if state == _POPULATED:
            with where.lock:
                where.unborn.discard(self.path)
                where.leftovers.add(self.path)
            return False
        self._released = True
        if state == _GONE:
            self._close_fds()
            with where.lock:
                where.forget(self.path)
            return True
        with where.lock:
            where.forget(self.path)
            if (
                len(where.pool) < _POOL_MAX
                and where is _place
                and not where.closed
                and not self._killed
                and not self._signalling
            ):
                if self._fresh_fds:
                    self.trim()  # fds never held to the budget (the probe's): now
                where.pool.append((self.path, self._dir_fd, self._events_fd))
                self._dir_fd = self._events_fd = -1  # the pool's now
                return True
        self._close_fds()
        with contextlib.suppress(OSError):
            os.rmdir(self.path)
        if where.closed:
            with contextlib.suppress(OSError):
                os.rmdir(where.base)  # the cleanup at exit has run: the last one out
        return True

    def __del__(self) -> None:
        try:
            if not self._released:
                self.release()
            if self._dir_fd >= 0 or self._events_fd >= 0:
                self._close_fds()  # a leftover's: its path is enough from now on
        except Exception:  # from the collector, possibly at exit: never raise there
            pass


def new_tree() -> Tree:
    """An empty cgroup for one child (from the pool, or a new one); raises
    OSError where :func:`place` cannot make one."""
    where = _place
    if where is None or where.pid != _pid:
        where = place()
        if where is None:
            raise OSError(errno.EOPNOTSUPP, f"kill_tree cannot use a cgroup here: {_why_not}")
    with where.lock:
        if where.leftovers:
            _remove_empty_leftovers(where)
        if where.pool:
            # Found empty when given back; only a privileged process moving
            # one in could have changed that, and nothing of ours would.
            path, dir_fd, events_fd = where.pool.pop()
            where.unborn.add(path)
            return Tree(where, path, dir_fd, events_fd)
        path = os.path.join(where.base, str(next(where.numbers)))
        where.unborn.add(path)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass  # left by an earlier process with our pid
    except FileNotFoundError:
        # pidproc-<pid> removed by the cleanup at exit, and an atexit
        # handler that runs after it spawns: made again.
        with contextlib.suppress(FileExistsError):
            os.mkdir(where.base, 0o755)
        os.mkdir(path, 0o755)
    tree = Tree(where, path)
    try:
        tree._open_fds()
    except BaseException:
        tree.release()
        raise
    return tree


def _remove_empty_leftovers(where: _Place, most: int = 4) -> None:
    """A few cgroups whose trees outlived their child: remove the emptied
    ones (a Tree still held treats a removed cgroup as empty and released)."""
    for path in list(where.leftovers)[:most]:
        if _state(path) != _POPULATED:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            where.forget(path)


def _cleanup_at_exit() -> None:
    """Remove every cgroup of ours that no process is in, and then
    ``pidproc-<pid>``: the pool's, the leftovers, and also those of Popens
    still held (a child exited but not waited for: a zombie is no member).
    A Tree released later finds its cgroup gone.  Trees we killed get a
    moment to empty; one whose processes live on stays."""
    where = _place
    if where is None or where.pid != _pid:
        return
    with where.lock:
        where.closed = True
        fds = [(dir_fd, events_fd) for _, dir_fd, events_fd in where.pool]
        where.pool.clear()
        where.leftovers.clear()
        dying = set(where.dying)
        unborn = set(where.unborn)
    for pair in fds:
        _close(*pair)
    try:
        with os.scandir(where.base) as entries:
            paths = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    deadline = time.monotonic() + _EXIT_WAIT_S
    for path in paths:
        if path in unborn:
            continue  # a spawn into it is on its way (a daemon thread)
        if path in dying:
            _wait_empty(path, deadline)
        with contextlib.suppress(OSError):
            os.rmdir(path)  # EBUSY while a process is in it: it stays
    with contextlib.suppress(OSError):
        os.rmdir(where.base)  # fails while a cgroup in it still has members


def _wait_empty(path: str, deadline: float) -> bool:
    """Until ``populated 0`` or the deadline: cgroup.events is read, then
    polled, which wakes on its next change (no sleep loop)."""
    try:
        fd = os.open(path + "/cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True  # removed
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        while True:
            if _state_of_fd(fd) != _POPULATED:
                return True  # empty, or removed meanwhile
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(max(1, int(left * 1000)))
    finally:
        os.close(fd)


def _after_fork_in_child() -> None:
    # A forked child has a pid of its own, and gets a place of its own
    # (place()); the fds its parent's pool kept are of no use to it.  No
    # lock: one thread here.  The lock is new: another thread of the parent
    # may have held it at the fork, and the Trees the child inherited still
    # take it to signal.
    global _pid
    _pid = os.getpid()
    where = _place
    if where is not None:
        where.lock = threading.Lock()
        for _, dir_fd, events_fd in where.pool:
            _close(dir_fd, events_fd)
        where.pool.clear()


atexit.register(_cleanup_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
