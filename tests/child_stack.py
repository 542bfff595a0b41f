"""How many bytes of its stack the clone3/clone child really writes.

    python -m tests.child_stack          # the table, from the source tree

Each scenario runs in a fresh interpreter (some install a seccomp filter,
which cannot be undone) with the C core's stack probe on
(``lib.pidproc_child_stack_probe``): the child gets a 256 KiB stack filled
with a pattern instead of one from the pool, and after the spawn the C core
counts down from the top to the deepest byte the child wrote.  The
scenarios are the child's heaviest code paths; test_small_stacks.py checks
every one against the stack size the pool hands out.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLONE_CLEAR_SIGHAND = 0x100000000

# Python run before the probe is switched on: setup the scenario needs.
_MANY_FDS = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(2000)]
"""
_NO_CLOSE_RANGE = 'seccomp.install({"close_range": errno.ENOSYS})\n'
_HANDLERS = """
for s in signal.valid_signals():
    try:
        signal.signal(s, lambda *a: None)
    except (OSError, ValueError, RuntimeError):
        pass
"""
# clone3 then retries without CLONE_CLEAR_SIGHAND: the child resets them.
_NO_CLEAR_SIGHAND = f"seccomp.veto_clone3_flags({CLONE_CLEAR_SIGHAND}, errno.EINVAL)\n"
_LONG_PATH = 'os.environ["PATH"] = ":".join(f"/nonexistent/{i}" for i in range(1000))\n'
_IDS = "dict(user=0, group=0, extra_groups=list(range(1000, 1256)))"

# name: (setup, the spawn, needs root)
SCENARIOS: dict[str, tuple[str, str, bool]] = {
    "plain": ("", 'pidproc.run(["true"], check=True)', False),
    "close_fds by listing /proc/self/fd, 2000 fds open": (
        _NO_CLOSE_RANGE + _MANY_FDS,
        'pidproc.run(["true"], check=True, pass_fds=(fds[7], fds[900]))',
        False,
    ),
    "user, group, 256 extra_groups": ("", f'pidproc.run(["true"], check=True, **{_IDS})', True),
    "exec failing over 1000 PATH candidates": (
        _LONG_PATH,
        'try:\n    pidproc.run(["no-such-program"])\nexcept FileNotFoundError:\n    pass',
        False,
    ),
    "handlers reset by the child (no CLONE_CLEAR_SIGHAND)": (
        _HANDLERS + _NO_CLEAR_SIGHAND,
        'pidproc.run(["true"], check=True)',
        False,
    ),
    # The C core loaded with RTLD_LAZY: the child's first call of each libc
    # function goes through the dynamic linker's resolver, which saves the
    # vector registers on the stack (xsave).  CPython loads extensions with
    # RTLD_NOW, so this is the worst case of an embedding that does not.
    "libc symbols bound lazily, by the child": (
        "sys.setdlopenflags(os.RTLD_LAZY)\n" + _HANDLERS + _NO_CLEAR_SIGHAND,
        'pidproc.run(["true"], check=True, cwd="/", umask=0o22, start_new_session=True)',
        False,
    ),
    "all of the above, then exec": (
        "sys.setdlopenflags(os.RTLD_LAZY)\n"
        + _NO_CLOSE_RANGE
        + _MANY_FDS
        + _HANDLERS
        + _NO_CLEAR_SIGHAND
        + _LONG_PATH,
        'pidproc.run(["/bin/true"], check=True, pass_fds=(fds[7], fds[900]), cwd="/",'
        " umask=0o22, start_new_session=True, restore_signals=True,"
        ' env={"PATH": os.environ["PATH"] + ":/usr/bin:/bin", "X": "y" * 4096},'
        " stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,"
        f" **({_IDS} if os.geteuid() == 0 else {{}}))\n"
        "try:\n"
        '    pidproc.run(["no-such-program"], pass_fds=(fds[7],), cwd="/", umask=0o22,'
        " start_new_session=True, restore_signals=True,"
        f" **({_IDS} if os.geteuid() == 0 else {{}}))\n"
        "except FileNotFoundError:\n"
        "    pass",
        False,
    ),
}

_TEMPLATE = """\
import errno, os, signal, subprocess, sys
sys.path.insert(0, {root!r})
from tests._support import seccomp
del sys.path[0]
{setup}
import pidproc
from pidproc._core import lib
lib.pidproc_child_stack_probe(1)
{spawn}
print(lib.pidproc_child_stack_probe(0))
"""


def measure(scenario: str, path: str) -> int | None:
    """Bytes the child wrote on its stack in ``scenario`` on ``path``
    (clone3 or clone); None when the scenario needs root and this is not."""
    setup, spawn, needs_root = SCENARIOS[scenario]
    if needs_root and os.geteuid() != 0:
        return None
    env = dict(os.environ, PIDPROC_BACKEND=path)
    code = _TEMPLATE.format(root=ROOT, setup=setup, spawn=spawn)
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    if r.returncode != 0:
        raise RuntimeError(f"{scenario} on {path}: rc {r.returncode}\n{r.stderr}")
    return int(r.stdout.split()[-1])


def main() -> None:
    import pidproc
    from pidproc._core import lib

    paths = [p for p in ("clone3", "clone") if p in pidproc.backends()]
    size = lib.pidproc_child_stack_size()
    print(f"child stack from the pool: {size} bytes; bytes the child wrote:")
    print(f"| scenario | {' | '.join(paths)} |")
    print(f"|---|{'---:|' * len(paths)}")
    for name in SCENARIOS:
        cells = [measure(name, p) for p in paths]
        print(f"| {name} | {' | '.join('-' if c is None else str(c) for c in cells)} |")


if __name__ == "__main__":
    main()
