"""tango_bokeh on the topology facilities run, in a real browser, without containers.

MariaDB with the schema Debian's ``tango-db`` creates, the C++ ``DataBaseds`` on
it (not PyTango's sqlite database), the simulated beamline and Debian's C++
TangoTest registered there, two ``tango-bokeh serve`` replicas sharing one
secret and one logins store, and nginx in front with the sticky-session
configuration that ``docker/compose.yaml`` uses (tests/facility.py). Every page
is opened through nginx in headless Chromium.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from .conftest import wait_for
from .facility import PASSWORD, ROUTE_COOKIE, Facility, _get, missing

pytestmark = [pytest.mark.browser, pytest.mark.tango, pytest.mark.facility]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "dashboards" / "demo.yaml"
TANGOTEST_DASHBOARD = """\
title: TangoTest on the facility database
refresh: 0.5 s
poll_period: 0.5 s
panels:
  - table:
      title: TangoTest
      attributes: [sys/tg_test/1/State, sys/tg_test/1/long_scalar, sys/tg_test/1/string_scalar]
      labels: [State, long, text]
  - trend:
      title: long_scalar
      attributes: [sys/tg_test/1/long_scalar]
"""

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)
if missing():  # pragma: no cover - .ci/run installs them
    pytest.skip(f"needs Debian's {', '.join(missing())} (.ci/run installs them)",
                allow_module_level=True)  # fmt: skip

#: Newest Tango time (ms) in the first plot whose title starts with the argument, or null.
NEWEST = """(title) => {
  if (!window.Bokeh || Bokeh.documents.length === 0) return null;
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  if (!plot) return null;
  const times = plot.renderers.filter(r => r.data_source && r.data_source.data.t)
    .flatMap(r => Array.from(r.data_source.data.t));
  return times.length ? Math.max(...times) : null;
}"""
TABLE = """(title) => {
  const table = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'DataTable' && m.source.data.label && m.source.data.label[0] === title);
  if (!table) return null;
  const d = table.source.data;
  return Object.fromEntries(d.label.map((label, i) => [label, d.value[i]]));
}"""
ACTIVE_TAB = "() => [...Bokeh.documents[0].all_models].find(m => m.type === 'Tabs').active"
#: The Tabs' name: how a reloaded page finds the tab it had open, whatever process serves it.
TABS_NAME = "() => [...Bokeh.documents[0].all_models].find(m => m.type === 'Tabs').name"
BANNER = """() => { const b = document.getElementById('tango-bokeh-resume');
  return b ? b.textContent : null; }"""
READY = """() => !!(window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].roots().length)"""
MOTOR_KEY = "panels-3-tabs-motor-control-0-table"


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facility]:
    where = tmp_path_factory.mktemp("facility")
    tangotest = where / "tangotest.yaml"
    tangotest.write_text(TANGOTEST_DASHBOARD)
    system = Facility(where, [DEMO, tangotest], replicas=2).start()
    print(f"facility up: {system.timings}")
    try:
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _context(browser, facility: Facility, replica: int | None = None):  # type: ignore[no-untyped-def]
    """A browser context; with ``replica``, its route cookie sends it to that replica."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    if replica is not None:
        _route(context, facility, replica)
    return context


def _route(context, facility: Facility, replica: int) -> None:  # type: ignore[no-untyped-def]
    route = facility.route_to(replica)
    assert route is not None, f"no route cookie reaches replica {replica}"
    context.add_cookies([{"name": ROUTE_COOKIE, "value": route, "url": facility.url}])


def _eval(page, script: str, arg: object = None):  # type: ignore[no-untyped-def]
    """``page.evaluate``, or None while the page is between two loads."""
    from playwright.sync_api import Error

    try:
        return page.evaluate(script, arg)
    except Error:
        return None


def _open(page, url: str) -> str:  # type: ignore[no-untyped-def]
    """Load a dashboard; the address of the replica nginx sent it to."""
    response = page.goto(url)
    assert response is not None and response.ok, response and response.status
    wait_for(lambda: _eval(page, READY), timeout=30, what=f"{url} to render")
    return response.headers.get("x-tango-bokeh-replica", "")


def _sessions(facility: Facility, index: int, dashboard: str = "demo") -> int:
    """Open sessions of ``dashboard`` on replica ``index``, from its own /metrics."""
    status, _, body = _get(f"http://127.0.0.1:{facility.ports[index]}/metrics")
    assert status == 200, status
    match = re.search(rf'^tango_bokeh_sessions{{dashboard="{dashboard}"}} (\S+)$',
                      body.decode(), re.M)  # fmt: skip
    return int(float(match.group(1))) if match else 0


def _proxy(facility: Facility, device: str):  # type: ignore[no-untyped-def]
    import tango

    return tango.DeviceProxy(f"tango://{facility.tango_host}/{device}")


def test_the_beamline_lives_in_mariadb_behind_the_cpp_database_server(facility: Facility):
    import tango

    database = tango.Database("127.0.0.1", facility.databaseds.port)
    assert "TANGO Database sys/database/2" in database.get_info()
    assert database.get_device_info("sys/database/2").ds_full_name == "DataBaseds/2"
    # What the simulated servers and TangoTest registered is in MariaDB's tables.
    rows = facility.mariadb.client(
        "tango", "--batch", "--skip-column-names",
        sql="SELECT name, exported FROM device WHERE name IN "
            "('sim/motor/1', 'sim/beam/current', 'sys/tg_test/1') ORDER BY name",
    ).split("\n")  # fmt: skip
    assert rows[:3] == ["sim/beam/current\t1", "sim/motor/1\t1", "sys/tg_test/1\t1"]
    aliases = facility.mariadb.client(
        "tango", "--batch", "--skip-column-names",
        sql="SELECT alias FROM device WHERE name='sim/motor/1'",
    )  # fmt: skip
    assert aliases.strip() == "mot1"
    # Events work through the C++ database too (the beamline's motors push change events).
    motor = _proxy(facility, "sim/motor/1")
    event = motor.subscribe_event("Position", tango.EventType.CHANGE_EVENT, 10)
    try:
        wait_for(lambda: motor.get_events(event), what="a change event")
    finally:
        motor.unsubscribe_event(event)


def test_healthz_and_sticky_routes_through_nginx(facility: Facility):
    status, headers, body = _get(f"{facility.url}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    # A browser without a route cookie gets one; with it, every request goes to one replica.
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{ROUTE_COOKIE}=") and "HttpOnly" in cookie, cookie
    route = cookie.split(";")[0].split("=", 1)[1]
    answered = {facility.replica_of(route, "/healthz") for _ in range(10)}
    assert len(answered) == 1 and None not in answered
    # Each replica is reachable through nginx, and healthy on its own port.
    for index, port in enumerate(facility.ports):
        route = facility.route_to(index)
        assert route is not None and facility.replica_of(route, "/healthz") == index
        status, _, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
    # A Host nginx was not told about is refused by the replicas.
    status, _, _ = _get(f"{facility.url}/healthz", {"Host": "evil.example.org"})
    assert status == 421


def _watch_demo(page, facility: Facility, index: int) -> None:  # type: ignore[no-untyped-def]
    """Open the demo through nginx on replica ``index``: data flows over nginx's websocket."""
    sockets: list[dict] = []

    def opened(ws) -> None:  # type: ignore[no-untyped-def]
        record = {"url": ws.url, "frames": 0}
        sockets.append(record)
        ws.on("framereceived", lambda _payload: record.update(frames=record["frames"] + 1))

    page.on("websocket", opened)
    assert _open(page, f"{facility.url}/demo") == f"127.0.0.1:{facility.ports[index]}"
    assert page.title() == "Simulated beamline"
    for title in ("Ring current", "Diode"):
        first = wait_for(lambda t=title: _eval(page, NEWEST, t), what=f"{title} data")
        wait_for(lambda t=title, f=first: (_eval(page, NEWEST, t) or 0) > f,
                 what=f"{title} to update")  # fmt: skip
    assert [s["url"] for s in sockets] == [f"ws://127.0.0.1:{facility.nginx.port}/demo/ws"]
    wait_for(lambda: sockets[0]["frames"] > 10, what="websocket frames")
    wait_for(lambda: _sessions(facility, index) >= 1, what=f"the session on replica {index}")


def test_demo_dashboard_updates_through_nginx_websockets(facility: Facility, browser):
    contexts = [_context(browser, facility, replica) for replica in range(2)]
    try:
        for index, context in enumerate(contexts):
            _watch_demo(context.new_page(), facility, index)
    finally:
        for context in contexts:
            context.close()


def test_tangotest_dashboard_on_the_cpp_database(facility: Facility, browser):
    context = _context(browser, facility)
    try:
        page = context.new_page()
        _open(page, f"{facility.url}/tangotest")
        values = wait_for(
            lambda: (v := _eval(page, TABLE, "State")) and v["long"] not in ("", "…") and v,
            what="TangoTest values",
        )
        assert values["State"] in {"RUNNING", "ON", "UNKNOWN", "STANDBY"}, values
        assert re.fullmatch(r"-?\d+", values["long"].split()[0]), values
        first = wait_for(lambda: _eval(page, NEWEST, "long_scalar"), what="long_scalar data")
        wait_for(lambda: (_eval(page, NEWEST, "long_scalar") or 0) > first, what="polling")
    finally:
        context.close()


def test_login_on_one_replica_then_write_through_another(facility: Facility, browser):
    motor = _proxy(facility, "sim/motor/1")
    before = motor.read_attribute("Velocity").value
    wanted = round(before + 0.25, 3)
    context = _context(browser, facility, replica=0)
    try:
        page = context.new_page()
        response = page.goto(f"{facility.url}/login?next=/demo")
        assert response.headers["x-tango-bokeh-replica"].endswith(f":{facility.ports[0]}")
        page.fill("#user", "alice")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{facility.url}/demo")
        # Same browser, now routed to the other replica: the login is shared.
        _route(context, facility, 1)
        replica = _open(page, f"{facility.url}/demo")
        assert replica == f"127.0.0.1:{facility.ports[1]}"
        page.get_by_text("Motor control", exact=True).click()
        page.get_by_role("combobox").select_option(label="mot1 velocity")
        page.get_by_placeholder("value").fill(str(wanted))
        page.get_by_placeholder("value").press("Enter")
        time.sleep(0.5)
        page.get_by_role("button", name="Write").click()
        status = "(key) => Bokeh.documents[0].get_model_by_name(key + '-status').text"
        wait_for(lambda: "alice wrote mot1/Velocity" in page.evaluate(status, MOTOR_KEY),
                 what="the write")  # fmt: skip
        assert motor.read_attribute("Velocity").value == pytest.approx(wanted)
        audit = re.compile(r"user=alice address=127\.0\.0\.1 .*target=mot1/Velocity .*result=ok")
        wait_for(lambda: audit.search(facility.replicas[1].output), what="the audit line")
    finally:
        context.close()
        motor.write_attribute("Velocity", before)


def test_a_page_resumes_when_its_replica_restarts(facility: Facility, browser):
    context = _context(browser, facility, replica=0)
    try:
        page = context.new_page()
        _open(page, f"{facility.url}/demo")
        page.get_by_text("Motor control", exact=True).click()
        wait_for(lambda: page.evaluate(ACTIVE_TAB) == 1, what="the tab to open")
        wait_for(lambda: _eval(page, NEWEST, "Ring current"), what="ring current data")
        assert page.evaluate(TABS_NAME) == "panels-3-tabs"  # not bokeh's per-process model id
        loads: list[str] = []
        page.on(
            "response",
            lambda r: (
                r.url.endswith("/demo")
                and loads.append(f"{r.status} from {r.headers.get('x-tango-bokeh-replica')}")
            ),
        )
        for down, up in ((0, 1), (1, 0)):
            loads.append(f"stop {down}")
            page.evaluate("() => { window.sameLoad = true; }")
            assert facility.stop_replica(down) == 0
            stopped = time.time()
            # The page notices at once (an empty banner until its first probe, 0.5 s later).
            wait_for(lambda: _eval(page, BANNER) is not None, timeout=15, what="the banner")
            # nginx sends the page's probe, then its reload, to the replica that is up.
            wait_for(lambda: _eval(page, "() => window.sameLoad") is None and _eval(page, READY),
                     timeout=30, what="the page to reload itself")  # fmt: skip
            assert _eval(page, BANNER) is None
            wait_for(lambda s=stopped: (_eval(page, NEWEST, "Ring current") or 0) / 1000 > s,
                     timeout=30, what="fresh data after the failover")  # fmt: skip
            wait_for(lambda: _eval(page, ACTIVE_TAB) == 1, timeout=10,
                     what=f"the tab kept (replicas {facility.ports}; {loads})")  # fmt: skip
            wait_for(lambda u=up: _sessions(facility, u) >= 1, what=f"the page on replica {up}")
            facility.start_replica(down)  # the service manager brings it back
            wait_for(lambda d=down: facility.route_to(d, tries=50), timeout=30,
                     what=f"replica {down} back behind nginx")  # fmt: skip
    finally:
        context.close()
