"""A test file for a whole pytest run under ``python -m pidproc``, written
out as test_example.py by tests/test_main_runner.py: one test passes, one
fails."""

import subprocess

import pidproc


def test_patched() -> None:
    assert subprocess.Popen is pidproc.Popen
    assert subprocess.run(["sh", "-c", "exit 3"]).returncode == 3


def test_fails() -> None:
    assert subprocess.check_output(["echo", "x"]) == b"y\n"
