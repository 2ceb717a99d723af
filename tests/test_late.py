"""Attributes that appear late (dynamic attributes) or go away: said clearly, picked up when there.

The awkward device creates its dynamic attribute ``Late`` on ``AddLate`` and
removes it on ``RemoveLate``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import tango
from bokeh.document import Document

from tango_bokeh.hub import Hub
from tango_bokeh.session import Session
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.tango.modes import Mode, looks_again, missing_text
from tango_bokeh.views import AutoView, Trend

from .conftest import wait_for


def test_which_failures_are_looked_for_again():
    assert looks_again("API_AttrNotFound")
    assert not looks_again("API_DeviceNotDefined") and not looks_again("DB_DeviceNotDefined")
    text = missing_text("sim/awkward/1", "Late", 10.0, "API_AttrNotFound: Late not found")
    assert text == (
        "sim/awkward/1 has no attribute 'Late' (yet): looking for it again every 10 s "
        "(API_AttrNotFound: Late not found)"
    )
    for bad in (0.0, math.inf, math.nan, 1e9):
        with pytest.raises(ValueError, match="missing_retry"):
            AcquisitionConfig(missing_retry=bad)


@pytest.fixture
def device(awkward: str) -> Iterator[tango.DeviceProxy]:
    proxy = tango.DeviceProxy(awkward)
    proxy.set_timeout_millis(10_000)
    proxy.RemoveLate()
    try:
        yield proxy
    finally:
        proxy.RemoveLate()


@pytest.fixture
def late_hub(control_system) -> Iterator[Hub]:
    config = AcquisitionConfig(poll_period=0.2, missing_retry=0.5, retry_delays=(0.5, 1.0))
    hub = Hub(Acquisition(config))
    try:
        yield hub
    finally:
        hub.close()


@pytest.mark.tango
def test_a_late_attribute_is_said_missing_then_picked_up(late_hub: Hub, device, awkward: str):
    name = f"{awkward}/Late"
    session = Session(hub=late_hub, callback_period=None)
    auto = session.add_view(AutoView(name))
    Document().add_root(auto.model)
    cursor = session.cursors[name]
    wait_for(lambda: cursor.mode is Mode.FAILED, what="the missing attribute reported")
    assert "has no attribute 'Late' (yet): looking for it again every 0.5 s" in cursor.status
    assert "API_AttrNotFound" in cursor.status
    session.tick()
    assert "has no attribute 'Late' (yet)" in auto.problem_text
    errors = late_hub.stats().attributes[name.lower()].errors
    wait_for(lambda: late_hub.stats().attributes[name.lower()].received > 0, what="a sample")

    device.AddLate()
    wait_for(lambda: cursor.mode is Mode.POLL, what="the late attribute picked up")
    assert cursor.status is None and cursor.info.unit == "bar"
    assert late_hub.stats().attributes[name.lower()].errors <= errors + 1  # one, not one a look

    def drawn() -> bool:
        session.tick()
        return isinstance(auto.inner, Trend) and len(auto.inner._series[0].source.data["y"]) > 1

    wait_for(drawn, what="the late attribute on a trend")
    assert auto.problem_text == ""

    # It goes away again (a device restarted with another configuration): errors in place,
    # and values again when it is back.
    device.RemoveLate()
    wait_for(lambda: (session.tick(), "API_AttrNotFound" in auto.problem_text)[1],
             what="the attribute gone, said in place")  # fmt: skip
    device.AddLate()
    wait_for(lambda: (session.tick(), auto.problem_text == "")[1], what="values again")
    session.close()
