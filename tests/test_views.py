"""Views on real bokeh Documents, fed synthetic samples: what would travel to the browser.

Every change a view makes to its Document is recorded by a WireTap, which
serialises it the way a bokeh server does (one PATCH-DOC message per event,
binary buffers included), so these tests assert on the real messages.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import (
    ColumnDataChangedEvent,
    ColumnsPatchedEvent,
    ColumnsStreamedEvent,
)
from bokeh.models import ColumnDataSource

from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import AttributeInfo, Format, Kind, Quality, Sample
from tango_bokeh.views import (
    AutoView,
    Image,
    Spectrum,
    Trend,
    Unsupported,
    ValueTable,
    view_class,
    view_for,
)
from tango_bokeh.views.banner import clock
from tango_bokeh.views.base import AttributeState
from tango_bokeh.views.image import decimate, decimation_factor
from tango_bokeh.views.palette import QUALITY_COLORS, STATE_COLORS, contrast, text_color
from tango_bokeh.views.wire import WireTap, message_bytes

POS = "sim/motor/1/Position"
CNT = "sim/counter/1/Counts"
TEMP = "sim/temp/1/Temperature"
SPEC = "sim/spectro/1/Spectrum"
WAVE = "sim/spectro/1/Wavelength"
IMG = "sim/camera/1/Image"
STATE = "sim/motor/1/State"
DIR = "sim/motor/1/Direction"


def info(name: str, **kw) -> AttributeInfo:
    return AttributeInfo(name, **kw)


INFOS = {
    POS: info(POS, unit="mm", display_format="%8.4f"),
    CNT: info(CNT, unit="counts/s", display_format="%.1f"),
    TEMP: info(TEMP, unit="degC"),
    SPEC: info(SPEC, format=Format.SPECTRUM, unit="counts"),
    WAVE: info(WAVE, format=Format.SPECTRUM, unit="nm"),
    IMG: info(IMG, format=Format.IMAGE, dtype="uint16", unit="counts"),
    STATE: info(STATE, kind=Kind.STATE, dtype="object"),
    DIR: info(DIR, kind=Kind.ENUM, enum_labels=("Stopped", "Forward", "Backward")),
}


def states(*names: str, mode: Mode = Mode.CHANGE, status: str | None = None, infos=INFOS):
    return {n: AttributeState(n, infos.get(n), mode, status) for n in names}


def attach(view) -> tuple[Document, WireTap]:
    doc = Document()
    doc.add_root(view.model)
    return doc, WireTap(doc)


def ramp(start: float, count: int, step: float = 0.1, value0: float = 0.0) -> list[Sample]:
    return [Sample(start + i * step, value0 + i) for i in range(count)]


T0 = time.time() - 100.0


# -- trend ---------------------------------------------------------------------------


def test_trend_streams_only_the_new_points_in_binary():
    trend = Trend(POS, history_points=10_000, history_seconds=3600)
    _, tap = attach(trend)
    st = states(POS)
    trend.update({POS: ramp(T0, 10_000, 0.001)}, T0 + 10.0, st)
    tap.reset()

    trend.update({POS: [Sample(T0 + 10.0, 42.0)]}, T0 + 10.0, st)
    streamed = tap.of(ColumnsStreamedEvent)
    assert len(tap.events) == 1 and len(streamed) == 1
    (event,) = streamed
    assert {k: len(v) for k, v in event.data.items()} == {"t": 1, "y": 1, "q": 1}
    assert event.rollover == 10_000
    assert all(isinstance(v, np.ndarray) for v in event.data.values())  # binary, not JSON
    stream_bytes = tap.bytes
    assert len(trend._series[0].source.data["t"]) == 10_000  # rolled over

    # Same Document, the naive way: replace the whole data.
    source = trend._series[0].source
    tap.reset()
    source.data = dict(source.data)
    naive_bytes = tap.bytes
    assert stream_bytes / naive_bytes <= 0.005, (stream_bytes, naive_bytes)


def test_trend_sends_nothing_when_nothing_changed():
    trend = Trend([POS, CNT], history_seconds=600)  # "now" segment redrawn every 1.2 s at most
    _, tap = attach(trend)
    st = states(POS, CNT)
    now = T0 + 10
    trend.update({POS: ramp(T0, 5), CNT: ramp(T0, 5)}, now, st)
    tap.reset()
    trend.update({}, now + 0.5, st)
    trend.update({}, now + 1.0, st)
    assert tap.events == []
    # Time moving on by more than two pixels: the "now" segments only, in one message.
    trend.update({}, now + 5.0, st)
    assert len(tap.events) == 1
    (event,) = tap.events
    assert isinstance(event, ColumnDataChangedEvent) and event.model is trend._carry_source
    carry = trend._carry_source.data
    assert list(carry["y"]) == [4.0, 4.0]  # the last values, carried to now
    assert carry["x1"][0] == pytest.approx(carry["x1"][1]) and carry["x1"][0] > carry["x0"][0]


def test_trend_one_stream_per_attribute_with_data():
    trend = Trend([POS, CNT, TEMP])
    _, tap = attach(trend)
    st = states(POS, CNT, TEMP)
    trend.update({POS: ramp(T0, 3), CNT: ramp(T0, 3), TEMP: ramp(T0, 3)}, T0 + 0.3, st)
    tap.reset()
    trend.update({POS: ramp(T0 + 1, 7), CNT: ramp(T0 + 1, 1)}, T0 + 1.7, st)
    streamed = tap.of(ColumnsStreamedEvent)
    assert sorted(len(e.data["t"]) for e in streamed) == [1, 7]
    assert len({id(e.model) for e in streamed}) == 2


def test_trend_gaps_for_errors_invalid_and_stale_and_recovery():
    trend = Trend(POS)
    attach(trend)
    st = states(POS)
    trend.update({POS: ramp(T0, 3)}, T0 + 0.3, st)
    trend.update(
        {
            POS: [
                Sample(T0 + 1.0, None, Quality.INVALID, error="API_Boom: read failed"),
                Sample(T0 + 1.1, None, Quality.INVALID, error="API_Boom: read failed"),
                Sample(T0 + 1.2, None, Quality.INVALID),  # ATTR_INVALID
            ]
        },
        T0 + 1.3,
        st,
    )
    data = trend._series[0].source.data
    assert np.isnan(data["y"][-1]) and not np.isnan(data["y"][-2])
    assert int(np.isnan(data["y"]).sum()) == 1  # one NaN row is enough to break the line
    assert "value INVALID" in trend.problem_text
    assert math.isnan(trend._carry_source.data["y"][0])  # nothing carried through a gap

    trend.update({POS: [Sample(T0 + 2.0, 7.0)]}, T0 + 2.1, st)
    assert trend.problem_text == ""  # recovered: the message disappears
    trend.update(
        {POS: [Sample(T0 + 3.0, None, Quality.INVALID, error="API_EventTimeout: x", stale=True)]},
        T0 + 3.1,
        st,
    )
    assert np.isnan(data_y := trend._series[0].source.data["y"])[-1] and data_y[-2] == 7.0
    assert "stale since" in trend.problem_text
    banner = trend._banner.model
    assert banner.visible and "API_EventTimeout" in banner.text


def test_trend_says_when_an_event_storm_drops_samples():
    trend = Trend(POS)
    attach(trend)

    def state(lost: int, queue_full: int) -> dict[str, AttributeState]:
        return {POS: AttributeState(POS, INFOS[POS], Mode.CHANGE, None, lost, queue_full)}

    trend.update({POS: [Sample(T0, 1.0)]}, T0 + 0.1, state(3, 0))  # losses before: not news
    assert trend.problem_text == ""
    trend.update({POS: [Sample(T0 + 1.0, 2.0)]}, T0 + 1.1, state(3, 0))
    assert trend.problem_text == ""
    trend.update({POS: [Sample(T0 + 2.0, 3.0)]}, T0 + 2.1, state(3, 1))  # Tango's queue was full
    assert "some were dropped" in trend.problem_text
    trend.update({POS: [Sample(T0 + 3.0, 4.0)]}, T0 + 3.1, state(9, 1))  # the ring overflowed
    trend.update({POS: [Sample(T0 + 13.0, 5.0)]}, T0 + 13.0, state(9, 1))
    assert "some were dropped" in trend.problem_text  # shown for 10 s after the last loss
    trend.update({POS: [Sample(T0 + 14.0, 6.0)]}, T0 + 14.0, state(9, 1))
    assert trend.problem_text == ""
    trend.update({POS: [Sample(T0 + 15.0, None, Quality.INVALID)]}, T0 + 15.0, state(10, 1))
    assert "value INVALID" in trend.problem_text  # worse news wins


def test_trend_says_when_events_are_estimated_lost_before_the_hub():
    """ZMQ dropped events (API_MissedEvents): neither the ring nor Tango's queue overflowed."""
    trend = Trend(POS)
    attach(trend)

    def state(estimate: int) -> dict[str, AttributeState]:
        info = INFOS[POS]
        return {POS: AttributeState(POS, info, Mode.CHANGE, None, lost_estimate=estimate)}

    trend.update({POS: [Sample(T0, 1.0)]}, T0 + 0.1, state(40))  # lost before: not news
    trend.update({POS: [Sample(T0 + 1.0, 2.0)]}, T0 + 1.1, state(40))
    assert trend.problem_text == ""
    trend.update({POS: [Sample(T0 + 2.0, 3.0)]}, T0 + 2.1, state(57))
    assert "some were dropped" in trend.problem_text
    assert f"last at {clock(T0 + 2.1)}" in trend.problem_text
    trend.update({POS: [Sample(T0 + 14.0, 4.0)]}, T0 + 14.0, state(57))
    assert trend.problem_text == ""  # gone 10 s after the last loss


def test_trend_quality_colours_and_codes():
    trend = Trend(CNT)
    attach(trend)
    trend.update(
        {
            CNT: [
                Sample(T0, 1.0, Quality.VALID),
                Sample(T0 + 1, 2.0, Quality.WARNING),
                Sample(T0 + 2, 3.0, Quality.ALARM),
                Sample(T0 + 3, 4.0, Quality.CHANGING),
            ]
        },
        T0 + 3,
        states(CNT),
    )
    assert list(trend._series[0].source.data["q"]) == [0, 1, 2, 3]
    marks = trend._series[0].renderers[1]
    palette = marks.glyph.fill_color.transform.palette
    assert (
        palette[1] == QUALITY_COLORS[Quality.WARNING] != palette[2] == QUALITY_COLORS[Quality.ALARM]
    )


def test_trend_units_get_their_own_axes():
    trend = Trend([POS, CNT, "sim/motor/2/Position"])
    attach(trend)
    other = {**INFOS, "sim/motor/2/Position": info("sim/motor/2/Position", unit="mm")}
    trend.update({}, T0, states(POS, CNT, "sim/motor/2/Position", infos=other))
    fig = trend._figure
    assert list(fig.extra_y_ranges) == ["unit:counts/s"]
    assert [s.y_range_name for s in trend._series] == ["default", "unit:counts/s", "default"]
    labels = {getattr(a, "y_range_name", "default"): a.axis_label for a in fig.yaxis}
    assert labels == {"default": "[mm]", "unit:counts/s": f"{CNT} [counts/s]"}


def test_trend_history_bounded_by_points_and_by_time():
    trend = Trend(POS, history_points=50, history_seconds=10)
    attach(trend)
    st = states(POS)
    trend.update({POS: ramp(T0, 120, 0.01)}, T0 + 1.2, st)
    trend.update({POS: ramp(T0 + 1.2, 30, 0.01, 200)}, T0 + 1.5, st)
    assert len(trend._series[0].source.data["t"]) == 50  # rollover

    trend.history_points = 10_000
    trend.update({POS: ramp(T0 + 2, 300, 0.1, 500)}, T0 + 32, st)  # 30 s of data, 10 s window
    trend.update({POS: [Sample(T0 + 33, 1.0)]}, T0 + 33, st)
    t = trend._series[0].source.data["t"]
    window_start = (T0 + 33 - 10 + time.localtime(T0).tm_gmtoff) * 1000
    assert t[0] >= window_start - 1 and len(t) <= 102
    assert trend._figure.x_range.follow_interval == 10_000


def test_trend_refuses_other_types_in_place():
    trend = Trend([POS, SPEC])
    attach(trend)
    trend.update({SPEC: [Sample(T0, np.arange(4.0))], POS: ramp(T0, 2)}, T0 + 1, states(POS, SPEC))
    assert "a Trend plots scalars" in trend.problem_text and "use Spectrum" in trend.problem_text
    assert (
        len(trend._series[1].source.data["t"]) == 0 and len(trend._series[0].source.data["t"]) == 2
    )


def test_trend_csv_has_what_is_displayed():
    trend = Trend(POS, labels=["mot1"])
    attach(trend)
    trend.update({POS: ramp(T0, 3)}, T0 + 1, states(POS))
    lines = trend.to_csv().strip().splitlines()
    assert lines[0] == "attribute,label,time,value,quality"
    assert len(lines) == 4 and lines[-1].endswith(",2.0,VALID") and "mot1" in lines[1]


# -- spectrum ------------------------------------------------------------------------


def test_spectrum_coalesces_frames_and_resends_only_y():
    spectrum = Spectrum(SPEC)
    _, tap = attach(spectrum)
    st = states(SPEC)
    frames = [Sample(T0 + i * 0.05, np.full(1024, float(i))) for i in range(5)]
    spectrum.update({SPEC: frames}, T0 + 1, st)
    data_events = [e for e in tap.events if isinstance(e, ColumnDataChangedEvent)]
    assert len(data_events) == 1 and spectrum.frames_sent == 1
    assert np.all(spectrum._source.data["y"] == 4.0)  # the newest of the five
    tap.reset()
    spectrum.update({SPEC: [Sample(T0 + 2, np.arange(1024.0))]}, T0 + 2, st)
    (event,) = tap.events
    assert isinstance(event, ColumnDataChangedEvent) and event.cols == ["y"]  # x stays
    assert message_bytes(event) < 1024 * 4 + 600  # float32 on the wire
    tap.reset()
    spectrum.update({}, T0 + 3, st)
    assert tap.events == []


def test_spectrum_x_attribute_and_persistence():
    spectrum = Spectrum(SPEC, x_attribute=WAVE, persistence=3)
    _, tap = attach(spectrum)
    st = states(SPEC, WAVE)
    wave = np.linspace(200, 1000, 16)
    spectrum.update({SPEC: [Sample(T0, np.zeros(16))], WAVE: [Sample(T0, wave)]}, T0, st)
    assert np.allclose(spectrum._source.data["x"], wave)
    assert spectrum._figure.xaxis[0].axis_label == f"{WAVE} [nm]"
    for i in range(1, 6):
        tap.reset()
        spectrum.update({SPEC: [Sample(T0 + i, np.full(16, float(i)))]}, T0 + i, st)
        streams = tap.of(ColumnsStreamedEvent)
        assert len(streams) == 1 and streams[0].rollover == 3  # one ghost per tick
    ghosts = spectrum._ghost_source.data
    assert [float(ys[0]) for ys in ghosts["ys"]] == [2.0, 3.0, 4.0]  # the last 3, oldest first
    assert spectrum._ghost_colors.high == 5 and spectrum._ghost_colors.low == 2


def test_spectrum_wrong_length_x_falls_back_to_index():
    spectrum = Spectrum(SPEC, x_attribute=WAVE)
    attach(spectrum)
    st = states(SPEC, WAVE)
    spectrum.update({SPEC: [Sample(T0, np.ones(8))], WAVE: [Sample(T0, np.ones(5))]}, T0, st)
    assert list(spectrum._source.data["x"]) == list(range(8))
    assert "plotting against index" in spectrum.problem_text


# -- image ---------------------------------------------------------------------------


def test_image_large_frames_are_decimated_before_sending():
    image = Image(IMG, max_display=(400, 400))
    _, tap = attach(image)
    frame = np.arange(2048 * 2048, dtype=np.uint16).reshape(2048, 2048)
    image.update({IMG: [Sample(T0, frame)]}, T0, states(IMG))
    shown = image.displayed
    assert shown is not None and shown.shape[0] <= 400 and shown.shape[1] <= 400
    assert shown.shape == (341, 341) and shown.dtype == np.uint16  # 6x6 block mean
    assert abs(int(shown[0, 0]) - frame[:6, :6].mean()) <= 0.5  # the rounded block mean
    data_events = [e for e in tap.events if isinstance(e, ColumnDataChangedEvent)]
    assert len(data_events) == 1
    assert message_bytes(data_events[0]) < 341 * 341 * 2 + 2000  # not 2048² x 2 bytes
    fig = image._figure
    assert (fig.frame_width, fig.frame_height) == (400, 400)  # square frame, square image
    assert (fig.x_range.end, fig.y_range.start, fig.y_range.end) == (2046, 2046, 0)  # row 0 on top


def test_image_coalesces_frames_and_keeps_aspect():
    image = Image(IMG, max_display=(400, 400))
    _, tap = attach(image)
    st = states(IMG)
    frames = [Sample(T0 + i * 0.02, np.full((100, 200), i, dtype=np.uint16)) for i in range(5)]
    image.update({IMG: frames}, T0 + 1, st)
    data_events = [e for e in tap.events if isinstance(e, ColumnDataChangedEvent)]
    assert len(data_events) == 1 and image.frames_sent == 1
    assert np.all(image._source.data["image"][0] == 4)  # the newest only
    assert (image._figure.frame_width, image._figure.frame_height) == (400, 200)
    tap.reset()
    image.update({}, T0 + 2, st)
    assert tap.events == []


def test_block_mean_decimation():
    frame = np.arange(36, dtype=np.float64).reshape(6, 6)
    assert decimation_factor((6, 6), (3, 3)) == 2
    assert decimate(frame, 2).tolist() == [[3.5, 5.5, 7.5], [15.5, 17.5, 19.5], [27.5, 29.5, 31.5]]
    assert decimation_factor((512, 512), (400, 400)) == 2
    assert decimation_factor((300, 200), (400, 400)) == 1


def test_image_error_in_place_then_recovery():
    image = Image(IMG)
    attach(image)
    st = states(IMG)
    image.update({IMG: [Sample(T0, None, Quality.INVALID, error="API_DeviceTimedOut: x")]}, T0, st)
    assert "API_DeviceTimedOut" in image.problem_text and image._banner.model.visible
    image.update({IMG: [Sample(T0 + 1, np.ones((4, 4), np.uint8))]}, T0 + 1, st)
    assert image.problem_text == "" and not image._banner.model.visible


# -- table ---------------------------------------------------------------------------


def test_table_colours_by_state_and_quality():
    table = ValueTable([STATE, DIR, POS, CNT, TEMP])
    _, tap = attach(table)
    st = states(STATE, DIR, POS, CNT, TEMP)
    table.update(
        {
            STATE: [Sample(T0, "MOVING")],
            DIR: [Sample(T0, 1)],
            POS: [Sample(T0, 12.345678)],
            CNT: [Sample(T0, 13000.0, Quality.WARNING)],
            TEMP: [Sample(T0, 99.0, Quality.ALARM)],
        },
        T0,
        st,
    )
    rows = {row["label"]: row for row in table.rows}
    assert rows[STATE]["value"] == "MOVING" and rows[STATE]["value_bg"] == STATE_COLORS["MOVING"]
    assert rows[DIR]["value"] == "Forward"  # enum label
    assert rows[POS]["value"] == "12.3457 mm"  # Tango format and unit
    assert rows[CNT]["quality_bg"] == "#ffc800" and rows[TEMP]["quality_bg"] == "#ff8c00"
    assert rows[POS]["mode"] == "change events"
    for row in rows.values():  # every badge readable
        for bg, fg in ((row["value_bg"], row["value_fg"]), (row["quality_bg"], row["quality_fg"])):
            if bg:
                assert contrast(bg, fg) >= 4.5
    assert len(tap.of(ColumnsPatchedEvent)) == 1

    tap.reset()
    table.update({STATE: [Sample(T0 + 1, "FAULT")]}, T0 + 1, st)
    (event,) = tap.events
    assert isinstance(event, ColumnsPatchedEvent)
    assert {index for cells in event.patches.values() for index, _ in cells} == {0}  # one row
    assert table.rows[0]["value_bg"] == "#ff0000"
    tap.reset()
    table.update({}, T0 + 2, st)
    assert tap.events == []  # nothing changed, nothing sent


def test_table_errors_modes_and_escaping():
    table = ValueTable([POS, "sim/motor/1/Positon"])
    attach(table)
    st = {
        POS: AttributeState(POS, INFOS[POS], Mode.POLL, None),
        "sim/motor/1/Positon": AttributeState(
            "sim/motor/1/Positon", None, Mode.FAILED, "API_AttrNotFound: Positon not found"
        ),
    }
    table.update(
        {POS: [Sample(T0, None, Quality.INVALID, error="API_X: <b>bad</b>", stale=True)]}, T0, st
    )
    pos, wrong = table.rows
    assert pos["value"] == "—" and pos["mode"] == "stale · polling"
    assert "<b>bad</b>" in pos["error"]  # raw here; the cell template escapes it
    assert wrong["error"] == "API_AttrNotFound: Positon not found" and wrong["mode"] == "failed"
    # Device text goes through escaping slots (<%- %>); raw slots (<%= %>) only take our colours.
    raw = {
        m for c in table._table.columns for m in re.findall(r"<%=\s*(\w+)", c.formatter.template)
    }
    assert raw <= {"value_bg", "value_fg", "quality_bg", "quality_fg", "mode_fg"}


def test_palette_text_is_readable_on_every_colour():
    for color in (*STATE_COLORS.values(), *QUALITY_COLORS.values()):
        assert contrast(color, text_color(color)) >= 4.5, color


# -- automatic choice ----------------------------------------------------------------


def test_view_class_by_format_and_type():
    assert view_class(INFOS[POS]) is Trend
    assert view_class(info("a/b/c/d", kind=Kind.BOOL)) is Trend
    assert view_class(INFOS[STATE]) is ValueTable and view_class(INFOS[DIR]) is ValueTable
    assert view_class(INFOS[SPEC]) is Spectrum and view_class(INFOS[IMG]) is Image
    assert view_class(info("a/b/c/d", kind=Kind.OTHER)) is None
    assert isinstance(view_for("a/b/c/d", info("a/b/c/d", kind=Kind.OTHER)), Unsupported)
    assert isinstance(view_for(POS, INFOS[POS], history_points=5), Trend)
    with pytest.raises(TypeError, match="no view takes"):
        view_for(POS, colour="red")


def test_auto_view_waits_then_becomes_the_right_view():
    auto = AutoView(SPEC, persistence=2)
    attach(auto)
    auto.update({}, T0, states(SPEC, infos={}))
    assert auto.inner is None and "waiting" in auto.problem_text
    auto.update({SPEC: [Sample(T0, np.ones(10))]}, T0, states(SPEC))
    assert isinstance(auto.inner, Spectrum) and auto.inner.persistence == 2
    assert auto._box.children == [auto.inner.model]
    assert auto.inner.frames_sent == 1  # the tick that chose it also drew its data


def test_auto_view_shows_a_wrong_name_in_place():
    auto = AutoView("sim/motor/1/Positon")
    attach(auto)
    auto.update(
        {}, T0, states("sim/motor/1/Positon", mode=Mode.FAILED, status="API_AttrNotFound: x")
    )
    assert auto.inner is None and "API_AttrNotFound" in auto.problem_text
    assert auto._banner.model.visible


def test_wire_tap_counts_binary_buffers():
    doc = Document()
    source = ColumnDataSource(data={"x": np.zeros(1000)})
    doc.add_root(source)
    tap = WireTap(doc)
    source.data = {"x": np.ones(1000)}
    assert 8000 < tap.bytes < 8600
    tap.close()
    source.data = {"x": np.zeros(10)}
    assert tap.messages == 1


def test_trend_log_axes_for_every_unit():
    pressure = "sim/vacuum/1/Pressure"
    infos = {**INFOS, pressure: info(pressure, unit="mbar")}
    trend = Trend([pressure, TEMP], log_y=True)
    attach(trend)
    trend.update(
        {pressure: [Sample(T0, 1e-9), Sample(T0 + 1, 1e-6)]},
        T0 + 1,
        states(pressure, TEMP, infos=infos),
    )
    fig = trend._figure
    assert type(fig.y_scale).__name__ == "LogScale"
    assert type(fig.extra_y_scales["unit:degC"]).__name__ == "LogScale"
    assert {type(a).__name__ for a in fig.yaxis} == {"LogAxis"}


def test_spectrum_labels_its_x_axis_when_the_x_configuration_comes_later():
    spectrum = Spectrum(SPEC, x_attribute=WAVE)
    attach(spectrum)
    spectrum.update(
        {SPEC: [Sample(T0, np.ones(4))]}, T0, states(SPEC, WAVE, infos={SPEC: INFOS[SPEC]})
    )
    assert spectrum._figure.xaxis[0].axis_label == "index"
    spectrum.update({WAVE: [Sample(T0, np.arange(4.0))]}, T0 + 1, states(SPEC, WAVE))
    assert spectrum._figure.xaxis[0].axis_label == f"{WAVE} [nm]"
    assert list(spectrum._source.data["x"]) == [0.0, 1.0, 2.0, 3.0]


def test_lowering_history_points_cuts_once():
    trend = Trend(POS, history_points=1000)
    _, tap = attach(trend)
    trend.update({POS: ramp(T0, 100, 0.01)}, T0 + 1, states(POS))
    tap.reset()
    trend.history_points = 20
    assert [type(e) for e in tap.events] == [ColumnDataChangedEvent]
    assert list(trend._series[0].source.data["y"]) == [float(i) for i in range(80, 100)]


def test_image_an_unchanged_frame_is_not_sent_again_and_doubles_travel_as_float32():
    image = Image(IMG, max_display=(400, 400))
    _, tap = attach(image)
    st = states(IMG)
    frame = np.random.default_rng(1).random((256, 256))  # float64, like TangoTest's double_image
    image.update({IMG: [Sample(T0, frame)]}, T0, st)
    (first,) = [e for e in tap.events if isinstance(e, ColumnDataChangedEvent)]
    assert image.displayed.dtype == np.float32
    assert message_bytes(first) < 256 * 256 * 4 + 2000  # 4 bytes a pixel, not 8
    for i in range(1, 6):  # polled again and again: same pixels, newer read time
        tap.reset()
        image.update({IMG: [Sample(T0 + i, frame.copy())]}, T0 + i, st)
        assert not [e for e in tap.events if isinstance(e, ColumnDataChangedEvent)]
        assert tap.bytes < 500  # the title's time only
    assert image.frames_sent == 1
    changed = frame.copy()
    changed[0, 0] += 1.0
    image.update({IMG: [Sample(T0 + 7, changed)]}, T0 + 7, st)
    assert image.frames_sent == 2
    huge = np.full((4, 4), 1e300)  # does not fit float32: stays float64
    image.update({IMG: [Sample(T0 + 8, huge)]}, T0 + 8, st)
    assert image.displayed.dtype == np.float64


def test_a_device_failing_every_poll_changes_no_banner_and_no_cell_after_the_first_failure():
    """An outage costs the page one change when it begins, not one per failed poll."""
    trend, table, image = Trend(POS), ValueTable([POS, CNT]), Image(IMG)
    taps = [attach(view)[1] for view in (trend, table, image)]
    st = states(POS, CNT, IMG)
    good = {POS: [Sample(T0, 1.0)], CNT: [Sample(T0, 5.0)], IMG: [Sample(T0, np.ones((4, 4)))]}
    for view in (trend, table, image):
        view.update(good, T0, st)

    def failure(t: float) -> dict[str, list[Sample]]:
        error = "API_CorbaException: TRANSIENT_ConnectFailed (device server down)"
        return {name: [Sample(t, None, Quality.INVALID, error=error)] for name in (POS, CNT, IMG)}

    for view in (trend, table, image):
        view.update(failure(T0 + 1), T0 + 1, st)
    first = table.rows[0]["time"]
    assert "since" in trend.problem_text and "TRANSIENT_ConnectFailed" in table.rows[0]["error"]
    for tap in taps:
        tap.reset()
    for i in range(2, 12):  # ten more failed polls, each with its own time
        for view in (trend, table, image):
            view.update(failure(T0 + i), T0 + i, st)
    # Nothing but the trend's gap points and its segments to "now" (data, not layout, as when
    # healthy: the x axis keeps following "now") went to the page.
    changed = [
        e
        for tap in taps
        for e in tap.events
        if not isinstance(e, ColumnsStreamedEvent)
        and getattr(e, "model", None) is not trend._carry_source
    ]
    assert changed == [], [type(e).__name__ for e in changed]
    assert table.rows[0]["time"] == first  # the time the outage began
    assert clock(T0 + 1) in trend.problem_text
