"""Shared recent history: a reader that comes late gets what the hub saw before it.

Hub tests run a real hub on the embedded control system; the eviction rules
are also checked on :class:`History` itself with exact numbers; the trend's
first fill is checked on a real session's Document (what would travel to the
browser), and in Chromium on a served dashboard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnsStreamedEvent

from tango_bokeh.history import MIN_ROWS, QUALITIES, ROW_BYTES, Budget, History
from tango_bokeh.hub import HISTORY_FRAMES, Backlog, Hub
from tango_bokeh.monitor import MonitorSession
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.tango.sample import Format, Quality, Sample
from tango_bokeh.views import Trend
from tango_bokeh.views.trend import to_display_ms
from tango_bokeh.views.wire import WireTap

from .conftest import wait_for

COUNTS = "sim/counter/1/Counts"  # change events, about 10 a second
CURRENT = "sim/beam/current/Current"  # periodic events, 2 a second
SPECTRUM = "sim/spectro/1/Spectrum"  # pushed by the device, 5 a second
IMAGE = "sim/camera/1/Image"  # pushed by the device, 10 a second


def fresh_hub(**kw) -> Hub:
    return Hub(Acquisition(AcquisitionConfig(poll_period=0.2, retry_delays=(0.5, 1.0))), **kw)


@pytest.fixture
def small_hub(control_system) -> Iterator[Hub]:
    hubs: list[Hub] = []

    def make(**kw) -> Hub:
        hubs.append(fresh_hub(**kw))
        return hubs[-1]

    try:
        yield make
    finally:
        for hub in hubs:
            hub.close()


def read_until(cursor, count: int, what: str) -> list[Sample]:
    seen: list[Sample] = []
    wait_for(lambda: (seen.extend(cursor.read()), len(seen) >= count)[1], timeout=60, what=what)
    return seen


# -- the hub -------------------------------------------------------------------------


@pytest.mark.tango
def test_samples_from_before_a_reader_are_given_to_it(hub: Hub):
    early = hub.subscribe(COUNTS)
    seen = read_until(early, 30, "30 samples for the first reader")
    late = hub.subscribe(COUNTS)
    first = late.read()
    assert isinstance(first, Backlog) and first  # the newest sample, as before, plus the past
    recall = first.recall
    before = [s for s in seen if s.time < first[0].time]
    assert len(before) >= 25
    # Exactly what the first reader saw, as columns: Tango times, values, qualities.
    assert np.array_equal(recall.t[-len(before) :], [s.time for s in before])
    assert np.array_equal(recall.v[-len(before) :], [float(s.value) for s in before])
    assert [QUALITIES[q] for q in recall.q[-len(before) :]] == [s.quality for s in before]
    assert recall.t.dtype == np.float64 and recall.q.dtype == np.uint8
    # Only the first read carries the past; later reads are the new samples only.
    wait_for(lambda: late.read(), what="a second read")
    assert not isinstance(late.read(), Backlog)


@pytest.mark.tango
def test_without_history_a_late_reader_starts_at_the_newest_sample(small_hub):
    hub = small_hub(history_budget=0)
    early = hub.subscribe(COUNTS)
    read_until(early, 20, "20 samples")
    first = hub.subscribe(COUNTS).read()
    assert not isinstance(first, Backlog) and len(first) <= 2
    assert hub.stats().history_budget == 0


@pytest.mark.tango
def test_the_window_is_the_longest_any_reader_asked_for(small_hub):
    hub = small_hub(history_window=3.0)
    short, other = hub.subscribe(COUNTS), hub.subscribe(COUNTS)
    stats = hub.channel(COUNTS).stats
    assert stats().history_window == 3.0  # nobody asked: the hub's default
    short.keep(1.0)
    assert stats().history_window == 3.0  # the other reader still counts as the default
    other.keep(6.0)
    assert stats().history_window == 6.0
    wait_for(lambda: stats().received >= 90, timeout=60, what="about 9 s of samples")
    assert stats().history_rows < 90  # older rows were overwritten
    third = hub.subscribe(COUNTS)
    recall = third.recall()
    assert 5.0 <= recall.t[-1] - recall.t[0] <= 6.0  # only the window is recalled
    other.close()
    assert stats().history_window == 3.0  # the third reader asked nothing: the default
    before = stats().history_bytes
    third.close()
    assert stats().history_window == 1.0  # the short reader alone
    assert stats().history_bytes < before  # a shorter window gives memory back at once
    short.read()
    assert 0.5 <= np.ptp(short.recall().t) <= 1.0


@pytest.mark.tango
def test_the_budget_cuts_the_biggest_history_first(small_hub):
    # After 15 s Counts (~10 Hz) wants 256 rows, Current (2 Hz) at most 64: the budget
    # (128 rows) keeps Current whole and cuts Counts to what is left (64 to 96 rows).
    budget = 128 * ROW_BYTES
    hub = small_hub(history_budget=budget)
    fast, slow = hub.subscribe(COUNTS), hub.subscribe(CURRENT)
    counts = hub.channel(COUNTS).stats
    wait_for(lambda: counts().received >= 150, timeout=90, what="150 samples of Counts")
    fast.read(), slow.read()  # a read applies a share that shrank
    stats = hub.stats()
    fast_stats, slow_stats = hub.channel(COUNTS).stats(), hub.channel(CURRENT).stats()
    assert slow_stats.history_rows == slow_stats.received - slow_stats.out_of_order  # whole
    assert fast_stats.history_rows <= 96 < fast_stats.received  # cut
    assert stats.history_bytes <= budget
    # What was cut is the oldest: the rows kept end with the newest sample.
    first = hub.subscribe(COUNTS).read()
    assert first.recall.t[-1] < first[0].time and len(first.recall.t) >= 48
    assert np.all(np.diff(first.recall.t) >= 0)


@pytest.mark.tango
def test_spectra_and_images_keep_only_their_last_frames(hub: Hub):
    spectra, images = hub.subscribe(SPECTRUM), hub.subscribe(IMAGE)
    seen = read_until(spectra, 20, "20 spectra")
    read_until(images, 20, "20 images")
    stats = {name: hub.channel(name).stats() for name in (SPECTRUM, IMAGE)}
    assert stats[SPECTRUM].history_rows == HISTORY_FRAMES[Format.SPECTRUM]
    assert stats[IMAGE].history_rows == HISTORY_FRAMES[Format.IMAGE]
    late = hub.subscribe(SPECTRUM).read()
    seen += spectra.read()
    frames = late.recall.frames
    # The history holds the last 8 spectra: those before the late reader's first sample.
    assert len(late.recall.t) == 0 and len(frames) == HISTORY_FRAMES[Format.SPECTRUM] - len(late)
    earlier = [s for s in seen if s.time < late[0].time][-len(frames) :]
    assert [f.time for f in frames] == [s.time for s in earlier]
    assert all(f is s for f, s in zip(frames, earlier, strict=True))  # the samples, no copies
    first = hub.subscribe(IMAGE).read()
    assert len(first.recall.frames) == HISTORY_FRAMES[Format.IMAGE] - len(first)
    image = first[-1].value
    assert stats[IMAGE].history_bytes >= HISTORY_FRAMES[Format.IMAGE] * image.nbytes


# -- History's rules, exactly ----------------------------------------------------------


def feed(history: History, start: float, count: int, step: float, value: float = 1.0) -> None:
    samples = [Sample(start + i * step, value + i) for i in range(count)]
    history.extend(samples, history.end)


def test_rows_older_than_the_window_are_overwritten_not_kept_growing():
    history = History(Budget(10**9), window=10.0)
    feed(history, 0.0, 5000, 0.01)  # 50 s at 100 Hz
    assert history.capacity == 1024  # 1000 rows span the window: no need to grow further
    recall = history.recall(history.end)
    assert recall.t[-1] == pytest.approx(49.99) and recall.t[0] >= 39.99 - 1e-9
    history.set_window(1.0)  # the window shrank: memory goes back at once
    assert history.capacity <= 256 and len(history.recall(history.end).t) == 101


def test_over_budget_the_biggest_histories_lose_their_oldest_rows_first():
    # They want 64, 256 and 1024 rows (their arrays double): 600 rows of budget leave
    # 280 to the fast one, and keep the two others whole.
    budget = Budget(limit=600 * ROW_BYTES)
    fast, medium, slow = (History(budget, window=3600.0) for _ in range(3))
    for second in range(100):  # 100 s: fast 10 Hz, medium 2 Hz, slow 0.5 Hz
        feed(fast, second, 10, 0.1, value=second * 10)
        feed(medium, second, 2, 0.5)
        if second % 2 == 0:
            feed(slow, second, 1, 1.0)
    for history in (fast, medium, slow):
        history.enforce()
    assert len(slow) == 50 and len(medium) == 200  # under the level: untouched
    assert len(fast) == 280  # cut, and it lost its oldest rows
    kept = fast.recall(fast.end)
    assert kept.t[-1] == pytest.approx(99.9)
    assert list(kept.v[[0, -1]]) == [720.0, 999.0] and np.all(np.diff(kept.t) > 0)
    assert budget.used <= budget.limit
    # A history leaving gives its memory back: the one that was cut may grow again.
    medium.close()
    for second in range(100, 110):
        feed(fast, second, 10, 0.1)
    assert fast.capacity == 600 - 64 and len(fast) == 280 + 100  # nothing lost any more
    assert budget.used <= budget.limit


def test_every_history_keeps_its_newest_rows_whatever_the_budget():
    budget = Budget(limit=1)
    history = History(budget, window=3600.0)
    feed(history, 0.0, 500, 1.0)
    assert len(history) == MIN_ROWS and history.recall(history.end).t[-1] == 499.0


def test_frames_keep_the_newest_within_the_budget():
    budget = Budget(limit=3 * 8000 + 1000)
    history = History(budget, window=600.0, numeric=False, frames=8)
    for i in range(20):
        history.extend([Sample(float(i), np.zeros(1000))], history.end)
    assert [s.time for s in history.recall(history.end).frames] == [17.0, 18.0, 19.0]


def test_errors_gaps_and_qualities_are_columns():
    history = History(Budget(10**6), window=600.0)
    samples = [
        Sample(1.0, 1.5),
        Sample(2.0, None, Quality.INVALID),
        Sample(3.0, None, Quality.INVALID, "API_DeviceTimedOut"),
        Sample(2.5, 2.0, Quality.ALARM, stale=True),  # an error stamped by our clock: earlier
        Sample(4.0, True),
    ]
    history.extend(samples, 0)
    recall = history.recall(5)
    assert list(recall.t) == [1.0, 2.0, 3.0, 3.0, 4.0]  # times never go back
    assert np.array_equal(recall.v, [1.5, np.nan, np.nan, 2.0, 1.0], equal_nan=True)
    assert [QUALITIES[q] for q in recall.q] == [
        Quality.VALID, Quality.INVALID, Quality.INVALID, Quality.ALARM, Quality.VALID,
    ]  # fmt: skip
    assert list(recall.flags) == [0, 4, 5, 2, 0]  # NONE, ERROR|NONE, STALE


# -- a trend opened late ---------------------------------------------------------------


@pytest.mark.tango
def test_a_trend_opened_late_is_drawn_with_the_past_in_one_binary_stream(hub: Hub):
    early = hub.subscribe(COUNTS)
    seen = read_until(early, 40, "40 samples before the trend exists")
    opened = time.time()
    trend = Trend(COUNTS, history_seconds=300)
    session = MonitorSession(trend, hub=hub, callback_period=None)
    try:
        doc = Document()
        session.attach(doc)
        tap = WireTap(doc)
        wait_for(lambda: (session.tick(), len(trend._series[0].source.data["t"]))[1], what="data")
        streams = [e for e in tap.of(ColumnsStreamedEvent) if e.model is trend._series[0].source]
        assert len(streams) == 1  # one transfer: the past and the first new samples together
        (stream,) = streams
        assert all(isinstance(c, np.ndarray) for c in stream.data.values())  # binary
        drawn = trend._series[0].source.data["t"]
        earlier = [s for s in seen if s.time < opened]
        assert trend._series[0].recalled >= len(earlier) - 1
        assert drawn[0] <= to_display_ms(earlier[0].time) + 1e-3
        # The trend told the hub to keep its window for it.
        assert hub.channel(COUNTS).stats().history_window == 600.0  # early: the default
        early.close()
        assert hub.channel(COUNTS).stats().history_window == 300.0
        trend.history_seconds = 900.0
        assert hub.channel(COUNTS).stats().history_window == 900.0
    finally:
        session.close()


@pytest.mark.tango
def test_a_notebook_panel_chosen_automatically_opens_filled(hub: Hub):
    """``monitor("...Counts")``: the trend chosen once the configuration is known gets the past."""
    early = hub.subscribe(COUNTS)
    seen = read_until(early, 30, "30 samples before the panel exists")
    session = MonitorSession(COUNTS, hub=hub, callback_period=None)  # an AutoView
    try:
        session.attach(Document())
        panel = session.panels[0]
        wait_for(lambda: (session.tick(), panel.inner)[1], what="the view chosen")
        trend = panel.inner
        assert isinstance(trend, Trend)
        wait_for(lambda: (session.tick(), trend._series[0].recalled)[1], what="the past drawn")
        assert trend._series[0].recalled >= len(seen) - 1
    finally:
        session.close()


def test_history_budget_option_takes_sizes():
    from click.testing import CliRunner

    from tango_bokeh.cli import ByteSize, main

    assert [ByteSize().convert(v, None, None) for v in ("0", "64k", "256M", "1.5G")] == [
        0, 64 * 2**10, 256 * 2**20, 3 * 2**29,
    ]  # fmt: skip
    result = CliRunner().invoke(main, ["serve", "x.yaml", "--history-budget", "lots"])
    assert result.exit_code == 2 and "'lots' is not a size" in result.output


def test_a_trend_fills_gaps_and_marks_from_history_as_from_samples():
    """The one-pass fill makes the rows the sample-by-sample path makes."""
    now = time.time()
    samples = [
        Sample(now - 9, 1.0),
        Sample(now - 8, 2.0, Quality.ALARM),
        Sample(now - 7, None, Quality.INVALID),
        Sample(now - 6, None, Quality.INVALID, "down"),
        Sample(now - 5, math.inf),
        Sample(now - 4, 3.0),
        Sample(now - 3, 1e308),
        Sample(now - 2, math.nan),
        Sample(now - 1, 4.0, Quality.WARNING),
        Sample(now, 5.0),
    ]
    history = History(Budget(10**6), window=600.0)
    history.extend(samples[:-1], 0)
    backlog = Backlog(samples[-1:])
    backlog.recall, backlog.keep = history.recall(len(samples) - 1), lambda seconds: None
    one_pass, one_by_one = Trend("a/b/c/d"), Trend("a/b/c/d")
    for trend, batch in ((one_pass, backlog), (one_by_one, samples)):
        doc = Document()
        doc.add_root(trend.model)
        trend.update({"a/b/c/d": batch}, now, {})
    a, b = one_pass._series[0], one_by_one._series[0]
    for key in ("t", "y", "q"):
        assert np.array_equal(a.source.data[key], b.source.data[key], equal_nan=True), key
    assert a.undrawn.data == b.undrawn.data
    state = lambda s: (s.last_t, s.last_y, s.in_gap, s.carry, s.undrawn_at)  # noqa: E731
    assert state(a) == state(b)
    assert a.recalled == 6 and b.recalled is None  # 1, 2, gap, 3, gap, 4; then 5 as a sample


# -- in the browser ----------------------------------------------------------------------

KEEPER = """\
title: Keeper
refresh: 0.5 s
panels:
  - table: {title: Counts now, attributes: [sim/counter/1/Counts]}
"""
LATE = """\
title: Late trend
refresh: 0.5 s
panels:
  - trend: {title: Late counts, attributes: [sim/counter/1/Counts], history: 10 min}
"""
KEEPER_HAS_VALUE = """() => {
  if (!window.Bokeh || Bokeh.documents.length === 0) return false;
  const table = [...Bokeh.documents[0].all_models].find(m => m.type === 'DataTable');
  return !!table && table.source.data.value && table.source.data.value.some(v => v !== '');
}"""
FIRST_DATA = """(title) => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  if (!plot) return null;
  const source = plot.renderers[0].data_source;
  const t = source.data.t;
  if (!t || t.length === 0) return null;
  return {count: t.length, first: t[0], last: t[t.length - 1]};
}"""


@pytest.mark.browser
@pytest.mark.tango
def test_a_dashboard_trend_opened_late_is_drawn_with_earlier_points(control_system, tmp_path):
    from .browser import chromium
    from .served import Served

    (tmp_path / "keeper.yaml").write_text(KEEPER)
    (tmp_path / "late.yaml").write_text(LATE)
    files = [tmp_path / "keeper.yaml", tmp_path / "late.yaml"]
    server = Served(files, control_system.env(), state_dir=tmp_path)
    try:
        with chromium() as browser:
            keeper = browser.new_context().new_page()
            keeper.goto(f"{server.url}/keeper")
            keeper.wait_for_function(KEEPER_HAS_VALUE, timeout=30_000)
            time.sleep(8.0)  # the server's hub acquires Counts for the keeper page meanwhile
            opened = time.time()
            page = browser.new_context().new_page()
            page.goto(f"{server.url}/late")
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000
            )
            handle = page.wait_for_function(FIRST_DATA, arg="Late counts", timeout=30_000)
            first = handle.json_value()  # the first render with data
            page.screenshot(path=str(tmp_path / "late.png"))
    finally:
        assert server.stop() == 0, server.output
    opened_ms = float(to_display_ms(opened))
    assert first["count"] >= 50, first  # about 10 a second for 8 s, drawn at once
    assert first["first"] <= opened_ms - 6000.0, (first, opened_ms)
    assert Path(tmp_path / "late.png").stat().st_size > 0
