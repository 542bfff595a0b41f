"""CPython's own test_subprocess, on the bare stdlib and with pidproc patched in.

    python conformance/run.py                  both runs side by side, checked
    python conformance/run.py --mode pidproc   one run, outcomes to stdout
    python conformance/run.py -k test_stopped  only the tests matching a pattern
    python conformance/run.py --backend clone  pidproc forced onto one spawn path

The suite is the one the running interpreter ships (``test.test_subprocess``
in its own lib directory), loaded with unittest and run to the end with a
result object that records one outcome per test.  In the ``pidproc`` run,
``pidproc.patch()`` is called before the test module is imported, so even the
module's own ``subprocess.Popen`` subclasses extend pidproc's.  The two runs
are separate processes started side by side (one per core), each in an empty
temporary directory.

unittest, not regrtest: regrtest turns off resource-gated tests (``cpu``,
``walltime``) unless asked; unittest runs them, so more of the suite counts.

The check, after both runs:
  - a test that fails with pidproc must be listed in expected_failures.ini for
    this Python version and spawn path (or fail on the stdlib too: not a
    pidproc difference);
  - each listed test names the pidproc tests covering it, which must exist;
  - a listed test that passes with pidproc is an error: the list cannot rot;
  - a test that ran on the stdlib must run with pidproc too (no new skips);
  - a test that fails only once is run again alone in a fresh process, as
    regrtest's --rerun does: these two cores are shared and noisy, and a few
    tests of the suite assert timings.  A rerun that passes is reported as
    flaky, with the test named, and does not fail the check.

Exit status 0 when the check holds, 1 otherwise.  Stdlib-only: the venvs this
runs in have pidproc and nothing else.
"""

from __future__ import annotations

import argparse
import configparser
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected_failures.ini")
MODULE = "test.test_subprocess"
MODES = ("stdlib", "pidproc")
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
# A whole run takes 20-40 s here; beyond this a worker is hung.
WORKER_TIMEOUT = 900.0

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


# ---- the worker: one run of the suite, one JSON line per test -------------


class _Recorder(unittest.TestResult):
    """Writes each test's outcome as soon as it is known (a crash keeps them)."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self._bad: dict[str, str] = {}

    @staticmethod
    def _name(test: Any) -> str:
        name = str(test.id())
        return name[len(MODULE) + 1 :] if name.startswith(MODULE + ".") else name

    def _write(self, test: Any, outcome: str, detail: str = "") -> None:
        record = {"test": self._name(test), "outcome": outcome, "detail": detail}
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()

    def _note_bad(self, test: Any, err: Any) -> None:
        self._bad.setdefault(self._name(test), self._exc_info_to_string(err, test))

    def startTest(self, test: Any) -> None:
        super().startTest(test)
        self._stream.write(json.dumps({"start": self._name(test)}) + "\n")
        self._stream.flush()

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        if self._name(test) not in self._bad:
            self._write(test, PASSED)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        if not hasattr(test, "_testMethodName"):
            # setUpModule/setUpClass failed: recorded under that fixture's name.
            self._write(test, FAILED, self._exc_info_to_string(err, test))
        else:
            self._note_bad(test, err)

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._note_bad(test, err)

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._note_bad(test, err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._write(test, SKIPPED, reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._write(test, PASSED, "expected failure (unittest.expectedFailure)")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._bad.setdefault(self._name(test), "unexpected success")

    def stopTest(self, test: Any) -> None:
        super().stopTest(test)
        name = self._name(test)
        if name in self._bad:
            self._write(test, FAILED, self._bad.pop(name))


def worker(mode: str, patterns: list[str]) -> int:
    """Run the suite in this process and stream outcomes to stdout."""
    import faulthandler

    # Our records go through a private copy of fd 1 (not inherited); fd 1
    # itself becomes stderr, so the suite's output and its children's (which
    # may end without a newline) never land inside a record.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    faulthandler.enable()
    faulthandler.dump_traceback_later(WORKER_TIMEOUT - 60, exit=True)
    if mode == "pidproc":
        import pidproc

        pidproc.patch()
        if subprocess.Popen is not pidproc.Popen:
            raise SystemExit("pidproc.patch() did not replace subprocess.Popen")
    out.write(json.dumps({"backend": _backend_name(mode)}) + "\n")
    if MODULE in sys.modules:
        raise SystemExit(f"{MODULE} was imported before the patch")
    if sys.implementation.name == "pypy":
        _testcapi_as_missing()
    module = __import__(MODULE, fromlist=["*"])
    loader = unittest.TestLoader()
    if patterns:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in patterns]
    suite = loader.loadTestsFromModule(module)
    result = _Recorder(out)
    result.startTestRun()
    try:
        suite.run(result)
    finally:
        result.stopTestRun()
    out.write(json.dumps({"done": True}) + "\n")
    out.flush()
    return 0


def _backend_name(mode: str) -> str:
    if mode != "pidproc":
        return "stdlib"
    with subprocess.Popen(["true"]) as p:  # patched: pidproc's
        pass
    return str(getattr(p, "backend", "?"))


# ---- the orchestrator --------------------------------------------------------


@dataclass
class Run:
    mode: str
    outcomes: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    backend: str = "?"
    last_started: str | None = None
    stderr: str = ""
    seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)

    def summary(self) -> str:
        counts = (self.count(PASSED), self.count(FAILED), self.count(SKIPPED))
        return "{} passed, {} failed, {} skipped".format(*counts)


def _testcapi_as_missing() -> None:
    """Debian's PyPy ships _testcapi.py without the C file it compiles, so
    importing it raises FileNotFoundError, which test.support (importing it
    at the top) does not catch.  Made a plain missing module, the suite
    imports and the tests that need _testcapi skip, as where it is not
    built.  Both runs, stdlib and pidproc, do the same."""
    try:
        import _testcapi  # noqa: F401
    except ImportError:
        pass
    except OSError:
        sys.modules["_testcapi"] = None  # type: ignore[assignment]  # import: ImportError


def _start(
    mode: str, patterns: list[str], backend: str | None
) -> tuple[subprocess.Popen[str], str]:
    workdir = tempfile.mkdtemp(prefix=f"conformance-{mode}-")
    cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode]
    for p in patterns:
        cmd += ["-k", p]
    env = dict(os.environ)
    if backend is not None:
        env["PIDPROC_BACKEND"] = backend
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, workdir


def _collect(mode: str, proc: subprocess.Popen[str], workdir: str, started: float) -> Run:
    run = Run(mode)
    try:
        stdout, stderr = proc.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    run.seconds = time.monotonic() - started
    run.stderr = stderr
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "start" in record:
            run.last_started = record["start"]
        elif "backend" in record:
            run.backend = record["backend"]
        elif "done" in record:
            run.complete = True
        else:
            run.outcomes[record["test"]] = record["outcome"]
            run.details[record["test"]] = record["detail"]
    shutil.rmtree(workdir, ignore_errors=True)
    return run


def run_modes(modes: list[str], patterns: list[str], backend: str | None) -> dict[str, Run]:
    started = time.monotonic()
    procs = {mode: _start(mode, patterns, backend) for mode in modes}
    return {mode: _collect(mode, *procs[mode], started) for mode in modes}


def _version_matches(spec: str) -> bool:
    """ "all", "3.11" or "3.11+" against the running Python."""
    if spec == "all":
        return True
    if spec.endswith("+"):
        major, minor = spec[:-1].split(".")
        return sys.version_info[:2] >= (int(major), int(minor))
    return spec == VERSION


@dataclass
class Entry:
    pattern: str
    versions: list[str]
    backends: list[str]
    reason: str
    covered_by: list[str]

    def applies(self, backend: str) -> bool:
        return any(_version_matches(v) for v in self.versions) and backend in self.backends

    def matches(self, test: str) -> bool:
        return fnmatch.fnmatchcase(test, self.pattern)


def load_expected(path: str) -> list[Entry]:
    parser = configparser.ConfigParser(interpolation=None)
    with open(path, encoding="utf-8") as f:
        parser.read_file(f)
    entries = []
    for section in parser.sections():
        item = parser[section]
        missing = {"versions", "backends", "reason", "covered_by"} - set(item)
        if missing:
            raise SystemExit(f"{path}: [{section}] lacks {', '.join(sorted(missing))}")
        entries.append(
            Entry(
                pattern=section,
                versions=item["versions"].split(),
                backends=item["backends"].split(),
                reason=" ".join(item["reason"].split()),
                covered_by=item["covered_by"].split(),
            )
        )
    return entries


def _rerun_alone(mode: str, test: str, backend: str | None) -> str:
    """The outcome of one test run alone in a fresh worker."""
    runs = run_modes([mode], [f"*.{test}"], backend)
    return runs[mode].outcomes.get(test, FAILED)


def _missing_coverage(entries: list[Entry]) -> list[str]:
    """covered_by names that do not exist (file::function, from the repo root)."""
    root = os.path.dirname(HERE)
    missing = []
    for entry in entries:
        for ref in entry.covered_by:
            path, _, name = ref.partition("::")
            try:
                with open(os.path.join(root, path), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                text = ""
            if f"def {name}(" not in text:
                missing.append(f"[{entry.pattern}] covered_by {ref}: no such test")
    return missing


def check(
    runs: dict[str, Run],
    entries: list[Entry],
    rerun: bool,
    backend: str | None,
    whole_suite: bool = True,
) -> list[str]:
    """Every way the pidproc run falls short of the rule; empty when it holds."""
    std, ours = runs["stdlib"], runs["pidproc"]
    problems: list[str] = []
    for run in (std, ours):
        if not run.complete:
            problems.append(
                f"{run.mode} run did not finish (last test started: {run.last_started});"
                f" its stderr ends with:\n{run.stderr[-3000:]}"
            )
    applicable = [e for e in entries if e.applies(ours.backend)]

    def listed(test: str) -> Entry | None:
        return next((e for e in applicable if e.matches(test)), None)

    flaky: list[str] = []
    for test, outcome in sorted(ours.outcomes.items()):
        entry = listed(test)
        theirs = std.outcomes.get(test)
        if outcome == FAILED and entry is None:
            if theirs == FAILED:
                print(f"note: {test} fails on the stdlib too: not a pidproc difference")
                continue
            if rerun and _rerun_alone("pidproc", test, backend) == PASSED:
                flaky.append(test)
                continue
            detail = ours.details.get(test, "")
            problems.append(f"{test} fails with pidproc (stdlib: {theirs}):\n{detail}")
        elif outcome == PASSED and entry is not None:
            problems.append(
                f"{test} is listed in expected_failures.ini ([{entry.pattern}]) but passes"
                " with pidproc: remove it from the list"
            )
        elif outcome == SKIPPED and theirs not in (SKIPPED, None):
            problems.append(
                f"{test} is skipped with pidproc but {theirs} on the stdlib:"
                f" {ours.details.get(test, '')}"
            )
    for test in sorted(set(std.outcomes) - set(ours.outcomes)):
        if ours.complete:
            problems.append(f"{test} ran on the stdlib but not with pidproc")
    problems.extend(_missing_coverage(entries))
    for entry in applicable if whole_suite else []:
        if ours.complete and not any(entry.matches(t) for t in ours.outcomes):
            problems.append(f"[{entry.pattern}] in expected_failures.ini matches no test here")
    for test in flaky:
        print(f"flaky: {test} failed once with pidproc and passed when run again alone")
    for test, outcome in sorted(std.outcomes.items()):
        if outcome == FAILED:
            print(f"note: {test} fails on the bare stdlib here:\n{std.details.get(test, '')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, help="run one mode in this process")
    parser.add_argument("-k", dest="patterns", action="append", default=[], metavar="PATTERN")
    parser.add_argument("--expected", default=EXPECTED, help="the expected-failures file")
    parser.add_argument("--json", help="write both runs' outcomes to this file")
    parser.add_argument("--no-rerun", action="store_true", help="no second chance")
    parser.add_argument("--backend", help="force a spawn path (PIDPROC_BACKEND) for pidproc")
    args = parser.parse_args(argv)
    if args.mode:
        return worker(args.mode, args.patterns)

    entries = load_expected(args.expected)
    runs = run_modes(list(MODES), args.patterns, args.backend)
    problems = check(runs, entries, not args.no_rerun, args.backend, not args.patterns)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({m: r.outcomes for m, r in runs.items()}, f, indent=1, sort_keys=True)

    std, ours = runs["stdlib"], runs["pidproc"]
    listed = [
        t
        for t, o in sorted(ours.outcomes.items())
        if o == FAILED and any(e.applies(ours.backend) and e.matches(t) for e in entries)
    ]
    ran = ours.count(PASSED) + ours.count(FAILED)
    share = 100.0 * ours.count(PASSED) / ran if ran else 0.0
    print()
    print(f"Python {sys.version.split()[0]}  {MODULE}")
    print(f"  stdlib : {std.summary():<40} ({std.seconds:.0f} s)")
    print(
        f"  pidproc: {ours.summary():<40} ({ours.seconds:.0f} s, backend {ours.backend})"
        f"  {share:.1f} % of the tests that ran pass"
    )
    for test in listed:
        print(f"  expected failure: {test}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print(f"- {p}")
        return 1
    print("  conformance holds: every difference is listed in expected_failures.ini")
    return 0


if __name__ == "__main__":
    sys.exit(main())
