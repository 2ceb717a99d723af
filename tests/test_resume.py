"""A dashboard page resumes by itself after its server restarts, however long it was down.

The real ``tango-bokeh serve`` is stopped with a page open in Chromium, kept
down longer than BokehJS's own five reconnection attempts (~31 s), and
started again on the same port: the page must say it is cut off (with the
time the outage began), keep trying, and come back by itself with fresh
data and the tab that was open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tango_bokeh.sim import ControlSystem

from .browser import HAVE_CHROMIUM, chromium
from .conftest import wait_for
from .served import Served, free_port

pytestmark = [pytest.mark.browser, pytest.mark.tango]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)

DEMO = Path(__file__).resolve().parent.parent / "dashboards" / "demo.yaml"
#: Newest Tango time (ms) in the ring-current trend, or null.
NEWEST = """() => {
  if (!window.Bokeh || Bokeh.documents.length === 0) return null;
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Ring current'));
  if (!plot) return null;
  const times = plot.renderers.filter(r => r.data_source && r.data_source.data.t)
    .flatMap(r => Array.from(r.data_source.data.t));
  return times.length ? Math.max(...times) : null;
}"""
ACTIVE_TAB = """() => [...Bokeh.documents[0].all_models].find(m => m.type === 'Tabs').active"""
BANNER = """() => { const b = document.getElementById('tango-bokeh-resume');
  return b ? b.textContent : null; }"""


@pytest.fixture
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def _eval(page, script: str):  # type: ignore[no-untyped-def]
    """``page.evaluate``, or None while the page is between two loads."""
    from playwright.sync_api import Error

    try:
        return page.evaluate(script)
    except Error:
        return None


def _ready(page) -> bool:
    return bool(
        _eval(page, "() => !!(window.Bokeh && Bokeh.documents.length && "
                    "Bokeh.documents[0].roots().length)")
    )  # fmt: skip


def test_a_page_resumes_after_a_long_server_outage(
    control_system: ControlSystem, tmp_path: Path, browser
):
    port = free_port()
    env = {**control_system.env(), "TANGO_BOKEH_SECRET": "s" * 48}
    server = Served([DEMO], env, state_dir=tmp_path, port=port)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(f"{server.url}/demo")
        wait_for(lambda: _ready(page), timeout=30, what="the page")
        page.get_by_text("Motor control", exact=True).click()
        wait_for(lambda: page.evaluate(ACTIVE_TAB) == 1, what="the tab to open")
        wait_for(lambda: page.evaluate(NEWEST), timeout=30, what="ring current data")
        page.evaluate("() => { window.sameLoad = true; }")
        assert server.stop() == 0, server.output
        stopped = time.time()
        banner = wait_for(lambda: page.evaluate(BANNER), timeout=15, what="the outage banner")
        assert "Dashboard server unreachable since" in banner
        time.sleep(35)  # longer than bokeh's own reconnection attempts last
        assert "retrying in" in page.evaluate(BANNER) or "checking now" in page.evaluate(BANNER)
        assert page.evaluate("() => window.sameLoad === true")  # no reload while it is down
        server = Served([DEMO], env, state_dir=tmp_path, port=port)
        wait_for(lambda: _eval(page, "() => window.sameLoad") is None and _ready(page),
                 timeout=45, what="the page to reload itself")  # fmt: skip
        assert _eval(page, BANNER) is None
        wait_for(lambda: (_eval(page, NEWEST) or 0) / 1000 > stopped, timeout=30,
                 what="fresh data after the restart")  # fmt: skip
        wait_for(lambda: _eval(page, ACTIVE_TAB) == 1, timeout=10, what="the tab kept")
    finally:
        page.close()
        assert server.stop() == 0, server.output


def test_a_page_older_than_its_token_resumes_after_a_restart(hub, browser):  # type: ignore[no-untyped-def]
    """bokeh refuses a reconnect with an expired token; a page that reloads gets a new one."""
    from tango_bokeh.dashboard.loader import load
    from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving

    port = free_port()
    options = ServeOptions(port=port, session_token_expiration=8)

    def serve() -> Serving:
        return Serving(DashboardServer([load(DEMO)], hub=hub), options).start_thread()

    running = serve()
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(f"{running.url}/demo")
        wait_for(lambda: _ready(page), timeout=30, what="the page")
        time.sleep(10)  # the page's token has expired
        page.evaluate("() => { window.sameLoad = true; }")
        running.join()
        wait_for(lambda: _eval(page, BANNER), timeout=15, what="the outage banner")
        running = serve()
        wait_for(lambda: _eval(page, "() => window.sameLoad") is None and _ready(page),
                 timeout=45, what="the page to reload itself")  # fmt: skip
        restarted = time.time()
        wait_for(lambda: (_eval(page, NEWEST) or 0) / 1000 > restarted, timeout=30,
                 what="fresh data")  # fmt: skip
    finally:
        page.close()
        running.join()
