"""Against a device none of us wrote: Debian's C++ TangoTest (``sys/tg_test/1``).

TangoTest has no polling configured, so every attribute falls back to client
polling; it has every Tango type, attributes that never have a value
(``no_value``) and attributes that always fail (``throw_exception``). Each
kind must arrive as a typed sample or as an error in place, through the hub
and through a served dashboard, and the device must heal by itself after
its server is killed and restarted.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tango_bokeh.dashboard.client import open_page
from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub
from tango_bokeh.sim import ControlSystem
from tango_bokeh.tango.modes import Mode

from .browser import chromium
from .conftest import TANGO_TEST, TANGO_TEST_SERVER, wait_for

pytestmark = pytest.mark.tango

DEV = "sys/tg_test/1"
SCALARS = {
    "double_scalar": float, "float_scalar": float, "long_scalar": int, "short_scalar": int,
    "ulong_scalar": int, "ushort_scalar": int, "long64_scalar": int, "uchar_scalar": int,
    "boolean_scalar": bool, "string_scalar": str,
}  # fmt: skip
SPECTRA = ("double_spectrum", "long_spectrum", "short_spectrum_ro", "wave")
IMAGES = ("double_image_ro", "ushort_image_ro", "long_image_ro")


def _first_good(cursor, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    found: list = []

    def look() -> bool:
        found.extend(s for s in cursor.read() if s.ok)
        return bool(found)

    wait_for(look, timeout=timeout, what=f"a value of {cursor}")
    return found[-1]


def test_every_kind_arrives_typed_through_client_polling(hub: Hub, tango_test: str):
    cursors = {name: hub.subscribe(f"{DEV}/{name}") for name in [*SCALARS, *SPECTRA, *IMAGES]}
    state = hub.subscribe(f"{DEV}/State")
    for name, kind in SCALARS.items():
        sample = _first_good(cursors[name])
        assert isinstance(sample.value, kind), (name, type(sample.value))
        assert abs(sample.time - time.time()) < 30  # the device's timestamp
    for name in SPECTRA:
        value = _first_good(cursors[name]).value
        assert isinstance(value, np.ndarray) and value.ndim == 1 and value.size > 0, name
    for name in IMAGES:
        value = _first_good(cursors[name]).value
        assert isinstance(value, np.ndarray) and value.ndim == 2, name
    assert _first_good(state).value is not None
    # No polling is configured on TangoTest: every attribute is polled by the client.
    wait_for(lambda: all(c.mode is Mode.POLL for c in cursors.values()), what="client polling")
    assert hub.stats().subscriptions == 0


def test_no_value_and_throw_exception_are_errors_in_place(hub: Hub, tango_test: str):
    broken = hub.subscribe(f"{DEV}/throw_exception")
    fine = hub.subscribe(f"{DEV}/double_scalar")
    errors: list = []

    def error_seen() -> bool:
        errors.extend(s for s in broken.read() if not s.ok)
        return bool(errors)

    wait_for(error_seen, what="the error of throw_exception")
    assert errors[-1].error  # a message, not a value
    assert _first_good(fine).ok  # the device's other attributes are untouched


DASHBOARD = f"""
title: TangoTest
refresh: 0.5 s
poll_period: 0.5 s
panels:
  - row:
      - trend: {{title: Scalars, attributes: [{DEV}/double_scalar, {DEV}/long_scalar,
                 {DEV}/short_scalar, {DEV}/boolean_scalar]}}
      - table: {{title: Values, attributes: [{DEV}/string_scalar, {DEV}/State,
                 {DEV}/ulong_scalar, {DEV}/no_value, {DEV}/throw_exception]}}
  - row:
      - spectrum: {{title: Wave, attribute: {DEV}/wave}}
      - image: {{title: Image, attribute: {DEV}/double_image_ro}}
"""


def test_a_dashboard_of_every_kind_heals_after_the_server_is_killed(
    hub: Hub, tango_test: str, control_system: ControlSystem
):
    dashboard = parse(DASHBOARD, "tangotest.yaml")
    running = Serving(DashboardServer([dashboard], hub=hub), ServeOptions(port=0)).start_thread()
    client = None
    try:
        client = open_page(f"{running.url}/tangotest")
        (session,) = running.server.sessions()
        views = {type(v).__name__: v for v in session.views}
        wait_for(lambda: views["Image"].displayed is not None, what="an image frame")
        cursor = hub.subscribe(f"{DEV}/double_scalar")
        _first_good(cursor)
        control_system.stop_named(TANGO_TEST_SERVER, signal.SIGKILL)
        killed = time.time()
        errors: list = []

        def down() -> bool:
            errors.extend(s for s in cursor.read() if not s.ok)
            return bool(errors)

        wait_for(down, timeout=30, what="the outage to show as an error")
        control_system.restart_executable(TANGO_TEST_SERVER, TANGO_TEST)
        control_system.wait_ready([DEV])
        healed = wait_for(lambda: [s for s in cursor.read() if s.ok and s.time > killed],
                          timeout=40, what="values after the restart")  # fmt: skip
        assert healed
    finally:
        if client is not None:
            client.close()
        running.join()
        if TANGO_TEST_SERVER not in control_system._servers:  # leave it running for others
            control_system.restart_executable(TANGO_TEST_SERVER, TANGO_TEST)
            control_system.wait_ready([DEV])


OUTAGE = f"""
title: TangoTest outage
refresh: 0.5 s
poll_period: 0.5 s
panels:
  - row:
      - trend: {{title: Scalars, attributes: [{DEV}/double_scalar, {DEV}/float_scalar,
                 {DEV}/long_scalar, {DEV}/short_scalar, {DEV}/ampli, {DEV}/long64_scalar]}}
      - table: {{title: Values, attributes: [{DEV}/string_scalar, {DEV}/State, {DEV}/Status,
                 {DEV}/ulong_scalar, {DEV}/ushort_scalar, {DEV}/uchar_scalar,
                 {DEV}/boolean_scalar, {DEV}/double_scalar_rww, {DEV}/long_scalar_rww,
                 {DEV}/short_scalar_ro, {DEV}/float_scalar_ro, {DEV}/no_value]}}
  - row:
      - spectrum: {{title: Wave, attribute: {DEV}/wave}}
      - spectrum: {{title: Doubles, attribute: {DEV}/double_spectrum_ro}}
      - spectrum: {{title: Longs, attribute: {DEV}/long_spectrum_ro}}
  - row:
      - image: {{title: Doubles image, attribute: {DEV}/double_image_ro}}
      - image: {{title: Shorts image, attribute: {DEV}/ushort_image_ro}}
"""


@pytest.mark.browser
def test_a_dashboard_in_error_lays_out_no_more_than_a_healthy_one(
    hub: Hub, tango_test: str, control_system: ControlSystem
):
    """With its device down, a full dashboard must not saturate the browser with re-layouts."""
    dashboard = parse(OUTAGE, "outage.yaml")
    running = Serving(DashboardServer([dashboard], hub=hub), ServeOptions(port=0)).start_thread()
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")

            def layouts() -> float:
                metrics = cdp.send("Performance.getMetrics")["metrics"]
                return next(m["value"] for m in metrics if m["name"] == "LayoutCount")

            def rate(seconds: float = 12.0) -> float:
                before = layouts()
                time.sleep(seconds)
                return (layouts() - before) / seconds

            page.goto(f"{running.url}/outage")
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0",
                                   timeout=30_000)  # fmt: skip
            time.sleep(5)  # every panel has data
            healthy = rate()
            control_system.stop_named(TANGO_TEST_SERVER, signal.SIGKILL)
            (session,) = running.server.sessions()
            wait_for(lambda: "since" in session.views[0].problem_text, timeout=30,
                     what="the outage on the page")  # fmt: skip
            time.sleep(3)
            broken = rate()
            print(f"layouts per second: healthy {healthy:.1f}, device down {broken:.1f}")
            assert broken <= 2 * max(healthy, 1.0), (broken, healthy)
    finally:
        running.join()
        if TANGO_TEST_SERVER not in control_system._servers:
            control_system.restart_executable(TANGO_TEST_SERVER, TANGO_TEST)
            control_system.wait_ready([DEV])


def test_the_name_check_refuses_text_spectra_and_images(tango_test: str):
    from tango_bokeh.dashboard.check import check_files

    text = f"""
title: Text is not plotted
panels:
  - spectrum: {{attribute: {DEV}/string_spectrum_ro}}
  - image: {{attribute: {DEV}/string_image_ro}}
  - spectrum: {{attribute: {DEV}/double_spectrum_ro}}
"""
    problems = [str(p) for p in check_files([parse(text, "text.yaml")])]
    assert len(problems) == 2, problems
    assert "string_spectrum_ro' is a DevString attribute: a spectrum needs numbers" in problems[0]
    assert "string_image_ro' is a DevString attribute: an image needs numbers" in problems[1]
