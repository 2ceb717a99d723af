"""The subscription chain: change → periodic → archive events → client polling.

The choice is made from the actual Tango error of each attempt, so it is a
pure function that can be tested without a device. So is the one rule on
client polling periods that every way in (dashboard files, ``Hub.subscribe``,
``Session.subscribe``, ``AcquisitionConfig``) shares.
"""

from __future__ import annotations

import math
from enum import StrEnum
from numbers import Real


class Mode(StrEnum):
    """How an attribute is acquired (or why it is not)."""

    PENDING = "pending"  # not connected yet / retrying
    CHANGE = "change"
    PERIODIC = "periodic"
    ARCHIVE = "archive"
    POLL = "poll"
    FAILED = "failed"  # permanent: a wrong name or an unsupported attribute
    STOPPED = "stopped"

    @property
    def is_event(self) -> bool:
        return self in (Mode.CHANGE, Mode.PERIODIC, Mode.ARCHIVE)


class Step(StrEnum):
    NEXT = "next"  # try the next mode of the chain
    POLL = "poll"  # no event type can work: poll
    RETRY = "retry"  # the device is unreachable now: try again later
    FAIL = "fail"  # the name is wrong: report and stop


EVENT_CHAIN: tuple[Mode, ...] = (Mode.CHANGE, Mode.PERIODIC, Mode.ARCHIVE)

#: The attribute or device does not exist: polling would not help either.
FATAL_REASONS = frozenset(
    {
        "API_AttrNotFound",
        "API_AttrNotAllowed",
        "API_DeviceNotDefined",
        "DB_DeviceNotDefined",
        "API_AliasNotDefined",
        "DB_AliasNotDefined",
        "API_WrongDeviceNameSyntax",
        "API_WrongAttributeNameSyntax",
        "API_UnsupportedAttribute",
        "API_UnsupportedFormat",
    }
)

#: The device (or database) cannot be reached now; it may come back.
RETRY_REASONS = frozenset(
    {
        "API_CantConnectToDevice",
        "API_DeviceNotExported",
        "API_DeviceTimedOut",
        "API_CorbaException",
        "API_ServerNotRunning",
        "API_CommunicationFailed",
        "API_CantConnectToDatabase",
        "API_DatabaseAccess",
        "API_EventTimeout",
    }
)


def next_step(mode: Mode, reason: str) -> Step:
    """What to do after subscribing in ``mode`` failed with Tango error ``reason``."""
    if reason in FATAL_REASONS:
        return Step.FAIL
    if reason in RETRY_REASONS:
        return Step.RETRY
    if reason == "API_AttributePollingNotStarted":
        # Neither polled nor pushed by the device: no event type will work.
        return Step.POLL
    if mode is EVENT_CHAIN[-1]:
        return Step.POLL
    return Step.NEXT


class Reaction(StrEnum):
    """What an error event received on a live event subscription calls for."""

    VALUE = "value"  # the device answered with an error for this value: show it, nothing else
    UNREACHABLE = "unreachable"  # the device does not answer: Tango subscribes again by itself


def event_error(reason: str) -> Reaction:
    """What to do about an error event of Tango error ``reason`` (e.g. ``API_EventTimeout``
    ~10 s after the server died: the subscription is not live until the device is back,
    so the attribute is not said to be acquired by events meanwhile)."""
    if reason in RETRY_REASONS:
        return Reaction.UNREACHABLE
    return Reaction.VALUE


def unreachable_text(error: str) -> str:
    """The status of an event subscription whose device does not answer."""
    return f"no events: {error} (subscribed again by itself when the device is back)"


#: The device answered and has no such attribute now: a dynamic attribute may appear later
#: (and a typo never will: both are reported, and looked for again now and then).
MISSING_REASONS = frozenset({"API_AttrNotFound"})


def looks_again(reason: str) -> bool:
    """Whether a failed attribute is looked for again (it may exist later)."""
    return reason in MISSING_REASONS


def missing_text(device: str, attribute: str, every: float, error: str) -> str:
    """What an operator reads about an attribute its device does not have (yet)."""
    return (
        f"{device} has no attribute {attribute!r} (yet): looking for it again every "
        f"{every:g} s ({error})"
    )


def following(mode: Mode) -> Mode:
    """The mode tried after ``mode`` when :func:`next_step` says ``NEXT``."""
    index = EVENT_CHAIN.index(mode)
    return EVENT_CHAIN[index + 1] if index + 1 < len(EVENT_CHAIN) else Mode.POLL


#: Client polling periods accepted anywhere, in seconds. Faster only loads the
#: device (one viewer at 1 µs asked ~1,800 reads/s); slower is not live.
MIN_POLL_PERIOD = 0.1
MAX_POLL_PERIOD = 3600.0


def checked_poll_period(period: float) -> float:
    """``period`` as a float; ``ValueError`` unless finite and within the bounds above."""
    if isinstance(period, bool) or not isinstance(period, Real):
        raise ValueError(f"poll_period must be a number of seconds, got {period!r}")
    period = float(period)
    if not math.isfinite(period):
        raise ValueError(f"poll_period must be a finite number of seconds, got {period}")
    if period < MIN_POLL_PERIOD:
        raise ValueError(f"poll_period must be at least {MIN_POLL_PERIOD:g} s, got {period:g} s")
    if period > MAX_POLL_PERIOD:
        raise ValueError(f"poll_period must be at most {MAX_POLL_PERIOD:g} s, got {period:g} s")
    return period
