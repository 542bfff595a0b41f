"""Popen's lifecycle options: ``die_with_parent``, ``kill_tree``, ``no_new_privs``.

One :class:`Lifecycle` per Popen that asked for any of them.  It decides,
once the spawn's arguments are known (:meth:`Lifecycle.prepare`), which
mechanism honours each option on this kernel, with these privileges and
the spawn paths usable here; tells ``_spawn.state.chain`` what the path must be
able to express (``needs``); fills the C request (:meth:`Lifecycle.apply`);
and afterwards signals the tree and tidies up at the reap.

The mechanisms, best first (each attribute of the Popen names the one used):

``die_with_parent``
    ``"autokill"``: clone3 with ``CLONE_PIDFD_AUTOKILL`` (Linux 7.1): the
    kernel SIGKILLs the child when the last reference to its clone pidfd is
    closed, which the death of this process does, however it dies.  The
    kernel also wants ``CLONE_AUTOREAP`` (the child is reaped by the kernel,
    its status read with PIDFD_INFO_EXIT) and, without CAP_SYS_ADMIN,
    ``CLONE_NNP``.  pidproc never adds no_new_privs on its own: without
    CAP_SYS_ADMIN and without ``no_new_privs=True``, the next mechanism.
    ``"pdeathsig"``: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the C child,
    cloned by the keeper thread (``_lifecycle.c``), which never exits, so the
    end of the Python thread that spawned does not count; the child checks
    ``getppid()`` for a parent that died during the spawn.
``kill_tree``
    ``"cgroup"``: a cgroup of its own entered at birth (``_cgroup``), where a
    cgroup2 directory is writable.  ``"process_group"``: a new process group,
    signalled through the pidfd with ``PIDFD_SIGNAL_PROCESS_GROUP`` (6.9+),
    before 6.9 with ``killpg`` only while the child is certainly unreaped.
``no_new_privs``
    ``"clone_nnp"``: clone3 with ``CLONE_NNP`` (7.1); ``"prctl"``:
    ``prctl(PR_SET_NO_NEW_PRIVS)`` in the C child (or in ``preexec_fn``'s
    forked child, which forks anyway).

What cannot be honoured raises: ``OSError`` naming the kernel or privilege
missing, ``BackendUnavailable`` for a forced path that cannot, ``ValueError``
for arguments that contradict an option.  Never a weaker mechanism silently.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _cgroup, _fdbudget, _posix, _stdlib
from ._errors import BackendUnavailable
from ._native import MISSING, lib
from ._pidfd_sys import still_unreaped
from ._spawn import state as _paths
from ._spawn.convert import PYPY, pypy_cast
from ._spawn.paths import (
    C_CHILD_SETUP,
    CLONE3_FLAGS,
    HELD_BY_PIDFD,
    NEW_PROCESS_GROUP,
    PREEXEC_FN,
    SpawnPath,
)
from ._spawn.request import SpawnRequest, probe_spec
from ._stdlib import ChildArgs

if TYPE_CHECKING:
    from ._pidfd_handle import _PidfdHandle
    from ._popen import Popen

CLONE_AUTOREAP = 1 << 34
CLONE_NNP = 1 << 35
CLONE_PIDFD_AUTOKILL = 1 << 36
PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2
CAP_SYS_ADMIN = 21

# Knobs, as the paths' _USE_<PATH>: False leaves a mechanism out, so the
# next one can be tested here (a kernel before 6.9, a machine without a
# writable cgroup2).
_USE_CGROUP = True
_USE_PIDFD_GROUP_SIGNAL = True

# ---- facts about this kernel, probed once ------------------------------------

_facts: dict[str, bool] = {}
_facts_lock = threading.Lock()


def _probe_clone3_flags() -> bool | None:
    """Does clone3 take CLONE_AUTOREAP | CLONE_NNP | CLONE_PIDFD_AUTOKILL (7.1)?
    None: a transient failure says nothing."""
    request = SpawnRequest(probe_spec(), probe_only=True)
    r = request.struct
    r.clone3_flags = CLONE_AUTOREAP | CLONE_NNP | CLONE_PIDFD_AUTOKILL
    rc = lib.pidproc_spawn_clone3(r)
    if rc in (errno.EINVAL, errno.ENOSYS, errno.EPERM, -errno.ENOSYS, -errno.EPERM):
        return False
    if rc != 0:
        return None
    if r.pidfd >= 0:
        _wait_readable(r.pidfd)  # autoreaped: gone once readable
        os.close(r.pidfd)
    return True


def _probe_group_signal() -> bool:
    """pidfd_send_signal's PIDFD_SIGNAL_PROCESS_GROUP (6.9): signal 0 (no
    signal, only the checks) to our own process group.  Older kernels refuse
    the flag with EINVAL."""
    fd = _posix.pidfd_open(os.getpid())
    try:
        _posix.pidfd_send_signal(fd, 0, None, PIDFD_SIGNAL_PROCESS_GROUP)
    except OSError as e:
        return e.errno not in (errno.EINVAL, errno.ENOSYS)
    finally:
        os.close(fd)
    return True


def _probe_cgroup_birth() -> tuple[bool, str]:
    """Can a child be born into a cgroup of ours (CLONE_INTO_CGROUP, 5.7)?"""
    try:
        tree = _cgroup.new_tree()
    except OSError as e:
        return False, str(e.strerror)
    request = SpawnRequest(probe_spec(), probe_only=True)
    r = request.struct
    try:
        r.into_cgroup, r.cgroup_fd = 1, tree.dir_fd()
        rc = lib.pidproc_spawn_clone3(r)
        if rc != 0:
            name = errno.errorcode.get(abs(rc), str(rc))
            return False, f"clone3(CLONE_INTO_CGROUP) answered {name} (Linux 5.7+)"
        if r.pidfd >= 0:
            try:
                _posix.waitid(_posix.P_PIDFD, r.pidfd, _posix.WEXITED)
            except ChildProcessError:
                pass  # SIGCHLD ignored: the kernel reaped it, which says nothing here
            finally:
                os.close(r.pidfd)
        return True, ""
    finally:
        tree.release()


def fact(name: str) -> bool:
    """A cached fact: "clone3_flags" (7.1), "group_signal" (6.9), "cgroup_birth"."""
    known = _facts.get(name)
    if known is not None:
        return known
    with _facts_lock:
        if name in _facts:
            return _facts[name]
        if name == "clone3_flags":
            answer = _probe_clone3_flags()
            if answer is None:
                return False  # transient: ask again next time
        elif name == "group_signal":
            answer = _probe_group_signal()
        elif name == "cgroup_birth":
            answer, _cgroup_reason[0] = _probe_cgroup_birth()
        else:
            raise KeyError(name)
        _facts[name] = answer
        return answer


_cgroup_reason = [""]


def _wait_readable(fd: int, timeout_ms: int | None = None) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout_ms))


def _why_no_c_child() -> tuple[int, str]:
    """The errno and words for "pidproc's own child cannot be used here"."""
    if _paths.pidfd_wait_state() is _paths.State.UNUSABLE:
        return errno.ENOSYS, "needs Linux 5.4+ (pidfds, waitid(P_PIDFD))"
    reasons = []
    code = errno.ENOSYS
    for name in ("clone3", "clone"):
        why = _paths.reason(name)
        if why:
            reasons.append(f"{name}: {why}")
            if _paths.unusable_because(name) == errno.EPERM:
                code = errno.EPERM  # a sandbox's answer, not the kernel's lack
        elif not _paths.may_take(name):
            reasons.append(f"{name}: not used here ({_forced_words()})")
    return code, "needs pidproc's own child (the clone3 or clone path): " + "; ".join(reasons)


def _forced_words() -> str:
    force = _paths.forced()
    return f"the {force!r} path is forced" if force else "disabled"


def _unavailable(option: str, code: int, words: str) -> Exception:
    force = _paths.forced()
    if force is not None:
        return BackendUnavailable(
            f"spawn path {force!r} was forced, and neither it nor a path after it "
            f"can honour {option}=True: {words}"
        )
    return OSError(code, f"{option}=True {words}")


# ---- the choices memoised by Lifecycle.prepare --------------------------------

# key -> (tree, nnp, flags, needs, new process group)
_choices: dict[tuple[object, ...], tuple[str | None, str | None, int, frozenset[str], bool]] = {}
_CHOICES_MAX = 64


# ---- fork: autokill pidfds stay with the process that spawned ---------------

_autokill_handles: weakref.WeakSet[_PidfdHandle] = weakref.WeakSet()


def _close_autokill_fds_in_child() -> None:
    # A forked child holds the same open file: it would keep the
    # die_with_parent children of its parent alive after the parent died.
    # They are not its children (it cannot wait for them); close them.
    for handle in list(_autokill_handles):
        handle._close_now()
    _autokill_handles.clear()


os.register_at_fork(after_in_child=_close_autokill_fds_in_child)


# ---- the object ---------------------------------------------------------------


class Lifecycle:
    """The options of one Popen and, once prepared, how each is honoured."""

    __slots__ = (
        "want_die",
        "want_tree",
        "want_nnp",
        "die",
        "tree",
        "nnp",
        "needs",
        "flags",
        "cgroup",
        "_new_group",
        "_reaped",
        "autoreaped",
    )

    def __init__(self, die_with_parent: bool, kill_tree: bool, no_new_privs: bool) -> None:
        self.want_die = bool(die_with_parent)
        self.want_tree = bool(kill_tree)
        self.want_nnp = bool(no_new_privs)
        self.die: str | None = None
        self.tree: str | None = None
        self.nnp: str | None = None
        self.needs: frozenset[str] = frozenset()
        self.flags = 0
        self.cgroup: _cgroup.Tree | None = None
        self._new_group = False  # process_group=0, set where the spawn happens
        self._reaped = False
        # The kernel reaps the child (die == "autokill"): read at each wait,
        # so a plain attribute rather than a property.
        self.autoreaped = False

    @property
    def may_drop_pidfd(self) -> bool:
        """May the pidfd be closed while the child runs, to keep the top of
        the fd range free (``_fdbudget``)?  Not where closing it kills the
        child (autokill) nor where the group is signalled through it."""
        return self.die != "autokill" and self.tree != "process_group"

    # ---- before the spawn --------------------------------------------------

    def prepare(self, a: ChildArgs, force: str | None) -> frozenset[str]:
        """Choose the mechanisms, set the preexec_fn the spawn is to use in
        ``a``, and return what the spawn path must be able to express.
        ``force`` is the forced path (``_spawn.state.forced()``).  Raises
        what cannot be honoured (module docstring).

        The choice is memoised (``_choices``) where it depends on nothing
        but the key: not with die_with_parent (autokill depends on the
        capabilities and the fd budget at each spawn), nor with a
        preexec_fn (wrapped per call), nor before the kernel's answer
        about the 7.1 flags is known for no_new_privs."""
        key = None
        if (
            not self.want_die
            and a.preexec_fn is None
            and (not self.want_nnp or "clone3_flags" in _facts)
        ):
            key = (
                _paths.choice_key(force), self.want_tree, self.want_nnp,
                a.process_group, a.start_new_session, _USE_CGROUP,
            )  # fmt: skip
            known = _choices.get(key)
            if known is not None:
                self.tree, self.nnp, self.flags, self.needs, self._new_group = known
                return self.needs
        needs = self._choose(a)
        if key is not None:
            if len(_choices) >= _CHOICES_MAX:
                _choices.clear()  # many process_group= values: start again
            _choices[key] = (self.tree, self.nnp, self.flags, needs, self._new_group)
        return needs

    def _choose(self, a: ChildArgs) -> frozenset[str]:
        preexec_fn, process_group = a.preexec_fn, a.process_group
        if PYPY:  # its fork_exec casts it to a C int: judge the group the child gets
            process_group = pypy_cast(process_group)
        needs: set[str] = set()
        wrap_pgid = wrap_nnp = False
        clone3_taken = _paths.may_take("clone3")
        c_child = clone3_taken or _paths.may_take("clone")
        # Only clone3 takes the 7.1 flags and CLONE_INTO_CGROUP.
        clone3 = clone3_taken and lib.pidproc_clone3_compiled()

        if self.want_die:
            if preexec_fn is not None:
                raise ValueError(
                    "die_with_parent=True cannot be combined with preexec_fn: the child "
                    "would be forked by the calling thread and die when that thread ends"
                )
            if (
                clone3
                and fact("clone3_flags")
                and (self.want_nnp or lib.pidproc_has_capability(CAP_SYS_ADMIN) == 1)
                and self._pidfd_would_fit()
            ):
                self.die = "autokill"
                self.autoreaped = True
                self.flags |= CLONE_PIDFD_AUTOKILL | CLONE_AUTOREAP
                needs.add(CLONE3_FLAGS)
            elif c_child:
                self.die = "pdeathsig"
                needs.add(C_CHILD_SETUP)
            else:
                raise _unavailable("die_with_parent", *_why_no_c_child())

        if self.want_nnp:
            if preexec_fn is not None:
                self.nnp, wrap_nnp = "prctl", True
            elif clone3 and fact("clone3_flags"):
                self.nnp = "clone_nnp"
                self.flags |= CLONE_NNP
                needs.add(CLONE3_FLAGS)
            elif c_child:
                self.nnp = "prctl"
                needs.add(C_CHILD_SETUP)
            else:
                raise _unavailable("no_new_privs", *_why_no_c_child())

        if self.want_tree:
            if preexec_fn is None and clone3 and _USE_CGROUP and fact("cgroup_birth"):
                self.tree = "cgroup"
                needs.add(CLONE3_FLAGS)
            else:
                self.tree = "process_group"
                if process_group not in (-1, 0):
                    raise ValueError(
                        f"kill_tree=True puts the child in a process group of its own "
                        f"here (no cgroup: {self.cgroup_reason()}); process_group="
                        f"{a.process_group} would put it in another"
                    )
                needs.add(HELD_BY_PIDFD)
                if not a.start_new_session and process_group != 0:
                    if preexec_fn is not None and not _stdlib.TAKES_PROCESS_GROUP:
                        wrap_pgid = True  # 3.10's fork_exec has no process_group
                    else:
                        # process_group=0: in the C request (apply), or for
                        # the stdlib's spawn (before_stdlib_spawn); left out
                        # of ``a`` so that the common request stays quick.
                        self._new_group = True
                        needs.add(NEW_PROCESS_GROUP)
                elif process_group == 0:
                    needs.add(NEW_PROCESS_GROUP)

        self.needs = frozenset(needs)
        if wrap_pgid or wrap_nnp:
            preexec_fn = _wrapped(preexec_fn, wrap_pgid, wrap_nnp)
        a.preexec_fn = preexec_fn
        if not _paths.chain(self.needs | ({PREEXEC_FN} if preexec_fn is not None else set())):
            option = "die_with_parent" if self.want_die else "no_new_privs"
            if (
                self.want_tree
                and HELD_BY_PIDFD in self.needs
                and not (C_CHILD_SETUP in self.needs or CLONE3_FLAGS in self.needs)
            ):
                raise _unavailable(
                    "kill_tree", errno.ENOSYS, "needs a child held by a pidfd (Linux 5.4+)"
                )
            raise _unavailable(option, *_why_no_c_child())
        return self.needs

    def _pidfd_would_fit(self) -> bool:
        """AUTOKILL ties the child to its pidfd, so that pidfd can never be
        given up to keep the top of the fd range free (``_fdbudget``): near
        the limit, the parent-death signal holds the child instead."""
        fd = lib.pidproc_lowest_free_fd()
        return fd >= 0 and _fdbudget.fits(fd)

    @staticmethod
    def cgroup_reason() -> str:
        if not _USE_CGROUP:
            return "disabled"
        return _cgroup.why_not() or _cgroup_reason[0] or "clone3 is not used here"

    def apply(self, request: SpawnRequest) -> None:
        """Fill the C request (a pidproc child: the clone3 or clone path)."""
        r = request.struct
        if self.die == "pdeathsig":
            r.pdeathsig = signal.SIGKILL
            r.parent_pid = os.getpid()
            r.via_keeper = 1
        if self.nnp == "prctl":
            r.no_new_privs = 1
        r.clone3_flags = self.flags
        if self._new_group:
            r.pgid = 0
        if self.tree == "cgroup":
            if self.cgroup is None:
                self.cgroup = _cgroup.new_tree()
            r.into_cgroup = 1
            r.cgroup_fd = self.cgroup.dir_fd()

    def before_stdlib_spawn(self, paths: list[SpawnPath], a: ChildArgs) -> None:
        """The stdlib's own spawn is about to run: give it the new process
        group; raise where it cannot honour the options, when every path of
        the chain is one of pidproc's and each declined (a transient failure
        raised already, ``dispatch.spawn_c``)."""
        if paths and paths[-1].c_function is None:
            if self._new_group:
                a.process_group = 0
            return
        raise _unavailable(
            "die_with_parent"
            if self.want_die
            else "kill_tree"
            if self.want_tree
            else "no_new_privs",
            *_why_no_c_child(),
        )

    # ---- after the spawn ---------------------------------------------------

    def spawned(self, popen: Popen) -> None:
        if self.cgroup is not None:
            self.cgroup.born()
        popen.die_with_parent = self.die
        popen.kill_tree = self.tree
        popen.no_new_privs = self.nnp
        handle = popen._pidfd_handle
        if handle is not None:
            handle.life = self
            if self.die == "autokill":
                _autokill_handles.add(handle)

    def abandon(self) -> None:
        """The spawn failed: nothing runs in the cgroup, give it back."""
        if self.cgroup is not None:
            self.cgroup.release()

    def reaped(self) -> None:
        """The child is gone (reaped, by us or anyone): its cgroup goes back
        once empty (``_cgroup.Tree.release``)."""
        if self._reaped:
            return
        self._reaped = True
        if self.cgroup is not None:
            try:
                self.cgroup.release()
            except:  # noqa: E722 - from Popen.__del__ at exit, even NameError: atexit removes it
                pass

    # ---- signals -------------------------------------------------------------

    def send_signal(self, popen: Popen, sig: int, to_child: Callable[[int], None]) -> None:
        """Popen.send_signal with kill_tree: sig to the whole tree.
        ``to_child`` signals the child itself, as send_signal does without."""
        if self.tree == "process_group":
            _signal_group(popen, sig)  # the child leads the group: it is in it
            return
        if self.tree == "cgroup" and self.cgroup is not None:
            if sig == signal.SIGKILL:
                self.cgroup.kill()  # every member at once, the child included
                to_child(sig)  # as without kill_tree (poll; a dead child is left alone)
                return
            # The child first, through its own pidfd (as without kill_tree),
            # so that it never sees its tree die before its own signal;
            # then the others, the child excluded while its pid is its own.
            to_child(sig)
            self.cgroup.signal(sig, popen.pid if popen.returncode is None else None)
            return
        to_child(sig)


def _signal_group(popen: Popen, sig: int) -> None:
    """The child's process group: through the pidfd (6.9+; the kernel
    addresses the group by the child's own struct pid, never by a number),
    else killpg while the child is certainly unreaped (its group id is then
    its PID, held by the zombie at the least)."""
    handle = popen._pidfd_handle
    if handle is None:
        # Held by its PID (no fd was free for its pidfd): as the stdlib
        # signals such a child, while poll() says it is unreaped.
        popen.poll()
        if popen.returncode is None:
            try:
                os.killpg(popen.pid, sig)
            except ProcessLookupError:
                pass
        return
    fd = handle.pin()
    if fd < 0:
        return  # reaped: its group id may be anyone's
    try:
        if _USE_PIDFD_GROUP_SIGNAL and fact("group_signal"):
            try:
                _posix.pidfd_send_signal(fd, sig, None, PIDFD_SIGNAL_PROCESS_GROUP)
            except ProcessLookupError:
                pass  # nobody left in the group
            return
        locked = popen._waitpid_lock.acquire(False)
        try:
            if popen.returncode is not None:
                return
            if not still_unreaped(fd):
                return  # reaped elsewhere: the group id may be anyone's
            try:
                os.killpg(popen.pid, sig)
            except ProcessLookupError:
                pass
        finally:
            if locked:
                popen._waitpid_lock.release()
    finally:
        handle.unpin()


def _wrapped(preexec_fn: Callable[[], Any] | None, setpgid: bool, nnp: bool) -> Callable[[], Any]:
    """preexec_fn plus the options, in the forked child (the fork path)."""
    set_nnp = _no_new_privs_call() if nnp else None  # looked up here, not in the child

    def run() -> None:
        if setpgid:
            os.setpgid(0, 0)  # where the stdlib's child sets process_group
        if preexec_fn is not None:
            preexec_fn()
        if set_nnp is not None:
            rc = set_nnp()
            if rc:
                raise OSError(-rc, os.strerror(-rc))

    return run


_PR_SET_NO_NEW_PRIVS = 38


def _no_new_privs_call() -> Callable[[], int]:
    """prctl(PR_SET_NO_NEW_PRIVS) for a forked child: the core's, or without
    the core libc's through ctypes (0, or -errno)."""
    if MISSING is None:
        return lib.pidproc_set_no_new_privs  # type: ignore[no-any-return]
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_nnp() -> int:
        return 0 if prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 else -ctypes.get_errno()

    return set_nnp
