"""The program tests/test_main_runner.py runs with and without ``python -m
pidproc``, from copies of this text (a script, a module, a package, a
directory, a zip, -c, stdin): it prints how it was started, spawns a child,
then ends as its last argument says."""

import pickle
import subprocess
import sys


class Defined:
    pass


def fail() -> None:
    raise ValueError("boom")


print("argv", sys.argv)
print("path0", repr(sys.path[0]))
print("name", __name__, globals().get("__file__"), __package__)
print("main", sys.modules["__main__"].__dict__ is globals())
print("globals", sorted(globals()))
print("pickled", type(pickle.loads(pickle.dumps(Defined()))).__module__)
with subprocess.Popen(["sh", "-c", "exit 3"]) as p:
    p.wait()
print("child", p.returncode)
print("POPEN", type(p).__module__)
sys.stdout.flush()
what = sys.argv[-1]
if what == "raise":
    fail()
if what == "exit":
    sys.exit(7)
if what == "exit-message":
    sys.exit("a message")
if what == "interrupt":
    raise KeyboardInterrupt
if what == "chained":
    try:
        fail()
    except ValueError as e:
        raise RuntimeError("while handling") from e
