"""`tango-bokeh serve` in a real browser (headless Chromium): what an operator sees and does.

The server is the real command line (a subprocess) on the embedded Tango
database; the page is read back through BokehJS (``window.Bokeh.documents``):
data sources, table cells, and the colours the browser actually renders.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tango
from playwright.sync_api import Error as PlaywrightError

from tango_bokeh.dashboard.auth import add_user
from tango_bokeh.sim import ControlSystem

from .browser import HAVE_CHROMIUM, chromium
from .conftest import wait_for
from .served import Served

pytestmark = [pytest.mark.browser, pytest.mark.tango]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "dashboards" / "demo.yaml"
ARTIFACTS = ROOT / "artifacts"
PASSWORD = "correct horse battery"

#: DevState colours operators know (FIELD-NOTES.md), as the browser reports them.
STATE_RGB = {
    "ON": "rgb(0, 255, 0)", "OFF": "rgb(255, 255, 255)", "MOVING": "rgb(128, 160, 255)",
    "RUNNING": "rgb(128, 160, 255)", "STANDBY": "rgb(255, 255, 0)", "FAULT": "rgb(255, 0, 0)",
    "ALARM": "rgb(255, 140, 0)", "UNKNOWN": "rgb(128, 128, 128)", "INIT": "rgb(204, 204, 122)",
}  # fmt: skip

BROKEN = """\
title: One broken panel
refresh: 0.5 s
panels:
  - row:
      - trend: {title: Wrong name, attributes: [sim/motor/1/Positon]}
      - trend: {title: Diode counts, attributes: [diode1/Counts]}
"""

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(
    control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    where = tmp_path_factory.mktemp("dashboards")
    broken = where / "broken.yaml"
    broken.write_text(BROKEN)
    users = where / "users"
    add_user(users, "alice", PASSWORD)
    server = Served([DEMO, broken], control_system.env(), users=users, state_dir=where)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def open_dashboard(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length > 0",
        timeout=30_000,
    )


PLOT_DATA = """(title) => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  if (!plot) return null;
  const tail = (column) => Array.from(column).slice(-3).map(
    v => typeof v === 'object' ? (v && v.length) : v);
  return plot.renderers.filter(r => r.data_source).map(r => {
    const out = {};
    for (const [key, column] of Object.entries(r.data_source.data)) {
      const sized = column && column.length !== undefined;
      out[key] = sized ? tail(column) : column;
      out[key + '#'] = sized ? column.length : null;
    }
    return out;
  });
}"""

TABLE_ROWS = """(first) => {
  const doc = Bokeh.documents[0];
  const table = [...doc.all_models].find(
    m => m.type === 'DataTable' && m.source.data.label[0] === first);
  const d = table.source.data;
  return d.label.map((label, i) => ({
    label, value: d.value[i], value_bg: d.value_bg[i], quality: d.quality[i],
    quality_bg: d.quality_bg[i], mode: d.mode[i], error: d.error[i]}));
}"""


def latest(page, title: str, key: str = "t") -> float | None:
    renderers = page.evaluate(PLOT_DATA, title) or []
    values = [v for r in renderers if key in r for v in r[key] if v is not None]
    return max(values) if values else None


def test_demo_dashboard_renders_and_updates(served: Served, page):
    open_dashboard(page, f"{served.url}/demo")
    # trends stream new points: the newest Tango timestamp moves on
    for title in ("Ring current", "Diode"):
        first = wait_for(lambda t=title: latest(page, t), what=f"{title} data")
        wait_for(lambda t=title, f=first: (latest(page, t) or 0) > f, what=f"{title} to update")
    # the spectrum has its 1024 points against the wavelength axis
    spectrum = wait_for(
        lambda: [r for r in page.evaluate(PLOT_DATA, "Spectrometer") or [] if r.get("y#") == 1024],
        what="the spectrum",
    )
    assert spectrum[0]["x#"] == 1024 and 200 <= spectrum[0]["x"][-1] <= 1000
    # the camera image arrives, reduced for display, and keeps changing (its title has the time)
    wait_for(lambda: (page.evaluate(PLOT_DATA, "Camera") or [{}])[0].get("image#") == 1,
             what="a camera frame")  # fmt: skip
    titles = page.evaluate(
        "() => [...Bokeh.documents[0].all_models].filter(m => m.type === 'Figure')"
        ".map(p => p.title.text).find(t => t.startsWith('Camera'))"
    )
    wait_for(
        lambda: (
            page.evaluate(
                "() => [...Bokeh.documents[0].all_models].filter(m => m.type === 'Figure')"
                ".map(p => p.title.text).find(t => t.startsWith('Camera'))"
            )
            != titles
        ),
        what="a new camera frame",
    )
    time.sleep(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-demo.png"), full_page=True)


def _badge(page, text: str) -> str | None:
    """The background colour of the first element showing exactly ``text`` (None: none)."""
    badge = page.get_by_text(text, exact=True)
    if not badge.count():
        return None
    try:
        return badge.first.evaluate("e => getComputedStyle(e).backgroundColor", timeout=1_000)
    except PlaywrightError:  # the value changed meanwhile: no such element any more
        return None


def test_state_table_shows_the_operator_colours(served: Served, page):
    open_dashboard(page, f"{served.url}/demo")
    rows = wait_for(
        lambda: (
            [r for r in page.evaluate(TABLE_ROWS, "Ring") if r["value"] not in ("…", "")]
            and page.evaluate(TABLE_ROWS, "Ring")
        ),
        what="state values",
    )
    rows = wait_for(
        lambda: (
            all(r["value"] in STATE_RGB for r in page.evaluate(TABLE_ROWS, "Ring"))
            and page.evaluate(TABLE_ROWS, "Ring")
        ),
        what="every state known",
    )
    assert [r["label"] for r in rows][:3] == ["Ring", "Motor 1", "Motor 2"]
    for row in rows:
        expected = STATE_RGB[row["value"]]
        assert _rgb(row["value_bg"]) == expected, row

    # what the browser draws: the badge of each state has its colour (the grid re-renders a
    # row's cells when a value arrives, and a node replaced meanwhile has no computed style:
    # read it again)
    def badges_coloured() -> bool:
        states = {r["value"] for r in page.evaluate(TABLE_ROWS, "Ring")}  # states now
        return all(_badge(page, state) == STATE_RGB.get(state) for state in states)

    wait_for(badges_coloured, timeout=60, what="every state's badge in its colour")
    wait_for(lambda: _badge(page, "VALID") == "rgb(0, 255, 0)", what="the VALID badge")


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({r}, {g}, {b})"


def test_a_broken_panel_shows_its_error_while_the_others_update(served: Served, page):
    open_dashboard(page, f"{served.url}/broken")
    error = page.get_by_text(re.compile(r"Positon", re.I)).first
    error.wait_for(timeout=20_000)
    banner = page.evaluate(
        "() => [...Bokeh.documents[0].all_models].filter(m => m.type === 'Div')"
        ".map(d => d.text).filter(t => /positon/i.test(t)).join(' ')"
    )
    assert re.search(r"not found|does not exist|API_AttrNotFound|no attribute", banner, re.I), (
        banner
    )
    first = wait_for(lambda: latest(page, "Diode counts"), what="diode data")
    wait_for(lambda: (latest(page, "Diode counts") or 0) > first, what="the good panel to update")


MOTOR_KEY = "panels-3-tabs-motor-control-0-table"


def _forge_write(page, attribute: str, value: str) -> None:
    """What a doctored page can do: enable the controls and fill them, then click."""
    page.evaluate(
        """([key, attribute, value]) => { const doc = Bokeh.documents[0];
          const target = doc.get_model_by_name(key + '-write-target');
          const input = doc.get_model_by_name(key + '-write-value');
          const button = doc.get_model_by_name(key + '-write');
          for (const m of [target, input, button]) m.disabled = false;
          target.value = attribute; input.value = value; }""",
        [MOTOR_KEY, attribute, value],
    )


def _status(page) -> str:
    return page.evaluate(
        "(key) => Bokeh.documents[0].get_model_by_name(key + '-status').text", MOTOR_KEY
    )


def test_a_write_from_an_unauthenticated_page_is_refused(served: Served, page):
    motor = tango.DeviceProxy("sim/motor/1")
    before = motor.read_attribute("Velocity").value
    open_dashboard(page, f"{served.url}/demo")
    page.get_by_text("Motor control", exact=True).click()
    assert page.get_by_role("button", name="Write").is_disabled()
    assert "Log in" in _status(page)
    _forge_write(page, "mot1/Velocity", str(before + 1))
    time.sleep(0.5)  # let the property changes reach the server
    page.get_by_role("button", name="Write").click()
    wait_for(lambda: "Refused" in _status(page), what="the refusal")
    wait_for(lambda: "action=write target=- result='refused: not logged in'" in served.output,
             what="the refusal in the audit log")  # fmt: skip
    assert motor.read_attribute("Velocity").value == before


def test_logged_in_user_writes_and_runs_a_confirmed_command(served: Served, page):
    motor = tango.DeviceProxy("sim/motor/1")
    before = motor.read_attribute("Velocity").value
    wanted = round(before + 0.25, 3)
    page.goto(f"{served.url}/login?next=/demo")
    page.fill("#user", "alice")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    assert "wrong password" in page.content().lower()
    page.fill("#user", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/demo")
    open_dashboard(page, f"{served.url}/demo")
    try:
        page.get_by_text("Motor control", exact=True).click()
        page.get_by_role("combobox").select_option(label="mot1 velocity")
        page.get_by_placeholder("value").fill(str(wanted))
        page.get_by_placeholder("value").press("Enter")
        time.sleep(0.5)
        page.get_by_role("button", name="Write").click()
        wait_for(lambda: "alice wrote mot1/Velocity" in _status(page), what="the write")
        assert motor.read_attribute("Velocity").value == pytest.approx(wanted)
        wanted_line = f"target=mot1/Velocity old={before!r} new={wanted!r} result=ok"
        wait_for(lambda: wanted_line in served.output, what="the write in the audit log")
        page.get_by_role("button", name="Home mot1").click()
        page.get_by_role("button", name="Confirm").wait_for()
        assert not [line for line in served.lines if "action=command" in line]
        page.get_by_role("button", name="Confirm").click()
        wait_for(lambda: "alice ran mot1/Home" in _status(page), what="the command")
        wait_for(lambda: "action=command target=mot1/Home" in served.output, what="command log")
        assert PASSWORD not in served.output and "wrong password" not in served.output
        assert "failed login for user 'alice'" in served.output
    finally:
        motor.write_attribute("Velocity", before)


def test_one_server_serves_every_file_at_its_own_path(served: Served, page):
    page.goto(f"{served.url}/")
    links = page.eval_on_selector_all("h2 a", "links => links.map(a => [a.textContent, a.href])")
    assert links == [
        ["Simulated beamline", f"{served.url}/demo"],
        ["One broken panel", f"{served.url}/broken"],
    ]
    page.get_by_text("One broken panel").click()
    page.wait_for_url(f"{served.url}/broken")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
    assert page.title() == "One broken panel"
