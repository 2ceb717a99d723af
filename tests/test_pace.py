"""A page that falls behind gets the newest state, not a backlog, and says it is late.

Chromium's main thread is kept busy (a page script that spins 4.5 s of every
5 s, as an overloaded tab does: its messages wait longer than the 3 s the page
tolerates before it says so): the server must notice that the page
has not applied what it was sent, stop sending view updates meanwhile, the
page must show its own lag, and once the page is free again it must show
fresh data within a few ticks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub

from .browser import HAVE_CHROMIUM, chromium
from .conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.tango]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)

PAGE = """
title: Paced
refresh: 0.25 s
panels:
  - row:
      - trend: {title: Current, attributes: [sim/beam/current/Current, sim/counter/1/Counts]}
      - image: {title: Camera, attribute: sim/camera/1/Image}
"""
NEWEST = """() => {
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Current'));
  const t = plot.renderers.filter(r => r.data_source && r.data_source.data.t)
    .flatMap(r => Array.from(r.data_source.data.t));
  return t.length ? Math.max(...t) / 1000 : null;
}"""
LAG_NOTE = """() => { const n = document.getElementById('tango-bokeh-lag');
  return n ? n.textContent : null; }"""


@pytest.fixture
def page() -> Iterator[object]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1400, "height": 900})


def test_a_busy_page_is_paced_and_says_it_is_late(hub: Hub, page):
    server = DashboardServer([parse(PAGE, "paced.yaml")], hub=hub)
    running = Serving(server, ServeOptions(port=0)).start_thread()
    try:
        page.goto(f"{running.url}/paced")
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000)
        (session,) = server.sessions()
        pace = session.pace
        wait_for(lambda: pace.clock.seen > 0, what="the page's first acknowledgement")
        wait_for(lambda: page.evaluate(NEWEST), timeout=30, what="data on the page")
        page.evaluate(
            "() => { window.busy = setInterval(() => { const t = Date.now();"
            " while (Date.now() - t < 4500) {} }, 5000); }"
        )
        wait_for(lambda: pace.skipped > 10, timeout=60, what="ticks skipped for the busy page")
        note = wait_for(lambda: page.evaluate(LAG_NOTE), timeout=60, what="the page's lag note")
        assert "behind the server" in str(note)
        page.evaluate("() => clearInterval(window.busy)")
        freed = time.time()
        wait_for(lambda: (page.evaluate(NEWEST) or 0) > freed - 2, timeout=15,
                 what="fresh data once the page is free")  # fmt: skip
        wait_for(lambda: page.evaluate(LAG_NOTE) is None, timeout=15, what="the note to go")

        def caught_up() -> bool:
            before = pace.skipped
            time.sleep(1.0)
            return pace.skipped == before

        wait_for(caught_up, timeout=30, what="updates to flow again once the page caught up")
    finally:
        running.join()


def test_a_slow_page_gets_one_update_per_acknowledgement_and_a_frozen_one_none(monkeypatch):
    """On an overloaded machine a page's round trip alone may exceed the allowance: it must
    still get the newest state at its own pace, never starve; a frozen page gets nothing."""
    from bokeh.document import Document

    from tango_bokeh.dashboard import pace as pace_module
    from tango_bokeh.dashboard.pace import Pace

    clock = [1000.0]
    monkeypatch.setattr(pace_module.time, "time", lambda: clock[0])
    pace = Pace(0.25)  # allowance: 2 s
    pace.install(Document())
    pace.beat()
    pace.clock.seen = 1000.0
    clock[0] = 1001.0
    assert not pace.behind()  # within the allowance
    clock[0] = 1010.0  # the page trails by 10 s
    assert not pace.behind()  # one update goes through: the newest state
    pace.beat()
    for now in (1011.0, 1012.0):
        clock[0] = now
        assert pace.behind()  # not applied yet: nothing more
    pace.clock.seen = 1010.0  # the page applied it, 2 s later
    clock[0] = 1013.0
    assert not pace.behind()  # still 3 s behind, yet it gets the newest state again
    pace.beat()
    for now in range(1014, 1034):  # frozen: no acknowledgement any more
        clock[0] = float(now)
        assert pace.behind()
    assert pace.skipped == 22
