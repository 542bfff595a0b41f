"""Switch the ``subprocess`` module itself over to pidproc.

One attribute is replaced: ``subprocess.Popen`` becomes ``pidproc.Popen``.
That is enough for everything that looks ``Popen`` up at call time: the
stdlib's own ``run``/``call``/``check_call``/``check_output``/
``getstatusoutput``/``getoutput`` (they read the module global), ``os.popen``,
asyncio's subprocess transport, and any code that says ``subprocess.Popen``
or ``from subprocess import run`` -- whenever it imported ``subprocess``.
Not reached: a ``Popen`` captured before the patch (``from subprocess import
Popen`` at import time, a subclass of ``subprocess.Popen`` defined before the
patch) and spawns that bypass Popen (``os.fork``, ``multiprocessing``,
``_posixsubprocess`` directly).

``pidproc.Popen`` subclasses the stdlib class captured when pidproc was
imported, so ``isinstance(p, subprocess.Popen)`` holds for its instances
while patched, and the stdlib class they inherit from is never modified.

State: ``patch()`` turns the patch on and ``unpatch()`` turns it off again;
``patched()`` holds it on for the duration of a ``with`` block.  The patch is
in place while ``patch()`` is in force or any ``patched()`` block runs, so
nested or overlapping blocks (in several threads) leave it on until the last
one exits, and an ``unpatch()`` inside a block takes effect when the block
ends.  Every change happens under one lock.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator

from ._popen import Popen

TYPE_CHECKING = False  # typing stays unloaded at run time (see __init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["patch", "unpatch", "patched", "is_patched"]

_lock = threading.RLock()
_explicit = False  # patch() is in force
_blocks = 0  # patched() blocks running
_saved: Any = None  # what subprocess.Popen was before we replaced it
_installed = False
_STDLIB_POPEN: Any = Popen.__bases__[0]


def _sync() -> None:
    """Make subprocess match the wanted state; the caller holds _lock."""
    global _installed, _saved
    want = _explicit or _blocks > 0
    if want and not _installed:
        current = subprocess.Popen
        # Ours already (left there by a tool that restored it after our
        # unpatch()): what we replace is then the class ours extends.
        _saved = _STDLIB_POPEN if current is Popen else current
        subprocess.Popen = Popen  # type: ignore[misc]
        _installed = True
        _asyncio_hook(True)
    elif not want and _installed:
        # Put back what was there, unless someone replaced our class since
        # (mock.patch, another tool): theirs stays, and will restore ours.
        if subprocess.Popen is Popen:
            subprocess.Popen = _saved  # type: ignore[misc]
        _saved = None
        _installed = False
        _asyncio_hook(False)


def _asyncio_hook(on: bool) -> None:
    """asyncio's selector loop: spawn through pidproc.asyncio's transport,
    which watches the pidfd itself.  With only Popen replaced, asyncio's
    child watcher would still reap by PID (racing Popen.poll, gh-87744) and
    3.13's transport would still signal by PID (gh-127049).

    asyncio costs as much to import as pidproc itself, and most programs
    never import it: when it is not loaded yet, the transport is installed
    the moment it is (_WhenAsyncioImported), not imported here.  The caller
    holds _lock."""
    if _asyncio_loading:
        # Another thread is importing asyncio through _ThenInstall, holding
        # asyncio's import lock: importing it here would wait for that
        # thread, which waits for _lock.  It reads the state once done.
        return
    if on and "asyncio" not in sys.modules:
        if _WhenAsyncioImported not in sys.meta_path:
            sys.meta_path.insert(0, _WhenAsyncioImported)
        return
    if _WhenAsyncioImported in sys.meta_path:
        sys.meta_path.remove(_WhenAsyncioImported)
    if not on and "pidproc._aio_transport" not in sys.modules:
        return
    from . import _aio_transport  # imports asyncio

    if on:
        _aio_transport.install()
    else:
        _aio_transport.uninstall()


_asyncio_loading = False  # asyncio's import runs through _ThenInstall


class _WhenAsyncioImported:
    """A meta path finder that finds nothing itself.  Asked for asyncio, it
    has the other finders find it and wraps the loader (_ThenInstall)."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        if name != "asyncio":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is _WhenAsyncioImported or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenInstall(spec.loader)
        return spec


class _ThenInstall:
    """asyncio's own loader, then the patch state applied to the loaded
    asyncio (the transport installed while patched; the finder gone).  The
    module keeps the real loader (``__loader__``, ``__spec__.loader``)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        global _asyncio_loading
        # Before the module is in sys.modules, where _asyncio_hook looks.
        _asyncio_loading = True
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        global _asyncio_loading
        module.__spec__.loader = module.__loader__ = self.loader
        try:
            self.loader.exec_module(module)
        except BaseException:
            _asyncio_loading = False  # the finder stays for the next attempt
            raise
        with _lock:
            _asyncio_loading = False
            if _WhenAsyncioImported in sys.meta_path:
                sys.meta_path.remove(_WhenAsyncioImported)
            if _installed:
                _asyncio_hook(True)


def patch() -> None:
    """Make ``subprocess`` (and everything calling it) spawn through pidproc.

    Idempotent: calling it twice is calling it once.
    """
    global _explicit
    with _lock:
        _explicit = True
        _sync()


def unpatch() -> None:
    """Undo :func:`patch`: ``subprocess.Popen`` is again what it was before.

    Idempotent.  While a :func:`patched` block runs, the patch stays until
    the last block exits.
    """
    global _explicit
    with _lock:
        _explicit = False
        _sync()


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """``subprocess`` spawns through pidproc for the duration of the block."""
    global _blocks
    with _lock:
        _blocks += 1
        _sync()
    try:
        yield
    finally:
        with _lock:
            _blocks -= 1
            _sync()


def is_patched() -> bool:
    """True while ``subprocess.Popen`` is pidproc's."""
    return subprocess.Popen is Popen
