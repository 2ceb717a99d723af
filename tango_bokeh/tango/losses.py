"""Events lost before the hub: an estimate, as pure functions.

Under an event storm Tango loses events in two places the hub never sees: the
bounded pull-mode queue of each subscription keeps the newest ``queue_size``
events and overwrites older ones between two drains (the drain finds the queue
full), and ZMQ drops events past its high-water mark (cppTango then queues an
``API_MissedEvents`` error event, without a count). Neither says how many, so
when a drain shows that some were lost the number is estimated:

* **from the device's own counter**, exactly, when the attribute is one: an
  integer that grows by one per event (the storm device's ``Counter``), seen as
  such in a batch whose values are consecutive: lost = newest - previous -
  events taken in (newest - events taken in when the count started again);
* **from Tango timestamps** otherwise: the device's event rate (the median of
  the rates within the last batches, events over their time span) times the
  time since the previous event taken in (or since the queue was last found
  empty, if later: the device was quiet until then), less the events taken
  in. A device
  whose rate changes from one moment to the next makes it rough (see
  docs/performance.md for how rough).

Nothing is estimated when nothing says events were lost: a quiet attribute or
a value that jumps are not losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

#: The error event cppTango queues when ZMQ dropped events (a gap in its event counter).
MISSED_EVENTS = "API_MissedEvents"


class Tail(NamedTuple):
    """The newest event taken in from a subscription: its Tango time and its value."""

    time: float
    value: Any


def counter_value(value: Any) -> int | None:
    """``value`` as a sequence number if it can be one (an integer, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def consecutive(first: Any, last: Any, count: int) -> bool:
    """Whether ``count`` events from ``first`` to ``last`` look like a counter's, one step
    each (at least three events: two equal-step values prove little)."""
    low, high = counter_value(first), counter_value(last)
    return count >= 3 and low is not None and high is not None and high - low == count - 1


def batch_rate(first: Tail, last: Tail, count: int) -> float | None:
    """Events per second within one batch of ``count`` events (``None``: too few to say)."""
    span = last.time - first.time
    return (count - 1) / span if count >= 3 and span > 0.0 else None


#: Batch rates remembered per subscription: their median is the rate losses are counted at
#: (a device catching up after a pause pushes a burst; one batch of it must not count).
RATES_KEPT = 9


def typical_rate(rates: Sequence[float]) -> float | None:
    """The median of recent batch rates, ``None`` without any."""
    if not rates:
        return None
    ordered = sorted(rates)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def estimate_lost(
    tail: Tail | None,
    first: Tail,
    last: Tail,
    count: int,
    counter: bool,
    since: float | None = None,
    rate: float | None = None,
) -> int:
    """Events lost between ``tail`` (the newest event taken in before) and ``last``, the
    newest of ``count`` events just taken in (``first`` the oldest); ``counter``: the
    attribute counts its events. ``since``: when the queue was last found empty (epoch s):
    what was lost is younger (the device was quiet between ``tail`` and then).
    ``rate``: events per second to count at (else this batch's own). 0 when nothing can
    be said."""
    if tail is None or count < 1:
        return 0
    if counter:
        before, newest = counter_value(tail.value), counter_value(last.value)
        if before is not None and newest is not None:
            if newest - before >= count:
                return newest - before - count
            if newest < before and consecutive(first.value, newest, count):
                return max(0, newest - count)  # it started again (from 1, as a count does)
    start = tail.time if since is None else max(tail.time, since)
    rate = rate if rate is not None else batch_rate(first, last, count)
    if rate is None or last.time <= start:
        return 0
    return max(0, round((last.time - start) * rate) - count)


def missed_events(errors: Sequence[str | None]) -> int:
    """How many of these error texts are cppTango's "events missed" notices."""
    return sum(1 for text in errors if text is not None and text.startswith(MISSED_EVENTS))
