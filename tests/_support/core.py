"""Whether pidproc's C core is loaded, for the tests that need it.

Without it (installed with PIDPROC_NO_EXTENSION=1, or that variable set at
import) the C spawn paths and the calls only the core makes are missing;
the tests of those skip with ``REASON``, and conftest counts them.
"""

from __future__ import annotations

import pytest

from pidproc import _native

MISSING = _native.MISSING
REASON = f"needs pidproc's C core: {MISSING}"

needs_core = pytest.mark.skipif(MISSING is not None, reason=REASON)
"""Mark a test (or a module: ``pytestmark = needs_core``) that needs the core."""


def needs_core_unless(python_has_it: bool) -> pytest.MarkDecorator:
    """For a call the core makes only where Python lacks it (os.setns before 3.12)."""
    return pytest.mark.skipif(MISSING is not None and not python_has_it, reason=REASON)
