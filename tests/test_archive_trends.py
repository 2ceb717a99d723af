"""Trends backed by the archive (views/archive_fill.py).

First the fetch and merge logic on ``FakeArchive`` (in memory, no Tango): a trend opens
filled before its live rows, zooming out reads the past decimated for the plot's width
and replaces only that range, bursts make one read, and the archive's errors say so in
the panel while live data goes on. Then the whole chain for real (further down): MariaDB
with HDB++'s schema, Tango devices, the dashboard server and Chromium.
"""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.events import RangesUpdate

from tango_bokeh.hub import Hub
from tango_bokeh.session import Session
from tango_bokeh.tango.archive import FakeArchive, NotConfigured
from tango_bokeh.tango.fake import FakeAcquisition
from tango_bokeh.views import Trend, archive_fill
from tango_bokeh.views.archive_fill import ArchiveFill, Segment, covered, merged
from tango_bokeh.views.trend import to_display_ms

from .archives import NEEDS_MARIADB
from .conftest import wait_for

CURRENT = "fake/beam/1/Current"
PRESSURE = "fake/vacuum/1/Pressure"
WIDTH = 500


@pytest.fixture
def fake() -> Iterator[tuple[Hub, FakeAcquisition]]:
    acquisition = FakeAcquisition()
    hub = Hub(acquisition)
    try:
        yield hub, acquisition
    finally:
        hub.close()


class Loop:
    """What the worker posts, run when the test says (the test's thread is the 'loop')."""

    def __init__(self) -> None:
        self.posted: queue.Queue[Callable[[], None]] = queue.Queue()

    def post(self, callback: Callable[[], None]) -> None:
        self.posted.put(callback)

    def run(self, timeout: float = 30.0) -> int:
        """Wait for the worker's outcome and apply it; how many outcomes were applied."""
        done = [self.posted.get(timeout=timeout)]
        while not self.posted.empty():
            done.append(self.posted.get_nowait())
        for callback in done:
            callback()
        return len(done)


def _archive(now: float, hours: float = 2.0) -> FakeArchive:
    archive = FakeArchive()
    t = now - hours * 3600 + np.arange(int(hours * 3600), dtype=np.float64)
    value = 100.0 + np.sin(t / 300.0)
    value[len(t) // 3] = 500.0  # a one-sample spike
    archive.add(CURRENT, t, value)
    return archive


def _opened(hub: Hub, device: FakeAcquisition, archive, loop: Loop, now: float, **kwargs):
    """A session with a trend of CURRENT (and kwargs' attributes), 60 s of live samples."""
    attributes = kwargs.pop("attributes", [CURRENT])
    trend = Trend(attributes, history_seconds=600)
    fill = ArchiveFill(archive, loop.post, width=WIDTH, debounce=0.05)
    trend.use_archive(fill)
    session = Session(hub=hub, callback_period=None)
    session.add_view(trend)
    session.attach(Document())
    for attribute in attributes:
        for i in range(60):
            device.push(attribute, 100.0 + i / 100.0, t=now - 60 + i)
    session.tick()
    return session, trend, fill


def _live_first_ms(trend: Trend, attribute: str = CURRENT) -> float:
    series = next(s for s in trend._series if s.attribute == attribute)
    return float(series.source.data["t"][0])


def _archived(fill: ArchiveFill, attribute: str = CURRENT) -> dict[str, np.ndarray]:
    source = fill._state[attribute].source
    assert source is not None, f"no archived points of {attribute}"
    return {k: np.asarray(v) for k, v in source.data.items()}


def test_covered_and_merged():
    segments = [Segment(0.0, 100.0, 1.0), Segment(200.0, 300.0, 0.0)]
    assert covered(segments, 10, 90, 0.6)  # twice as coarse at most
    assert not covered(segments, 10, 90, 0.4)
    assert covered(segments, 210, 290, 0.001)  # raw rows: fine at any zoom
    assert not covered(segments, 90, 210, 1.0)  # no one segment holds it
    old = {"t": np.arange(10.0), "y": np.arange(10.0), "q": np.zeros(10, np.uint8)}
    new = {"t": np.array([3.5, 4.5]), "y": np.array([-1.0, -2.0]), "q": np.ones(2, np.uint8)}
    got = merged(old, new, 3.2, 6.0, before_ms=9.0)
    np.testing.assert_array_equal(got["t"], [0, 1, 2, 3, 3.5, 4.5, 7, 8])
    np.testing.assert_array_equal(got["y"], [0, 1, 2, 3, -1, -2, 7, 8])
    assert got["q"].dtype == np.uint8 and list(got["q"]) == [0, 0, 0, 0, 1, 1, 0, 0]
    capped = merged(old, new, 3.2, 6.0, limit=4)  # the rows nearest the new range stay
    np.testing.assert_array_equal(capped["t"], [3, 3.5, 4.5, 7])


def test_a_trend_opens_filled_from_the_archive_before_its_live_rows(fake, monkeypatch):
    monkeypatch.setattr(archive_fill, "OPEN_WAIT", 0.0)
    hub, device = fake
    now = time.time()
    archive, loop = _archive(now), Loop()
    session, trend, fill = _opened(hub, device, archive, loop, now)
    try:
        loop.run()
        ((attribute, start, end, width),) = archive.reads
        assert attribute == CURRENT and width == WIDTH
        assert start == pytest.approx(now - 600, abs=5) and end == pytest.approx(now - 60, abs=1)
        got = _archived(fill)
        first_live = _live_first_ms(trend)
        assert 500 <= len(got["t"]) <= 2 * WIDTH and got["t"][-1] < first_live
        assert got["t"][0] >= float(to_display_ms(now - 601))
        assert np.all(np.diff(got["t"]) > 0) and np.all(got["q"] == 0)
        # Drawn apart from the live line: lighter, named "(archive)", a legend entry.
        line, hover = fill._state[CURRENT].renderers
        assert line.glyph.line_alpha == archive_fill.ALPHA and line.glyph.line_color == (
            trend._series[0].color
        )
        assert hover.name.endswith("(archive)") and hover in trend._hover_tool.renderers
        assert "archive" in [item.label.value for item in trend._legend.items]
        assert trend._legend.visible and trend.problem_text == ""
        # Live rows go on: the archived ones are left alone.
        device.push(CURRENT, 123.0, t=now + 0.5)
        session.tick()
        assert trend._series[0].source.data["y"][-1] == 123.0
        assert len(_archived(fill)["t"]) == len(got["t"]) and len(archive.reads) == 1
    finally:
        session.close()


def test_zoom_out_reads_the_past_for_the_plots_width_and_replaces_only_that_range(
    fake, monkeypatch
):
    monkeypatch.setattr(archive_fill, "OPEN_WAIT", 0.0)
    hub, device = fake
    now = time.time()
    archive, loop = _archive(now), Loop()
    session, trend, fill = _opened(hub, device, archive, loop, now)
    try:
        loop.run()
        opened = _archived(fill)
        # Zoom out to the last two hours, in three quick steps: one read, of the last.
        fig = trend._figure
        for hours in (0.5, 1.0, 2.0):
            x0, x1 = to_display_ms(now - hours * 3600), to_display_ms(now)
            fill._on_ranges(RangesUpdate(fig, x0=x0, x1=x1, y0=0, y1=1))
        loop.run()
        assert len(archive.reads) == 2
        _, start, end, width = archive.reads[-1]
        assert width == WIDTH
        assert start == pytest.approx(now - 7200, abs=1) and end == pytest.approx(now - 60, abs=1)
        got = _archived(fill)
        # Decimated for the width: min and max per pixel column, the spike kept.
        assert len(got["t"]) <= 2 * WIDTH + 1 and 500.0 in got["y"]
        assert got["t"][-1] < _live_first_ms(trend)
        # The same view again: drawn at that resolution already, nothing read.
        fill._on_ranges(RangesUpdate(fig, x0=x0, x1=x1, y0=0, y1=1))
        time.sleep(0.3)
        assert loop.posted.empty() and len(archive.reads) == 2
        # Zoomed in on 10 minutes an hour ago: every row there, the rest left as it was.
        a, b = now - 3600, now - 3000
        fill._on_ranges(RangesUpdate(fig, x0=to_display_ms(a), x1=to_display_ms(b), y0=0, y1=1))
        loop.run()
        zoomed = _archived(fill)
        lo, hi = to_display_ms(a), to_display_ms(b)
        inside = (zoomed["t"] >= lo) & (zoomed["t"] <= hi)
        assert inside.sum() == 601  # raw rows at 1 Hz, bounds included
        outside = ~inside
        before = (got["t"] < lo) | (got["t"] > hi)
        np.testing.assert_array_equal(zoomed["t"][outside], got["t"][before])
        np.testing.assert_array_equal(zoomed["y"][outside], got["y"][before])
        assert len(opened["t"]) > 0
    finally:
        session.close()


def test_not_archived_is_said_once_and_live_goes_on(fake, monkeypatch):
    monkeypatch.setattr(archive_fill, "OPEN_WAIT", 0.0)
    hub, device = fake
    now = time.time()
    archive, loop = _archive(now), Loop()
    session, trend, fill = _opened(hub, device, archive, loop, now, attributes=[CURRENT, PRESSURE])
    try:
        loop.run()
        assert trend.problem_text == (
            f"{PRESSURE}: is not archived in fake archive: live data only"
        )
        assert fill.points(CURRENT) > 0 and fill.points(PRESSURE) == 0
        series = next(s for s in trend._series if s.attribute == PRESSURE)
        assert len(series.source.data["t"]) >= 60  # its live rows
        # Said once: zooming out reads the archived attribute only.
        fig = trend._figure
        fill._on_ranges(
            RangesUpdate(fig, x0=to_display_ms(now - 3600), x1=to_display_ms(now), y0=0, y1=1)
        )
        loop.run()
        assert [r[0] for r in archive.reads].count(PRESSURE) == 1
        assert "not archived" in trend.problem_text
    finally:
        session.close()


def test_an_archive_that_does_not_answer_shows_in_place_until_it_does(fake, monkeypatch):
    monkeypatch.setattr(archive_fill, "OPEN_WAIT", 0.0)
    hub, device = fake
    now = time.time()
    archive, loop = _archive(now), Loop()
    archive.down = True
    session, trend, fill = _opened(hub, device, archive, loop, now, attributes=[CURRENT, PRESSURE])
    try:
        loop.run()
        assert trend.problem_text == "\n".join(
            f"{a}: archive: fake archive is down (live data goes on)" for a in (CURRENT, PRESSURE)
        )
        assert len(archive.reads) == 1  # one time-out for the trend, not one per attribute
        assert fill.points(CURRENT) == 0
        device.push(CURRENT, 7.0, t=now + 1)
        session.tick()  # live data goes on
        assert trend._series[0].source.data["y"][-1] == 7.0
        archive.down = False
        fig = trend._figure
        fill._on_ranges(
            RangesUpdate(fig, x0=to_display_ms(now - 900), x1=to_display_ms(now), y0=0, y1=1)
        )
        loop.run()
        assert trend.problem_text == (
            f"{PRESSURE}: is not archived in fake archive: live data only"
        )
        assert fill.points(CURRENT) > 0
    finally:
        session.close()


def test_no_archive_configured_is_silent(fake, monkeypatch):
    monkeypatch.setattr(archive_fill, "OPEN_WAIT", 0.0)
    hub, device = fake
    now = time.time()
    opened = []

    def nothing():
        opened.append(1)
        raise NotConfigured("no archive configured")

    loop = Loop()
    session, trend, fill = _opened(hub, device, nothing, loop, now)
    try:
        loop.run()
        assert fill.disabled and trend.problem_text == "" and fill.points(CURRENT) == 0
        fig = trend._figure
        fill._on_ranges(
            RangesUpdate(fig, x0=to_display_ms(now - 900), x1=to_display_ms(now), y0=0, y1=1)
        )
        time.sleep(0.3)
        assert loop.posted.empty() and opened == [1]
        assert not any(math.isnan(v) for v in trend._series[0].source.data["y"])
    finally:
        session.close()


def test_clear_forgets_archived_points(fake, monkeypatch):
    monkeypatch.setattr(archive_fill, "OPEN_WAIT", 0.0)
    hub, device = fake
    now = time.time()
    archive, loop = _archive(now), Loop()
    session, trend, fill = _opened(hub, device, archive, loop, now)
    try:
        loop.run()
        assert fill.points(CURRENT) > 0
        trend.clear()
        assert fill.points(CURRENT) == 0 and fill._state[CURRENT].segments == []
    finally:
        session.close()


def test_a_trend_without_archive_is_unchanged(fake):
    hub, device = fake
    trend = Trend([CURRENT])
    session = Session(hub=hub, callback_period=None)
    session.add_view(trend)
    session.attach(Document())
    try:
        device.push(CURRENT, 1.0)
        session.tick()
        assert "archive" not in [i.label.value for i in trend._legend.items]
    finally:
        session.close()
    wait_for(lambda: hub.stats().channels == 0, what="the channel closed")


def test_a_view_chosen_later_gets_the_archive(fake, monkeypatch):
    """``monitor("name", archive=...)``: the AutoView hands the fill to the trend it becomes."""
    from tango_bokeh.views.auto import AutoView, view_for

    monkeypatch.setattr(archive_fill, "OPEN_WAIT", 0.0)
    hub, device = fake
    now = time.time()
    archive, loop = _archive(now), Loop()
    view = view_for(CURRENT)
    assert isinstance(view, AutoView)
    session = Session(hub=hub, callback_period=None)
    session.add_view(view)
    # The plot's width as the page measures it (none here: DEFAULT_WIDTH columns).
    view.set_option("archive", ArchiveFill(archive, loop.post, debounce=0.05))
    session.attach(Document())
    try:
        for i in range(30):
            device.push(CURRENT, 100.0, t=now - 30 + i)
        session.tick()
        assert isinstance(view.inner, Trend) and view.inner.archive is not None
        loop.run()
        assert view.inner.archive.points(CURRENT) > 0
        assert archive.reads[-1][3] == archive_fill.DEFAULT_WIDTH
    finally:
        session.close()


# -- the whole chain: MariaDB + HDB++ schema, Tango devices, `tango-bokeh serve`, Chromium --

CURRENT_TANGO = "sim/beam/current/Current"  # a demo device: live events all along
NOT_ARCHIVED = "sim/motor/2/Velocity"
#: What the archive holds of CURRENT_TANGO (never what the device says: ~200 mA).
PAST_VALUE = 1000.0
REAL = (pytest.mark.browser, pytest.mark.tango, NEEDS_MARIADB)


def real(test):
    for mark in REAL:
        test = mark(test)
    return pytest.mark.timeout(600)(test)


def _past(t: np.ndarray) -> np.ndarray:
    return PAST_VALUE + 50.0 * np.sin(2 * np.pi * t / 600.0)


DASHBOARD = """\
title: Archived
refresh: 0.5 s
archive:
  reader: mariadb
  host: "{host}"
  port: {port}
  database: {database}
  user: {user}
  password_file: {password_file}
  timeout: 3 s
panels:
  - row:
      - trend: {{title: Ring current, attributes: [{current}], history: 10 min}}
      - trend: {{title: Motor speed, attributes: [{velocity}], history: 10 min}}
"""

#: The trend titled ``title``: its archived points (renderers named "... (archive)"), its
#: live rows (every other source of rows), the legend's labels.
TREND = """(title) => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  if (!plot) return null;
  const archived = plot.renderers.filter(r => (r.name || '').endsWith('(archive)'));
  const source = archived.length ? archived[0].data_source : null;
  const live = new Set(plot.renderers.map(r => r.data_source).filter(
    s => s && s !== source && s.data.q !== undefined));
  const plain = (v) => v && (v.value ?? v);
  return {
    names: archived.map(r => r.name),
    alpha: archived.map(r => plain(r.glyph.line_alpha)),
    t: source ? Array.from(source.data.t) : [],
    y: source ? Array.from(source.data.y) : [],
    live_t: [...live].flatMap(s => Array.from(s.data.t)),
    legend: plot.above.filter(m => m.type === 'Legend')
      .flatMap(l => l.items.map(i => plain(i.label))),
  };
}"""

BANNERS = """() => [...Bokeh.documents[0].all_models]
  .filter(m => m.type === 'Div' && m.visible).map(m => m.text).join('\\n')"""

#: Zoom the trend's x axis to [x0, x1] as the wheel-zoom tool does (its range, then
#: the RangesUpdate event the page sends to the server).
ZOOM = """([title, x0, x1]) => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  const view = Bokeh.index.find_one(plot);
  view.update_range({xrs: new Map([[plot.x_range, {start: x0, end: x1}]]), yrs: new Map()});
  view.trigger_ranges_update_event();
  return [plot.x_range.start, plot.x_range.end];
}"""


def _epoch(display_ms: float, now: float) -> float:
    return display_ms / 1000.0 - time.localtime(now).tm_gmtoff


class _ArchivedDashboard:
    """An HDB++ archive with 2 h of CURRENT_TANGO, a dashboard using it, served."""

    def __init__(self, control_system, where) -> None:
        from tango_bokeh_devices.archiver import Connection, HdbppWriter, backfill, start_archive

        from .archives import archive_config
        from .served import Served

        self.db = start_archive(where / "hdbpp")
        self.served = None
        try:
            self.now = time.time()
            writer = HdbppWriter(Connection.of(self.db))
            try:
                name = f"tango://{control_system.tango_host}/{CURRENT_TANGO.lower()}"
                backfill(writer, name, "scalar_devdouble_ro", self.now - 7200, self.now, 1.0,
                         _past)  # fmt: skip
            finally:
                writer.close()
            config = archive_config(self.db, where)
            text = DASHBOARD.format(
                host=config.host, port=config.port, database=config.database, user=config.user,
                password_file=config.password_file, current=CURRENT_TANGO, velocity=NOT_ARCHIVED,
            )  # fmt: skip
            (where / "archived.yaml").write_text(text)
            self.served = Served([where / "archived.yaml"], control_system.env(), state_dir=where)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            if self.served is not None:
                assert self.served.stop() == 0, self.served.output
        finally:
            self.db.stop()


def _open(page, served) -> None:
    page.goto(f"{served.url}/archived")
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length > 0",
        timeout=60_000,
    )


def _filled(page, served, title: str = "Ring current"):
    """The trend once it has archived and live points (waited for)."""

    def filled():
        state = page.evaluate(TREND, title)
        return state if state and len(state["t"]) > 100 and state["live_t"] else None

    try:
        return wait_for(filled, timeout=180, what=f"{title}: archived and live points")
    except AssertionError as exc:
        state = page.evaluate(TREND, title) or {}
        shown = {k: (len(v) if isinstance(v, list) else v) for k, v in state.items()}
        raise AssertionError(
            f"{exc}\ntrend: {shown}\nbanners: {page.evaluate(BANNERS)}\n"
            f"server:\n{served.output[-4000:]}"
        ) from None


@pytest.fixture
def browser_page() -> Iterator[object]:
    from .browser import chromium

    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()


@real
def test_a_trend_opens_filled_from_hdbpp_and_zoom_out_draws_more(
    control_system, tmp_path, browser_page
):
    page = browser_page
    archived = _ArchivedDashboard(control_system, tmp_path)
    try:
        _open(page, archived.served)
        trend = _filled(page, archived.served)
        # The archived part is marked as such: its own renderers, lighter, "archive".
        assert trend["names"] and all(n.endswith("(archive)") for n in trend["names"])
        assert archived_alpha(trend) == [archive_fill.ALPHA]
        assert "archive" in trend["legend"]
        # Archived points come before the live ones, and hold the archive's numbers.
        assert max(trend["t"]) < min(trend["live_t"])
        t = np.asarray([_epoch(x, archived.now) for x in trend["t"]])
        assert t.min() >= archived.now - 600 - 5  # the trend's window (10 min)
        np.testing.assert_allclose(trend["y"], _past(t), rtol=0, atol=1e-3)
        # Zoom out to the last two hours: the past is read and drawn, decimated.
        now_ms = max(trend["live_t"])
        page.evaluate(ZOOM, ["Ring current", now_ms - 7200_000, now_ms])
        zoomed = wait_for(
            lambda: (lambda s: s if min(s["t"]) < now_ms - 6000_000 else None)(
                page.evaluate(TREND, "Ring current")
            ),
            timeout=120,
            what="two hours of archive drawn",
        )
        assert len(zoomed["t"]) <= 2 * archive_fill.DEFAULT_WIDTH + 1
        assert len(zoomed["t"]) > 500 and max(zoomed["t"]) < min(zoomed["live_t"])
        t = np.asarray([_epoch(x, archived.now) for x in zoomed["t"]])
        np.testing.assert_allclose(zoomed["y"], _past(t), rtol=0, atol=1e-3)
        # Decimated per pixel column: each column's minimum and maximum, so the extremes stay.
        assert min(zoomed["y"]) < PAST_VALUE - 49.9 and max(zoomed["y"]) > PAST_VALUE + 49.9
        # The attribute absent from the archive says so in its panel, and stays live.
        wait_for(
            lambda: f"<b>{NOT_ARCHIVED}</b>: is not archived in HDB++" in page.evaluate(BANNERS),
            timeout=120,
            what="the not-archived notice",
        )
        speed = wait_for(lambda: page.evaluate(TREND, "Motor speed"), what="the speed trend")
        assert speed["names"] == [] and speed["t"] == []
        assert wait_for(lambda: page.evaluate(TREND, "Motor speed")["live_t"], what="live")
    finally:
        archived.stop()


def archived_alpha(trend) -> list[float]:
    return sorted({a for a in trend["alpha"] if a is not None and a > 0})


@real
def test_a_killed_archive_shows_in_place_and_live_data_goes_on(
    control_system, tmp_path, browser_page
):
    page = browser_page
    archived = _ArchivedDashboard(control_system, tmp_path)
    try:
        _open(page, archived.served)
        trend = _filled(page, archived.served)
        archived.db.kill()
        now_ms = max(trend["live_t"])
        page.evaluate(ZOOM, ["Ring current", now_ms - 7200_000, now_ms])
        wait_for(
            lambda: "did not answer" in page.evaluate(BANNERS),
            timeout=180,
            what="the archive's error in the panel",
        )
        text = page.evaluate(BANNERS)
        assert f"<b>{CURRENT_TANGO}</b>: archive: the HDB++ archive at" in text
        assert "(live data goes on)" in text
        # Live data goes on: newer points keep coming, the archived ones stay as they were.
        shown = max(page.evaluate(TREND, "Ring current")["live_t"])
        wait_for(
            lambda: max(page.evaluate(TREND, "Ring current")["live_t"]) > shown + 1000,
            timeout=120,
            what="live points after the archive died",
        )
        assert page.evaluate(TREND, "Ring current")["t"] == trend["t"]
    finally:
        archived.stop()


def test_without_pyhdbpp_nothing_asked_is_no_archive(monkeypatch):
    """No ``archive:`` key and no pyhdbpp: not configured (silent), not an error to show."""
    import importlib.util

    opened = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "pyhdbpp" else real_find_spec(name, *args),
    )
    with pytest.raises(NotConfigured, match="pyhdbpp is not installed"):
        archive_fill.default_opener(lambda: opened.append(1))()
    assert opened == []


def test_what_monitor_takes_as_its_archive():
    """``monitor(..., archive=...)``: a config, its dict, an Archive, False; one default."""
    from tango_bokeh.notebook import display
    from tango_bokeh.tango.archive import ArchiveConfig

    assert display._archive(False) is None
    assert display._archive(None) is display._archive(None)  # one per kernel
    fake = FakeArchive()
    assert display._archive(fake).get() is fake
    shared = archive_fill.SharedArchive(fake)
    assert display._archive(shared) is shared
    for given in (ArchiveConfig(reader="mariadb", host="h", user="u"), {"reader": "mariadb"}):
        assert isinstance(display._archive(given), archive_fill.SharedArchive)
    with pytest.raises(TypeError, match="archive: expected an ArchiveConfig"):
        display._archive("hdbpp")
