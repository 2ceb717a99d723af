"""Hub, session and views on the in-memory acquisition: our logic, with no Tango at all.

None of these tests asks for the control system: they would run on a machine
without PyTango servers. What only Tango can show stays in the Tango tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from bokeh.document import Document

from tango_bokeh.hub import Hub
from tango_bokeh.monitor import MonitorSession
from tango_bokeh.session import Session
from tango_bokeh.tango.fake import FakeAcquisition
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import Format, Quality
from tango_bokeh.views import Spectrum, Trend, ValueTable

CURRENT = "fake/beam/1/Current"


@pytest.fixture
def fake() -> Iterator[tuple[Hub, FakeAcquisition]]:
    acquisition = FakeAcquisition()
    hub = Hub(acquisition)
    try:
        yield hub, acquisition
    finally:
        hub.close()


def test_one_acquisition_per_attribute_fanned_out_and_stopped_with_its_last_reader(fake):
    hub, device = fake
    first, second = hub.subscribe(CURRENT), hub.subscribe(CURRENT.upper())
    assert device.acquiring(CURRENT) == 1 and device.starts == 1
    device.push(CURRENT, 1.0)
    device.push(CURRENT, 2.0)
    assert [s.value for s in first.read()] == [1.0, 2.0] == [s.value for s in second.read()]
    assert first.mode is Mode.CHANGE and hub.stats().subscriptions == 1
    first.close()
    assert device.acquiring(CURRENT) == 1
    second.close()
    assert device.acquiring(CURRENT) == 0 and hub.stats().channels == 0


def test_a_late_reader_starts_at_the_current_value(fake):
    hub, device = fake
    early = hub.subscribe(CURRENT)
    for value in (1.0, 2.0, 3.0):
        device.push(CURRENT, value)
    late = hub.subscribe(CURRENT)
    assert [s.value for s in late.read()][-1] == 3.0
    assert [s.value for s in early.read()] == [1.0, 2.0, 3.0]


def test_a_session_ticks_pushed_values_into_its_views(fake):
    hub, device = fake
    device.configure("fake/mca/1/Spectrum", format=Format.SPECTRUM, max_dim_x=8)
    trend, spectrum = Trend([CURRENT]), Spectrum("fake/mca/1/Spectrum")
    table = ValueTable([CURRENT, "fake/mca/1/Spectrum"])
    session = Session(hub=hub, callback_period=None)
    for view in (trend, spectrum, table):
        session.add_view(view)
    session.attach(Document())
    try:
        device.push(CURRENT, 10.0, t=time.time() - 2)
        device.push(CURRENT, 11.0, t=time.time() - 1, quality=Quality.ALARM)
        device.push("fake/mca/1/Spectrum", np.arange(8.0))
        session.tick()
        csv = trend.to_csv()
        assert "10.0" in csv and "11.0" in csv and "ALARM" in csv
        assert "7.0" in spectrum.to_csv()
        assert "11" in table.to_csv()
    finally:
        session.close()
    assert hub.stats().channels == 0 and device.acquiring(CURRENT) == 0


def test_a_missing_attribute_and_a_read_error_show_in_place(fake):
    hub, device = fake
    device.configure("fake/beam/1/Nope", mode=Mode.FAILED)
    session = MonitorSession(CURRENT, "fake/beam/1/Nope", hub=hub, callback_period=None)
    session.attach(Document())
    try:
        device.push(CURRENT, 1.0)
        session.tick()
        assert "Nope · failed · error" in session.status_text
        device.fail(CURRENT, "device sim/beam/1 is not answering")
        session.tick()
        assert "error" in session.status_text
        device.push(CURRENT, 2.0)
        session.tick()
        assert "Current · change" in session.status_text
    finally:
        session.close()


def test_events_lost_before_the_hub_reach_the_views_state(fake):
    hub, device = fake
    session = Session(hub=hub, callback_period=None)
    session.subscribe(CURRENT)
    try:
        device.lose(CURRENT, 17)
        assert session.states()[CURRENT].lost_estimate == 17
    finally:
        session.close()
