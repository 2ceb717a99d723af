"""Configuration follows the device: a unit, limits or labels changed at run time reach the views.

The awkward device's ``SetUnit`` switches ``Temperature`` between K and degC
(with its alarm limits) and sends an attribute-configuration event, as Tango
does when a client changes an attribute's configuration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tango
from bokeh.document import Document
from bokeh.models import Label, Span

from tango_bokeh.hub import Channel, Hub
from tango_bokeh.session import Session
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.names import parse_name
from tango_bokeh.tango.sample import AttributeInfo, Format, Kind, Sample
from tango_bokeh.views import Trend, ValueTable
from tango_bokeh.views.base import AttributeState

from .conftest import wait_for

TEMP = "sim/awkward/1/Temperature"
T0 = time.time() - 100.0
KELVIN = AttributeInfo(TEMP, unit="K", display_format="%.2f", max_alarm=350.0)


def celsius(since: float) -> AttributeInfo:
    # As the hub makes it: a new configuration carries the time it replaced the old one.
    return AttributeInfo(TEMP, unit="degC", display_format="%.1f", max_alarm=76.85, since=since)


def states(info: AttributeInfo) -> dict[str, AttributeState]:
    return {TEMP: AttributeState(TEMP, info, Mode.POLL, None)}


def attach(view) -> None:
    Document().add_root(view.model)


# -- the hub -----------------------------------------------------------------------------


def test_a_channel_dates_a_new_configuration_and_ignores_the_same_one():
    channel = Channel(parse_name(TEMP), {Format.SCALAR: 8, Format.SPECTRUM: 2, Format.IMAGE: 1})
    channel.set_info(KELVIN)
    assert channel.info is KELVIN and channel.info.since is None
    channel.set_info(AttributeInfo(TEMP, unit="K", display_format="%.2f", max_alarm=350.0))
    assert channel.info is KELVIN and channel.config_changes == 0  # equal: nothing new
    before = time.time()
    channel.set_info(celsius(0.0))
    assert channel.info.unit == "degC" and channel.info.since >= before
    assert channel.stats().config_changes == 1


# -- the views ---------------------------------------------------------------------------


def test_a_trend_never_mixes_units_when_the_unit_changes():
    trend = Trend(TEMP, history_seconds=3600)
    attach(trend)
    trend.update({TEMP: [Sample(T0 + i, 300.0 + i) for i in range(5)]}, T0 + 5, states(KELVIN))
    (kelvin,) = trend._series
    change = T0 + 10
    mixed = [Sample(T0 + 8, 305.0), Sample(T0 + 11, 32.0), Sample(T0 + 12, 33.0)]
    trend.update({TEMP: mixed}, T0 + 12, states(celsius(change)))
    assert len(trend._series) == 2
    old, new = trend._series
    assert old is kelvin and old.retired and old.unit == "K" and new.unit == "degC"
    assert list(old.source.data["y"]) == [300.0, 301.0, 302.0, 303.0, 304.0, 305.0]
    assert list(new.source.data["y"]) == [32.0, 33.0]  # never on the kelvin line or axis
    assert old.y_range_name != new.y_range_name
    labels = sorted(a.axis_label for a in trend._figure.yaxis)
    assert labels == sorted([f"{TEMP} [K]", f"{TEMP} [degC]"])  # an axis each
    assert trend._legend.visible
    assert [item.label.value for item in trend._legend.items] == [
        f"{TEMP} [K]",
        f"{TEMP} [degC]",
    ]
    spans = [m for m in trend._figure.center if isinstance(m, Span)]
    notes = [m for m in trend._figure.center if isinstance(m, Label)]
    assert len(spans) == 1 and spans[0].location == pytest.approx(
        float(new.unit_change[2] + time.localtime(change).tm_gmtoff) * 1000.0
    )
    assert notes[0].text == "unit K → degC"
    assert "unit changed from K to degC" in trend.problem_text
    assert math.isnan(old.carry) and new.carry == 33.0  # only the new unit is carried to now
    # More samples go to the new series only.
    trend.update({TEMP: [Sample(T0 + 13, 34.0)]}, T0 + 13, states(celsius(change)))
    assert list(new.source.data["y"]) == [32.0, 33.0, 34.0] and len(old.source.data["y"]) == 6
    # Back to kelvin: the kelvin series resumes after a gap; no third series.
    back = AttributeInfo(TEMP, unit="K", display_format="%.2f", since=T0 + 20)
    trend.update({TEMP: [Sample(T0 + 21, 306.0)]}, T0 + 21, states(back))
    assert len(trend._series) == 2 and not old.retired and new.retired
    y = list(old.source.data["y"])
    assert y[:6] == [300.0, 301.0, 302.0, 303.0, 304.0, 305.0] and math.isnan(y[6]) and y[7] == 306
    assert notes[0].text == "unit degC → K" and len(trend._figure.center) >= 2
    csv = trend.to_csv()
    assert "306.0" in csv and "32.0" in csv


def test_a_trend_refuses_an_attribute_that_is_redefined_as_text():
    trend = Trend(TEMP)
    attach(trend)
    trend.update({TEMP: [Sample(T0, 300.0)]}, T0 + 1, states(KELVIN))
    text = AttributeInfo(TEMP, kind=Kind.STRING, dtype="object", since=T0 + 2)
    trend.update({TEMP: [Sample(T0 + 3, "hot")]}, T0 + 3, states(text))
    assert "is a string attribute" in trend.problem_text
    assert len(trend._series[0].source.data["y"]) == 1


def test_a_table_follows_unit_format_and_enum_labels_within_a_tick():
    table = ValueTable([TEMP, "a/b/c/phase"])
    attach(table)
    phase = AttributeInfo("a/b/c/phase", kind=Kind.ENUM, dtype="int16", enum_labels=("Off", "On"))
    st = {**states(KELVIN), "a/b/c/phase": AttributeState("a/b/c/phase", phase, Mode.POLL, None)}
    batch = {TEMP: [Sample(T0, 300.0)], "a/b/c/phase": [Sample(T0, 1)]}
    table.update(batch, T0, st)
    assert [r["value"] for r in table.rows] == ["300.00 K", "On"]
    # The configuration changes; the last value was sent under the old one: kept as it was.
    relabelled = AttributeInfo(
        "a/b/c/phase", kind=Kind.ENUM, dtype="int16", enum_labels=("Arrêt", "Marche"), since=T0 + 1
    )
    st = {**states(celsius(T0 + 1)), "a/b/c/phase": AttributeState("a/b/c/phase", relabelled,
                                                                      Mode.POLL, None)}  # fmt: skip
    table.update({}, T0 + 1, st)
    assert [r["value"] for r in table.rows] == ["300.00 K", "On"]
    table.update({TEMP: [Sample(T0 + 2, 26.85)], "a/b/c/phase": [Sample(T0 + 2, 1)]}, T0 + 2, st)
    assert [r["value"] for r in table.rows] == ["26.9 degC", "Marche"]


# -- against the awkward device ----------------------------------------------------------


@pytest.fixture
def device(awkward: str) -> Iterator[tango.DeviceProxy]:
    proxy = tango.DeviceProxy(awkward)
    proxy.set_timeout_millis(10_000)
    proxy.SetUnit("K")
    try:
        yield proxy
    finally:
        proxy.SetUnit("K")


@pytest.fixture
def config_hub(control_system) -> Iterator[Hub]:
    hub = Hub(Acquisition(AcquisitionConfig(poll_period=0.2)))
    try:
        yield hub
    finally:
        hub.close()


class _Tick(Session):
    """A session driven by hand (no Document needed: views are plain objects)."""


@pytest.mark.tango
def test_a_unit_changed_on_the_device_reaches_the_views_within_a_tick(
    config_hub: Hub, device, awkward: str
):
    session = _Tick(hub=config_hub, callback_period=None)
    trend = session.add_view(Trend(TEMP, history_seconds=600))
    table = session.add_view(ValueTable([TEMP, f"{awkward}/Counter"]))
    for view in (trend, table):
        attach(view)
    cursor = session.cursors[TEMP]
    wait_for(lambda: cursor.mode is Mode.POLL, what="Temperature polled")
    stats = config_hub.acquisition.stats
    wait_for(lambda: stats()["config_subscriptions"] == 2, what="configuration events followed")
    wait_for(lambda: (session.tick(), len(trend._series[0].source.data["y"]) >= 3)[1],
             what="kelvin values")  # fmt: skip
    assert trend._series[0].unit == "K" and table.rows[0]["value"].endswith(" K")

    device.SetUnit("degC")
    wait_for(lambda: cursor.info.unit == "degC", what="the configuration event")
    info = cursor.info
    assert info.since is not None and info.max_alarm == pytest.approx(76.85)
    assert info.min_alarm == pytest.approx(-23.15)
    session.tick()  # one tick: the views know
    assert len(trend._series) == 2 and trend._series[1].unit == "degC"
    assert "unit changed from K to degC" in trend.problem_text

    def celsius_shown() -> bool:
        session.tick()
        return table.rows[0]["value"].endswith(" degC")

    wait_for(celsius_shown, what="a degC value in the table")
    kelvin, degc = (np.asarray(s.source.data["y"]) for s in trend._series)
    assert np.nanmin(kelvin) > 200 and np.nanmax(degc) < 100  # no value on the wrong line
    assert config_hub.stats().attributes[TEMP.lower()].config_changes == 1
    session.close()
    wait_for(lambda: stats()["config_subscriptions"] == 0, what="configuration unsubscribed")
