"""The subscription chain: change → periodic → archive events → client polling.

The choice is made from the actual Tango error of each attempt, so it is a
pure function that can be tested without a device. So is the one rule on
client polling periods that every way in (dashboard files, ``Hub.subscribe``,
``Session.subscribe``, ``AcquisitionConfig``) shares, and so are the rules that
choose again at run time: which error events mean the events stopped
(:func:`event_error`), when periodic events are overdue (:func:`overdue`), and
which client-polled attributes may have events again (:func:`may_have_events`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
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
    EVENTS_STOPPED = "events stopped"  # the device sends no more of these events: choose again


#: Error events that mean "no more events of this kind": the device's polling of the
#: attribute was stopped (one ``API_PollObjNotFound`` "Polling has just being stopped!",
#: then nothing, for as long as the device lives), or a re-subscription found it unpolled.
EVENTS_STOPPED_REASONS = frozenset(
    {"API_PollObjNotFound", "API_AttributePollingNotStarted", "API_EventPropertiesNotSet"}
)


def event_error(reason: str) -> Reaction:
    """What to do about an error event of Tango error ``reason``.

    ``API_EventTimeout`` (~10 s after the server died) and lost connections: the
    subscription is not live until the device is back (Tango subscribes again by
    itself), so the attribute is not said to be acquired by events meanwhile. An
    error saying the events stopped: the subscription chain runs again (client
    polling when no event type works any more).
    """
    if reason in EVENTS_STOPPED_REASONS:
        return Reaction.EVENTS_STOPPED
    if reason in RETRY_REASONS:
        return Reaction.UNREACHABLE
    return Reaction.VALUE


def unreachable_text(error: str) -> str:
    """The status of an event subscription whose device does not answer."""
    return f"no events: {error} (subscribed again by itself when the device is back)"


#: Tango's periodic event period when the attribute's configuration does not say (ms).
DEFAULT_EVENT_PERIOD_MS = 1000.0
#: Periodic events are overdue after this many intervals without one, plus the slack
#: (a drain period and a loaded machine's jitter): the chain is chosen again, so client
#: polling starts within two intervals of the last event when the events stopped.
OVERDUE_INTERVALS = 1.5
OVERDUE_SLACK = 0.25
#: Longest silence waited for, however often the events were found late but alive.
MAX_OVERDUE = 120.0


def periodic_interval(event_period_ms: str | float, poll_period_ms: int | float) -> float | None:
    """Seconds between two periodic events of an attribute: the first poll of the device at
    or after the event period (``per_event.period``; the device polls every
    ``poll_period_ms``). ``None`` when the device does not poll it (then it pushes its
    events itself, at a pace nobody can know)."""
    try:
        period = float(event_period_ms)
    except (TypeError, ValueError):
        period = DEFAULT_EVENT_PERIOD_MS  # "Not specified"
    if not math.isfinite(period) or period <= 0:
        period = DEFAULT_EVENT_PERIOD_MS
    try:
        poll = float(poll_period_ms)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(poll) or poll <= 0:
        return None
    return poll * max(1, math.ceil(period / poll - 1e-9)) / 1000.0


def overdue_after(interval: float, late: int = 0) -> float:
    """Seconds of silence after which events expected every ``interval`` s are overdue;
    twice as long for each time they were found overdue but alive (``late``): a device
    whose events are always a little late is not subscribed again and again."""
    base = OVERDUE_INTERVALS * interval + OVERDUE_SLACK
    return min(MAX_OVERDUE, base * 2.0 ** min(max(late, 0), 16))


def overdue(interval: float | None, silent_for: float, late: int = 0) -> bool:
    """Whether events expected every ``interval`` s (``None``: no expectation) are overdue
    after ``silent_for`` s without any."""
    return interval is not None and silent_for > overdue_after(interval, late)


_POLLED_NAME = re.compile(r"^\s*Polled attribute name\s*=\s*(\S+)", re.MULTILINE)


def polled_attributes(status: Sequence[str]) -> frozenset[str]:
    """Names (lower case) of the attributes a device polls, from ``DeviceProxy.polling_status()``
    (one text per polled object: ``Polled attribute name = double_scalar\\nPolling period…``)."""
    return frozenset(
        match.group(1).lower() for text in status for match in _POLLED_NAME.finditer(str(text))
    )


def may_have_events(attribute: str, polled: frozenset[str]) -> bool:
    """Whether a client-polled attribute is worth an event subscription attempt: its device
    polls it now (device polling turned on while it was polled by the client)."""
    return attribute.lower() in polled


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
