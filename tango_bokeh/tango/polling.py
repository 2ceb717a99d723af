"""Client polling as a guest of the device: the rules, as pure functions.

A device serialises its reads, and a read holds the device's monitor, so
while we read, the device does nothing else: its own threads wait to push
events, other clients wait to read. Three rules keep polling harmless:

* **Isolation.** Attributes of a device are read together (one
  ``read_attributes`` per period), except those too slow to share the batch:
  an attribute whose read alone takes more than the device's budget of one
  batch period (:func:`is_slow`) is read on its own, at its own pace. A batch
  read that fails as a whole (a time-out, typically) is split: each attribute
  is read alone, so the slow or failing one is found and the others keep
  their values and their period. Whether a time-out is the attribute's or the
  device's is told by a ping (it answers while a read holds the device).
* **Budget.** The reads of one device take at most ``budget`` (a fraction) of
  wall time: :func:`effective_periods` shares the budget among the batch and
  the attributes read alone, cheapest first (max-min fairness), and lengthens
  the period of whatever does not fit. A 3 s read gets a period of 3 s /
  0.05 = 60 s at the default budget; the cheap batch keeps its period.
* **One read at a time** per device (the acquisition enforces it).

With a device that pushes its own events under its monitor, a budget of
``b`` costs it about ``b`` of its events (``bench/bench_polite.py``): the
default of 5 % keeps its own event rate above 0.9 of what it is unpolled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .modes import MAX_POLL_PERIOD, RETRY_REASONS

#: Share of a device's wall time that our reads may take, unless configured otherwise.
DEFAULT_BUDGET = 0.05
#: A slow attribute rejoins the batch when a read alone takes less than this share of
#: the slow threshold (hysteresis: an attribute near the threshold does not flip-flop).
REJOIN_FRACTION = 0.25


class Failure(StrEnum):
    """Why a read failed as a whole (not one attribute inside a successful call)."""

    TIMEOUT = "timeout"  # no answer within the client time-out
    UNREACHABLE = "unreachable"  # the device or its server cannot be reached
    OTHER = "other"


def classify(reasons: Sequence[str], descriptions: Sequence[str] = ()) -> Failure:
    """What a whole-call failure with this Tango error stack means."""
    if "API_DeviceTimedOut" in reasons or any("CallTimedout" in d for d in descriptions):
        return Failure.TIMEOUT
    if any(r in RETRY_REASONS for r in reasons):
        return Failure.UNREACHABLE
    return Failure.OTHER


def is_slow(read_seconds: float, period: float, budget: float) -> bool:
    """Whether one attribute's read alone is too long to share its device's batch."""
    return read_seconds > budget * period


def may_rejoin(read_seconds: float, period: float, budget: float) -> bool:
    """Whether an attribute read alone has become fast enough to rejoin the batch."""
    return read_seconds < REJOIN_FRACTION * budget * period


def fair_shares(loads: Sequence[float], budget: float) -> list[float]:
    """Max-min fair shares of ``budget`` for units wanting ``loads`` (each gets at most its
    load; what the cheap ones leave is split among the others). Sum ≤ ``budget``."""
    shares = [0.0] * len(loads)
    remaining = budget
    order = sorted(range(len(loads)), key=loads.__getitem__)
    for rank, index in enumerate(order):
        fair = remaining / (len(order) - rank)
        shares[index] = min(max(loads[index], 0.0), fair)
        remaining -= shares[index]
    return shares


def effective_periods(units: Sequence[tuple[float, float]], budget: float) -> list[float]:
    """Periods for units given as ``(requested period, read seconds)``: each its requested
    period if the device's budget allows, else the period its fair share allows (at most
    :data:`~.modes.MAX_POLL_PERIOD`)."""
    loads = [cost / requested for requested, cost in units]
    periods = []
    for (requested, cost), share in zip(units, fair_shares(loads, budget), strict=True):
        if cost <= 0.0 or share >= cost / requested:
            periods.append(requested)
        elif share <= 0.0:
            periods.append(MAX_POLL_PERIOD)
        else:
            periods.append(min(MAX_POLL_PERIOD, max(requested, cost / share)))
    return periods


def next_cost(previous: float | None, measured: float) -> float:
    """The read-time estimate after a read that took ``measured`` seconds: a longer read
    counts at once (be careful fast), a shorter one halfway (do not trust one lucky read)."""
    if previous is None or measured >= previous:
        return measured
    return 0.5 * (previous + measured)


#: Weight of the newest read in a batch's read-time estimate.
BATCH_WEIGHT = 0.3


def batch_cost(previous: float | None, measured: float) -> float:
    """The read-time estimate of a device's batch, read every period: smoothed, so that one
    read slowed by a busy machine does not slow the batch down (a slow attribute is found
    by its own reads, not by the batch's)."""
    if previous is None:
        return measured
    return (1.0 - BATCH_WEIGHT) * previous + BATCH_WEIGHT * measured


@dataclass(frozen=True)
class PollRate:
    """How one polled attribute is read now: what stats, metrics and views show."""

    requested: float  # seconds, as asked
    period: float  # seconds, as read (longer when slow or over the device's budget)
    read_seconds: float  # the last read-time estimate of what it is read with
    alone: bool  # read on its own (too slow for the batch) rather than with the device's batch
    budget: float  # the device's budget it obeys

    @property
    def slowed(self) -> bool:
        """Read less often than asked (more than 10 % longer period)."""
        return self.period > 1.1 * self.requested

    def differs(self, other: PollRate | None) -> bool:
        """Worth telling: the mode of reading or the period changed by more than 10 %."""
        if other is None or other.alone != self.alone:
            return True
        return not math.isclose(self.period, other.period, rel_tol=0.1)


def describe(rate: PollRate | None) -> str | None:
    """One line for status columns, or ``None`` when the attribute is read as asked."""
    if rate is None or not (rate.slowed or rate.alone):
        return None
    read = f"{rate.read_seconds:.3g} s"
    budget = f"device budget {rate.budget * 100:g} %"
    every = _seconds(rate.period)
    if rate.alone:
        return f"slow to read ({read}): read alone every {every} ({budget})"
    return f"read every {every} instead of {_seconds(rate.requested)} ({read} a read, {budget})"


def _seconds(value: float) -> str:
    return f"{value:.2g} s" if value < 10 else f"{value:.0f} s"
