"""Each stdlib internal pidproc relies on (``pidproc._stdlib``) still holds.

These fail loudly on a CPython where one no longer does, rather than let
pidproc quietly behave differently from the stdlib there.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

import pidproc
from pidproc import _stdlib
from pidproc._spawn import state

from .conftest import PY


def test_child_args_follow_this_stdlibs_execute_child() -> None:
    """Popen.__init__ calls _execute_child positionally: ChildArgs must name
    this version's parameters in this version's order (3.10-3.15 so far);
    any extra field of ours has a default."""
    theirs = list(inspect.signature(subprocess.Popen._execute_child).parameters)[1:]  # type: ignore[attr-defined]
    ours = list(inspect.signature(_stdlib.ChildArgs).parameters.values())
    assert [p.name for p in ours] == list(_stdlib.ChildArgs.FIELDS)
    assert [p.name for p in ours][: len(theirs)] == theirs
    extra = ours[len(theirs) :]
    assert all(p.default is not inspect.Parameter.empty for p in extra), extra
    assert _stdlib.STDLIB_PARAMETERS == theirs


def test_the_posix_spawn_condition_is_read_from_this_stdlib() -> None:
    source = inspect.getsource(subprocess.Popen._execute_child)  # type: ignore[attr-defined]
    if "_USE_POSIX_SPAWN" not in source:
        pytest.skip("this stdlib never calls os.posix_spawn")
    condition = _stdlib.posix_spawn_condition()
    assert condition is not None
    names = set(condition.co_names)
    assert {"_USE_POSIX_SPAWN", "executable", "close_fds", "pass_fds", "cwd"} <= names


def _args(**changes: object) -> _stdlib.ChildArgs:
    base: dict[str, object] = dict(
        args=["/bin/true"], executable="/bin/true", preexec_fn=None, close_fds=True, pass_fds=(),
        cwd=None, env=None, startupinfo=None, creationflags=0, shell=False, p2cread=-1,
        p2cwrite=-1, c2pread=-1, c2pwrite=-1, errread=-1, errwrite=-1, restore_signals=True,
        gid=None, gids=None, uid=None, umask=-1, start_new_session=False,
    )  # fmt: skip
    base.update(changes)
    return _stdlib.ChildArgs(**base)  # type: ignore[arg-type]


def test_the_posix_spawn_condition_answers_as_the_stdlib_decides() -> None:
    """Checked against the stdlib's own decision: os.posix_spawn is called
    (a stand-in records the call) exactly where the condition says."""
    if _stdlib.posix_spawn_condition() is None or not getattr(
        subprocess, "_USE_POSIX_SPAWN", False
    ):
        pytest.skip("this stdlib never calls os.posix_spawn here")
    cases = [
        _args(), _args(close_fds=False), _args(close_fds=False, cwd="/"),
        _args(close_fds=False, executable="true"), _args(start_new_session=True),
    ]  # fmt: skip
    decisions = []
    called: list[object] = []

    def stand_in(*args: object, **kwargs: object) -> int:
        called.append(args)
        raise OSError(0, "recorded")

    for a in cases:
        called.clear()

        real = os.posix_spawn
        os.posix_spawn = stand_in  # type: ignore[assignment]
        try:
            p = subprocess.Popen(
                [a.executable], executable=a.executable, cwd=a.cwd,
                start_new_session=a.start_new_session, close_fds=a.close_fds,
            )  # fmt: skip
            p.wait()
        except OSError:
            pass
        finally:
            os.posix_spawn = real  # type: ignore[assignment]
        assert bool(called) == _stdlib.would_posix_spawn(a, a.executable), a
        decisions.append(bool(called))
    assert True in decisions and False in decisions  # both branches were seen


def test_the_unparsable_file_action_stops_os_posix_spawn_before_spawning() -> None:
    if not hasattr(os, "posix_spawn"):
        pytest.skip("no os.posix_spawn")
    assert _stdlib.UNPARSABLE_ACTION_MESSAGE
    with pytest.raises(TypeError, match=_stdlib.UNPARSABLE_ACTION_MESSAGE):
        os.posix_spawn("/bin/true", ["true"], {}, file_actions=[_stdlib.UNPARSABLE_ACTION])  # type: ignore[list-item]


def test_whether_chdir_failures_are_told_apart_is_read_from_this_stdlib() -> None:
    """The marker must come from _execute_child itself (not some helper it
    might move to): its source says so too."""
    source = inspect.getsource(subprocess.Popen._execute_child)  # type: ignore[attr-defined]
    assert _stdlib.SPLITS_CHDIR == ("noexec:chdir" in source)
    if sys.implementation.name == "cpython":  # PyPy's 3.11 stdlib has it already
        assert _stdlib.SPLITS_CHDIR == (sys.version_info >= (3, 13))


def test_os_environ_keeps_its_bytes_dict_current() -> None:
    data = _stdlib.environ_bytes()
    assert data is not None
    os.environ["PIDPROC_STDLIB_PROBE"] = "x"
    try:
        assert data[b"PIDPROC_STDLIB_PROBE"] == b"x"
        with state.use_backend(None):
            os.environ["PIDPROC_BACKEND"] = "pid"
            try:
                assert state.forced() == "pid"
            finally:
                del os.environ["PIDPROC_BACKEND"]
            assert state.forced() is None
    finally:
        del os.environ["PIDPROC_STDLIB_PROBE"]
    assert b"PIDPROC_STDLIB_PROBE" not in data


@pytest.mark.parametrize("name", _stdlib.POPEN_ATTRIBUTES)
def test_popen_still_has_the_private_attributes_we_use(name: str) -> None:
    with pidproc.Popen([PY, "-c", "pass"]) as p:
        assert hasattr(p, name)


def test_the_stdlib_hooks_we_fall_back_to_are_the_stdlibs() -> None:
    assert _stdlib.STDLIB_EXECUTE_CHILD is subprocess.Popen._execute_child  # type: ignore[attr-defined]
    assert _stdlib.STDLIB_INTERNAL_POLL is subprocess.Popen._internal_poll  # type: ignore[attr-defined]
    assert _stdlib.STDLIB_WAIT is subprocess.Popen._wait  # type: ignore[attr-defined]
