"""What a view may know of an attribute besides its samples: a pure value type.

It lives beside :mod:`.sample` and :mod:`.modes` (no PyTango, no bokeh) so that
sessions, views and tests share it without importing a layer above them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .modes import Mode
from .polling import PollRate
from .sample import AttributeInfo


@dataclass(frozen=True)
class AttributeState:
    """Metadata, acquisition mode and trouble of one attribute, as one tick sees them."""

    name: str  # as the user wrote it
    info: AttributeInfo | None  # None until acquisition has read the configuration
    mode: Mode  # change/periodic/archive event, poll, pending (retrying), failed
    status: str | None  # why it is pending/failed (a Tango error text), else None
    lost: int = 0  # samples this reader lost to ring overflow so far
    queue_full: int = 0  # times Tango's event queue was found full (events lost before the hub)
    poll: PollRate | None = None  # under client polling: how often it is read, and why
    lost_estimate: int = 0  # events estimated lost before the hub (ZMQ, see tango/losses.py)


__all__ = ["AttributeState"]
