"""S10, S11: what a Python process pays at start-up for pidproc.

S10 ``import pidproc`` against ``import subprocess``, each in a fresh
    interpreter, as ``python -X importtime`` reports the top-level import
    (everything it pulls in, included).  Under ``PIDPROC_PATCH=1`` every Python
    process of the tree pays ``import pidproc``.  Also per batch: the wall time
    of the whole ``python -c "import ..."`` process.
S11 interpreter start-up with ``pidproc-patch.pth`` installed, the variable
    unset, against the same venv without the file: the time of ``site`` (which
    reads the .pth files) from ``-X importtime``; also with ``PIDPROC_PATCH=1``,
    where site patches subprocess, for context.  Also per batch: the wall
    time of the whole ``python -c pass`` process.  Two throw-away venvs of this
    interpreter, identical but for the .pth; pidproc and cffi are reached
    through PYTHONPATH, which is on sys.path before site runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _compare
import pytest
from _compare import Scenario, Side, Target, compare

import pidproc

PTH = "pidproc-patch.pth"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PIDPROC_PATCH"}
    env.update(extra)
    return env


def _reports_import_times() -> bool:
    """Whether this interpreter has ``-X importtime`` (PyPy accepts and ignores it)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import json"], capture_output=True, text=True
    )
    return "import time:" in done.stderr


needs_importtime = pytest.mark.skipif(
    not _reports_import_times(), reason=f"{sys.implementation.name} has no -X importtime"
)


def importtime(python: str, code: str, module: str, env: dict[str, str]) -> float:
    """Seconds ``-X importtime`` gives the import of ``module`` (cumulative)."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    raise AssertionError(f"no import of {module} in:\n{done.stderr}")


def importing(name: str, module: str) -> Side:
    env = _env()
    code = f"import {module}"

    def run(n: int) -> _compare.Batch:
        out, wall = [], []
        for _ in range(n):
            out.append(importtime(sys.executable, code, module, env))
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            wall.append(time.perf_counter() - t0)
        return _compare.Batch(out, {"whole process (python -c)": sorted(wall)[len(wall) // 2]})

    return Side(name, run)


@needs_importtime
def test_s10_import_time(benchmark: Any) -> None:
    result = compare(
        benchmark,
        Scenario(
            "S10",
            "import pidproc vs import subprocess, fresh interpreter",
            "cumulative time of the import, from python -X importtime, in seconds",
            [importing("pidproc", "pidproc"), importing("stdlib", "subprocess")],
            [Target.at_most_plus("stdlib", 5e-3)],
            rounds=40,
            per_round=3,
        ),
    )
    assert all(s > 0 for side in result.sides for s in side.samples)


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, str]]:
    """(python with the .pth, python without, the environment both run in)."""
    installed = Path(pidproc.__file__).resolve().parent.parent / PTH
    if not installed.is_file():
        pytest.skip(f"{PTH} comes with an install of pidproc (nox -s bench installs it)")
    import cffi

    d = tmp_path_factory.mktemp("startup")
    pythons = []
    for name in ("with", "without"):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(d / name)], check=True)
        python = str(d / name / "bin" / "python")
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if name == "with":
            Path(purelib, PTH).write_bytes(installed.read_bytes())
        pythons.append(python)
    seen = {Path(m.__file__).resolve().parent.parent for m in (pidproc, cffi)}  # type: ignore[arg-type]
    return pythons[0], pythons[1], _env(PYTHONPATH=os.pathsep.join(map(str, sorted(seen))))


def starting(name: str, python: str, env: dict[str, str]) -> Side:
    def run(n: int) -> _compare.Batch:
        out, wall = [], []
        for _ in range(n):
            out.append(importtime(python, "pass", "site", env))
            t0 = time.perf_counter()
            subprocess.run([python, "-c", "pass"], env=env, check=True)
            wall.append(time.perf_counter() - t0)
        return _compare.Batch(out, {"whole process (python -c pass)": sorted(wall)[len(wall) // 2]})

    return Side(name, run)


@needs_importtime
def test_s11_pth_startup_cost(benchmark: Any, venvs: tuple[str, str, dict[str, str]]) -> None:
    with_pth, without, env = venvs
    check = "import subprocess; print(subprocess.Popen.__module__)"
    for python, extra, popen in [
        (with_pth, {}, "subprocess"),
        (with_pth, {"PIDPROC_PATCH": "1"}, "pidproc._popen"),
        (without, {"PIDPROC_PATCH": "1"}, "subprocess"),
    ]:
        out = subprocess.run(
            [python, "-c", check], env={**env, **extra}, capture_output=True, text=True
        )
        assert (out.stdout.strip(), out.stderr) == (popen, ""), (python, extra)
    result = compare(
        benchmark,
        Scenario(
            "S11",
            "interpreter start-up with pidproc-patch.pth, PIDPROC_PATCH unset",
            "time of site (reads the .pth files) from python -X importtime, in seconds",
            [
                starting("with the .pth, unset", with_pth, env),
                starting("without the .pth", without, env),
                starting("with the .pth, PIDPROC_PATCH=1", with_pth, {**env, "PIDPROC_PATCH": "1"}),
            ],
            [Target.at_most_plus("without the .pth", 1e-3)],
            rounds=40,
            per_round=8,
        ),
    )
    assert all(s > 0 for side in result.sides for s in side.samples)
