"""Event ingest in Tango's pull mode: bounded queues, batch conversion, nothing lost."""

from __future__ import annotations

import time

import pytest
import tango
from bokeh.document import Document

from tango_bokeh.hub import DEFAULT_CAPACITY, Channel, Cursor, Hub
from tango_bokeh.monitor import MonitorSession
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig, queue_size
from tango_bokeh.tango.convert import sample_from_event, samples_from_events
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.names import parse_name
from tango_bokeh.tango.sample import AttributeInfo, Format, Quality, Sample
from tango_bokeh.views import Trend

from .conftest import wait_for

STORM = "sim/storm/1"


# --- without Tango ---------------------------------------------------------------------


def test_queue_is_bounded_in_bytes_by_declared_size():
    config = AcquisitionConfig(queue_bytes=32 << 20, max_queue=10_000)
    scalar = AttributeInfo("x", dtype="float64")
    spectrum = AttributeInfo("s", Format.SPECTRUM, dtype="float64", max_dim_x=65536)
    image = AttributeInfo("i", Format.IMAGE, dtype="uint16", max_dim_x=8192, max_dim_y=8192)
    state = AttributeInfo("State", dtype="object")
    assert queue_size(scalar, config) == 10_000
    assert queue_size(state, config) == 10_000
    assert queue_size(spectrum, config) == 63  # 512 KiB per declared spectrum
    assert queue_size(image, config) == 2  # never fewer than two
    assert queue_size(spectrum, AcquisitionConfig(queue_bytes=1 << 30)) == 2047


def test_a_batch_is_taken_in_as_its_samples_one_by_one():
    batch = [
        Sample(10.0, 1.0),
        Sample(9.0, 2.0),  # older than the newest seen: never shown
        Sample(11.0, None, Quality.INVALID, "API_EventTimeout: gone", stale=True),
        Sample(10.5, 3.0),  # older than 11.0? no: errors do not move the clock
        Sample(12.0, None, Quality.INVALID),
        Sample(12.0, 4.0),  # same time, events: kept
    ]
    one_by_one, batched = (
        Channel(parse_name("a/b/c/d"), DEFAULT_CAPACITY),
        Channel(parse_name("a/b/c/d"), DEFAULT_CAPACITY),
    )
    for channel in (one_by_one, batched):
        channel.set_info(AttributeInfo("d"))
    for sample in batch:
        one_by_one.push(sample)
    batched.extend(batch)
    batched.extend([])
    assert batched.stats() == one_by_one.stats()
    assert batched.stats().received == 6 and batched.stats().out_of_order == 1
    assert batched.stats().errors == 1 and batched.stats().last_update == 12.0
    assert batched.latest() == one_by_one.latest() == Sample(12.0, 4.0)


# --- against the embedded control system -----------------------------------------------


def storm_into(hub: Hub, rate: float, seconds: float = 1.5) -> tuple[Cursor, int, list[int]]:
    """Run the storm's Counter at ``rate`` into a new reader of ``hub``.

    Returns the reader, how many events the device pushed and the values read
    (those of the run only).
    """
    device = tango.DeviceProxy(STORM)
    device.Stop()
    device.Payload = "scalar"
    device.Rate = rate
    cursor = hub.subscribe(f"{STORM}/Counter")
    wait_for(lambda: cursor.mode is Mode.CHANGE, what="change events")
    time.sleep(0.3)
    cursor.read()  # the value read at subscription
    try:
        device.Start()
        time.sleep(seconds)
    finally:
        device.Stop()
    time.sleep(0.5)
    return cursor, device.Pushed, [s.value for s in cursor.read() if s.ok]


@pytest.mark.tango
def test_batch_conversion_equals_event_by_event(control_system):
    """On real events, values and errors alike (the faulty device pushes error events)."""
    proxy = tango.DeviceProxy("sim/faulty/1")
    eid = proxy.subscribe_event("Value", tango.EventType.CHANGE_EVENT, 1000)
    try:
        events: list = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            any(e.err for e in events) and any(not e.err for e in events)
        ):
            time.sleep(0.2)
            events += proxy.get_events(eid)
    finally:
        proxy.unsubscribe_event(eid)
    assert any(e.err for e in events) and any(not e.err for e in events)
    assert samples_from_events(events) == [sample_from_event(e) for e in events]


@pytest.mark.tango
def test_no_event_is_lost_below_saturation(control_system):
    """The storm's Counter is its sequence number (1, 2, ...): the hub must see every one."""
    hub = Hub()
    try:
        cursor, pushed, values = storm_into(hub, 1000.0)
        assert pushed >= 1000
        assert values == list(range(1, pushed + 1))  # none missing, none repeated
        assert cursor.channel.queue_full == 0 and cursor.lost == 0
    finally:
        hub.close()


@pytest.mark.tango
def test_a_full_queue_keeps_the_newest_and_is_counted(control_system):
    hub = Hub(Acquisition(AcquisitionConfig(max_queue=5, drain_period=0.2)))
    try:
        cursor, pushed, values = storm_into(hub, 2000.0)
        channel = cursor.channel
        assert channel.queue_full >= 3
        assert channel.stats().queue_full == channel.queue_full
        assert channel.received <= 5 * (channel.queue_full + 4)  # five per drain at most
        assert values == sorted(values) and values[-1] == pushed  # the newest survive
    finally:
        hub.close()


@pytest.mark.tango
def test_an_event_storm_is_reported_in_its_trend_and_harms_no_other(control_system):
    """A reader whose ring overflows says so in the storm's trend; the next trend is fine."""
    hub = Hub(capacity={Format.SCALAR: 50})
    device = tango.DeviceProxy(STORM)
    device.Stop()
    device.Payload = "scalar"
    device.Rate = 5000.0
    stormy, calm = Trend(f"{STORM}/Counter"), Trend("sim/counter/1/Counts")
    session = MonitorSession(stormy, calm, hub=hub, callback_period=None)
    try:
        session.attach(Document())
        wait_for(lambda: hub.stats().subscriptions == 2, what="both subscribed")
        device.Start()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.2)  # five times a session's shortest tick
            session.tick()
        device.Stop()
        assert "some were dropped" in stormy.problem_text
        assert calm.problem_text == "" and len(calm._series[0].source.data["t"]) >= 2
    finally:
        device.Stop()
        session.close()
        hub.close()
