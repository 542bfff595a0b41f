"""pidproc.patch(): the subprocess module, and everything calling it, on pidproc.

Which spawns went through pidproc is observed, not assumed: an audit hook on
the ``subprocess.Popen`` event (raised by both the stdlib and pidproc right
before they spawn) looks for pidproc's Popen code on the stack, in a fresh
interpreter that imported ``subprocess`` (and ``from subprocess import ...``)
before the patch, as real programs do.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import pidproc
from pidproc import _patch

from ._support.programs import run_program
from .conftest import PY

STDLIB_POPEN = _patch._STDLIB_POPEN


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """Each test starts and ends with the stdlib's Popen in place."""
    assert subprocess.Popen is STDLIB_POPEN
    yield
    pidproc.unpatch()
    if subprocess.Popen is not STDLIB_POPEN:
        subprocess.Popen = STDLIB_POPEN  # type: ignore[misc]
        pytest.fail("the test left subprocess.Popen replaced")


# ---- in this process --------------------------------------------------------


def test_patch_replaces_popen_and_unpatch_puts_it_back() -> None:
    pidproc.patch()
    pidproc.patch()  # idempotent
    assert subprocess.Popen is pidproc.Popen
    with subprocess.Popen([PY, "-c", "import sys; sys.exit(7)"]) as p:
        assert p.wait(timeout=30) == 7
    assert isinstance(p, subprocess.Popen)
    assert isinstance(p, STDLIB_POPEN)
    assert p.backend in pidproc.backends()
    assert subprocess.run(["sh", "-c", "exit 4"]).returncode == 4
    pidproc.unpatch()
    assert subprocess.Popen is STDLIB_POPEN
    pidproc.unpatch()  # idempotent
    assert subprocess.Popen is STDLIB_POPEN
    with subprocess.Popen(["true"]) as q:
        q.wait()
    assert type(q) is STDLIB_POPEN


def test_unpatch_restores_what_was_there(monkeypatch: pytest.MonkeyPatch) -> None:
    class Theirs(STDLIB_POPEN):  # type: ignore[misc,valid-type]
        pass

    monkeypatch.setattr(subprocess, "Popen", Theirs)
    pidproc.patch()
    assert subprocess.Popen is pidproc.Popen
    pidproc.unpatch()
    assert subprocess.Popen is Theirs


def test_a_replacement_made_while_patched_is_left_alone() -> None:
    """mock.patch of subprocess.Popen inside a patch: unpatch() does not
    clobber the mock, and when the mock puts ours back afterwards, the next
    patch()/unpatch() cycle still ends on the stdlib's class."""
    from unittest import mock

    pidproc.patch()
    with mock.patch.object(subprocess, "Popen") as fake:
        pidproc.unpatch()
        assert subprocess.Popen is fake
    assert subprocess.Popen is pidproc.Popen  # the mock restored what it found
    pidproc.patch()
    pidproc.unpatch()
    assert subprocess.Popen is STDLIB_POPEN


def test_patched_block_and_nesting() -> None:
    with pidproc.patched():
        assert subprocess.Popen is pidproc.Popen
        with pidproc.patched():
            assert subprocess.Popen is pidproc.Popen
        assert subprocess.Popen is pidproc.Popen  # the outer block still holds it
    assert subprocess.Popen is STDLIB_POPEN


def test_patched_block_undoes_itself_on_error() -> None:
    with pytest.raises(ZeroDivisionError), pidproc.patched():
        1 / 0  # noqa: B018
    assert subprocess.Popen is STDLIB_POPEN


def test_patch_inside_a_block_outlives_it() -> None:
    with pidproc.patched():
        pidproc.patch()
    assert subprocess.Popen is pidproc.Popen
    pidproc.unpatch()
    assert subprocess.Popen is STDLIB_POPEN


def test_unpatch_inside_a_block_takes_effect_when_it_ends() -> None:
    pidproc.patch()
    with pidproc.patched():
        pidproc.unpatch()
        assert subprocess.Popen is pidproc.Popen
    assert subprocess.Popen is STDLIB_POPEN


def test_blocks_in_many_threads() -> None:
    """Overlapping blocks in 8 threads: each sees the patch for its whole
    block (a spawn inside goes through pidproc), and the last one out puts
    the stdlib back."""
    errors: list[str] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(200):
            with pidproc.patched():
                if subprocess.Popen is not pidproc.Popen:
                    errors.append(f"thread {n}, round {i}: not patched inside a block")
                if i % 50 == 0:
                    with subprocess.Popen(["true"]) as p:
                        p.wait()
                    if not isinstance(p, pidproc.Popen):
                        errors.append(f"thread {n}: spawned by {type(p)}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert subprocess.Popen is STDLIB_POPEN


def test_patch_and_unpatch_racing_from_threads_end_consistent() -> None:
    """patch()/unpatch() from many threads at once: the end state is the
    last call's, never a mix (the saved class is never our own)."""

    def flip(n: int) -> None:
        for _ in range(300):
            pidproc.patch()
            pidproc.unpatch()

    threads = [threading.Thread(target=flip, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert subprocess.Popen is STDLIB_POPEN
    pidproc.patch()
    assert subprocess.Popen is pidproc.Popen


# ---- a fresh interpreter, as a real program --------------------------------

NOT_REACHED = {"Popen imported before", "subclass defined before"}


def entry_points(mode: str) -> dict[str, Any]:
    return dict(run_program("patch_entry_points", mode, timeout=120))


def test_every_entry_point_reaches_pidproc_when_patched() -> None:
    bare = entry_points("none")
    patched = entry_points("patch")
    assert bare.keys() == patched.keys()
    for name in bare:
        # Same results, one spawn each, with and without the patch.
        assert patched[name]["result"] == bare[name]["result"], name
        assert len(bare[name]["spawns"]) == len(patched[name]["spawns"]) == 1, name
        assert bare[name]["spawns"] == [False], name
        expected = name not in NOT_REACHED
        assert patched[name]["spawns"] == [expected], name
    assert bare["os.popen"]["result"] == ["popen\n", 2 << 8]
    assert bare["asyncio.create_subprocess_exec"]["result"] == ["exec\n", 3]


def test_unpatch_takes_every_entry_point_back() -> None:
    for name, seen in entry_points("patch-unpatch").items():
        assert seen["spawns"] == [False], name


# ---- asyncio imported after the patch ----------------------------------------

ASYNCIO_LATER = r"""
import json, sys, threading
import pidproc

def transport_module():
    import asyncio

    class Quiet(asyncio.SubprocessProtocol):
        pass

    async def spawn():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.subprocess_exec(Quiet, "sh", "-c", "exit 5")
        while transport.get_returncode() is None:
            await asyncio.sleep(0.01)
        transport.close()
        return type(transport).__module__, transport.get_returncode()

    return asyncio.run(spawn())

mode = sys.argv[1]
report = {}
if mode == "flip-while-importing":
    imported = threading.Event()
    def flip():
        while not imported.is_set():
            pidproc.patch()
            pidproc.unpatch()
    t = threading.Thread(target=flip)
    t.start()
    import asyncio
    imported.set()
    t.join()
else:
    for step in mode.split(","):
        if step == "patch":
            pidproc.patch()
        elif step == "unpatch":
            pidproc.unpatch()
        elif step == "import":
            import asyncio
            report["loader"] = type(asyncio.__loader__).__name__
        report.setdefault("asyncio after " + step, "asyncio" in sys.modules)
pidproc.patch()
report["patched"] = transport_module()
pidproc.unpatch()
report["unpatched"] = transport_module()
report["finders"] = [type(f).__name__ if not isinstance(f, type) else f.__name__
                     for f in sys.meta_path if "pidproc" in (getattr(f, "__module__", "") or "")]
print(json.dumps(report))
"""


def asyncio_later(mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [PY, "-c", ASYNCIO_LATER, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


OURS = ["pidproc._aio_transport", 5]
THEIRS = ["asyncio.unix_events", 5]


def test_patch_does_not_import_asyncio_and_hooks_it_when_imported() -> None:
    report = asyncio_later("patch,import")
    assert report["asyncio after patch"] is False  # the cost of asyncio is not paid
    assert report["asyncio after import"] is True
    assert report["loader"] == "SourceFileLoader"  # asyncio's own loader, not a wrapper
    assert (report["patched"], report["unpatched"]) == (OURS, THEIRS)
    assert report["finders"] == []


def test_unpatch_before_asyncio_is_imported_leaves_it_alone() -> None:
    report = asyncio_later("patch,unpatch,import")
    assert report["asyncio after unpatch"] is False
    assert (report["patched"], report["unpatched"]) == (OURS, THEIRS)
    assert report["finders"] == []


def test_patch_and_unpatch_racing_the_import_of_asyncio() -> None:
    """One thread flips the patch while the main one imports asyncio: no
    deadlock (the subprocess timeout), and the state follows the last call."""
    report = asyncio_later("flip-while-importing")
    assert (report["patched"], report["unpatched"]) == (OURS, THEIRS)
    assert report["finders"] == []
