"""A trend's legend stays inside its panel (bad weather, item 10): six long names made a
page 2036 px wide in a 1600 px window.

The legend names a device the attributes share once (its title) and each entry by
its attribute, cuts entries longer than 30 characters (a Tango name keeps its end;
hovering the line gives the full name) and wraps entries onto rows.
"""

from __future__ import annotations

import time

import pytest
from bokeh.document import Document

from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import AttributeInfo, Sample
from tango_bokeh.views import Trend
from tango_bokeh.views.base import AttributeState
from tango_bokeh.views.trend import (
    LEGEND_CHARS,
    LEGEND_ROW_PX,
    legend_columns,
    legend_text,
    shared_device,
)

from .conftest import wait_for

DEV = "sys/tg_test/1"
SIX = ("double_scalar_rww", "float_scalar", "long_scalar_rww", "short_scalar_ro", "ampli",
       "long64_scalar")  # fmt: skip


def test_legend_entries_are_short_and_wrap():
    names = [f"{DEV}/{n}" for n in SIX]
    assert shared_device(names) == f"{DEV}/"
    assert shared_device([f"{DEV}/ampli", "sys/tg_test/2/ampli"]) == ""
    assert shared_device([f"{DEV}/ampli"]) == ""  # one attribute: the title names it
    assert shared_device(["Beam current", "Lifetime"]) == ""
    assert [legend_text(n, f"{DEV}/") for n in names] == list(SIX)
    long_name = "tango://control.example.org:10000/sr/diagnostics/dcct-2/BeamCurrentAveraged"
    cut = legend_text(long_name)
    assert len(cut) == LEGEND_CHARS and cut.startswith("…") and cut.endswith("CurrentAveraged")
    label = "Storage ring beam current, averaged over the last ten seconds"
    assert legend_text(label) == label[: LEGEND_CHARS - 1] + "…"
    assert legend_columns(list(SIX)) == 2
    assert legend_columns([cut] * 6) == 1
    assert legend_columns(["a", "b"]) == 2 and legend_columns([]) == 1
    for texts in (list(SIX), [cut] * 6, ["x" * LEGEND_CHARS] * 9):
        columns = legend_columns(texts)
        assert columns * (max(map(len, texts)) * 7.0 + 39) <= LEGEND_ROW_PX or columns == 1


def test_a_trend_of_six_long_names_has_a_narrow_legend_and_keeps_its_plot_height():
    names = [f"{DEV}/{n}" for n in SIX]
    trend = Trend(names, height=300)
    Document().add_root(trend.model)
    legend = trend._legend
    assert legend.title == DEV and legend.ncols == 2
    assert [i.label.value for i in legend.items] == list(SIX)
    assert trend._figure.height > 300  # two more rows of entries, the plot as high as asked
    # Hovering a line still gives the full name (with the unit once known).
    now = time.time()
    states = {n: AttributeState(n, AttributeInfo(n, unit="V"), Mode.POLL, None) for n in names}
    trend.update({n: [Sample(now, 1.0)] for n in names}, now, states)
    assert {s.hover.name for s in trend._series} == {f"{n} [V]" for n in names}


LEGENDS = f"""
title: Legends
refresh: 0.5 s
poll_period: 0.5 s
panels:
  - row:
      - trend: {{title: Scalars, attributes: [{", ".join(f"{DEV}/{n}" for n in SIX)}]}}
      - table: {{title: Values, attributes: [{DEV}/string_scalar, {DEV}/State]}}
  - row:
      - trend:
          title: Labelled
          attributes: [{DEV}/double_scalar, {DEV}/float_scalar, {DEV}/long_scalar,
                       {DEV}/short_scalar, {DEV}/ulong_scalar, {DEV}/ushort_scalar]
          labels: [Storage ring beam current averaged over ten seconds,
                   Storage ring beam lifetime from the current decay,
                   Front end absorber temperature upstream thermocouple,
                   Front end absorber temperature downstream thermocouple,
                   Monochromator first crystal pitch encoder reading,
                   Monochromator second crystal roll encoder reading]
      - trend: {{title: Other, attributes: [{DEV}/ampli]}}
      - trend: {{title: Third, attributes: [{DEV}/long64_scalar]}}
"""


@pytest.mark.tango
@pytest.mark.browser
def test_six_long_names_keep_the_page_inside_the_window(hub: Hub, tango_test: str):
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM

    if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
        pytest.skip("needs Chromium")
    running = Serving(
        DashboardServer([parse(LEGENDS, "legends.yaml")], hub=hub), ServeOptions(port=0)
    ).start_thread()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(f"{running.url}/legends")
                page.wait_for_function(
                    "() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000
                )
                (session,) = running.server.sessions()
                trends = [v for v in session.views if isinstance(v, Trend)]
                wait_for(lambda: all(s.unit is not None for t in trends for s in t._series),
                         timeout=30, what="every trend configured")  # fmt: skip
                time.sleep(2.0)  # laid out with its data
                width = page.evaluate("() => document.documentElement.scrollWidth")
                assert width <= 1600, f"the page is {width} px wide in a 1600 px window"
            finally:
                browser.close()
    finally:
        running.join()
