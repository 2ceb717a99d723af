"""Export what I see, in headless Chromium on real devices (issue 10, section 3).

A dashboard page (in-process server, real Tango devices) is driven like an operator
would: a legend entry hidden, the page frozen, the trend zoomed with the box-zoom tool,
the Export menu clicked. The downloaded files (CSV and HDF5, saved by the page itself
from the streamed chunks) are compared with what the page's own data sources hold in
the range it shows, and their timestamps with the device's own change events, taken
by an independent subscription of this test.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import tango
from PIL import Image as PILImage

from tango_bokeh.dashboard.build import DashboardSession
from tango_bokeh.dashboard.loader import parse
from tango_bokeh.hub import Hub
from tango_bokeh.views.export import Download, export_pool
from tango_bokeh.views.export_formats import Shown
from tango_bokeh.views.trend import from_display_ms

from .browser import chromium
from .conftest import serving, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.tango]

FRAMES = "sim/camera/1/FrameNumber"
TEMPERATURE = "sim/temp/1/Temperature"
SPECTRUM = "sim/spectro/1/Spectrum"
IMAGE = "sim/camera/1/Image"

PAGE = f"""
title: Export check
refresh: 0.2 s
panels:
  - trend: {{title: Frames, attributes: [{FRAMES}, {TEMPERATURE}]}}
  - row:
      - spectrum: {{title: Spectrometer, attribute: {SPECTRUM}}}
      - image: {{title: Camera, attribute: {IMAGE}, max_display: [320, 320]}}
"""

#: The page's trend series: name (label), x range, rows, and whether they are visible.
TREND = """(title) => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  const series = plot.renderers.filter(
    r => r.name && r.data_source && r.data_source.data.q !== undefined
         && !r.name.endsWith('(archive)'));
  return {
    start: plot.x_range.start, end: plot.x_range.end,
    series: series.map(r => ({
      name: r.name, t: Array.from(r.data_source.data.t), y: Array.from(r.data_source.data.y),
      q: Array.from(r.data_source.data.q),
      visible: plot.renderers.filter(o => o.data_source === r.data_source)
                              .some(o => o.visible && o !== r)})),
  };
}"""

#: Hide one legend entry as a click on it does (click_policy "hide").
HIDE = """(label) => {
  const doc = Bokeh.documents[0];
  const legend = [...doc.all_models].find(m => m.type === 'Legend' &&
    m.items.some(i => i.label && i.label.value && i.label.value.includes(label)));
  for (const item of legend.items)
    if (item.label.value.includes(label)) for (const r of item.renderers) r.visible = false;
}"""

#: A figure's size as the page laid it out.
BOX = """(title) => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  return {inner_width: plot.inner_width, inner_height: plot.inner_height,
          outer_width: plot.outer_width, outer_height: plot.outer_height};
}"""


#: What the Save tool does when clicked (for a tool in a toolbar's overflow menu).
SAVE = """(title) => {
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  plot.toolbar.tools.find(t => t.type === 'SaveTool').do.emit(undefined);
}"""


class Witness:
    """The device's own change events of one attribute (value by Tango timestamp, µs)."""

    def __init__(self, name: str) -> None:
        device, attribute = name.rsplit("/", 1)
        self.proxy = tango.DeviceProxy(device)
        self.seen: dict[int, float] = {}
        self._lock = threading.Lock()
        self.id = self.proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, self._push)

    def _push(self, event: tango.EventData) -> None:
        if event.err or event.attr_value is None:
            return
        with self._lock:
            self.seen[_micros(event.attr_value.time.totime())] = float(event.attr_value.value)

    def value_at(self, micros: int) -> float | None:
        """The value the device stamped within 1 µs of ``micros`` (files give µs; Tango 10
        stamps may carry nanoseconds, and display milliseconds round the last digit)."""
        with self._lock:
            for near in (micros, micros - 1, micros + 1):
                if near in self.seen:
                    return self.seen[near]
        return None

    def close(self) -> None:
        self.proxy.unsubscribe_event(self.id)


@pytest.fixture
def page_server(hub: Hub) -> Iterator[tuple[object, list[DashboardSession]]]:
    dashboard = parse(PAGE, "export.yaml")
    with serving("/export", lambda: DashboardSession(dashboard, hub=hub)) as (server, made):
        yield server, made


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length",
        timeout=30_000,
    )
    return context, page


def _export(page, choice: str, tmp_path: Path) -> Path:
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Export").click()
        page.get_by_text(choice).click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path


def _micros(t: float) -> int:
    return round(t * 1e6)


def _asked_range(session: DashboardSession, figure: object) -> tuple[float, float]:
    """The x range the page showed when its Export menu was clicked (sent with the click:
    a frozen trend's range still follows "now", so it is read at that very moment)."""
    asked = json.loads(session.download.source.tags[0])
    start, end = asked["ranges"][figure.id][:2]
    return start, end


def _shown_rows(trend: dict, name: str, span: tuple[float, float]) -> tuple[list[int], list]:
    """The page's rows of ``name`` within ``span`` (display ms): Tango µs and values."""
    (series,) = [s for s in trend["series"] if s["name"] == name]
    t = np.asarray(series["t"], dtype=np.float64)
    keep = (t >= span[0]) & (t <= span[1])
    times = from_display_ms(t[keep])
    return [_micros(x) for x in times], [float(v) for v in np.asarray(series["y"])[keep]]


def test_the_files_hold_what_the_page_draws(page_server, tmp_path: Path):
    server, made = page_server
    witness = Witness(FRAMES)
    try:
        with chromium() as browser:
            context, page = _open(browser, f"{server.url}/export")
            try:
                wait_for(lambda: made and made[-1].ready, what="the page's session")
                session = made[-1]
                wait_for(
                    lambda: all(len(s["t"]) >= 8 for s in page.evaluate(TREND, "Frames")["series"]),
                    timeout=60, what="rows of both series in the page",
                )  # fmt: skip
                page.evaluate(HIDE, "Temperature")
                (trend,) = [v for v in session.views if getattr(v, "attributes", ()) and
                            FRAMES in v.attributes]  # fmt: skip
                wait_for(lambda: not trend._series[1].renderers[0].visible, what="hidden, server")
                page.get_by_role("button", name="Freeze").click()
                wait_for(lambda: session.frozen, what="frozen")
                page.wait_for_timeout(1000)  # the last patches applied, the range settled
                shown = page.evaluate(TREND, "Frames")  # frozen: these rows stay

                # CSV: the frame counter's rows are exactly those drawn, the hidden one absent.
                path = _export(page, "CSV (long format)", tmp_path)
                span = _asked_range(session, trend._figure)
                assert shown["start"] <= span[0] < span[1] and math.isfinite(span[1])
                times, values = _shown_rows(shown, FRAMES, span)
                rows = list(csv.DictReader(path.open()))
                attributes = {r["attribute"] for r in rows}
                assert FRAMES in attributes and TEMPERATURE not in attributes
                frames = [r for r in rows if r["attribute"] == FRAMES]
                assert [_micros(float(r["time_epoch"])) for r in frames] == times
                got = [float(r["value"]) if r["value"] else math.nan for r in frames]
                np.testing.assert_array_equal(got, values)
                assert {r["origin"] for r in frames} == {"live"}
                assert frames[0]["unit"] == "" or frames[0]["label"]
                # Timestamps are Tango's: the device's own events carry them (the first row
                # may come from the subscription's initial read, which no event carries).
                for r in frames[1:]:
                    if r["value"]:
                        stamp = _micros(float(r["time_epoch"]))
                        assert witness.value_at(stamp) == float(r["value"]), r
                        iso = np.datetime64(r["time_utc"].rstrip("Z"), "us").astype(np.int64)
                        assert int(iso) == stamp

                # The spectrum and the image frames, as shown.
                spectrum = [r for r in rows if r["attribute"] == SPECTRUM]
                page_y = page.evaluate(
                    """() => Array.from([...Bokeh.documents[0].all_models].find(m =>
                       m.type === 'Figure' && m.title.text.startsWith('Spectrometer'))
                       .renderers.at(-1).data_source.data.y)"""
                )
                assert len(spectrum) == len(page_y) > 0
                np.testing.assert_allclose([float(r["value"]) for r in spectrum], page_y,
                                           rtol=1e-6)  # fmt: skip
                assert len({r["time_epoch"] for r in spectrum}) == 1
                image_rows = [r for r in rows if r["attribute"] == IMAGE]
                assert image_rows and {r["quality"] for r in image_rows} <= {
                    "VALID",
                    "CHANGING",
                    "WARNING",
                    "ALARM",
                }

                # HDF5: the same numbers, NeXus-style, with the attribute's configuration.
                path = _export(page, "HDF5 (NeXus)", tmp_path)
                times, values = _shown_rows(shown, FRAMES, _asked_range(session, trend._figure))
                with h5py.File(path) as f:
                    entry = f["entry"]
                    assert entry.attrs["NX_class"] == "NXentry"
                    assert "start_time" in entry and "end_time" in entry
                    group = entry["sim_camera_1_FrameNumber"]
                    assert group.attrs["NX_class"] == "NXdata" and group.attrs["signal"] == "value"
                    assert [_micros(t) for t in group["time"][()]] == times
                    np.testing.assert_array_equal(group["value"][()], values)
                    assert group["time"].attrs["units"] == "s"
                    for key in ("units", "long_name", "format", "tango_name"):
                        assert key in group["value"].attrs
                    assert group["value"].attrs["tango_name"] == FRAMES
                    assert "sim_temp_1_Temperature" not in entry
                    assert list(group["origin"].attrs["names"]) == [
                        "live", "archive", "archive-minmax"]  # fmt: skip
                    assert entry["sim_spectro_1_Spectrum/value"].shape == (len(page_y),)
                    assert entry["sim_camera_1_Image/value"].ndim == 2

                # Zoomed in with the box-zoom tool: only that range is exported.
                canvas = page.locator(".bk-Figure").first.bounding_box()
                assert canvas is not None
                y = canvas["y"] + canvas["height"] * 0.5
                page.mouse.move(canvas["x"] + canvas["width"] * 0.45, y)
                page.mouse.down()
                page.mouse.move(canvas["x"] + canvas["width"] * 0.6, y + 40, steps=8)
                page.mouse.up()
                wait_for(lambda: page.evaluate(TREND, "Frames")["end"] < shown["end"] - 1,
                         what="the zoom in the page")  # fmt: skip
                zoomed = page.evaluate(TREND, "Frames")
                path = _export(page, "CSV (long format)", tmp_path)
                span = _asked_range(session, trend._figure)
                assert span == (zoomed["start"], zoomed["end"])  # a zoom stays put
                z_times, _ = _shown_rows(zoomed, FRAMES, span)
                assert 0 < len(z_times) < len(times)
                frames = [r for r in csv.DictReader(path.open()) if r["attribute"] == FRAMES]
                assert [_micros(float(r["time_epoch"])) for r in frames] == z_times
            finally:
                context.close()
    finally:
        witness.close()


def test_the_save_tool_saves_a_png_of_each_figure(page_server, tmp_path: Path):
    server, made = page_server
    with chromium() as browser:
        context, page = _open(browser, f"{server.url}/export")
        try:
            wait_for(lambda: made and made[-1].ready and {FRAMES, SPECTRUM, IMAGE} <= {
                r["attribute"] for r in csv.DictReader(io.StringIO(
                    made[-1].export().payload.decode()))}, timeout=60,
                     what="data in every view")  # fmt: skip
            page.wait_for_timeout(1000)
            # Each save tool has a file name (the figure's title): bokeh asks for none.
            prompts: list[str] = []
            page.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.dismiss()))
            figures = page.locator(".bk-Figure")
            wait_for(lambda: figures.count() == 3, what="the three figures")
            for index, title in enumerate(("Frames", "Spectrometer", "Camera")):
                figures.nth(index).hover()  # the toolbar shows on hover (autohide)
                save = figures.nth(index).locator('[title="Save"]')
                with page.expect_download(timeout=30_000) as info:
                    if save.count():
                        save.click()
                    else:  # a narrow toolbar keeps it in its overflow menu: the tool's action
                        page.evaluate(SAVE, title)
                assert info.value.suggested_filename.startswith(title), title
                path = tmp_path / f"{index}-{info.value.suggested_filename}"
                info.value.save_as(path)
                size = page.evaluate(BOX, title)
                with PILImage.open(path) as png:
                    assert png.format == "PNG"
                    assert png.size == (size["outer_width"], size["outer_height"]), title
                    colours = png.convert("RGB").getcolors(maxcolors=1_000_000)
                    assert colours is not None and len(colours) > 20, title  # not blank
            assert prompts == []
        finally:
            context.close()


def test_a_page_closed_mid_export_leaves_nothing_behind(page_server, tmp_path: Path):
    server, made = page_server
    with chromium() as browser:
        context, _page = _open(browser, f"{server.url}/export")
        wait_for(lambda: made and made[-1].ready and made[-1].export().payload.count(b"\n") > 3,
                 timeout=60, what="trend rows")  # fmt: skip
        session = made[-1]
        download: Download = session.download
        # A big file, so the page is closed while the worker writes it.
        rows = 2_000_000
        big = Shown(FRAMES, "big", "scalar", np.arange(rows) + 1.8e9, np.ones(rows),
                    np.zeros(rows, np.uint8), np.zeros(rows, np.uint8))  # fmt: skip
        session.safe_document_modifications(lambda: download.start([big], "csv", "big"))
        wait_for(lambda: download.busy, what="the export under way")
        context.close()
    wait_for(lambda: session.closed, timeout=30, what="the session closed with its page")
    assert not download.busy and download._export is None  # nothing kept to send
    assert getattr(session, "_download_channel", None) is None
    idle = threading.Event()
    export_pool().submit(idle.set)  # queued behind the big file: runs once it is written
    assert idle.wait(120), "the export worker never finished"
    threading.Event().wait(0.5)
    assert download.chunks == 0 and download._export is None  # nothing sent, nothing held
    workers = [t for t in threading.enumerate() if t.name.startswith("tango-bokeh-export")]
    assert len(workers) <= 1  # the shared pool's worker at most, never one per export
