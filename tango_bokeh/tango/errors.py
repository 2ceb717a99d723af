"""Tango errors as text: one place turns a ``DevFailed`` (or any exception) into words.

Callers everywhere (writes, health checks, the name check, the embedded
control system) show the same words for the same failure.
"""

from __future__ import annotations

from typing import Any


def describe(exc: BaseException) -> tuple[str, str]:
    """``(reason, description)`` of the most specific error, the description on one line."""
    errors: Any = getattr(exc, "args", ())
    first = errors[0] if errors else None
    reason = str(getattr(first, "reason", "") or "")
    desc = getattr(first, "desc", None)
    text = " ".join(str(desc if desc is not None else exc).split())
    return reason, text
