"""pytest plugin for the forced-path reruns of tools/distros.py.

With PIDPROC_BACKEND set, the tests that choose their path themselves
(parametrized over the path names, e.g. by the ``backend`` fixture, whose
``use_backend`` wins over the environment) would only repeat the main run,
which already ran them on every path: they are deselected.  What is left
are the tests that spawn with the default path, now on the forced one.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PIDPROC_BACKEND"):
        return
    import pidproc

    names = set(pidproc.BACKENDS)
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        chooses = any(isinstance(v, str) and v in names for v in params)
        (drop if chooses else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
