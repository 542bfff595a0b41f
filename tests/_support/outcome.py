"""What a call did, in a form that compares pidproc's with the stdlib's.

Only the stdlib: the programs in ``tests/programs/`` use it too."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any


def raised(e: BaseException) -> tuple[Any, ...]:
    """An exception as the comparisons see it: its type, errno, filename,
    message, second filename and arguments (the message at index 3)."""
    return (
        type(e),
        getattr(e, "errno", None),
        getattr(e, "filename", None),
        str(e),
        getattr(e, "filename2", None),
        e.args,
    )


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """``("ok", what call returned)``, or :func:`raised` of its exception.

    A TimeoutExpired is let through: a call that times out has hung, and
    two hangs are no outcome to compare."""
    try:
        return ("ok", call())
    except subprocess.TimeoutExpired:
        raise
    except Exception as e:  # noqa: BLE001 - comparing whatever is raised
        return raised(e)


def as_json(result: tuple[Any, ...]) -> list[Any]:
    """An :func:`outcome` a program can print as JSON: the type by its name."""
    first = result[0].__name__ if isinstance(result[0], type) else result[0]
    return [first, *result[1:]]


def short(e: BaseException) -> list[Any]:
    """An exception as ``[type name, errno, message]``: for tests that spell
    out the stdlib's message in their assertions."""
    return [type(e).__name__, getattr(e, "errno", None), str(e)]
