"""Whole process trees patched: ``PIDPROC_PATCH=1`` and ``pidproc-patch.pth``.

The .pth file works only from a real install (site reads .pth files at the
top of site directories, never from sys.path), so these tests run Python
processes of an interpreter that has pidproc installed: this one when the
suite runs against an install (``nox -s tests``), else a venv that sees this
interpreter's packages, with a wheel of the source tree built once per test
session and installed in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pidproc

from ._support import core

PTH = "pidproc-patch.pth"
ROOT = Path(__file__).resolve().parent.parent

# Each process of the tree prints one line: its depth, whether pidproc is
# loaded, which Popen subprocess has, and the class and pidfd of the child it
# started; then starts the next level with the plain stdlib calls.
NODE = textwrap.dedent(
    """\
    import subprocess, sys
    depth = int(sys.argv[1])
    line = [str(depth), str("pidproc" in sys.modules), subprocess.Popen.__module__]
    if depth < 2:
        with subprocess.Popen([sys.executable, __file__, str(depth + 1)]) as p:
            held = getattr(p, "pidfd", None) is not None  # read before the reap closes it
            p.wait()
        line += [type(p).__module__, str(held)]
    print(" ".join(line), flush=True)
    """
)
PATCHED = ["2 True pidproc._popen", "1 True pidproc._popen pidproc._popen True"]
PATCHED_TOP = "0 True pidproc._popen pidproc._popen True"
BARE = ["2 False subprocess", "1 False subprocess subprocess False"]
BARE_TOP = "0 False subprocess subprocess False"


def _has_pth(python: str) -> bool:
    probe = "import os, site, sys; print(any(os.path.isfile(os.path.join(d, sys.argv[1]))"
    probe += " for d in site.getsitepackages()))"
    out = subprocess.run([python, "-c", probe, PTH], capture_output=True, text=True, env=_env())
    return out.stdout.strip() == "True"


def _env(**extra: str) -> dict[str, str]:
    """This environment without anything that chooses the pidproc seen
    (PYTHONPATH: the source tree) or patches (PIDPROC_PATCH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIDPROC_PATCH")}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def installed_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter in which pidproc is installed with its .pth file."""
    site_dir = Path(pidproc.__file__).resolve().parent.parent
    if (site_dir / PTH).is_file() and _has_pth(sys.executable):
        return sys.executable
    if not (ROOT / "setup.py").is_file():
        pytest.skip("pidproc is neither installed here nor run from its source tree")
    d = tmp_path_factory.mktemp("installed")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    build += ["--disable-pip-version-check", "--wheel-dir", str(d / "wheel"), str(ROOT)]
    done = subprocess.run(build, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (d / "wheel").glob("pidproc-*.whl")
    # The venv sees the packages of the interpreter it is made from (cffi).
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--system-site-packages", str(d / "venv")], check=True)
    python = str(d / "venv" / "bin" / "python")
    install = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--disable-pip-version-check", str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _has_pth(python)
    return python


@pytest.fixture
def node(tmp_path: Path) -> Path:
    path = tmp_path / "node.py"
    path.write_text(NODE)
    return path


def tree(python: str, args: list[str], cwd: Path, **env: str) -> tuple[list[str], str]:
    """The lines of a three-level tree, deepest first, and its stderr."""
    done = subprocess.run(
        [python, *args], cwd=cwd, capture_output=True, text=True, env=_env(**env), timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), done.stderr


def test_the_variable_patches_every_python_process_of_the_tree(
    installed_python: str, node: Path
) -> None:
    lines, _ = tree(installed_python, [str(node), "0"], node.parent, PIDPROC_PATCH="1")
    assert lines == [*PATCHED, PATCHED_TOP]


@pytest.mark.parametrize("value", [None, "", "0"])
def test_without_the_variable_nothing_is_imported_nor_patched(
    installed_python: str, node: Path, value: str | None
) -> None:
    env = {} if value is None else {"PIDPROC_PATCH": value}
    lines, _ = tree(installed_python, [str(node), "0"], node.parent, **env)
    assert lines == [*BARE, BARE_TOP]


def test_any_other_value_patches(installed_python: str, node: Path) -> None:
    lines, _ = tree(installed_python, [str(node), "0"], node.parent, PIDPROC_PATCH="yes")
    assert lines == [*PATCHED, PATCHED_TOP]


def test_runner_tree_option_patches_the_children(installed_python: str, node: Path) -> None:
    lines, err = tree(installed_python, ["-m", "pidproc", "--tree", str(node), "0"], node.parent)
    assert lines == [*PATCHED, PATCHED_TOP]
    assert err == ""


def test_runner_without_tree_patches_only_the_program(installed_python: str, node: Path) -> None:
    lines, _ = tree(installed_python, ["-m", "pidproc", str(node), "0"], node.parent)
    # The program's own Popen is pidproc's; its Python child runs the stdlib.
    assert lines == [*BARE, PATCHED_TOP]


def test_runner_tree_option_says_when_children_cannot_be_reached(tmp_path: Path) -> None:
    """pidproc only on PYTHONPATH of an interpreter without it installed:
    there is no .pth for its children to read, and the runner says so."""
    import cffi

    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = str(tmp_path / "bare" / "bin" / "python")
    assert not _has_pth(python)
    seen = {Path(m.__file__).resolve().parent.parent for m in (pidproc, cffi)}  # type: ignore[arg-type]
    code = "import os; print(os.environ['PIDPROC_PATCH'])"
    done = subprocess.run(
        [python, "-m", "pidproc", "--tree", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**_env(), "PYTHONPATH": os.pathsep.join(map(str, sorted(seen)))},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\n"
    assert "--tree" in done.stderr and PTH in done.stderr and "not be patched" in done.stderr


def test_no_site_no_patch(installed_python: str, node: Path) -> None:
    """python -S reads no .pth file: the variable alone patches nothing."""
    done = subprocess.run(
        [installed_python, "-S", "-c", "import sys; print('pidproc' in sys.modules)"],
        capture_output=True,
        text=True,
        env=_env(PIDPROC_PATCH="1"),
        timeout=60,
    )
    assert done.stdout == "False\n", done.stderr


@core.needs_core
def test_patched_once_sys_path_is_complete(installed_python: str, tmp_path: Path) -> None:
    """pidproc in a site directory read before the one that holds cffi (a
    --system-site-packages venv, the user site): the patch waits for the
    last one, so the C core loads; without cffi at all the program runs
    patched without the core (the fork path)."""
    import cffi

    where = "import os, pidproc; print(os.path.dirname(os.path.abspath(pidproc.__file__)))"
    package = subprocess.run(
        [installed_python, "-c", where], capture_output=True, text=True, env=_env(), check=True
    ).stdout.strip()
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    python = str(tmp_path / "v" / "bin" / "python")
    site_dir = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # What an install puts there, and nothing else: no cffi.
    shutil.copytree(package, os.path.join(site_dir, "pidproc"))
    shutil.copy(os.path.join(os.path.dirname(package), PTH), site_dir)
    code = (
        "import subprocess, sys; print(subprocess.Popen.__module__, 'pidproc._core' in sys.modules)"
    )
    probe = [python, "-c", code]

    done = subprocess.run(probe, capture_output=True, text=True, env=_env(PIDPROC_PATCH="1"))
    if "_cffi_backend" in sys.builtin_module_names:  # PyPy: cffi is part of the interpreter
        assert (done.returncode, done.stdout, done.stderr) == (0, "pidproc._popen True\n", "")
        return
    assert (done.returncode, done.stdout, done.stderr) == (0, "pidproc._popen False\n", "")
    why = "import pidproc._native as n; print(n.MISSING)"
    done = subprocess.run([python, "-c", why], capture_output=True, text=True, env=_env())
    assert "the C core failed to load" in done.stdout and "_cffi_backend" in done.stdout

    # cffi's directory added by a .pth read after pidproc's ("z" sorts last).
    cffi_dir = Path(cffi.__file__).resolve().parent.parent
    Path(site_dir, "zz-cffi.pth").write_text(f"{cffi_dir}\n")
    done = subprocess.run(probe, capture_output=True, text=True, env=_env(PIDPROC_PATCH="1"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "pidproc._popen True\n", "")
