"""die_with_parent without CAP_SYS_ADMIN (dropped here, from a root
process): alone, and with no_new_privs.  Prints, as JSON, the mechanisms
and the child's NoNewPrivs for each.  Run by tests/test_lifecycle_options.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.caps import CAP_SYS_ADMIN, drop_capability  # noqa: E402

drop_capability(CAP_SYS_ADMIN)

import pidproc  # noqa: E402

NNP = "print(next(l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')).split()[1])"
out: dict[str, list[Any]] = {}
cases: dict[str, dict[str, bool]] = {
    "die": {"die_with_parent": True},
    "die_nnp": {"die_with_parent": True, "no_new_privs": True},
}
for name, opts in cases.items():
    p = pidproc.Popen([sys.executable, "-c", NNP], stdout=-1, text=True, **opts)
    out[name] = [p.die_with_parent, p.no_new_privs, p.communicate()[0].strip()]
print(json.dumps(out))
