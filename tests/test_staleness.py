"""Honest staleness (bad weather, item 8): what is old is said to be old.

* ``tango_bokeh_attribute_last_update_age_seconds`` counts only good values: error
  samples of a dead device do not make it look fresh;
* ``tango_bokeh_attribute_up`` is 0 while an attribute delivers no values;
* an event subscription whose device stopped answering is not said to be live (its
  mode is ``pending`` until events flow again);
* a trend whose every attribute is stale keeps following "now".

Against real processes: Debian's C++ TangoTest killed and restarted, the simulated
counter's server killed and restarted, a served dashboard in Chromium.
"""

from __future__ import annotations

import math
import re
import signal
import time

import pytest
from bokeh.document import Document
from prometheus_client import generate_latest

from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.metrics import make_registry
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import DEFAULT_CAPACITY, Channel, Hub
from tango_bokeh.sim import ControlSystem
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.names import parse_name
from tango_bokeh.tango.sample import AttributeInfo, Quality, Sample
from tango_bokeh.views import Trend
from tango_bokeh.views.base import AttributeState
from tango_bokeh.views.trend import to_display_ms

from .conftest import TANGO_TEST, TANGO_TEST_SERVER, wait_for

DEV = "sys/tg_test/1"
DOWN = "API_CorbaException: TRANSIENT_ConnectFailed (device server down)"


def _metrics(hub: Hub) -> dict[tuple[str, str], float]:
    """``{(metric, attribute): value}`` of the hub's per-attribute metrics, as scraped."""
    text = generate_latest(make_registry(lambda: hub, lambda: [], lambda _s: "")).decode()
    found = {}
    for line in text.splitlines():
        match = re.match(r'(\w+)\{attribute="([^"]+)"\} (\S+)$', line)
        if match:
            found[(match[1], match[2])] = float(match[3])
    return found


# --- without Tango ---------------------------------------------------------------------


def test_only_good_values_make_an_attribute_young_and_up():
    channel = Channel(parse_name("a/b/c/d"), DEFAULT_CAPACITY)
    channel.set_info(AttributeInfo("d"))
    channel.set_mode(Mode.POLL)
    assert channel.stats().last_good is None and not channel.stats().up
    channel.push(Sample(100.0, 1.0))
    assert channel.stats().last_good == 100.0 and channel.stats().up
    for t in (101.0, 102.0, 103.0):  # a dead device, polled: errors with our own times
        channel.push(Sample(t, None, Quality.INVALID, DOWN, stale=True))
    stats = channel.stats()
    assert stats.last_update == 103.0  # the newest sample, as before
    assert stats.last_good == 100.0 and not stats.up
    channel.push(Sample(104.0, None, Quality.INVALID))  # the device answers: no value
    stats = channel.stats()
    assert stats.last_good == 100.0 and stats.up
    channel.extend([Sample(105.0, 2.0, Quality.ALARM), Sample(106.0, None, error="read failed")])
    stats = channel.stats()
    assert stats.last_good == 105.0 and not stats.up  # an alarm is a value; an error is not
    channel.set_mode(Mode.PENDING, "no events: API_EventTimeout")
    channel.push(Sample(107.0, 3.0))
    assert not channel.stats().up  # not acquired: not up, whatever came last
    channel.set_mode(Mode.POLL)
    assert channel.stats().up and channel.stats().mode_switches == 0


def test_a_trend_whose_every_attribute_is_stale_keeps_following_now():
    a, b = "x/y/z/a", "x/y/z/b"
    trend = Trend([a, b], history_seconds=100.0)
    Document().add_root(trend.model)
    states = {n: AttributeState(n, AttributeInfo(n), Mode.POLL, None) for n in (a, b)}
    t0 = 1_700_000_000.0
    trend.update({a: [Sample(t0, 1.0)], b: [Sample(t0, 5.0)]}, t0, states)
    down = {n: [Sample(t0 + 1, None, Quality.INVALID, DOWN, stale=True)] for n in (a, b)}
    trend.update(down, t0 + 1, states)
    for i in range(2, 60):
        trend.update({}, t0 + i, states)
    data = trend._carry_source.data
    now_ms = to_display_ms(t0 + 59)
    # No visible segment (nothing is carried through a gap), but invisible ones reach "now"
    # at the last values drawn, so the x range (data bounds) ends at "now".
    assert all(math.isnan(y) for y in data["y"])
    assert list(data["g"]) == [1.0, 5.0]
    assert all(now_ms - x1 <= trend.resolution * 1000.0 for x1 in data["x1"])
    trend.update({a: [Sample(t0 + 60, 2.0)]}, t0 + 60, states)  # a is back: carried again
    data = trend._carry_source.data
    assert data["y"][0] == 2.0 and math.isnan(data["g"][0]) and data["g"][1] == 5.0


# --- against real device servers -------------------------------------------------------


def _restart_tango_test(control_system: ControlSystem) -> None:
    if TANGO_TEST_SERVER not in control_system._servers:  # leave it running for others
        control_system.restart_executable(TANGO_TEST_SERVER, TANGO_TEST)
        control_system.wait_ready([DEV])


@pytest.mark.tango
def test_a_killed_device_is_down_and_ages_in_metrics(
    hub: Hub, tango_test: str, control_system: ControlSystem
):
    """TangoTest, polled by the client (0.2 s). ``throw_exception`` fails every read while its
    device answers: errors all along, never a value, so never young and never up. The
    device killed: ``up`` says 0 and the age grows from the last value."""
    cursor = hub.subscribe(f"{DEV}/double_scalar")
    broken = hub.subscribe(f"{DEV}/throw_exception")
    key, broken_key = cursor.channel.name.key, broken.channel.name.key
    wait_for(lambda: any(s.ok for s in cursor.read()), what="a first value")
    wait_for(lambda: _metrics(hub).get(("tango_bokeh_attribute_up", key)) == 1.0, what="up")
    wait_for(lambda: hub.stats().attributes[broken_key].errors >= 5, what="failed reads")
    metrics = _metrics(hub)
    assert metrics[("tango_bokeh_attribute_up", broken_key)] == 0.0
    assert ("tango_bokeh_attribute_last_update_age_seconds", broken_key) not in metrics
    try:
        control_system.stop_named(TANGO_TEST_SERVER, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: _metrics(hub).get(("tango_bokeh_attribute_up", key)) == 0.0,
                 timeout=30, what="up to drop to 0")  # fmt: skip
        time.sleep(max(0.0, 6.0 - (time.monotonic() - killed)))
        metrics = _metrics(hub)
        assert metrics[("tango_bokeh_attribute_last_update_age_seconds", key)] >= 4.0
        assert metrics[("tango_bokeh_attribute_up", key)] == 0.0
        control_system.restart_executable(TANGO_TEST_SERVER, TANGO_TEST)
        control_system.wait_ready([DEV])
        wait_for(lambda: _metrics(hub).get(("tango_bokeh_attribute_up", key)) == 1.0,
                 timeout=40, what="up again after the restart")  # fmt: skip
        assert _metrics(hub)[("tango_bokeh_attribute_last_update_age_seconds", key)] < 10.0
    finally:
        _restart_tango_test(control_system)


@pytest.mark.tango
def test_an_event_subscription_of_a_dead_device_is_not_said_to_be_live(hub: Hub, control_system):
    """Change events of the simulated counter; its server killed: Tango's event time-out
    arrives ~10 s later, and from then on the mode is ``pending``, not ``change``."""
    server = control_system.server("SimCounter/demo")
    cursor = hub.subscribe("sim/counter/1/Counts")
    key = cursor.channel.name.key
    wait_for(lambda: cursor.mode is Mode.CHANGE, what="change events")
    control_system.stop_server(server, signal.SIGKILL)
    killed = time.monotonic()
    try:
        wait_for(lambda: cursor.mode is Mode.PENDING, timeout=40, what="the mode to say so")
        assert "API_EventTimeout" in (cursor.status or "") and "no events" in cursor.status
        metrics = _metrics(hub)
        # The time-out's error sample is new, the value is as old as the outage (was ~0 s).
        age = metrics[("tango_bokeh_attribute_last_update_age_seconds", key)]
        assert age >= time.monotonic() - killed - 2.0, age
        assert metrics[("tango_bokeh_attribute_up", key)] == 0.0
        assert hub.stats().subscriptions == 1  # Tango's subscription is kept: it heals itself
    finally:
        control_system.start_server(server)
        control_system.wait_ready(["sim/counter/1"])
    wait_for(lambda: cursor.mode is Mode.CHANGE, timeout=60, what="events to flow again")
    assert cursor.status is None
    wait_for(lambda: _metrics(hub).get(("tango_bokeh_attribute_up", key)) == 1.0, what="up")
    assert hub.stats().attributes[key].mode_switches == 0  # still events: no switch


STALE_PAGE = f"""
title: Stale trend
refresh: 0.5 s
poll_period: 0.5 s
panels:
  - trend: {{title: Scalars, history: 100 s,
             attributes: [{DEV}/double_scalar, {DEV}/long_scalar]}}
"""

X_END = """() => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(m => m.type === 'Figure');
  const now = Date.now() - new Date().getTimezoneOffset() * 60000;  // as the axis shows
  return [plot.x_range.end, now];
}"""


@pytest.mark.tango
@pytest.mark.browser
def test_a_trend_of_a_dead_device_keeps_following_now_in_the_browser(
    hub: Hub, tango_test: str, control_system: ControlSystem
):
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM

    if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
        pytest.skip("needs Chromium")
    running = Serving(
        DashboardServer([parse(STALE_PAGE, "stale.yaml")], hub=hub), ServeOptions(port=0)
    ).start_thread()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"{running.url}/stale")
                page.wait_for_function(
                    "() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000
                )
                wait_for(lambda: (page.evaluate(X_END)[0] or 0) > 0, what="a drawn trend")
                control_system.stop_named(TANGO_TEST_SERVER, signal.SIGKILL)
                (session,) = running.server.sessions()
                wait_for(lambda: "stale since" in session.views[0].problem_text, timeout=30,
                         what="the outage in the banner")  # fmt: skip
                first, _ = page.evaluate(X_END)
                time.sleep(8.0)
                end, now = page.evaluate(X_END)
                # The x axis ends at "now" (to the redraw resolution, 0.2 s here, and the
                # page's lag), not at the time of the kill.
                assert end - first >= 5000.0, (first, end)
                assert abs(now - end) < 5000.0, (now, end)
            finally:
                browser.close()
    finally:
        running.join()
        _restart_tango_test(control_system)
