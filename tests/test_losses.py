"""Events lost before the hub (bad weather, item 9): estimated, next to the queue-full count.

The storm device (devices/storm.py) numbers its events: ``Counter`` is the
sequence number, and so is element 0 of each ``Spectrum``, so a test knows
exactly how many events the hub never saw and can judge the estimate, which
uses the counter for ``Counter`` (an integer that steps by one per event) and
Tango timestamps for ``Spectrum`` (the hub does not know what element 0 means).
"""

from __future__ import annotations

import re
import time

import pytest
import tango
from prometheus_client import generate_latest

from tango_bokeh.dashboard.metrics import make_registry
from tango_bokeh.hub import Hub
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.tango.losses import (
    Tail,
    consecutive,
    estimate_lost,
    missed_events,
    typical_rate,
)
from tango_bokeh.tango.modes import Mode

from .conftest import wait_for

STORM = "sim/storm/1"


def test_a_counter_gives_the_exact_number_lost():
    assert consecutive(101, 105, 5) and not consecutive(101, 106, 5)
    assert not consecutive(True, True, 1) and not consecutive(1.0, 3.0, 3)
    assert not consecutive(1, 2, 2)  # two values prove little
    # 100 taken in before; 101..104 lost; 105..109 in this batch.
    assert estimate_lost(Tail(9.0, 100), Tail(10.0, 105), Tail(10.4, 109), 5, counter=True) == 4
    assert estimate_lost(None, Tail(10.0, 105), Tail(10.4, 109), 5, counter=True) == 0
    # The count started again (a storm restarted): 1..4 lost, 5..9 taken in.
    assert estimate_lost(Tail(9.0, 6000), Tail(10.0, 5), Tail(10.4, 9), 5, counter=True) == 4


def test_without_a_counter_the_timestamps_give_an_estimate():
    # 10 events at 100/s in this batch, the previous one taken in 1 s before the batch:
    # about 99 lost in between.
    first, last = Tail(11.0, 0.5), Tail(11.09, 0.7)
    assert estimate_lost(Tail(10.0, 0.3), first, last, 10, counter=False) == 99
    assert estimate_lost(Tail(10.99, 0.3), first, last, 10, counter=False) == 0  # no gap
    assert estimate_lost(Tail(10.0, 0.3), first, first, 1, counter=False) == 0  # no rate
    # Only events after the queue was last emptied can have been lost there.
    assert estimate_lost(Tail(10.0, 0.3), first, last, 10, counter=False, since=10.5) == 49
    # A burst (one batch at ten times the rate) does not set the rate losses are counted at.
    assert typical_rate([100.0, 98.0, 1000.0, 101.0, 99.0]) == 100.0 and typical_rate([]) is None
    assert estimate_lost(Tail(10.0, 0.3), first, last, 10, False, rate=typical_rate([100.0])) == 99
    assert missed_events(["API_MissedEvents: Missed some events!", None, "API_X: y"]) == 1


def _storm(hub: Hub, payload: str, rate: float, seconds: float) -> tuple[int, int, int]:
    """Run the storm into ``hub``: (events pushed, events taken in, events lost estimated)."""
    device = tango.DeviceProxy(STORM)
    device.Stop()
    device.Payload = payload
    device.Rate = rate
    attribute = "Counter" if payload == "scalar" else "Spectrum"
    cursor = hub.subscribe(f"{STORM}/{attribute}")
    wait_for(lambda: cursor.mode is Mode.CHANGE, what="change events")
    time.sleep(0.3)
    cursor.read()
    before = cursor.channel.stats()
    taken: list = []
    try:
        device.Start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # read as a session's tick does
            taken += [s for s in cursor.read() if s.ok]
            time.sleep(0.05)
    finally:
        device.Stop()
    pushed = device.Pushed
    time.sleep(0.5)
    taken += [s for s in cursor.read() if s.ok]
    assert cursor.lost == 0  # the ring kept everything: all losses were before the hub
    after = cursor.channel.stats()
    assert after.queue_full > before.queue_full
    return pushed, len(taken), after.lost_estimate - before.lost_estimate


@pytest.mark.tango
def test_events_lost_in_a_full_queue_are_counted_exactly_for_a_counter(control_system):
    hub = Hub(Acquisition(AcquisitionConfig(max_queue=5, drain_period=0.2)))
    try:
        pushed, taken, estimate = _storm(hub, "scalar", 2000.0, 1.5)
        lost = pushed - taken
        assert lost > 1000, (pushed, taken)
        assert abs(estimate - lost) <= 0.02 * lost + 5, (estimate, lost)
        text = generate_latest(make_registry(lambda: hub, lambda: [], lambda _s: "")).decode()
        name = 'tango_bokeh_events_lost_estimate_total{attribute="sim/storm/1/counter"}'
        metric = re.search(re.escape(name) + r" (\S+)", text)
        assert metric and float(metric[1]) >= estimate
    finally:
        hub.close()


@pytest.mark.tango
def test_events_lost_in_a_full_queue_are_estimated_from_timestamps(control_system):
    """Spectra of 1024 doubles at 5000/s into a queue of 10 frames drained every 0.1 s."""
    hub = Hub(Acquisition(AcquisitionConfig(max_queue=10, drain_period=0.1)))
    try:
        pushed, taken, estimate = _storm(hub, "spectrum", 5000.0, 1.5)
        lost = pushed - taken
        assert lost > 1000, (pushed, taken)
        print(f"spectrum storm: {lost} lost, {estimate} estimated ({estimate / lost:.2f})")
        assert 0.5 * lost <= estimate <= 2.0 * lost, (estimate, lost)  # an estimate (bursts)
    finally:
        hub.close()
