"""A trend's page holds exactly the rows its server holds, newest last, as its window moves.

The trend bounds its history by time: each stream's ``rollover`` drops the rows that
left the window. BokehJS 3.9 applies a rollover to a typed-array column in place and
never shortens it (``stream_to_column`` in bokeh.js; bokeh issue 8690): when a tick
drops more rows than it brings, the page's column keeps its old length, the new rows
land in the middle and rows from earlier stay at the end. The page then drew its line
back in time, and bench_latency's pages seemed to miss a third of the values (they had
arrived, but not at the end of the source). A real Chromium page on the dashboard
server (the hub on the in-memory acquisition) gets a burst of values that leave the
window within seconds while fewer new ones come.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub
from tango_bokeh.views import Trend

from .browser import HAVE_CHROMIUM, chromium
from .conftest import wait_for

pytestmark = [pytest.mark.browser]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)

ATTRIBUTE = "test/rollover/1/value"
WINDOW = 4.0  # seconds
PAGE = f"""
title: Rollover
refresh: 0.25 s
panels:
  - trend: {{title: Value, attributes: [{ATTRIBUTE}], history: {WINDOW:g} s}}
"""
#: The page's rows of the trend's series: [t, y] (gap rows included, NaN as null).
ROWS = """() => {
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Value'));
  const source = plot.renderers.map(r => r.data_source).find(s => s && s.data && s.data.q);
  const t = Array.from(source.data.t), y = Array.from(source.data.y);
  return t.map((ti, i) => [ti, Number.isFinite(y[i]) ? y[i] : null]);
}"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def _server_rows(trend: Trend) -> list[list[float | None]]:
    data = trend._series[0].source.data  # read off the loop: the test retries until stable
    return [
        [float(t), None if y != y else float(y)] for t, y in zip(data["t"], data["y"], strict=True)
    ]


def test_the_page_holds_the_servers_rows_when_the_window_drops_more_than_comes(
    fake_hub: Hub, browser: Any
) -> None:
    device = fake_hub.acquisition
    server = DashboardServer([parse(PAGE, "rollover.yaml")], hub=fake_hub)
    running = Serving(server, ServeOptions(port=0)).start_thread()
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(f"{running.url}/rollover")
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)
        (session,) = wait_for(server.sessions, timeout=60, what="the page's session")
        (trend,) = [v for v in session.views if isinstance(v, Trend)]
        wait_for(lambda: page.evaluate(ROWS) is not None, timeout=60, what="the trend's source")
        # 40 values in the window's oldest second: they leave it within 2 s, while one new
        # value comes per tick (each stream drops more rows than it brings).
        start = time.time()
        for i in range(40):
            device.push(ATTRIBUTE, float(i), t=start - WINDOW + 1.0 + i * 0.025)
        values = [100.0 + k for k in range(16)]
        for value in values:
            device.push(ATTRIBUTE, value)
            time.sleep(0.25)
        assert time.time() - start > 2.0  # the burst has left the window

        def same() -> bool:
            rows = page.evaluate(ROWS)
            return rows == _server_rows(trend) and rows[-1][1] == values[-1]

        try:
            wait_for(same, timeout=60, interval=0.5, what="the page's rows equal to the server's")
        except AssertionError as timed_out:
            rows, held = page.evaluate(ROWS), _server_rows(trend)
            raise AssertionError(
                f"{timed_out}: the page holds {len(rows)} rows, ending {rows[-4:]}; "
                f"the server {len(held)}, ending {held[-4:]}"
            ) from None
        rows = page.evaluate(ROWS)
        times = [t for t, _ in rows]
        assert times == sorted(times), "the page's rows are not in time order"
        assert len(rows) < 40 + len(values), "no row left with the window"
    finally:
        page.close()
        running.stop()
        running.join()
