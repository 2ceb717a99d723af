"""An in-memory acquisition: what :class:`~tango_bokeh.hub.Hub` needs, with no Tango at all.

As ophyd-async pairs each backend with a mock, :class:`FakeAcquisition`
stands in for :class:`~.acquisition.Acquisition` where a test is about our
own logic (hub fan-out, sessions, views) rather than about Tango: it starts
nothing, and the test plays the device (:meth:`FakeAcquisition.push`,
:meth:`~FakeAcquisition.fail`, :meth:`~FakeAcquisition.configure`). What only
Tango can show (events, polling, time-outs) stays with the Tango-backed tests.

Thread contract: every method may be called from any thread (one lock).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .acquisition import Feed
from .modes import Mode
from .names import AttributeName, parse_name
from .sample import AttributeInfo, Format, Kind, Quality, Sample


@dataclass(eq=False)  # one per start: compared and hashed by identity
class FakeHandle:
    """One started acquisition; :meth:`stop` ends it."""

    owner: FakeAcquisition
    name: AttributeName
    feed: Feed
    period: float
    stopped: bool = False
    mode: Mode = Mode.PENDING

    def stop(self) -> None:
        self.owner._stopped(self)


@dataclass
class FakeDevice:
    """What the fake knows of one attribute before anyone reads it."""

    info: AttributeInfo
    mode: Mode = Mode.CHANGE
    history: list[Sample] = field(default_factory=list)


class FakeAcquisition:
    """Acquisition's interface (``start``, ``running``, ``stats``, ``close``) in memory.

    An attribute nobody configured is a float64 scalar with change events;
    :meth:`configure` says otherwise (``mode=Mode.FAILED`` for a name the
    "device" does not have). Starting an attribute hands its configuration
    and mode to the feed at once, then its newest pushed value, as the real
    chain does once subscribed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, FakeDevice] = {}
        self._handles: dict[str, set[FakeHandle]] = {}
        self._closed = False
        self.starts = 0

    # -- the test plays the device ------------------------------------------------

    def configure(self, name: str, mode: Mode = Mode.CHANGE, **info: Any) -> None:
        """Declare ``name``'s configuration (``AttributeInfo`` fields) and acquisition mode."""
        key = parse_name(name).key
        with self._lock:
            self._devices[key] = FakeDevice(_info(name, **info), mode)

    def push(
        self, name: str, value: Any, *, t: float | None = None, quality: Quality = Quality.VALID
    ) -> Sample:
        """A new value of ``name``, delivered to every feed acquiring it."""
        sample = Sample(time.time() if t is None else t, value, quality)
        for feed in self._feeds(name, sample):
            feed.push(sample)
        return sample

    def fail(self, name: str, error: str) -> Sample:
        """A read error of ``name`` (as an unreachable device gives)."""
        sample = Sample(time.time(), None, Quality.INVALID, error)
        for feed in self._feeds(name, sample):
            feed.push(sample)
        return sample

    def lose(self, name: str, count: int) -> None:
        """``count`` events of ``name`` lost before the hub (as ZMQ's missed events are)."""
        for feed in self._feeds(name, None):
            feed.note_lost(count)

    def acquiring(self, name: str) -> int:
        """How many feeds acquire ``name`` now."""
        with self._lock:
            return len(self._handles.get(parse_name(name).key, ()))

    # -- what the hub calls ----------------------------------------------------------

    def start(self, name: AttributeName, feed: Feed, poll_period: float | None = None) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError("acquisition is closed")
            device = self._devices.setdefault(name.key, FakeDevice(_info(str(name))))
            handle = FakeHandle(self, name, feed, poll_period or 1.0, mode=device.mode)
            self._handles.setdefault(name.key, set()).add(handle)
            self.starts += 1
            newest = device.history[-1] if device.history else None
        if device.mode is Mode.FAILED:
            feed.set_mode(Mode.FAILED, f"{name}: no such attribute (fake device)")
            return handle
        feed.set_info(device.info)
        feed.set_mode(device.mode)
        if newest is not None:
            feed.push(newest)
        return handle

    @property
    def running(self) -> bool:
        return not self._closed

    def stats(self) -> dict[str, Any]:
        with self._lock:
            live = [h for hs in self._handles.values() for h in hs]
        polled = [h for h in live if h.mode is Mode.POLL]
        return {
            "subscriptions": len(live) - len(polled),
            "config_subscriptions": 0,
            "polled": len(polled),
            "polled_devices": len({h.name.device for h in polled}),
            "device_reads": 0,
            "worker_restarts": {},
            "poll_load": {},
            "poll_splits": 0,
        }

    def close(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            self._handles.clear()

    # -- inside ------------------------------------------------------------------------

    def _feeds(self, name: str, sample: Sample | None) -> list[Feed]:
        key = parse_name(name).key
        with self._lock:
            device = self._devices.setdefault(key, FakeDevice(_info(name)))
            if sample is not None:
                device.history = [sample]  # the newest, for a feed that starts later
            return [h.feed for h in self._handles.get(key, ()) if not h.stopped]

    def _stopped(self, handle: FakeHandle) -> None:
        with self._lock:
            handle.stopped = True
            self._handles.get(handle.name.key, set()).discard(handle)


def _info(name: str, **fields: Any) -> AttributeInfo:
    fields.setdefault("format", Format.SCALAR)
    fields.setdefault("kind", Kind.NUMBER)
    return AttributeInfo(name=name, **fields)


__all__ = ["FakeAcquisition", "FakeHandle"]
