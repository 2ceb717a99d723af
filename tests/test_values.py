"""Awkward values: NaN, ±inf and 1e308 on trends and in tables, DevEncoded, non-ASCII enums.

Views get synthetic samples (what travels to the browser is recorded); the
conversion is checked on the awkward device's real replies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnsStreamedEvent

from tango_bokeh.hub import Hub
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import (
    AttributeInfo,
    Encoded,
    Format,
    Kind,
    Sample,
    format_number,
)
from tango_bokeh.views import Spectrum, Trend, ValueTable, view_class
from tango_bokeh.views.base import AttributeState
from tango_bokeh.views.trend import OFF_SCALE, UNDRAWN_NOTICE, undrawable
from tango_bokeh.views.wire import WireTap
from tango_bokeh_devices.awkward import PHASES

from .conftest import wait_for

NF = "sim/awkward/1/NonFinite"
T0 = time.time() - 100.0


def attach(view) -> WireTap:
    doc = Document()
    doc.add_root(view.model)
    return WireTap(doc)


def state(name: str, info: AttributeInfo, mode: Mode = Mode.POLL) -> dict[str, AttributeState]:
    return {name: AttributeState(name, info, mode, None)}


# -- numbers -----------------------------------------------------------------------------


def test_numbers_are_written_for_people():
    assert format_number(math.nan) == "NaN"
    assert format_number(math.inf) == "+\u221e" and format_number(-math.inf) == "\u2212\u221e"
    assert format_number(1e308, "%.3f") == "1e+308"  # not 312 digits
    assert format_number(-1e20) == "-1e+20"
    assert format_number(2.5, "%.3f") == "2.500" and format_number(7) == "7"
    assert undrawable(math.nan) == "diamond" and undrawable(math.inf) == "triangle"
    assert undrawable(-math.inf) == "inverted_triangle" and undrawable(1e308) == "triangle"
    assert undrawable(-1e300) == "inverted_triangle" and undrawable(1e299) is None
    assert OFF_SCALE == 1e300


def test_a_trend_draws_non_finite_values_as_marked_gaps_without_wrecking_its_scale():
    info = AttributeInfo(NF, unit="V", display_format="%.3f")
    trend = Trend(NF, history_seconds=3600)
    tap = attach(trend)
    values = [1.5, math.nan, 2.5, math.inf, 3.5, -math.inf, 4.5, 1e308, 5.5]
    samples = [Sample(T0 + i, v) for i, v in enumerate(values)]
    trend.update({NF: samples}, T0 + 10, state(NF, info))
    series = trend._series[0]
    y = np.asarray(series.source.data["y"])
    finite = y[~np.isnan(y)]
    assert list(finite) == [1.5, 2.5, 3.5, 4.5, 5.5]  # all autoscaling sees
    assert np.isnan(y).sum() == 4  # one gap per undrawn value: the line breaks
    marks = series.undrawn.data
    assert marks["marker"] == ["diamond", "triangle", "inverted_triangle", "triangle"]
    assert marks["y"] == [1.5, 2.5, 3.5, 4.5]  # at the last value drawn: inside the scale
    assert marks["v"] == ["NaN", "+\u221e", "\u2212\u221e", "1e+308"]
    streamed = {e.model.id for e in tap.of(ColumnsStreamedEvent)}
    assert streamed == {series.source.id, series.undrawn.id}  # one stream each
    assert UNDRAWN_NOTICE in trend.problem_text
    csv = trend.to_csv()
    assert "+\u221e" in csv and "1e+308" in csv and ",NaN," in csv
    assert series.carry == 5.5  # the last value is carried to "now"
    # The notice ends once the values are drawable again for a while.
    trend.update({NF: [Sample(T0 + 30, 6.0)]}, T0 + 30, state(NF, info))
    assert trend.problem_text == ""
    trend.clear()
    assert series.undrawn.data["t"] == []


def test_a_trend_of_only_undrawable_values_draws_nothing_and_says_why():
    info = AttributeInfo(NF)
    trend = Trend(NF, off_scale=1e6)
    attach(trend)
    trend.update({NF: [Sample(T0, math.inf), Sample(T0 + 1, 2e6)]}, T0 + 2, state(NF, info))
    series = trend._series[0]
    assert series.undrawn.data["t"] == []  # no drawn value yet to put a mark on
    assert np.isnan(series.source.data["y"]).all()
    assert UNDRAWN_NOTICE in trend.problem_text
    with pytest.raises(ValueError, match="off_scale"):
        Trend(NF, off_scale=math.inf)


def test_a_table_shows_nan_and_infinities_by_name():
    info = AttributeInfo(NF, unit="V", display_format="%.3f")
    table = ValueTable(NF)
    attach(table)
    shown = []
    for i, value in enumerate([math.nan, math.inf, -math.inf, 1e308, 2.0]):
        table.update({NF: [Sample(T0 + i, value)]}, T0 + i, state(NF, info))
        shown.append(table.rows[0]["value"])
    assert shown == ["NaN V", "+\u221e V", "\u2212\u221e V", "1e+308 V", "2.000 V"]
    assert table.rows[0]["quality"] == "VALID"


# -- DevEncoded --------------------------------------------------------------------------


def test_encoded_values_are_decoded_where_the_format_says_how():
    assert Encoded("json", b'{"a": 1, "\\u00e9": [true]}').text() == '{"a": 1, "é": [true]}'
    assert Encoded("utf8", "température 23 °C".encode()).text() == "température 23 °C"
    assert Encoded("UTF-8", b"ok").text() == "ok"
    assert Encoded("gray8", bytes(range(8))).text() == "8 bytes, format 'gray8'"
    assert Encoded("jpeg", bytes(10_000)).text() == "10,000 bytes, format 'jpeg'"
    assert Encoded("json", b"{broken").text() == "7 bytes, format 'json', not valid json"
    assert Encoded("utf8", b"\xff\xfe").text() == "2 bytes, format 'utf8', not valid utf8"
    long = Encoded("utf8", b"x" * 1000).text()
    assert len(long) == 200 and long.endswith("…")
    info = AttributeInfo("a/b/c/e", kind=Kind.ENCODED, dtype="object")
    table = ValueTable("a/b/c/e")
    attach(table)
    table.update({"a/b/c/e": [Sample(T0, Encoded("json", b"[1, 2]"))]}, T0, state("a/b/c/e", info))
    assert table.rows[0]["value"] == "[1, 2]"
    assert view_class(info) is ValueTable


# -- against the awkward device ----------------------------------------------------------


@pytest.fixture
def values_hub(awkward: str) -> Iterator[Hub]:
    from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig

    hub = Hub(Acquisition(AcquisitionConfig(poll_period=0.2)))
    try:
        yield hub
    finally:
        hub.close()


@pytest.mark.tango
def test_the_awkward_values_arrive_typed_and_shown(values_hub: Hub, awkward: str):
    names = ("EncodedJson", "EncodedText", "EncodedBinary", "Phase", "NonFinite", "Spectrum")
    cursors = {n: values_hub.subscribe(f"{awkward}/{n}") for n in names}
    got: dict[str, list[Sample]] = {n: [] for n in names}

    def enough() -> bool:
        for name, cursor in cursors.items():
            got[name] += [s for s in cursor.read() if s.ok]
        return all(got.values()) and len(got["NonFinite"]) >= 8

    wait_for(enough, timeout=30, what="values of every awkward attribute")
    assert all(isinstance(s.value, Encoded) for n in names[:3] for s in got[n])
    assert cursors["EncodedJson"].info.kind is Kind.ENCODED
    assert got["EncodedJson"][-1].value.text().startswith('{"phase": ')
    assert "température" in got["EncodedText"][-1].value.text()
    assert got["EncodedBinary"][-1].value.text() == "8 bytes, format 'gray8'"
    assert cursors["Phase"].info.enum_labels == PHASES
    values = [s.value for s in got["NonFinite"]]
    assert any(math.isnan(v) for v in values) and math.inf in values and 1e308 in values
    spectrum = cursors["Spectrum"]
    assert spectrum.info.max_dim_x == 65536 and got["Spectrum"][-1].value.shape == (1024,)

    # What the views make of them.
    states = {
        n: AttributeState(n, c.info, c.mode, c.status) for n, c in cursors.items()
    }  # fmt: skip
    table = ValueTable(list(names[:4]))
    view = Spectrum("Spectrum")
    attach(table), attach(view)
    batch = {n: got[n][-1:] for n in names}
    table.update(batch, time.time(), states)
    rows = {row["label"]: row for row in table.rows}
    assert rows["EncodedJson"]["value"].startswith('{"phase": ')
    assert rows["EncodedBinary"]["value"] == "8 bytes, format 'gray8'"
    assert rows["Phase"]["value"] in PHASES
    view.update(batch, time.time(), states)
    assert len(view._source.data["y"]) == 1024 and view.problem_text == ""
    assert cursors["Spectrum"].info.format is Format.SPECTRUM
