"""The hub against the real embedded control system and simulated device servers."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tango_bokeh.hub import Hub
from tango_bokeh.tango import InvalidName
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import Format, Kind, Quality

from .conftest import wait_for

pytestmark = pytest.mark.tango


def collect(cursor, seconds: float) -> list:
    samples: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples += cursor.read()
        time.sleep(0.05)
    return samples


def test_change_events_arrive(hub: Hub):
    cursor = hub.subscribe("sim/counter/1/Counts")
    wait_for(lambda: cursor.mode is Mode.CHANGE, what="a change-event subscription")
    samples = collect(cursor, 2.0)
    assert len(samples) >= 5
    assert all(isinstance(s.value, float) for s in samples if s.ok)
    times = [s.time for s in samples]
    assert times == sorted(times)
    assert abs(times[-1] - time.time()) < 5  # Tango timestamps, not sequence numbers
    assert cursor.info is not None and cursor.info.unit == "counts/s"
    assert hub.stats().subscriptions == 1


def test_periodic_events_when_no_change_threshold(hub: Hub):
    cursor = hub.subscribe("sim/beam/current/Current")
    wait_for(lambda: cursor.mode is Mode.PERIODIC, what="fallback to periodic events")
    samples = collect(cursor, 1.5)
    assert len([s for s in samples if s.ok]) >= 2


def test_attribute_without_events_is_polled(hub: Hub):
    cursor = hub.subscribe("sim/temp/1/Temperature")
    wait_for(lambda: cursor.mode is Mode.POLL, what="fallback to client polling")
    samples = collect(cursor, 1.5)
    assert len([s for s in samples if s.ok]) >= 3
    stats = hub.stats()
    assert stats.subscriptions == 0 and stats.polled == 1


def test_polling_is_batched_per_device(hub: Hub):
    a = hub.subscribe("sim/vacuum/1/Pressure")
    b = hub.subscribe("sim/vacuum/1/State")
    wait_for(lambda: a.mode is Mode.POLL and b.mode is Mode.POLL, what="both polled")
    before = hub.stats().device_reads
    time.sleep(1.0)
    reads = hub.stats().device_reads - before
    assert hub.stats().polled_devices == 1
    assert 2 <= reads <= 8  # one read_attributes per 0.2 s period, not one per attribute
    assert all(s.ok for s in collect(a, 0.5))


def test_types_are_converted(hub: Hub):
    cursors = {
        "state": hub.subscribe("sim/motor/1/State"),
        "enum": hub.subscribe("sim/motor/1/Direction"),
        "bool": hub.subscribe("sim/motor/1/AtHome"),
        "string": hub.subscribe("sim/counter/1/Mode"),
        "spectrum": hub.subscribe("sim/spectro/1/Spectrum"),
        "image": hub.subscribe("sim/camera/1/Image"),
    }
    latest = {k: wait_for(c.latest, what=f"a {k} sample") for k, c in cursors.items()}
    assert latest["state"].value in {"ON", "MOVING", "OFF", "FAULT"}
    assert cursors["state"].info.kind is Kind.STATE
    assert isinstance(latest["enum"].value, int)
    assert cursors["enum"].info.kind is Kind.ENUM and cursors["enum"].info.enum_labels
    assert (
        cursors["enum"].info.format_value(latest["enum"].value) in cursors["enum"].info.enum_labels
    )
    assert isinstance(latest["bool"].value, bool)
    assert isinstance(latest["string"].value, str)
    spectrum = latest["spectrum"].value
    assert isinstance(spectrum, np.ndarray) and spectrum.shape == (1024,)
    assert cursors["spectrum"].info.format is Format.SPECTRUM
    image = latest["image"].value
    assert isinstance(image, np.ndarray) and image.shape == (512, 512) and image.dtype == np.uint16
    assert cursors["image"].info.format is Format.IMAGE


def test_three_readers_share_one_subscription(hub: Hub):
    cursors = [hub.subscribe("sim/motor/1/Position") for _ in range(3)]
    wait_for(lambda: cursors[0].mode is Mode.CHANGE, what="subscription")
    stats = hub.stats()
    assert stats.subscriptions == 1 and stats.channels == 1
    assert stats.attributes["sim/motor/1/position"].consumers == 3
    for c in cursors[:2]:
        c.close()
    assert hub.stats().subscriptions == 1
    cursors[2].close()
    wait_for(
        lambda: hub.stats().subscriptions == 0, what="the last reader to drop the subscription"
    )
    assert hub.stats().channels == 0


def test_readers_each_get_every_sample(hub: Hub):
    a = hub.subscribe("sim/counter/1/Counts")
    b = hub.subscribe("sim/counter/1/Counts")
    wait_for(lambda: a.mode is Mode.CHANGE, what="subscription")
    a.read(), b.read()
    time.sleep(1.0)
    sa, sb = a.read(), b.read()
    assert sa and [s.time for s in sa] == [s.time for s in sb]
    assert all(x is y for x, y in zip(sa, sb, strict=True))  # shared, not copied


def test_wrong_attribute_name_is_reported_and_harms_nobody(hub: Hub):
    good = hub.subscribe("sim/counter/1/Counts")
    bad = hub.subscribe("sim/motor/1/Positon")
    wait_for(lambda: bad.mode is Mode.FAILED, what="the bad name to fail")
    assert "API_AttrNotFound" in (bad.status or "")
    assert "Positon" in str(bad.name)
    error = bad.latest()
    assert error is not None and error.error and not error.ok
    assert hub.stats().attributes["sim/motor/1/positon"].last_error
    wait_for(lambda: good.mode is Mode.CHANGE, what="the good attribute")
    assert len([s for s in collect(good, 1.0) if s.ok]) >= 2


def test_unknown_device_is_reported(hub: Hub):
    bad = hub.subscribe("sim/nosuch/1/Value")
    wait_for(lambda: bad.mode is Mode.FAILED, what="an unknown device to fail")
    assert "DeviceNotDefined" in (bad.status or "")


def test_malformed_name_raises_at_once(hub: Hub):
    with pytest.raises(InvalidName, match="expected"):
        hub.subscribe("sim/motor/position")
    assert hub.stats().channels == 0


def test_unreachable_database_is_reported(hub: Hub):
    bad = hub.subscribe("tango://127.0.0.1:1/sim/motor/1/Position")
    wait_for(lambda: bad.latest() is not None, what="an error sample")
    sample = bad.latest()
    assert sample.error and sample.stale
    assert bad.mode is Mode.PENDING  # keeps retrying: it may come back


def test_invalid_quality_and_errors_are_data(hub: Hub):
    cursor = hub.subscribe("sim/faulty/1/Value")
    samples: list = []

    def seen_both() -> bool:
        samples.extend(cursor.read())
        return any(s.ok for s in samples) and any(not s.ok for s in samples)

    wait_for(seen_both, timeout=40, what="both good values and errors/INVALID")
    assert all(s.value is None for s in samples if s.quality is Quality.INVALID)
    assert any(s.error and "SimFaulty" in s.error for s in samples) or any(
        s.quality is Quality.INVALID for s in samples
    )


def test_device_restart_is_stale_then_resumes(hub: Hub, control_system):
    server = control_system.server("SimCounter/demo")
    cursor = hub.subscribe("sim/counter/1/Counts")
    wait_for(lambda: cursor.mode is Mode.CHANGE, what="subscription")
    collect(cursor, 0.5)
    control_system.stop_server(server, signal.SIGKILL)
    try:
        stale = wait_for(
            lambda: [s for s in cursor.read() if s.stale], timeout=30, what="a stale error event"
        )
        assert "API_EventTimeout" in stale[0].error
    finally:
        control_system.start_server(server)
        control_system.wait_ready(["sim/counter/1"])
    resumed = wait_for(
        lambda: [s for s in cursor.read() if s.ok],
        timeout=60,
        what="events to resume by themselves",
    )
    assert resumed[-1].time > stale[0].time - 1
    assert hub.stats().subscriptions == 1


def test_device_down_at_start_retries_until_it_is_up(hub: Hub, control_system):
    server = control_system.server("SimEnvironment/demo")
    control_system.stop_server(server)
    try:
        cursor = hub.subscribe("sim/temp/2/Temperature")
        wait_for(lambda: cursor.latest() is not None, what="an error sample")
        assert cursor.mode is Mode.PENDING and cursor.latest().stale
        assert "temp/2" in str(cursor.name)
    finally:
        control_system.start_server(server)
        control_system.wait_ready([d.name for d in server.devices])
    wait_for(lambda: cursor.mode is Mode.POLL, timeout=30, what="recovery")
    wait_for(lambda: [s for s in cursor.read() if s.ok], what="values after recovery")


def test_alias_and_fully_qualified_names(hub: Hub, control_system):
    by_alias = hub.subscribe("mot1/Position")
    full = hub.subscribe(f"tango://{control_system.tango_host}/sim/counter/1/counts")
    plain = hub.subscribe("SIM/COUNTER/1/COUNTS")
    wait_for(lambda: by_alias.mode is Mode.CHANGE, what="alias subscription")
    wait_for(lambda: full.mode is Mode.CHANGE, what="fully qualified subscription")
    assert full.channel is plain.channel  # same control system, any case: one channel
    assert hub.stats().subscriptions == 2
    assert by_alias.latest() is not None and by_alias.info.unit == "mm"


def test_an_alias_joins_the_channel_of_its_device_name(hub: Hub):
    full = hub.subscribe("sim/motor/1/Position")
    wait_for(lambda: full.mode is Mode.CHANGE, what="subscription by device name")
    by_alias = hub.subscribe("MOT1/position")
    wait_for(lambda: by_alias.channel is full.channel, what="the alias handed over")
    wait_for(lambda: by_alias.read() or by_alias.latest(), what="samples through the alias")
    again = hub.subscribe("mot1/Position")
    assert again.channel is full.channel  # a resolved alias goes straight to the channel
    stats = hub.stats()
    assert stats.subscriptions == 1 and stats.channels == 1 and stats.consumers == 3
    full.close()
    by_alias.close()
    assert hub.stats().channels == 1
    again.close()
    wait_for(lambda: hub.stats().subscriptions == 0, what="unsubscribed")
    assert hub.stats().channels == 0 and hub.channel("mot1/Position") is None


def test_a_device_name_finds_the_channel_its_alias_made(hub: Hub):
    by_alias = hub.subscribe("mot1/Velocity")
    wait_for(lambda: by_alias.mode is not Mode.PENDING, what="subscription by alias")
    full = hub.subscribe("sim/motor/1/velocity")
    assert full.channel is by_alias.channel
    stats = hub.stats()
    assert stats.channels == 1 and stats.subscriptions + stats.polled == 1


def test_rings_hold_only_what_some_reader_has_not_read(hub: Hub):
    fast = hub.subscribe("sim/counter/1/Counts")
    wait_for(lambda: fast.mode is Mode.CHANGE, what="subscription")
    channel = fast.channel
    slow = hub.subscribe("sim/counter/1/Counts")
    wait_for(lambda: (fast.read(), channel.held > 80)[1], timeout=60, what="samples held for slow")
    slow.close()  # the laggard leaves: the next read may release everything read
    fast.read()
    assert channel.held <= 64 + 1
    assert fast.latest() is not None
