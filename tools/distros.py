"""pidproc inside Debian roots with the newest glibc, CPython and PyPy.

    python3 tools/distros.py                  build what is missing, then test in every root
    python3 tools/distros.py --suite sid      one root only
    python3 tools/distros.py build            (re)build the roots only
    python3 tools/distros.py --rebuild        build from scratch first
    python3 tools/distros.py shell sid        a shell inside (mounts undone on exit)
    python3 tools/distros.py -- -k wait       extra arguments reach pytest
    python3 tools/distros.py --whole-suite    with what PyPy's run leaves out for time

This machine's glibc (2.36) has no pidfd_spawn, so pidproc's first choice
never runs here.  Two Debian roots do:

    trixie    glibc 2.41  CPython 3.13
    sid       glibc 2.43  CPython 3.14 (its python3) and 3.15
    sid-pypy  glibc 2.43  PyPy 8.0 (Python 3.11), without test_communicate.py
                          and the forced-path reruns unless --whole-suite

Each is made once with debootstrap and Debian's own packages (python3-cffi,
setuptools, pytest, hypothesis, pytest-benchmark, CPython's test package;
for PyPy its own, which sees the same pure-Python packages)
and cached in /var/cache/pidproc-roots/<suite> (PIDPROC_ROOTS moves it); a
root whose stamp is missing or does not match the recipe, or whose Pythons
cannot import what the run needs, is built again.  pip cannot reach the
package index from inside (it fails to verify certificates there), so
pidproc is built offline with Debian's cffi and setuptools.

For each Python in each root, with a fresh copy of the working tree (the
files git knows plus untracked ones it does not ignore; never a compiled
.so) and a fresh venv:

  1. install pidproc (pip --no-index --no-build-isolation);
  2. check the paths: plain spawns take pidfd_spawn and every other path
     can be forced, by PIDPROC_BACKEND and by use_backend();
  3. the test suite (tests and bench), every path best first;
  4. the suite again with each other path forced by PIDPROC_BACKEND, so
     that the tests which do not choose a path run on it too;
  5. conformance/run.py when the tree has it: the interpreter's own
     test_subprocess (CPython's, or PyPy's copy of it) on the bare stdlib
     and with pidproc patched in.

Root is required (debootstrap, chroot, mount); without it this stops with
a message saying so.  Everything runs in a private mount namespace
(unshare --mount), so no mount made here can outlive the run, whatever
ends it; the mounts are also undone in `finally` blocks (SIGTERM and
SIGHUP are turned into exceptions for that), and the run fails if one is
left.  Exit status 0 when every step passed in every root.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PIDPROC_ROOTS", "/var/cache/pidproc-roots"))
MIRROR = os.environ.get("PIDPROC_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Bump when the recipe changes: every cached root is then built again.
RECIPE = 1
NS_MARK = "PIDPROC_DISTROS_PRIVATE_NS"
STEP_TIMEOUT = 900

COMMON_PACKAGES = (
    "python3",
    "python3-dev",
    "python3-venv",
    "python3-cffi",
    "python3-setuptools",
    "python3-pip",
    "python3-pytest",
    "python3-hypothesis",
    "python3-pytest-benchmark",
    "gcc",
    "libc6-dev",
    "strace",
)


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    pythons: tuple[str, ...]
    extra_packages: tuple[str, ...]
    dist: str = ""  # the Debian suite debootstrap takes; default: the name
    # Left out of the run unless --whole-suite (CI's time): test files, and
    # the reruns with each path forced.
    left_out: tuple[str, ...] = ()
    forced_reruns: bool = True

    @property
    def packages(self) -> tuple[str, ...]:
        return COMMON_PACKAGES + self.extra_packages

    @property
    def root(self) -> Path:
        return CACHE / self.name

    @property
    def debian(self) -> str:
        return self.dist or self.name


SUITES = {
    s.name: s
    for s in (
        Suite("trixie", ("3.13",), ("libpython3.13-testsuite",)),
        Suite(
            "sid",
            ("3.14", "3.15"),
            (
                "python3.15",
                "python3.15-dev",
                "python3.15-venv",
                "libpython3.14-testsuite",
                "libpython3.15-testsuite",
            ),
        ),
        # PyPy (Python 3.11, cffi built in) and its copy of test_subprocess,
        # in a sid root of its own.  The whole run takes PyPy ~10 minutes,
        # against ~6 for the CPythons beside it: by default (CI) it leaves
        # out test_communicate.py (3 of those minutes) and the forced-path
        # reruns (the same C core, run forced by the CPythons).
        Suite(
            "sid-pypy",
            ("pypy3",),
            ("pypy3", "pypy3-dev", "pypy3-venv", "pypy3-lib-testsuite"),
            dist="sid",
            left_out=("tests/test_communicate.py",),
            forced_reruns=False,
        ),
    )
}


def interpreter(version: str) -> str:
    """The command of a root's Python: "3.14" is python3.14, "pypy3" itself."""
    return version if version.startswith("pypy") else f"python{version}"


# The paths a plain spawn must not take in these roots, each forced in turn.
FORCED = ("clone3", "clone", "fork", "pid")
# What runs again with each of them forced by PIDPROC_BACKEND: the files
# that compare pidproc with the stdlib, whatever the path.  Their tests that
# choose a path themselves (the ``backend`` fixture) ran on every path in the
# main run and are left out (tools/forced_path_plugin.py); the rest used the
# default path there and take the forced one here.  Files that assert
# pidfd-only behaviour or the default path itself, or run their own matrix of
# paths, are not in the list: forcing "pid" or any path breaks them by design.
FORCED_FILES = (
    "tests/test_dropin_api.py",
    "tests/test_errors_parity.py",
    "tests/test_child_state.py",
    "tests/test_stdlib_parity.py",
    "tests/test_security.py",
    "tests/test_security_env_args.py",
    "tests/test_security_fds.py",
    "tests/test_security_sessions.py",
    "tests/test_security_signals.py",
)
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    # tests/test_pidfd_spawn_path.py fails, rather than skips, without pidfd_spawn.
    "PIDPROC_REQUIRE_PIDFD_SPAWN": "1",
}

_print_lock = threading.Lock()
_started = time.monotonic()


def say(msg: str) -> None:
    with _print_lock:
        print(f"[{time.monotonic() - _started:6.1f}s] {msg}", flush=True)


class StepFailed(Exception):
    pass


# Set when the run is interrupted: run() starts nothing more.
STOPPING = threading.Event()


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind through every finally (mounts, processes)."""


def default_dispositions() -> None:
    """Signals ignored or blocked by whoever started us (a background job
    ignores SIGINT, nohup SIGHUP) would stay so in every test process, whose
    children the suite compares with the stdlib's: start from the defaults.
    SIGPIPE and SIGXFSZ stay as Python set them (restore_signals resets them
    in children)."""
    keep = {signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP}
    for sig in signal.valid_signals():
        if sig in keep:
            continue
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(sig) is signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}")


# ---- running commands ----


def run(
    cmd: Sequence[str | os.PathLike[str]],
    log: Path,
    *,
    timeout: float = STEP_TIMEOUT,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> int:
    """Run cmd with its output appended to log; StepFailed (with the log's
    tail) when it fails and check is set."""
    if STOPPING.is_set():
        raise StepFailed("interrupted")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8", errors="replace") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        # Its own process group, so that a step is ended whole (debootstrap,
        # chroot, pytest and what they started), by the group's id.
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with _live_lock:
            _live.add(proc)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            end_group(proc)
            out.write(f"\n[timed out after {timeout:.0f} s]\n")
            rc = -9
        except BaseException:
            end_group(proc)
            raise
        finally:
            with _live_lock:
                _live.discard(proc)
    if check and rc != 0:
        raise StepFailed(f"{cmd[0]} ... exited {rc}; see {log}:\n{tail(log)}")
    return rc


_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


def end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a step's process group (its id is the step's pid) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def end_all_steps() -> None:
    with _live_lock:
        running = list(_live)
    for proc in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in text.splitlines()[-lines:])


def in_root(root: Path, *cmd: str, cwd: str = "/") -> list[str]:
    """A command line that runs cmd inside root, with a clean environment."""
    env = [f"{k}={v}" for k, v in ENV.items()]
    return ["chroot", str(root), "/usr/bin/env", "-i", "-C", cwd, *env, *cmd]


# ---- mounts ----


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under path, deepest first (from /proc/self/mounts)."""
    prefix = str(path)
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def kill_processes_in(root: Path) -> list[int]:
    """SIGKILL what still runs inside root (started by this run: nothing
    else lives in these roots), so that nothing keeps a mount busy."""
    killed = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            where = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if where == str(root) or where.startswith(str(root) + "/"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    if killed:
        time.sleep(0.2)
    return killed


def unmount_all(root: Path) -> None:
    for point in mounts_under(root):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    left = mounts_under(root)
    if left:
        raise StepFailed(f"mounts left under {root}: {left}")


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """proc, a private devpts and /dev/shm inside root; root bound onto
    itself so that / is a mount point in there (unshare --pid in the tests
    needs to change its propagation).  Undone on the way out."""
    try:
        subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        pts = root / "dev" / "pts"
        pts.mkdir(exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "devpts",
                "-o",
                "newinstance,ptmxmode=0666,mode=620",
                "devpts",
                str(pts),
            ],
            check=True,
        )
        ptmx = root / "dev" / "ptmx"
        if not ptmx.exists():
            ptmx.touch()
        subprocess.run(["mount", "--bind", str(pts / "ptmx"), str(ptmx)], check=True)
        shm = root / "dev" / "shm"
        shm.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "shm", str(shm)], check=True)
        yield
    finally:
        kill_processes_in(root)
        unmount_all(root)


def remove_tree(path: Path) -> None:
    """rm -rf that never crosses into a mount (a bound /dev would be fatal)."""
    if not path.exists():
        return
    kill_processes_in(path)
    unmount_all(path)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


# ---- the roots ----


def stamp_of(suite: Suite) -> dict[str, Any]:
    return {"recipe": RECIPE, "suite": suite.debian, "packages": sorted(suite.packages)}


def root_is_usable(suite: Suite, log: Path) -> str | None:
    """None when the cached root can be used, else why not."""
    stamp = suite.root / ".pidproc-root.json"
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return "no root yet" if not suite.root.exists() else "no valid stamp"
    if {k: recorded.get(k) for k in ("recipe", "suite", "packages")} != stamp_of(suite):
        return "the recipe changed"
    probe = "import cffi, setuptools, pytest, hypothesis, pytest_benchmark, venv, test.support"
    # PyPy's _testcapi cannot build in Debian's package: made missing, as conformance/run.py does.
    pypy_probe = "import sys; sys.modules['_testcapi'] = None; " + probe
    for version in suite.pythons:
        code = pypy_probe if version.startswith("pypy") else probe
        cmd = in_root(suite.root, interpreter(version), "-c", code)
        if run(cmd, log, timeout=120, check=False) != 0:
            return f"{interpreter(version)} there cannot import what the run needs"
    return None


def ensure_debootstrap(log: Path) -> None:
    if shutil.which("debootstrap"):
        return
    say("host: installing debootstrap with apt-get")
    apt_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], log, env=apt_env)
    run(["apt-get", "install", "-y", "-q", "debootstrap"], log, env=apt_env)


def build_root(suite: Suite, logs: Path) -> None:
    log = logs / f"{suite.name}-build.log"
    partial = CACHE / f"{suite.name}.partial"
    remove_tree(partial)
    t0 = time.monotonic()
    say(f"{suite.name}: debootstrap --variant=minbase from {MIRROR}")
    run(["debootstrap", "--variant=minbase", suite.debian, partial, MIRROR], log)
    say(f"{suite.name}: apt-get install {len(suite.packages)} packages")
    with mounted(partial):
        apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *suite.packages]
        run(in_root(partial, *apt), log)
        run(in_root(partial, "apt-get", "clean"), log)
    stamp = dict(stamp_of(suite), built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    (partial / ".pidproc-root.json").write_text(json.dumps(stamp, indent=1) + "\n")
    remove_tree(suite.root)
    partial.rename(suite.root)
    say(f"{suite.name}: root built in {time.monotonic() - t0:.0f} s")


def ensure_root(suite: Suite, logs: Path, rebuild: bool) -> None:
    log = logs / f"{suite.name}-build.log"
    why = "--rebuild" if rebuild else root_is_usable(suite, log)
    if why is None:
        say(f"{suite.name}: cached root {suite.root}")
        return
    say(f"{suite.name}: building the root ({why})")
    build_root(suite, logs)
    why = root_is_usable(suite, log)
    if why is not None:
        raise StepFailed(f"{suite.name}: the new root is not usable: {why}; see {log}")


# ---- the working tree ----

_SKIP_PARTS = {
    ".git",
    ".nox",
    "build",
    "dist",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".benchmarks",
}


def tree_files() -> list[str]:
    """The working tree as git sees it (tracked and untracked-not-ignored)."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [
            str(p.relative_to(REPO))
            for p in REPO.rglob("*")
            if p.is_file() and not _SKIP_PARTS & set(p.relative_to(REPO).parts)
        ]
    return sorted(
        n
        for n in names
        if (REPO / n).is_file()
        and not n.endswith((".so", ".pyc", ".o"))
        and not n.endswith(".egg-info")
        and not _SKIP_PARTS & set(Path(n).parts)
    )


def copy_tree(files: list[str], dest: Path) -> None:
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)


# ---- the checks inside a root ----

PATHS_PROBE = r"""
import json, os, sys
import pidproc
from pidproc._spawn import state as _backends
out = {
    "python": ("PyPy " if sys.implementation.name == "pypy" else "") + sys.version.split()[0],
    "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
    "backends": pidproc.backends(),
    "reasons": {n: _backends.reason(n) for n in pidproc.BACKENDS if _backends.reason(n)},
}
with pidproc.Popen(["true"]) as p:
    pass
out["default"] = p.backend
forced = {}
for name in pidproc.BACKENDS:
    with pidproc.use_backend(name):
        with pidproc.Popen(["sh", "-c", "exit 7"]) as p:
            pass
    forced[name] = [p.backend, p.returncode]
out["use_backend"] = forced
print(json.dumps(out))
"""

ENV_PROBE = "import pidproc\nwith pidproc.Popen(['true']) as p: pass\nprint(p.backend)"


@dataclasses.dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def junit_counts(path: Path) -> Counts:
    tree = ET.parse(path)
    suites = [tree.getroot()] if tree.getroot().tag == "testsuite" else list(tree.getroot())
    c = Counts()
    for s in suites:
        total = int(s.get("tests", 0))
        bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped = int(s.get("skipped", 0))
        c.failed += bad
        c.skipped += skipped
        c.passed += total - bad - skipped
        c.seconds += float(s.get("time", 0.0))
    return c


@dataclasses.dataclass
class PythonResult:
    suite: str
    version: str
    glibc: str = "?"
    python: str = "?"
    default_path: str = "?"
    backends: list[str] = dataclasses.field(default_factory=list)
    forced_ok: dict[str, bool] = dataclasses.field(default_factory=dict)
    tests: Counts | None = None
    forced_tests: dict[str, Counts] = dataclasses.field(default_factory=dict)
    conformance: dict[str, Any] | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def check_paths(suite: Suite, version: str, venv_py: str, log: Path, res: PythonResult) -> None:
    root = suite.root
    out = root / "work" / f"paths-{version}.json"
    cmd = in_root(root, "sh", "-c", f'{venv_py} -c "$1" > /work/{out.name}', "sh", PATHS_PROBE)
    run(cmd, log, timeout=120)
    info = json.loads(out.read_text())
    res.glibc, res.python = info["glibc"].split()[-1], info["python"]
    res.default_path, res.backends = info["default"], info["backends"]
    if info["backends"][:1] != ["pidfd_spawn"] or info["default"] != "pidfd_spawn":
        res.problems.append(
            f"plain spawns take {info['default']!r}, not pidfd_spawn (backends "
            f"{info['backends']}, reasons {info['reasons']})"
        )
    for name, (taken, rc) in info["use_backend"].items():
        ok = taken == name and rc == 7
        if not ok:
            res.problems.append(f"use_backend({name!r}) took {taken!r}, exit status {rc}")
        res.forced_ok[name] = ok
    for name in FORCED:
        env_cmd = in_root(
            root,
            "sh",
            "-c",
            f'PIDPROC_BACKEND={name} {venv_py} -c "$1" > /work/env-{version}',
            "sh",
            ENV_PROBE,
        )
        run(env_cmd, log, timeout=120)
        taken = (root / "work" / f"env-{version}").read_text().strip()
        if taken != name:
            res.forced_ok[name] = False
            res.problems.append(f"PIDPROC_BACKEND={name} took {taken!r}")


def run_pytest(
    suite: Suite,
    version: str,
    venv_py: str,
    log: Path,
    name: str,
    extra: Sequence[str],
    env: dict[str, str] | None = None,
) -> Counts:
    root = suite.root
    xml = f"/work/junit-{version}-{name}.xml"
    sets = [f"{k}={v}" for k, v in (env or {}).items()]
    cmd = in_root(
        root,
        *(["/usr/bin/env", *sets] if sets else []),
        venv_py,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={xml}",
        # cwd is on sys.path under python -m: the forced reruns leave out
        # what the main run already ran on every path.
        *(["-p", "tools.forced_path_plugin"] if env else []),
        *extra,
        cwd=f"/work/src-{version}",
    )
    rc = run(cmd, log, check=False)
    path = root / xml.lstrip("/")
    if not path.exists():
        raise StepFailed(f"pytest ({name}) wrote no report, exit {rc}; see {log}:\n{tail(log)}")
    counts = junit_counts(path)
    if rc not in (0, 5) and counts.failed == 0:  # 5: nothing was selected
        counts.failed = 1  # an interrupted or crashed session counts as a failure
    return counts


def run_conformance(suite: Suite, version: str, venv_py: str, log: Path) -> dict[str, Any]:
    root = suite.root
    out = f"/work/conformance-{version}.json"
    runner = f"/work/src-{version}/conformance/run.py"
    cmd = in_root(root, venv_py, runner, "--json", out, cwd="/tmp")
    t0 = time.monotonic()
    rc = run(cmd, log, check=False, timeout=1800)
    result: dict[str, Any] = {"exit": rc, "seconds": round(time.monotonic() - t0)}
    path = root / out.lstrip("/")
    if path.exists():
        outcomes = json.loads(path.read_text())
        for mode, tests in outcomes.items():
            counts = {"passed": 0, "failed": 0, "skipped": 0}
            for outcome in tests.values():
                counts[outcome] = counts.get(outcome, 0) + 1
            result[mode] = counts
    text = log.read_text(encoding="utf-8", errors="replace")
    m = re.findall(r"backend (\w+)", text)
    result["backend"] = m[-1] if m else "?"
    return result


def test_python(
    suite: Suite,
    version: str,
    files: list[str],
    logs: Path,
    posargs: list[str],
    forced_files: list[str],
    whole: bool = False,
) -> PythonResult:
    res = PythonResult(suite.name, version)
    root = suite.root
    log = logs / f"{suite.name}-{version}.log"
    log.unlink(missing_ok=True)
    t0 = time.monotonic()
    src = root / "work" / f"src-{version}"
    remove_tree(src)
    copy_tree(files, src)
    venv = f"/work/venv-{version}"
    remove_tree(root / venv.lstrip("/"))
    venv_py = f"{venv}/bin/python"
    try:
        say(f"{suite.name}/{version}: venv and pip install (offline, Debian's cffi)")
        run(
            in_root(
                root,
                interpreter(version),
                "-m",
                "venv",
                "--system-site-packages",
                "--without-pip",
                venv,
            ),
            log,
        )
        pip = [
            venv_py,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
            "--disable-pip-version-check",
            f"/work/src-{version}",
        ]
        run(in_root(root, *pip), log)

        check_paths(suite, version, venv_py, log, res)
        say(
            f"{suite.name}/{version}: glibc {res.glibc}, Python {res.python}: plain spawns take "
            f"{res.default_path}; paths {res.backends}"
        )

        left_out = [] if whole else [f"--ignore={f}" for f in suite.left_out]
        res.tests = run_pytest(
            suite, version, venv_py, log, "all", ["tests", "bench", *left_out, *posargs]
        )
        say(f"{suite.name}/{version}: tests: {res.tests} ({res.tests.seconds:.0f} s)")
        if res.tests.failed:
            res.problems.append(f"test suite: {res.tests}")

        present = [f for f in forced_files if (src / f).exists()]
        for name in FORCED if present and (whole or suite.forced_reruns) else ():
            counts = run_pytest(
                suite,
                version,
                venv_py,
                log,
                f"forced-{name}",
                [*present, *posargs],
                env={"PIDPROC_BACKEND": name},
            )
            res.forced_tests[name] = counts
            say(f"{suite.name}/{version}: PIDPROC_BACKEND={name}: {counts}")
            if counts.failed:
                res.problems.append(f"suite with PIDPROC_BACKEND={name}: {counts}")

        if (src / "conformance" / "run.py").exists():
            say(f"{suite.name}/{version}: conformance (the interpreter's test_subprocess)")
            conf = run_conformance(suite, version, venv_py, log)
            res.conformance = conf
            say(
                f"{suite.name}/{version}: conformance stdlib {conf.get('stdlib')} | pidproc "
                f"{conf.get('pidproc')} (backend {conf['backend']}, exit {conf['exit']}, "
                f"{conf['seconds']} s)"
            )
            if conf["exit"] != 0:
                res.problems.append(f"conformance/run.py exited {conf['exit']}; see {log}")
        else:
            say(f"{suite.name}/{version}: no conformance/run.py in the tree: skipped")
    except StepFailed as e:
        res.problems.append(str(e))
    res.seconds = time.monotonic() - t0
    return res


def test_suite(
    suite: Suite,
    logs: Path,
    posargs: list[str],
    forced_files: list[str],
    rebuild: bool,
    whole: bool = False,
) -> list[PythonResult]:
    ensure_root(suite, logs, rebuild)
    files = tree_files()
    results = []
    remove_tree(suite.root / "work")
    (suite.root / "work").mkdir()
    with mounted(suite.root):
        # The Pythons side by side too: the suites mostly wait on children,
        # these two cores are far from busy with one of them at a time.
        slots: dict[str, PythonResult] = {}

        def one(version: str) -> None:
            slots[version] = test_python(suite, version, files, logs, posargs, forced_files, whole)

        threads = [threading.Thread(target=one, args=(v,)) for v in suite.pythons]
        try:
            for t in threads:
                t.start()
        finally:
            for t in threads:
                if t.ident is not None:
                    t.join()
        results = [slots[v] for v in suite.pythons if v in slots]
    return results


# ---- the report ----


def report(results: list[PythonResult], total: float) -> str:
    lines = [
        "",
        "| root | glibc | Python | path taken | tests | forced paths | "
        "test_subprocess stdlib | test_subprocess pidproc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        forced = ", ".join(
            f"{n} {c.passed}/{c.passed + c.failed}" for n, c in r.forced_tests.items()
        )
        conf = r.conformance or {}

        def fmt(mode: str, conf: dict[str, Any] = conf) -> str:
            c = conf.get(mode)
            if not c:
                return "n/a"
            return f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"

        lines.append(
            f"| {r.suite} | {r.glibc} | {r.python} | {r.default_path} | "
            f"{r.tests or 'n/a'} | {forced or 'n/a'} | {fmt('stdlib')} | {fmt('pidproc')} |"
        )
    lines.append("")
    lines.append(f"total {total:.0f} s")
    for r in results:
        for p in r.problems:
            lines.append(f"PROBLEM {r.suite}/{r.version}: {p}")
    return "\n".join(lines)


# ---- entry ----


def enter_private_namespace(argv: list[str], script: str = __file__, mark: str = NS_MARK) -> None:
    """Re-exec ``script`` (a tool built on this one) with ``argv`` in a private
    mount namespace: its mounts, and those made here for it, die with it.
    ``mark`` in the environment says the re-exec is done."""
    if os.environ.get(mark) == "1":
        return
    path = Path(script).resolve()
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit(
            f"tools/{path.name} needs unshare (util-linux) for a private mount namespace"
        )
    env = dict(os.environ, **{mark: "1", NS_MARK: "1"})
    cmd = [unshare, "--mount", "--propagation", "private", "--", sys.executable, str(path), *argv]
    os.execve(unshare, cmd, env)


def split_pytest_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """The tool's own arguments, and those after ``--`` (for pytest)."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="test", choices=["test", "build", "shell"])
    parser.add_argument("shell_suite", nargs="?", help="for shell: the suite")
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted(SUITES),
        help="only this root (repeatable); default: all",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the roots from scratch")
    parser.add_argument(
        "--whole-suite",
        action="store_true",
        help="in every root, also what a root leaves out for CI's time (sid-pypy)",
    )
    parser.add_argument(
        "--forced-files",
        default=" ".join(FORCED_FILES),
        help="what the forced-path reruns run (space-separated; default: the parity files)",
    )
    parser.add_argument("--json", help="write the results here too")
    parser.epilog = "Arguments after -- reach pytest unchanged."
    own, extra = split_pytest_args(argv)
    args = parser.parse_args(own)
    args.pytest_args = extra
    return args


def lacks_root(tool: str, needs: str) -> bool:
    """True, having said why, when this is not root: a tool that tests
    nothing without it fails (exit 2), it never skips."""
    if os.geteuid() == 0:
        return False
    print(
        f"{tool} needs root: {needs}. Run it as root (CI does). "
        "Nothing was tested: this is a failure, not a skip.",
        file=sys.stderr,
    )
    return True


def stop_cleanly_on_signals() -> None:
    """Default dispositions for the steps, and SIGTERM/SIGHUP turned into
    exceptions, so that every finally block (mounts, VMs) runs."""
    default_dispositions()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def main(argv: list[str]) -> int:
    if lacks_root("tools/distros.py", "debootstrap, chroot and mount do"):
        return 2
    args = parse(argv)
    enter_private_namespace(argv)
    stop_cleanly_on_signals()
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    suites = [SUITES[n] for n in (args.suite or list(SUITES))]
    ensure_debootstrap(logs / "host.log")

    if args.command == "shell":
        suite = SUITES[args.shell_suite or suites[0].name]
        ensure_root(suite, logs, args.rebuild)
        with mounted(suite.root):
            return subprocess.run(in_root(suite.root, "bash", "-l")).returncode

    if args.command == "build":
        errors: list[str] = []

        def build(s: Suite) -> None:
            try:
                ensure_root(s, logs, args.rebuild)
            except StepFailed as e:
                errors.append(f"{s.name}: {e}")

        threads = [threading.Thread(target=build, args=(s,)) for s in suites]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in errors:
            print(e, file=sys.stderr)
        return 1 if errors else 0

    t0 = time.monotonic()
    results: dict[str, list[PythonResult]] = {}
    failures: list[str] = []
    forced_files = args.forced_files.split()

    def work(s: Suite) -> None:
        try:
            results[s.name] = test_suite(
                s, logs, args.pytest_args, forced_files, args.rebuild, args.whole_suite
            )
        except StepFailed as e:
            failures.append(f"{s.name}: {e}")
        except Exception as e:  # a bug here must still fail the run, loudly
            failures.append(f"{s.name}: {type(e).__name__}: {e}")

    # One thread per root: the roots build and test side by side.
    threads = [threading.Thread(target=work, args=(s,), name=s.name) for s in suites]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except (KeyboardInterrupt, Interrupted) as e:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        say(f"interrupted ({str(e) or 'SIGINT'}): stopping what runs in the roots, undoing mounts")
        STOPPING.set()  # no step starts from now on
        parts = [p for s in suites for p in (s.root, CACHE / f"{s.name}.partial")]
        deadline = time.monotonic() + 60
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            end_all_steps()
            for part in parts:
                kill_processes_in(part)
            for t in threads:
                t.join(0.2)
        for part in parts:
            with contextlib.suppress(StepFailed):
                kill_processes_in(part)
                unmount_all(part)
        left = mounts_under(CACHE)
        say(f"stopped; mounts left: {left or 'none'}")
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    flat = [r for s in suites for r in results.get(s.name, [])]
    print(report(flat, time.monotonic() - t0))
    left = mounts_under(CACHE)
    if left:
        failures.append(f"mounts left behind: {left}")
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in flat], indent=1))
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    ok = (
        not failures
        and all(not r.problems for r in flat)
        and len(flat) == sum(len(s.pythons) for s in suites)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
