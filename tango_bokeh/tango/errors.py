"""Tango errors as text: one place turns a ``DevFailed`` (or any exception) into words.

Callers everywhere (samples of failed reads, writes, health checks, the name
check, the embedded control system) show the same words for the same failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: What Tango says when a device that just failed to connect is asked again within a second:
#: it is a connection failure, not a delay (Tango does not try again before then).
DELAYED = "The connection request was delayed."


def describe_stack(errors: Sequence[Any]) -> tuple[str, str]:
    """``(reason, description)`` of the most specific error of a Tango error stack, the
    description on one line."""
    first = errors[0] if errors else None
    reason = str(getattr(first, "reason", "") or "")
    desc = getattr(first, "desc", None)
    text = str(desc if desc is not None else (first if first is not None else "")).strip()
    if DELAYED in text:
        before = " ".join(text.split(DELAYED, 1)[0].split()).rstrip(".")
        text = (f"{before or 'cannot connect to the device'}: it did not answer the previous "
                "attempt, less than a second ago (Tango tries again after that)")  # fmt: skip
    return reason, " ".join(text.split())


def describe(exc: BaseException) -> tuple[str, str]:
    """``(reason, description)`` of ``exc`` (for a ``DevFailed``: its most specific error)."""
    errors: Any = getattr(exc, "args", ())
    if errors and hasattr(errors[0], "desc"):
        return describe_stack(errors)
    return "", " ".join(str(exc).split())
