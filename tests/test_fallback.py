"""The acquisition chain at run time (bad weather, item 7): events stop → client polling;
events possible again → events.

Against Debian's C++ TangoTest, whose device polling is turned on and off at run
time with ``poll_attribute`` / ``stop_poll_attribute`` (and restored after each
test): with polling on, ``double_scalar`` sends periodic events (it has no change
thresholds); ``stop_poll_attribute`` sends one ``API_PollObjNotFound`` error event
and then nothing, for as long as the device lives.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import tango
from bokeh.document import Document
from prometheus_client import generate_latest

from tango_bokeh.dashboard.metrics import make_registry
from tango_bokeh.hub import Hub
from tango_bokeh.monitor import MonitorSession
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.tango.modes import (
    MAX_OVERDUE,
    Reaction,
    event_error,
    may_have_events,
    overdue,
    overdue_after,
    periodic_interval,
    polled_attributes,
)
from tango_bokeh.views import ValueTable

from .conftest import wait_for

DEV = "sys/tg_test/1"
ATTR = "double_scalar"


# --- the policy, without Tango ----------------------------------------------------------


def test_error_events_that_mean_the_events_stopped():
    assert event_error("API_PollObjNotFound") is Reaction.EVENTS_STOPPED
    assert event_error("API_AttributePollingNotStarted") is Reaction.EVENTS_STOPPED
    assert event_error("API_EventTimeout") is Reaction.UNREACHABLE
    assert event_error("API_CantConnectToDevice") is Reaction.UNREACHABLE
    assert event_error("TangoTest_Exception") is Reaction.VALUE  # the value's own error


def test_when_periodic_events_are_due_and_overdue():
    # Tango fires a periodic event at the first poll at or after the event period.
    assert periodic_interval("1000", 500) == 1.0
    assert periodic_interval("1000", 300) == 1.2  # seen on TangoTest: 1.2 s apart
    assert periodic_interval("Not specified", 250) == 1.0  # Tango's default period
    assert periodic_interval("100", 3000) == 3.0
    assert periodic_interval("1000", 0) is None  # not polled: pushed by the device itself
    assert overdue_after(1.0) < 2.0  # client polling within two periods of the last event
    assert not overdue(1.0, 1.2) and overdue(1.0, 1.9) and not overdue(None, 1e6)
    assert overdue_after(1.0, late=2) == 4 * overdue_after(1.0)  # late but alive: wait longer
    assert overdue_after(1.0, late=50) == MAX_OVERDUE


def test_which_polled_attributes_may_have_events_again():
    status = [
        "Polled attribute name = double_scalar\nPolling period (mS) = 500\n"
        "Polling ring buffer depth = 10\nNo data recorded yet",
        "Polled command name = State\nPolling period (mS) = 3000",
        "Polled attribute name = Long_Scalar\nPolling period (mS) = 300",
    ]
    polled = polled_attributes(status)
    assert polled == {"double_scalar", "long_scalar"}
    assert may_have_events("Double_Scalar", polled) and not may_have_events("State", polled)
    assert polled_attributes([]) == frozenset()


# --- against TangoTest --------------------------------------------------------------------


@pytest.fixture
def device(tango_test: str) -> Iterator[tango.DeviceProxy]:
    """TangoTest with its own polling as it was before the test (none, on Debian)."""
    proxy = tango.DeviceProxy(DEV)
    polled = proxy.is_attribute_polled(ATTR)
    period = proxy.get_attribute_poll_period(ATTR) if polled else 0
    try:
        yield proxy
    finally:
        now = proxy.is_attribute_polled(ATTR)
        if polled:
            proxy.poll_attribute(ATTR, period)
        elif now:
            proxy.stop_poll_attribute(ATTR)


@pytest.fixture
def quick() -> Iterator[Hub]:
    """A hub that looks for events of client-polled attributes every second."""
    config = AcquisitionConfig(poll_period=0.5, retry_delays=(0.5, 1.0), events_recheck=1.0)
    hub = Hub(Acquisition(config))
    try:
        yield hub
    finally:
        hub.close()


def _metric(hub: Hub, name: str, **labels: str) -> float | None:
    text = generate_latest(make_registry(lambda: hub, lambda: [], lambda _s: "")).decode()
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match[1])) == labels:
            return float(match[2])
    return None


@pytest.mark.tango
def test_device_polling_stopped_falls_back_to_client_polling_and_back(
    quick: Hub, device: tango.DeviceProxy
):
    device.poll_attribute(ATTR, 500)
    table = ValueTable([f"{DEV}/{ATTR}"])
    session = MonitorSession(table, hub=quick, callback_period=None)
    try:
        session.attach(Document())
        (cursor,) = session.cursors.values()
        key = cursor.channel.name.key
        wait_for(lambda: cursor.mode == "periodic", what="periodic events")
        session.tick()
        assert table.rows[0]["mode"] == "periodic events"
        device.stop_poll_attribute(ATTR)
        stopped = time.monotonic()
        wait_for(lambda: cursor.mode == "poll", timeout=15, what="the fall back to polling")
        fallback = time.monotonic() - stopped
        stamp = time.time()
        wait_for(lambda: [s for s in cursor.read() if s.ok and s.time > stamp], timeout=10,
                 what="values read by the client")  # fmt: skip
        session.tick()
        assert table.rows[0]["mode"] == "polling"
        stats = quick.stats()
        assert stats.subscriptions == 0 and stats.polled == 1
        assert stats.attributes[key].mode_switches == 1
        assert _metric(quick, "tango_bokeh_attribute_mode", attribute=key, mode="poll") == 1.0
        assert _metric(quick, "tango_bokeh_attribute_mode_switches_total", attribute=key) == 1.0

        device.poll_attribute(ATTR, 500)  # turned on again while the page is open
        turned_on = time.monotonic()
        wait_for(lambda: cursor.mode == "periodic", timeout=20, what="events again")
        back = time.monotonic() - turned_on
        stamp = time.time()
        wait_for(lambda: [s for s in cursor.read() if s.ok and s.time > stamp], timeout=10,
                 what="events after the switch back")  # fmt: skip
        session.tick()
        assert table.rows[0]["mode"] == "periodic events"
        stats = quick.stats()
        assert stats.subscriptions == 1 and stats.polled == 0 and stats.polled_devices == 0
        assert stats.attributes[key].mode_switches == 2
        assert _metric(quick, "tango_bokeh_attribute_mode", attribute=key, mode="periodic") == 1.0
        print(f"fall back to polling after {fallback:.2f} s, back to events after {back:.2f} s")
    finally:
        session.close()


@pytest.mark.tango
def test_periodic_events_found_overdue_are_subscribed_again(quick: Hub, device: tango.DeviceProxy):
    """The device's polling period lengthened at run time (no error event at all): the
    events are overdue for the period known so far, the chain runs again and learns the
    new one; the attribute stays on events."""
    device.poll_attribute(ATTR, 500)
    cursor = quick.subscribe(f"{DEV}/{ATTR}")
    wait_for(lambda: cursor.mode == "periodic", what="periodic events")
    handle = cursor.channel.handle
    assert handle is not None and handle.interval == 1.0
    device.poll_attribute(ATTR, 3000)  # events every 3 s from now on
    wait_for(lambda: handle.interval == 3.0, timeout=20, what="the new period learnt")
    assert quick.acquisition.stats()["reevaluations"] >= 1
    assert cursor.mode == "periodic" and quick.stats().polled == 0
    first = time.time()
    wait_for(lambda: [s for s in cursor.read() if s.ok and s.time > first], timeout=15,
             what="periodic events at the new period")  # fmt: skip
