"""The awkward device in a served dashboard and in ``monitor()``'s session, as an operator sees it.

One page with what issue 14 tried: a table of nine polled attributes of one
device (one of them slow), a trend of the non-finite one and a trend whose
unit changes while the page is open; the device's own pushed counter beside.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tango
from bokeh.document import Document

from tango_bokeh.dashboard.client import open_page
from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub
from tango_bokeh.monitor import MonitorSession
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.views import Trend, ValueTable
from tango_bokeh.views.trend import UNDRAWN_NOTICE

from .conftest import wait_for

pytestmark = pytest.mark.tango

DEV = "sim/awkward/1"
TABLE = ("Fast", "Flaky", "NonFinite", "Temperature", "Phase", "EncodedJson", "Spectrum",
         "State", "Slow")  # fmt: skip
DASHBOARD = f"""
title: Awkward
refresh: 0.5 s
poll_period: 1 s
panels:
  - row:
      - table: {{title: Values, attributes: [{", ".join(f"{DEV}/{a}" for a in TABLE)},
                 {DEV}/Counter]}}
  - row:
      - trend: {{title: Odd values, attributes: [{DEV}/NonFinite]}}
      - trend: {{title: Temperature, attributes: [{DEV}/Temperature]}}
"""


@pytest.fixture
def device(awkward: str) -> Iterator[tango.DeviceProxy]:
    proxy = tango.DeviceProxy(awkward)
    proxy.set_timeout_millis(10_000)
    proxy.write_attribute("SlowDelay", 1.5)  # within the 3 s time-out, far over the budget
    proxy.SetUnit("K")
    try:
        yield proxy
    finally:
        proxy.write_attribute("SlowDelay", 0.0)
        proxy.SetUnit("K")


@pytest.fixture
def page_hub(control_system) -> Iterator[Hub]:
    hub = Hub(Acquisition(AcquisitionConfig(retry_delays=(0.5, 1.0))))
    try:
        yield hub
    finally:
        hub.close()


def test_a_dashboard_of_the_awkward_device(page_hub: Hub, device):
    dashboard = parse(DASHBOARD, "awkward.yaml")
    running = Serving(DashboardServer([dashboard], hub=page_hub), ServeOptions(port=0))
    running = running.start_thread()
    client = None
    try:
        client = open_page(f"{running.url}/awkward")
        (session,) = running.server.sessions()
        table = next(v for v in session.views if isinstance(v, ValueTable))
        odd, temperature = (v for v in session.views if isinstance(v, Trend))

        def rows() -> dict[str, dict[str, str]]:
            return {row["label"].rsplit("/", 1)[-1]: row for row in table.rows}

        wait_for(lambda: "slow read" in rows()["Slow"]["mode"], timeout=30,
                 what="the slow attribute said slowed in the mode column")  # fmt: skip
        wait_for(lambda: rows()["Fast"]["quality"] == "VALID", what="the cheap ones valid")
        shown = rows()
        for name in ("Fast", "Temperature", "Phase", "EncodedJson", "Spectrum", "State"):
            # In the batch: "polling", or "polling · every ... (budget)" on a busy machine.
            assert shown[name]["mode"].startswith("polling"), shown[name]
            assert "slow read" not in shown[name]["mode"], shown[name]
            assert shown[name]["error"] == "", shown[name]
        # Subscribing goes through the device's server, which the slow read keeps busy: on a
        # loaded machine the subscription may still be "pending" here.
        wait_for(lambda: rows()["Counter"]["mode"] == "change events", timeout=60,
                 what="the counter on change events")  # fmt: skip
        assert shown["EncodedJson"]["value"].startswith('{"phase": ')
        assert shown["Spectrum"]["value"] == "[1024 values]"
        wait_for(lambda: UNDRAWN_NOTICE in odd.problem_text, what="non-finite values said")
        assert odd._series[0].undrawn_rows > 0

        device.SetUnit("degC")
        wait_for(lambda: len(temperature._series) == 2, what="a degC series on the page")
        wait_for(lambda: rows()["Temperature"]["value"].endswith(" degC"), what="degC in table")
        wait_for(lambda: "unit changed from K to degC" in temperature.problem_text,
                 what="the unit change said on the trend")  # fmt: skip
    finally:
        if client is not None:
            client.close()
        running.join()


def test_monitor_of_the_awkward_device(page_hub: Hub, device):
    session = MonitorSession(
        f"{DEV}/NonFinite", f"{DEV}/EncodedText", f"{DEV}/Slow", f"{DEV}/Late",
        hub=page_hub, callback_period=None,
    )  # fmt: skip
    session.attach(Document())
    try:

        def settled() -> bool:
            session.tick()
            views = [getattr(p, "inner", p) for p in session.panels]
            text = " ".join(getattr(p, "problem_text", "") for p in session.panels)
            return (
                any(isinstance(v, Trend) for v in views)
                and "has no attribute 'Late' (yet)" in text
                and "slow to read" in text
            )

        wait_for(settled, timeout=40, what="every panel saying what it must")
        status = session.status_text
        assert "Late" in status and "NonFinite" in status
    finally:
        session.close()
