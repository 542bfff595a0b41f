"""Run an unmodified Python program with subprocess switched over to pidproc.

    python -m pidproc -m MODULE [ARGS...]
    python -m pidproc SCRIPT [ARGS...]        (a file, a directory or a zip
                                               with __main__.py, or - for stdin)
    python -m pidproc -c CODE [ARGS...]

As ``python -m cProfile`` does for the profiler: :func:`pidproc.patch` is
applied, then the program runs as ``__main__`` the way the interpreter itself
would run it: the same ``sys.argv``, ``sys.path[0]``, ``__main__`` module
attributes, exit status (``sys.exit``, 1 for an uncaught exception, death by
SIGINT for an uncaught KeyboardInterrupt) and the same traceback text: the
frames of this runner are left out of it.

Only this process is patched: Python children it starts run the stdlib
unless they patch themselves (or are started through ``python -m pidproc``).
With ``--tree`` first, ``PIDPROC_PATCH=1`` is set in the program's
environment, so that every Python process it starts, and their own children,
run patched too, through the ``pidproc-patch.pth`` file installed with
pidproc (an interpreter without pidproc installed is not reached).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import linecache
import marshal
import os
import runpy
import sys
import types
from collections.abc import Callable
from typing import Any, NoReturn

from ._patch import patch

# 3.15 no longer puts __cached__ in the globals of a script or of stdin.
_MAIN_HAS_CACHED = sys.version_info < (3, 15)

USAGE = """\
usage: python -m pidproc [--tree] -m MODULE [ARGS...]
       python -m pidproc [--tree] SCRIPT [ARGS...]
       python -m pidproc [--tree] -c CODE [ARGS...]

Runs the program with subprocess switched over to pidproc (pidproc.patch()).
--tree: its Python children, and theirs, too (sets PIDPROC_PATCH=1 for them).
"""

TREE_VARIABLE = "PIDPROC_PATCH"
PTH_NAME = "pidproc-patch.pth"


class _UsageError(Exception):
    pass


def _pth_installed() -> bool:
    """Whether a site directory of this interpreter holds pidproc's .pth."""
    import site

    dirs = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return any(os.path.isfile(os.path.join(d, PTH_NAME)) for d in dirs)


def _patch_tree() -> None:
    """--tree: the program's Python children patch themselves at start-up
    (the .pth reads the variable); said on stderr when they cannot."""
    os.environ[TREE_VARIABLE] = "1"
    if not _pth_installed():
        print(
            f"python -m pidproc: warning: --tree: no {PTH_NAME} in this interpreter's site"
            " directories (pidproc is not installed, only on sys.path?): its Python"
            " children will not be patched",
            file=sys.stderr,
        )


def _parse(args: list[str]) -> tuple[str, str, list[str]]:
    """(kind, target, rest) with kind "module", "code" or "path"; as the
    interpreter does, "-mNAME" and "-cCODE" are accepted glued too."""
    if not args:
        raise _UsageError("no program given")
    first, rest = args[0], args[1:]
    for flag, kind in (("-m", "module"), ("-c", "code")):
        if first == flag:
            if not rest:
                raise _UsageError(f"argument expected for the {flag} option")
            return kind, rest[0], rest[1:]
        if first.startswith(flag):
            return kind, first[len(flag) :], rest
    if first == "--":
        if not rest:
            raise _UsageError("no program given")
        return "path", rest[0], rest[1:]
    if first.startswith("-") and first != "-":
        raise _UsageError(f"unknown option {first}")
    return "path", first, rest


def _adds_path0() -> bool:
    """Whether the interpreter puts the program's directory in sys.path[0]
    (not with -P / PYTHONSAFEPATH, 3.11+, nor with -I)."""
    return not (getattr(sys.flags, "safe_path", False) or sys.flags.isolated)


def _set_path0(entry: str) -> None:
    # `python -m pidproc` itself put the current directory there.
    if not _adds_path0():
        return
    if sys.path:
        sys.path[0] = entry
    else:
        sys.path.insert(0, entry)


def _fresh_main() -> types.ModuleType:
    """A new, empty __main__, as the interpreter makes one."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = sys.modules["builtins"]
    if "__annotations__" in vars(sys.modules["__main__"]):
        main.__dict__["__annotations__"] = {}  # the interpreter's __main__ has one up to 3.13
    sys.modules["__main__"] = main
    return main


def _cannot_open(path: str, error: OSError) -> NoReturn:
    program = sys.orig_argv[0] if getattr(sys, "orig_argv", None) else sys.executable
    where = os.path.abspath(path)
    if sys.implementation.name != "pypy":  # PyPy prints the path as it is, CPython its repr
        where = repr(where)
    print(
        f"{program}: can't open file {where}: [Errno {error.errno}] {error.strerror}",
        file=sys.stderr,
    )
    sys.exit(2)


def _prepare(kind: str, target: str, rest: list[str]) -> Callable[[], Any]:
    """Set up sys.argv, sys.path and __main__; return what runs the program.
    Everything here happens before the program's first line, as in the
    interpreter; what the returned callable raises is the program's."""
    if kind == "module":
        sys.argv[:] = ["-m", *rest]  # the module's path replaces "-m" once found
        _fresh_main()
        run_module: Any = getattr(runpy, "_run_module_as_main", None)
        if run_module is not None:
            # What the interpreter's own -m calls: runs in __main__'s dict.
            return lambda: run_module(target, True)
        return lambda: runpy.run_module(target, run_name="__main__", alter_sys=True)

    if kind == "code":
        sys.argv[:] = ["-c", *rest]
        _set_path0("")
        main = _fresh_main()
        main.__loader__ = importlib.machinery.BuiltinImporter
        if sys.version_info >= (3, 13):
            # 3.13 shows the lines of -c code in tracebacks: it caches them so.
            lines = [line + "\n" for line in target.splitlines()]
            linecache.cache["<string>"] = (len(target), None, lines, "<string>")
        return _exec_in(main, target, "<string>")

    sys.argv[:] = [target, *rest]
    if target == "-":
        _set_path0("")
        main = _fresh_main()
        main.__file__ = "<stdin>"
        if _MAIN_HAS_CACHED:
            main.__cached__ = None  # type: ignore[attr-defined]
        main.__loader__ = importlib.machinery.BuiltinImporter
        return _exec_in(main, sys.stdin.read(), "<stdin>")

    if os.path.isdir(target) or _is_zip(target):
        # A directory or zip with __main__.py: run from sys.path[0], as the
        # interpreter does (the path itself, not its directory).
        entry = os.path.abspath(target)
        if _adds_path0() and sys.path:
            sys.path[0] = entry
        else:
            sys.path.insert(0, entry)  # needed to run it at all, even with -P
        _fresh_main()
        run_module = getattr(runpy, "_run_module_as_main", None)
        if run_module is not None:
            return lambda: run_module("__main__", False)
        return lambda: runpy.run_path(target, run_name="__main__")

    filename = os.path.abspath(target)
    try:
        with io.open_code(filename) as f:
            data = f.read()
    except OSError as e:
        _cannot_open(target, e)
    _set_path0(os.path.dirname(os.path.realpath(target)))
    main = _fresh_main()
    main.__file__ = filename
    if _MAIN_HAS_CACHED:
        main.__cached__ = None  # type: ignore[attr-defined]
    loader_cls: Any = importlib.machinery.SourceFileLoader
    if data[:4] == importlib.util.MAGIC_NUMBER:
        loader_cls = importlib.machinery.SourcelessFileLoader
        source: Any = marshal.loads(data[16:])
    else:
        source = data
    main.__loader__ = loader_cls("__main__", filename)
    return _exec_in(main, source, filename)


def _is_zip(path: str) -> bool:
    import zipfile

    return os.path.isfile(path) and zipfile.is_zipfile(path)


def _exec_in(main: types.ModuleType, source: Any, filename: str) -> Callable[[], None]:
    def run() -> None:
        # Compiled here, in the frame that is cut from tracebacks, so that a
        # SyntaxError prints exactly as the interpreter prints it.
        code = (
            source
            if isinstance(source, types.CodeType)
            else compile(source, filename, "exec", dont_inherit=True)
        )
        exec(code, main.__dict__)

    return run


def _run_program(program: Callable[[], Any]) -> None:
    """The frame tracebacks are cut after: everything above it is ours."""
    program()


def _trimmed(tb: types.TracebackType | None) -> types.TracebackType | None:
    cut = None
    entry = tb
    while entry is not None:
        if entry.tb_frame.f_code is _run_program.__code__:
            cut = entry
        entry = entry.tb_next
    if cut is None:
        return tb
    # The frame of the callable that _run_program called is ours too, unless
    # it is runpy's (-m: the interpreter shows runpy's frames as well).
    after = cut.tb_next
    if after is not None and after.tb_frame.f_globals is globals():
        after = after.tb_next
    return after


def _print_without_our_frames() -> None:
    """Cut this runner's frames from the traceback the interpreter is about
    to print for an exception leaving the program (it prints it, then exits
    1, or by SIGINT for KeyboardInterrupt, exactly as without us)."""
    hook = sys.excepthook

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
    ) -> None:
        sys.excepthook = hook
        tb = _trimmed(tb)
        # The default hook prints the exception's own __traceback__.
        hook(kind, value.with_traceback(tb), tb)

    sys.excepthook = excepthook


def main(argv: list[str] | None = None) -> int:
    """Parse, patch, run; returns only for usage questions (0 or 2)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    tree = bool(args) and args[0] == "--tree"
    try:
        kind, target, rest = _parse(args[1:] if tree else args)
    except _UsageError as e:
        print(f"{USAGE}\npython -m pidproc: error: {e}", file=sys.stderr)
        return 2
    if tree:
        _patch_tree()
    patch()
    program = _prepare(kind, target, rest)
    try:
        _run_program(program)
    except SystemExit:
        raise
    except BaseException:
        _print_without_our_frames()
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
