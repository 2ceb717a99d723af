"""MonitorSession against the simulated beamline: on a bare Document, on a real bokeh server
read back through bokeh's own client, and once in headless Chromium (export download)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import tango
from bokeh.client import pull_session
from bokeh.document import Document

from tango_bokeh.hub import Hub
from tango_bokeh.monitor import MonitorSession, Notice
from tango_bokeh.views import Image, Spectrum, Trend, ValueTable

from .browser import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from .conftest import serving, wait_for

MOTOR = "sim/motor/1/Position"
WRONG = "sim/motor/1/Positon"
CAMERA = "sim/camera/1/Image"
SPECTRUM = "sim/spectro/1/Spectrum"
STATES = ("sim/motor/1/State", "sim/faulty/1/State", "sim/counter/1/Counts")


class Broken(Trend):
    """A view whose update always fails: the others must not care."""

    def update(self, batch, now, states):
        raise RuntimeError("boom")


def _tick_until(session: MonitorSession, predicate, what: str, timeout: float = 20.0):
    return wait_for(lambda: (session.tick(), predicate())[1], timeout=timeout, what=what)


def _move_motor() -> None:
    """Start a move of a few mm so that Position changes (inside the soft limits)."""
    motor = tango.DeviceProxy("sim/motor/1")
    position = motor.read_attribute("Position").value
    motor.MoveTo(position - 5.0 if position > 0 else position + 5.0)


def test_bad_items_and_failing_views_stay_in_their_panels(hub: Hub):
    session = MonitorSession(
        Broken("sim/counter/1/Counts", title="broken"),
        "sim/counter/1/Counts",
        "not a name",
        WRONG,
        hub=hub,
        callback_period=None,
    )
    session.attach(Document())
    broken, counts, notice, wrong = session.panels
    assert isinstance(notice, Notice) and "not a name" in notice.text
    assert hub.stats().consumers == 2  # one cursor per attribute; the malformed name: none
    _tick_until(session, lambda: counts.inner is not None, "the counter's view")
    _tick_until(session, lambda: len(counts.inner._series[0].source.data["t"]) >= 3, "counts")
    assert "this panel failed to update: RuntimeError: boom" in broken.problem_text
    _tick_until(session, lambda: "API_AttrNotFound" in wrong.problem_text, "the wrong name's error")
    assert "failed" in session.status_text and "invalid name" in session.status_text
    session.close()
    wait_for(lambda: hub.stats().consumers == 0, what="subscriptions released")


def test_controls_history_window_clear_and_export(hub: Hub, tmp_path: Path):
    session = MonitorSession(MOTOR, SPECTRUM, hub=hub, callback_period=None, title="t")
    session.attach(Document())
    motor, spectrum = session.panels
    _tick_until(session, lambda: isinstance(motor.inner, Trend), "the motor trend")
    session._on_history("value_throttled", None, 500)
    session._on_window("value", None, "1 min")
    assert motor.inner.history_points == 500 and motor.inner.history_seconds == 60.0
    assert spectrum._pending == {"history_points": 500, "history_seconds": 60.0} or isinstance(
        spectrum.inner, Spectrum
    )
    _tick_until(session, lambda: isinstance(spectrum.inner, Spectrum), "the spectrum")
    _tick_until(session, lambda: spectrum.inner.frames_sent, "a spectrum frame")
    files = session.csv_files()
    assert set(files) == {"sim_motor_1_Position.csv", "sim_spectro_1_Spectrum.csv"}
    export = session.export()  # one long CSV for every view
    assert export.mime == "text/csv" and export.filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(export.payload.decode())))
    assert {r["attribute"] for r in rows} == {MOTOR, SPECTRUM}
    assert sum(r["attribute"] == SPECTRUM for r in rows) == 1024
    target = session.save(tmp_path / "shown.h5")  # the notebook's convenience: same content
    with h5py.File(target) as f:
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert len(f["entry/sim_spectro_1_Spectrum/value"]) == 1024
    session.clear()
    assert len(motor.inner._series[0].source.data["t"]) == 0
    session.close()


@pytest.fixture
def monitor_server(hub: Hub):
    def make() -> MonitorSession:
        return MonitorSession(
            MOTOR,
            CAMERA,
            SPECTRUM,
            ValueTable(list(STATES), title="States"),
            WRONG,
            hub=hub,
            callback_period=0.2,
            title="Test beamline",
            layout="grid",
        )

    with serving("/monitor", make) as served:
        yield served


def test_monitor_session_live_on_a_bokeh_server(monitor_server, hub: Hub):
    server, made = monitor_server
    with pull_session(url=f"{server.url}/monitor") as client:
        session = wait_for(lambda: made, what="a server session")[0]

        def seen(predicate, what: str, timeout: float = 30.0):
            """Run the client's loop (which applies the server's patches) until ``predicate``.

            bokeh's client applies PATCH-DOC messages only while its connection loop runs in
            the connected state (a request/reply drops them), hence the private ``_loop_until``.
            The camera's frames make the server send something every tick, so the predicate
            is checked at least that often.
            """
            deadline = time.monotonic() + timeout
            found: list[object] = []

            def done() -> bool:
                value = predicate()
                if value:
                    found.append(value)
                return bool(value) or time.monotonic() > deadline

            client._connection._loop_until(done)
            assert found, f"timed out after {timeout} s waiting for {what}"
            return found[0]

        def remote(model):
            return client.document.get_model_by_id(model.id)

        motor, camera, spectrum, table, wrong = session.panels
        seen(lambda: isinstance(motor.inner, Trend), "the motor's trend chosen")
        _move_motor()
        source = seen(lambda: remote(motor.inner._series[0].source), "the trend in the client")
        seen(lambda: len(source.data["t"]) >= 5, "motor positions")
        first = len(source.data["t"])
        seen(lambda: len(source.data["t"]) > first, "more motor positions")
        assert np.all(np.diff(np.asarray(source.data["t"])) >= 0)  # Tango time order

        seen(lambda: isinstance(camera.inner, Image) and camera.inner.frames_sent, "an image")
        image = seen(lambda: remote(camera.inner._source), "the image view in the client")
        seen(lambda: len(image.data["image"]) == 1, "the image in the client")
        assert np.asarray(image.data["image"][0]).shape == (256, 256)  # 512² decimated by 2

        seen(lambda: isinstance(spectrum.inner, Spectrum) and spectrum.inner.frames_sent, "a frame")
        line = seen(lambda: remote(spectrum.inner._source), "the spectrum view in the client")
        seen(lambda: len(line.data["y"]) == 1024, "the spectrum in the client")

        rows = remote(table._source)
        seen(lambda: rows.data["value"][0] in ("ON", "MOVING"), "the motor state in the table")
        assert rows.data["value_bg"][0] in ("#00ff00", "#80a0ff")

        banner = remote(wrong._banner.model)
        seen(lambda: banner.visible and "API_AttrNotFound" in banner.text, "the wrong name's error")
        count = len(source.data["t"])
        _move_motor()
        seen(lambda: len(source.data["t"]) > count, "the others keep updating")

        # Controls through the protocol: freeze from the client side, then resume.
        remote(session.freeze_toggle).active = True
        seen(lambda: session.suspended, "freeze to reach the server")
        ticks = session.ticks
        seen(lambda: session.ticks == ticks and "frozen" in session.status_text, "no ticks")
        remote(session.freeze_toggle).active = False
        seen(lambda: session.ticks > ticks + 2, "ticks again after resume")

        # Export: the file reaches the client's hidden source (in chunks).
        session.start_export("csv")
        download = remote(session.download.source)
        seen(lambda: len(download.data["meta"]) == 1, "the export's chunk")
        assert json.loads(download.data["meta"][0])["filename"].endswith(".csv")
    wait_for(lambda: session.closed, timeout=15, what="the session closed with its browser")
    wait_for(lambda: hub.stats().consumers == 0, what="subscriptions released")


@pytest.mark.browser
@pytest.mark.skipif(not HAVE_CHROMIUM, reason="needs Debian's chromium")
def test_page_renders_and_exports_in_chromium(monitor_server, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    server, made = monitor_server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.url}/monitor")
            page.wait_for_selector("text=Test beamline", timeout=20_000)
            # The table is redrawn on patches: the motor's state shows up as a badge.
            badge = page.locator(".slick-cell span", has_text=re.compile(r"^(ON|MOVING)$"))
            badge.first.wait_for(timeout=30_000)
            style = badge.first.get_attribute("style") or ""
            assert "#00ff00" in style or "#80a0ff" in style, style  # the operator palette
            cells = page.locator(".slick-cell").all_inner_texts()
            assert any(text.strip() in ("ON", "MOVING") for text in cells), cells
            # ...and keeps being redrawn as patches arrive (the counter's time moves on).
            wait_for(
                lambda: page.locator(".slick-cell").all_inner_texts() != cells,
                what="table cells redrawn after patches",
            )
            page.locator("text=API_AttrNotFound").first.wait_for(timeout=20_000)
            with page.expect_download(timeout=30_000) as info:
                page.get_by_role("button", name="Export").click()
                page.get_by_text("CSV (long format)").click()
            path = tmp_path / info.value.suggested_filename
            info.value.save_as(path)
            rows = list(csv.DictReader(path.open()))
            assert "sim/motor/1/Position" in {r["attribute"] for r in rows}
            page.screenshot(path=str(tmp_path / "monitor.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert any(session.ticks > 0 for session in made)
