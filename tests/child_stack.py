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
from typing import NamedTuple

from ._support.programs import program


class Scenario(NamedTuple):
    needs_root: bool
    # close_range() denied by a seccomp filter: skipped without libseccomp.
    denies_close_range: bool


# The child's heaviest code paths, each written out in
# tests/programs/child_stack_probe.py.
SCENARIOS: dict[str, Scenario] = {
    "plain": Scenario(False, False),
    "close_fds by listing /proc/self/fd, 2000 fds open": Scenario(False, True),
    "user, group, many extra_groups": Scenario(True, False),
    "exec failing over 1000 PATH candidates": Scenario(False, False),
    # clone3 then retries without CLONE_CLEAR_SIGHAND: the child resets them.
    "handlers reset by the child (no CLONE_CLEAR_SIGHAND)": Scenario(False, False),
    # The C core loaded with RTLD_LAZY: the child's first call of each libc
    # function goes through the dynamic linker's resolver, which saves the
    # vector registers on the stack (xsave).  CPython loads extensions with
    # RTLD_NOW, so this is the worst case of an embedding that does not.
    "libc symbols bound lazily, by the child": Scenario(False, False),
    "all of the above, then exec": Scenario(False, True),
}


def measure(scenario: str, path: str) -> int | None:
    """Bytes the child wrote on its stack in ``scenario`` on ``path``
    (clone3 or clone); None when the scenario needs root and this is not."""
    if SCENARIOS[scenario].needs_root and os.geteuid() != 0:
        return None
    env = dict(os.environ, PIDPROC_BACKEND=path)
    argv = [sys.executable, program("child_stack_probe"), scenario]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
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
