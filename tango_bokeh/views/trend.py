"""Trends: numeric and boolean scalars against Tango time, streamed point by point.

What goes on the wire each tick is only what is new: one
``ColumnDataSource.stream`` per attribute that received samples (numpy arrays,
sent as binary), nothing for the others. History is bounded twice, by the
same ``rollover`` of that stream: it keeps at most ``history_points`` rows, and
no row older than the time window (the rollover is set each tick to the rows
still inside the window plus the new ones). Rows of an attribute that went
quiet stay until its next sample, outside the visible window (the x range
follows "now" over ``history_seconds``) and outside the CSV export.

Samples are drawn as a step line (sample-and-hold, the truthful picture of a
change-only attribute). The last value is carried to "now" by one small
segment per attribute, redrawn only when it would move by two pixels or more
(``history_seconds / 500``), so an idle trend sends nothing most ticks but
never looks dead. Errors, ``ATTR_INVALID`` and stale periods become NaN rows
that break the line; points of WARNING, ALARM or CHANGING quality get markers
in their quality colour. Values that cannot be drawn (NaN, ±inf, and finite
ones of magnitude ``off_scale`` = 1e300 or more, the "no value" sentinels of
devices) break the line too, with a mark at the last value drawn (◆ NaN,
▲ +inf or too high, ▼ -inf or too low; hover and CSV give the value), so
autoscaling never sees them (docs/views.md).

A trend opened late is drawn with what the hub remembers at once: the first
samples of each attribute come with the hub's shared history from before them
(``recall``, columnar, see :mod:`tango_bokeh.history`), turned into rows in one
numpy pass and sent with those samples in the series' first stream (binary).
The trend tells the hub how much history to keep for it (its time window).
Given an archive (``use_archive``), older history comes from it, drawn lighter, on
opening and when the user zooms out or pans into the past (:mod:`.archive_fill`).

Times are plotted in the server's local time zone (bokeh's datetime axis shows
UTC, so timestamps are shifted by the local UTC offset before they are sent).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.core.properties import value
from bokeh.layouts import column
from bokeh.models import (
    CDSView,
    ColumnDataSource,
    CustomJSFilter,
    CustomJSHover,
    DataRange1d,
    GlyphRenderer,
    HoverTool,
    IndexFilter,
    Label,
    LayoutDOM,
    Legend,
    LegendItem,
    LinearAxis,
    LinearColorMapper,
    LogAxis,
    LogScale,
    Range1d,
    Span,
)
from bokeh.plotting import figure

from ..tango.sample import AttributeInfo, Format, Kind, Quality, Sample, format_number
from .banner import Level, Problem, attribute_problem, clock
from .base import AttributeState
from .export_formats import PageRanges, Shown, visible_span
from .palette import QUALITY_BY_CODE, QUALITY_CODES, QUALITY_COLORS, SERIES_COLORS
from .panel import PanelView
from .style import PANEL_STYLES, style_figure

#: Kinds a trend can plot (enums as their integer value).
PLOTTABLE = (Kind.NUMBER, Kind.BOOL, Kind.ENUM)
#: How long a trend says that events were dropped (or values not drawn) after the last one.
DROPPED_NOTICE_SECONDS = 10.0
#: What a trend says while it gets values it cannot draw (constant: the banner stays put).
UNDRAWN_NOTICE = (
    "values that cannot be drawn (NaN, +∞, -∞ or beyond ±1e300): gaps in the line, "
    "marked ◆ NaN, ▲ +∞ or too high, ▼ -∞ or too low, at the last value drawn"
)
_INVALID = QUALITY_CODES[Quality.INVALID]
#: Palette code of each quality, in the order of the hub history's quality column
#: (``tango_bokeh.history.QUALITIES``, which is ``tuple(Quality)``).
_HISTORY_CODES = np.asarray([QUALITY_CODES.get(q, _INVALID) for q in Quality], dtype=np.uint8)
_HISTORY_INVALID = list(Quality).index(Quality.INVALID)

#: Markers only for points whose quality is not VALID (quality code 0).
_ABNORMAL = """
const q = source.data["q"]
const indices = []
for (let i = 0; i < q.length; i++) {
    if (q[i] != 0) indices.push(i)
}
return indices
"""

#: Hover text of a quality code (a model per figure: bokeh models belong to one Document).
_QUALITY_NAME = "return %s[value] ?? String(value)" % [str(q) for q in QUALITY_BY_CODE]


def _unsuitable(attribute: str, info: AttributeInfo) -> Problem | None:
    """Why a trend cannot plot an attribute of this configuration, if it cannot."""
    if info.format is not Format.SCALAR:
        return Problem(
            attribute,
            Level.ERROR,
            f"is a {info.format} attribute: a Trend plots scalars "
            f"(use {'Spectrum' if info.format is Format.SPECTRUM else 'Image'})",
        )
    if info.kind not in PLOTTABLE:
        return Problem(
            attribute,
            Level.ERROR,
            f"is a {info.kind} attribute: a Trend plots numbers and booleans (use ValueTable)",
        )
    return None


def utc_offset(t: float) -> float:
    """Seconds to add to epoch ``t`` to get the local wall clock (DST-aware)."""
    return float(time.localtime(t).tm_gmtoff)


def to_display_ms(t: float | np.ndarray) -> float | np.ndarray:
    """Epoch seconds to the milliseconds a bokeh datetime axis shows as local time."""
    last = float(np.max(t)) if isinstance(t, np.ndarray) and t.size else float(t or 0.0)
    return (t + utc_offset(last)) * 1000.0


def from_display_ms(ms: np.ndarray) -> np.ndarray:
    """Epoch seconds, to the microsecond Tango stamps carry, of display milliseconds
    (the inverse of :func:`to_display_ms`; per row only when the range spans a change of
    the local UTC offset)."""
    local = np.asarray(ms, dtype=np.float64) / 1000.0
    if not local.size:
        return local
    ends = {utc_offset(float(t) - utc_offset(float(t))) for t in (local[0], local[-1])}
    if len(ends) == 1:
        offset: float | np.ndarray = ends.pop()
    else:
        offset = np.asarray([utc_offset(float(t) - utc_offset(float(t))) for t in local])
    return np.round(local - offset, 6)


def _empty() -> dict[str, np.ndarray]:
    return {"t": np.empty(0), "y": np.empty(0), "q": np.empty(0, dtype=np.uint8)}


#: Columns of the carry source: segments to "now" (x0, x1, y) and invisible ones (g).
_CARRY = ("x0", "x1", "y", "g")


def _no_marks() -> dict[str, list]:
    return {"t": [], "y": [], "v": [], "marker": []}


#: Rows out of the time window a trend's source may hold until later streams drop them;
#: beyond this (or an eighth of its rows) it replaces its data instead (:meth:`Trend._apply`).
SLACK_ROWS = 16

#: Magnitude from which a finite value is "off scale" on a trend: not drawn, like NaN and
#: the infinities (devices use such numbers, 1e308 or DBL_MAX, to say "no value").
OFF_SCALE = 1e300


def undrawable(number: float, off_scale: float = OFF_SCALE) -> str | None:
    """Why a trend does not draw ``number`` on its line (and its mark), else None."""
    if math.isnan(number):
        return "diamond"
    if number >= off_scale:
        return "triangle"
    if number <= -off_scale:
        return "inverted_triangle"
    return None


#: Legend entries longer than this many characters are cut with "…" (hovering the line, the
#: y axis of a lone series and the CSV give the full name).
LEGEND_CHARS = 30
#: Widest a legend row is meant to be (estimated, px): more entries wrap onto more rows, so
#: that a legend never makes its trend (and the page) wider than the window.
LEGEND_ROW_PX = 400
#: Height of a legend row's glyph and text (px).
LEGEND_ROW_HEIGHT = 16
#: Estimated width of one character of the legend's 12 px font, and of an entry's glyph,
#: the gap to its text and the spacing to the next entry (px).
LEGEND_CHAR_PX = 7.0
LEGEND_ENTRY_PX = 20 + 5 + 14


def shared_device(labels: Sequence[str]) -> str:
    """The device part (``"sys/tg_test/1/"``) that several Tango attribute names share, or
    ``""``: the legend names it once, as its title, and each entry by its attribute."""
    if len(labels) < 2 or not all("/" in label for label in labels):
        return ""
    devices = {label.rsplit("/", 1)[0] + "/" for label in labels}
    return devices.pop() if len(devices) == 1 else ""


def legend_text(label: str, device: str = "", limit: int = LEGEND_CHARS) -> str:
    """A legend entry: ``label`` without the shared ``device``, cut to ``limit`` characters
    (a Tango name keeps its end, where attribute names differ; other text its start)."""
    text = label[len(device) :] if device and label.startswith(device) else label
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :] if "/" in text else text[: limit - 1] + "…"


def legend_columns(texts: Sequence[str], row_px: float = LEGEND_ROW_PX) -> int:
    """Entries per legend row (bokeh gives every entry the width of the widest one)."""
    if not texts:
        return 1
    widest = max(len(t) for t in texts) * LEGEND_CHAR_PX + LEGEND_ENTRY_PX
    return max(1, min(len(texts), int(row_px // widest)))


@dataclass
class _Series:
    """One attribute of a trend: its source, renderers and what was last drawn."""

    attribute: str
    label: str
    color: str
    source: ColumnDataSource
    renderers: list[GlyphRenderer]  # everything to move to another y axis together
    hover: GlyphRenderer
    legend: LegendItem
    undrawn: ColumnDataSource  # marks of values not drawn (NaN, ±inf, off scale)
    unit: str | None = None  # None until the attribute's configuration is known
    problem: Problem | None = None  # the trend cannot plot this attribute
    last_t: float = math.nan  # display ms of the newest row
    carry: float = math.nan  # value carried to "now" (NaN in a gap)
    last_y: float = math.nan  # the newest value drawn (where marks of undrawn values go)
    in_gap: bool = False
    undrawn_at: float | None = None  # when a value was last not drawn (epoch s)
    undrawn_rows: int = 0  # marks streamed, a counter
    info: AttributeInfo | None = None  # the configuration last taken into account
    retired: bool = False  # the attribute's unit changed: this series takes no more samples
    unit_change: tuple[str, str, float] | None = None  # old unit, new unit, when (epoch s)
    y_range_name: str = "default"
    rows_streamed: int = 0  # a counter, for tests and curiosity
    losses: int | None = None  # lost + queue_full + lost_estimate as last seen (None: not yet)
    recalled: int | None = None  # rows drawn from the hub's history (None: none offered yet)
    dropped_at: float | None = None  # when events were last found dropped (epoch s)


class Trend(PanelView):
    """Several numeric/boolean scalars in one figure; one y axis per unit.

    ``history_points`` and ``history_seconds`` bound what is kept and shown;
    ``labels`` and ``colors`` are per attribute; ``y_range=(low, high)`` fixes
    the first axis (else it autoscales); ``step=False`` draws straight lines
    between samples instead of holding each value until the next one; values of
    magnitude ``off_scale`` (1e300) or more are not drawn, like NaN and ±inf.
    """

    def __init__(
        self,
        attributes: Sequence[str] | str,
        *,
        title: str | None = None,
        history_points: int = 10_000,
        history_seconds: float = 600.0,
        log_y: bool = False,
        y_range: tuple[float, float] | None = None,
        labels: Sequence[str] | None = None,
        colors: Sequence[str] | None = None,
        height: int = 300,
        step: bool = True,
        off_scale: float = OFF_SCALE,
    ) -> None:
        if isinstance(attributes, str):
            attributes = (attributes,)
        super().__init__(attributes, title=title)
        if labels is not None and len(labels) != len(self.attributes):
            raise ValueError("Trend: give one label per attribute")
        if history_points < 2:
            raise ValueError("Trend: history_points must be at least 2")
        self.labels = tuple(labels) if labels else self.attributes
        self.colors = tuple(colors) if colors else SERIES_COLORS
        self.log_y = log_y
        self.y_range = y_range
        self.height = height
        self.step = step
        if not (math.isfinite(off_scale) and off_scale > 0):
            raise ValueError("Trend: off_scale must be a finite number above 0")
        self.off_scale = float(off_scale)
        self._history_points = int(history_points)
        self._history_seconds = float(history_seconds)
        self._series: list[_Series] = []
        self._device = ""  # the device part the labels share, named once by the legend
        self._changes: dict[str, tuple[Span, Label]] = {}  # where each attribute's unit changed
        self._now = -math.inf  # time of the latest update
        #: x0, x1, y of the carry segments and g, the y of the invisible ones of series in a gap
        self._sent = np.full((len(_CARRY), len(self.attributes)), np.nan)
        #: Per attribute: how to tell the hub how much history to keep for this trend.
        self._keepers: dict[str, Callable[[float | None], None]] = {}
        #: Archived history before the live rows (views/archive_fill.py), if given one.
        self._archive: Any = None

    def use_archive(self, fill: Any) -> None:
        """Draw archived history before the live rows, from ``fill`` (an
        :class:`~tango_bokeh.views.archive_fill.ArchiveFill`): on opening, and when the
        user zooms out or pans into the past."""
        self._archive = fill
        fill.bind(self)

    @property
    def archive(self) -> Any:
        """The :class:`~tango_bokeh.views.archive_fill.ArchiveFill` in use, if any (setting
        it is :meth:`use_archive`, so ``AutoView.set_option("archive", fill)`` works)."""
        return self._archive

    @archive.setter
    def archive(self, fill: Any) -> None:
        self.use_archive(fill)

    # -- options that controls change -------------------------------------------

    @property
    def history_points(self) -> int:
        return self._history_points

    @history_points.setter
    def history_points(self, points: int) -> None:
        self._history_points = max(2, int(points))
        if self._model is not None:
            for series in self._series:
                if len(series.source.data["t"]) > self._history_points:
                    self._cap_history(series)

    @property
    def history_seconds(self) -> float:
        return self._history_seconds

    @history_seconds.setter
    def history_seconds(self, seconds: float) -> None:
        self._history_seconds = max(1.0, float(seconds))
        if self._model is not None:
            self._figure.x_range.follow_interval = self._history_seconds * 1000.0
        for keep in self._keepers.values():
            keep(self._history_seconds)

    @property
    def resolution(self) -> float:
        """Seconds the "now" segment may lag before it is redrawn (two pixels of 1000)."""
        return self._history_seconds / 500.0

    # -- building ----------------------------------------------------------------

    def build(self) -> LayoutDOM:
        y_range = Range1d(*self.y_range) if self.y_range else DataRange1d(only_visible=True)
        fig = figure(
            title=self.title or self._default_title(),
            x_axis_type="datetime",
            y_axis_type="log" if self.log_y else "linear",
            x_range=DataRange1d(
                follow="end",
                follow_interval=self._history_seconds * 1000.0,
                range_padding=0.0,
                only_visible=True,
            ),
            y_range=y_range,
            height=self.height,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            active_drag="box_zoom",
            toolbar_location="right",
        )
        style_figure(fig)
        fig.xaxis.axis_label = f"local time (UTC{time.strftime('%z')})"
        self._figure = fig
        self._carry_source = ColumnDataSource(data=self._carry_data())
        self._quality_colors = LinearColorMapper(
            palette=[QUALITY_COLORS[q] for q in QUALITY_BY_CODE],
            low=-0.5,
            high=len(QUALITY_BY_CODE) - 0.5,
        )
        self._hover_tool = HoverTool(
            renderers=[],
            mode="vline",
            tooltips=[
                ("attribute", "$name"),
                ("value", "@y{%.6g}"),
                ("quality", "@q{custom}"),
                ("time", "@t{%F %T.%3N}"),
            ],
            formatters={
                "@t": "datetime",
                "@y": "printf",
                "@q": CustomJSHover(code=_QUALITY_NAME),
            },
        )
        self._marks_tool = HoverTool(
            renderers=[],
            tooltips=[("attribute", "$name"), ("value", "@v"), ("time", "@t{%F %T.%3N}")],
            formatters={"@t": "datetime"},
        )
        fig.add_tools(self._hover_tool, self._marks_tool)
        self._legend = Legend(
            items=[],
            orientation="horizontal",
            location="top_left",
            click_policy="hide",
            label_text_font_size="12px",
            label_height=LEGEND_ROW_HEIGHT,
            glyph_height=LEGEND_ROW_HEIGHT,
            spacing=14,
            padding=2,
            margin=0,
            border_line_color=None,
        )
        self._device = shared_device(self.labels)
        if self._device:
            self._legend.title = self._device.rstrip("/")
            self._legend.title_text_font_size = "11px"
            self._legend.title_text_font_style = "normal"
        fig.add_layout(self._legend, "above")
        for index, (attribute, label) in enumerate(zip(self.attributes, self.labels, strict=True)):
            self._add_series(attribute, label, self.colors[index % len(self.colors)])
        if len(self.attributes) == 1:
            self._legend.visible = False  # the title and axis already name it
        return column(self._banner.model, fig, sizing_mode="stretch_width", styles=PANEL_STYLES)

    def _default_title(self) -> str:
        if len(self.labels) <= 3:
            return ", ".join(self.labels)
        return f"{len(self.labels)} attributes"

    def _add_series(self, attribute: str, label: str, color: str) -> _Series:
        """A source and its renderers (line, quality marks, "now" segment, non-finite marks)."""
        fig, index = self._figure, len(self._series)
        if index >= self._sent.shape[1]:
            self._sent = np.concatenate([self._sent, np.full((len(_CARRY), 1), np.nan)], axis=1)
        source = ColumnDataSource(data=_empty())
        if self.step:
            line = fig.step("t", "y", source=source, mode="after", color=color, line_width=2)
            hover = fig.line("t", "y", source=source, line_alpha=0.0, line_width=6)
        else:
            line = hover = fig.line("t", "y", source=source, color=color, line_width=2)
        hover.name = label
        marks = fig.scatter(
            "t",
            "y",
            source=source,
            view=CDSView(filter=CustomJSFilter(code=_ABNORMAL)),
            size=7,
            line_color="#333333",
            line_width=0.5,
            fill_color={"field": "q", "transform": self._quality_colors},
        )
        carry = fig.segment(
            "x0",
            "y",
            "x1",
            "y",
            source=self._carry_source,
            view=CDSView(filter=IndexFilter([index])),
            color=color,
            line_width=2,
            line_dash="dashed",
            line_alpha=0.7,
        )
        # Invisible, from the last point of a series in a gap to "now" at its last drawn value:
        # the x range keeps following "now" when every series is stale (their lines end).
        ghost = fig.segment(
            "x0",
            "g",
            "x1",
            "g",
            source=self._carry_source,
            view=CDSView(filter=IndexFilter([index])),
            line_alpha=0.0,
        )
        undrawn = ColumnDataSource(data=_no_marks())
        off_scale = fig.scatter(
            "t", "y", source=undrawn, marker="marker", size=10, fill_color=color,
            line_color="#333333", line_width=0.8,
        )  # fmt: skip
        off_scale.name = label
        renderers = [line, marks, carry, ghost, off_scale] + ([hover] if hover is not line else [])
        item = LegendItem(
            label=value(legend_text(label, self._device)),
            renderers=[line, marks, carry, off_scale],
        )
        self._legend.items = [*self._legend.items, item]
        self._lay_out_legend([i.label.value for i in self._legend.items if i.label is not None])
        self._hover_tool.renderers = [*self._hover_tool.renderers, hover]
        self._marks_tool.renderers = [*self._marks_tool.renderers, off_scale]
        series = _Series(attribute, label, color, source, renderers, hover, item, undrawn)
        self._series.append(series)
        return series

    # -- units and axes ----------------------------------------------------------

    def _follow(self, series: _Series, state: AttributeState | None) -> _Series | None:
        """Take the attribute's configuration into account, first or changed.

        A changed unit never shares a line or an axis with the old one: the series is
        retired (its points stay, on the old unit's axis) and a series of the new unit
        takes over (a new one, or the one of that unit retired earlier, after a gap);
        the change is marked on the plot. Returns that successor, if any.
        """
        info = state.info if state is not None else None
        if info is None or info is series.info:
            return None
        first, series.info = series.info is None, info
        problem = _unsuitable(series.attribute, info)
        if first:
            series.unit, series.problem = info.unit or "", problem
            self._place(series)
            return None
        if problem is not None or series.problem is not None:
            series.problem = problem  # a type that cannot be plotted, or one that now can
            self._relabel()
            return None
        unit = info.unit or ""
        if unit == series.unit:
            return None
        return self._switch_unit(series, unit, info)

    def _switch_unit(self, series: _Series, unit: str, info: AttributeInfo) -> _Series:
        since = info.since if info.since is not None else self._now
        series.retired = True
        successor = next(
            (s for s in self._series if s.retired and s.attribute == series.attribute
             and s.unit == unit and s.problem is None),
            None,
        )  # fmt: skip
        if successor is None:
            successor = self._add_series(series.attribute, series.label, series.color)
            successor.unit = unit
            self._place(successor)
        else:  # back to a unit seen before: its line resumes after a gap
            successor.retired = False
            gap_t = max(float(to_display_ms(since)), successor.last_t)
            gap = {"t": np.asarray([gap_t]), "y": np.asarray([math.nan]),
                   "q": np.asarray([_INVALID], dtype=np.uint8)}  # fmt: skip
            successor.source.stream(gap, rollover=self._history_points)
            successor.last_t, successor.carry, successor.in_gap = gap_t, math.nan, True
            self._relabel()
        successor.info, successor.losses = info, series.losses
        successor.unit_change = (series.unit or "", unit, since)
        self._legend.visible = True  # two series of one attribute: the legend tells them apart
        self._mark_change(successor)
        return successor

    def _mark_change(self, series: _Series) -> None:
        """A dashed vertical line and a label where the unit changed (one per attribute)."""
        assert series.unit_change is not None
        old, new, since = series.unit_change
        x = float(to_display_ms(since))
        text = f"unit {old or '(none)'} → {new or '(none)'}"
        marker = self._changes.get(series.attribute)
        if marker is None:
            span = Span(location=x, dimension="height", line_color=series.color,
                        line_dash="dashed", line_width=1.5)  # fmt: skip
            label = Label(x=x, y=4, y_units="screen", x_offset=4, text=text,
                          text_font_size="11px", text_color=series.color,
                          background_fill_color="#ffffff", background_fill_alpha=0.8)  # fmt: skip
            self._figure.add_layout(span)
            self._figure.add_layout(label)
            self._changes[series.attribute] = (span, label)
        else:
            span, label = marker
            span.location, label.x, label.text = x, x, text

    def _place(self, series: _Series) -> None:
        """Put ``series`` on the y axis of its unit, creating the axis if needed."""
        fig = self._figure
        units = [s.unit for s in self._series if s.unit is not None and s.problem is None]
        default_unit = units[0] if units else None
        if series.unit != default_unit and series.problem is None:
            name = f"unit:{series.unit}"
            if name not in fig.extra_y_ranges:
                fig.extra_y_ranges = {**fig.extra_y_ranges, name: DataRange1d(only_visible=True)}
                if self.log_y:
                    fig.extra_y_scales = {**fig.extra_y_scales, name: LogScale()}
                axis_class = LogAxis if self.log_y else LinearAxis
                fig.add_layout(axis_class(y_range_name=name), "right")
            series.y_range_name = name
            for renderer in series.renderers:
                renderer.y_range_name = name
        self._relabel()

    def _relabel(self) -> None:
        """Axis labels, range membership and legend labels from the current unit groups."""
        fig = self._figure
        groups: dict[str, list[_Series]] = {}
        for s in self._series:
            if s.unit is not None and s.problem is None:
                groups.setdefault(s.y_range_name, []).append(s)
        several_units = len(groups) > 1
        axes = {getattr(a, "y_range_name", "default"): a for a in fig.yaxis}
        for name, members in groups.items():
            axis = axes.get(name)
            unit = members[0].unit
            if axis is not None:
                text = f"[{unit}]" if unit else ""
                if len(members) == 1:
                    text = f"{members[0].label} {text}".strip()
                if axis.axis_label != text:
                    axis.axis_label = text
                color = members[0].color if several_units and len(members) == 1 else "#333333"
                if axis.axis_label_text_color != color:
                    axis.axis_label_text_color = color
            rng = fig.y_range if name == "default" else fig.extra_y_ranges[name]
            if several_units and isinstance(rng, DataRange1d):
                wanted = [r for s in members for r in s.renderers]
                if list(rng.renderers) != wanted:
                    rng.renderers = wanted
        texts = []
        for s in self._series:
            label = legend_text(s.label, self._device)
            label = f"{label} [{s.unit}]" if several_units and s.unit else label
            texts.append(label)
            if s.legend.label is None or s.legend.label.value != label:
                s.legend.label = value(label)
            name = f"{s.label} [{s.unit}]" if s.unit else s.label
            if s.hover.name != name:
                s.hover.name = name
        self._lay_out_legend(texts)

    def _lay_out_legend(self, texts: Sequence[str]) -> None:
        """Entries per row so that the legend fits its panel; the figure grows by the extra
        rows, so that the plot keeps its height."""
        columns = legend_columns(texts)
        rows = math.ceil(len(texts) / columns) if texts else 1
        spacing = 14 if rows == 1 else 6  # a gap between entries of one row; rows close
        height = self.height + (rows - 1) * (LEGEND_ROW_HEIGHT + spacing)
        legend, fig = self._legend, self._figure
        if (legend.ncols, legend.spacing, fig.height) != (columns, spacing, height):
            legend.ncols, legend.spacing, fig.height = columns, spacing, height

    # -- data ----------------------------------------------------------------------

    def draw(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        self._now = now
        now_ms = float(to_display_ms(now))
        for series in list(self._series):
            if series.retired:
                continue
            state = states.get(series.attribute)
            samples = batch.get(series.attribute)
            successor = self._follow(series, state)
            if successor is not None:  # the unit changed: samples before the change are old
                assert successor.unit_change is not None
                since = successor.unit_change[2]
                before = [s for s in samples or () if s.time < since]
                samples = [s for s in samples or () if s.time >= since]
                if before:
                    self._apply(series, self._rows(series, before), now_ms)
                series.carry = math.nan  # a retired series is not carried to "now"
                series = successor
            self._count_losses(series, state, now)
            earlier = self._recalled(series, samples, now) if samples else None
            new = self._rows(series, samples) if samples and series.problem is None else None
            if earlier is not None:  # one stream: what the hub remembers, then the new rows
                new = earlier if new is None else _joined(earlier, new, self._history_points)
            self._apply(series, new, now_ms)
        self._carry_to(now_ms)
        if self._archive is not None:
            self._archive.drawn(now)

    def _own_problems(self) -> dict[str, Problem]:
        found = {s.attribute: s.problem for s in self._series if s.problem is not None}
        for s in self._series:
            if s.problem is not None or s.dropped_at is None:
                continue
            if self._now - s.dropped_at > DROPPED_NOTICE_SECONDS:
                continue
            state, last = self._states.get(s.attribute), self._last.get(s.attribute)
            if attribute_problem(s.attribute, state, last) is None:  # worse news first
                found[s.attribute] = Problem(
                    s.attribute,
                    Level.WARNING,
                    f"events arrive faster than this trend can keep: some were dropped "
                    f"(last at {clock(s.dropped_at)})",
                )
        for s in self._series:
            if s.retired or s.attribute in found or s.unit_change is None:
                continue
            old, new, since = s.unit_change
            if self._now - since > self._history_seconds:
                continue  # the old unit's points left the window
            state, last = self._states.get(s.attribute), self._last.get(s.attribute)
            if attribute_problem(s.attribute, state, last) is None:
                found[s.attribute] = Problem(
                    s.attribute,
                    Level.INFO,
                    f"unit changed from {old or '(none)'} to {new or '(none)'} at "
                    f"{clock(since)}: earlier values stay on their own [{old}] axis",
                )
        for s in self._series:
            if s.retired or s.attribute in found or s.undrawn_at is None:
                continue
            if self._now - s.undrawn_at > DROPPED_NOTICE_SECONDS:
                continue
            state, last = self._states.get(s.attribute), self._last.get(s.attribute)
            if attribute_problem(s.attribute, state, last) is None:
                found[s.attribute] = Problem(s.attribute, Level.INFO, UNDRAWN_NOTICE)
        if self._archive is not None:  # not archived, or the archive did not answer
            for attribute, problem in self._archive.problems().items():
                found.setdefault(attribute, problem)
        return found

    @staticmethod
    def _count_losses(series: _Series, state: AttributeState | None, now: float) -> None:
        """Note when samples of an event storm were lost: the reader's ring overflowed, Tango's
        queue was found full, or events were estimated lost before the hub (ZMQ's
        ``API_MissedEvents``: ``lost_estimate``)."""
        if state is None:
            return
        losses = state.lost + state.queue_full + state.lost_estimate
        if series.losses is not None and losses > series.losses:
            series.dropped_at = now
        series.losses = losses

    def _rows(self, series: _Series, samples: Sequence[Sample]) -> dict[str, np.ndarray] | None:
        """New rows for ``samples``: values, or one NaN row where a gap starts.

        A value the trend cannot draw (NaN, ±inf, beyond ±``OFF_SCALE``) breaks the line
        like an error, and leaves a mark at the last drawn value (streamed to the series'
        ``undrawn`` source here): autoscaling never sees it.
        """
        times: list[float] = []
        values: list[float] = []
        codes: list[int] = []
        marks: list[tuple[float, float, str, str]] = []  # time, y, value as text, marker
        last_y = series.last_y
        for sample in samples:
            value = sample.value
            if (
                sample.error is not None
                or sample.stale
                or value is None
                or (sample.quality is Quality.INVALID)
            ):
                if not series.in_gap:
                    times.append(sample.time)
                    values.append(math.nan)
                    codes.append(_INVALID)
                    series.in_gap = True
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                series.problem = Problem(
                    series.attribute,
                    Level.ERROR,
                    f"has {type(value).__name__} values: a Trend plots numbers and booleans",
                )
                return None
            marker = undrawable(number, self.off_scale)
            if marker is not None:
                marks.append((sample.time, last_y, format_number(number), marker))
                series.undrawn_at = sample.time
                if not series.in_gap:
                    times.append(sample.time)
                    values.append(math.nan)
                    codes.append(QUALITY_CODES.get(sample.quality, _INVALID))
                    series.in_gap = True
                continue
            times.append(sample.time)
            values.append(number)
            codes.append(QUALITY_CODES.get(sample.quality, _INVALID))
            series.in_gap = False
            last_y = number
        if marks:
            self._mark(series, marks)
        series.last_y = last_y
        if not times:
            return None
        t = to_display_ms(np.asarray(times, dtype=np.float64))
        if not math.isnan(series.last_t):
            t = np.maximum(t, series.last_t)  # error times come from our clock: keep order
        series.last_t = float(t[-1])
        series.carry = math.nan if series.in_gap else values[-1]
        return {
            "t": t,
            "y": np.asarray(values, dtype=np.float64),
            "q": np.asarray(codes, dtype=np.uint8),
        }

    def _recalled(
        self, series: _Series, samples: Sequence[Sample], now: float
    ) -> dict[str, np.ndarray] | None:
        """Rows for the hub's history from before ``samples``, the first time it comes.

        The same rows :meth:`_rows` would make of those samples one by one (gaps, quality
        codes, marks of undrawn values), made in one numpy pass over the history's
        columns, inside the window and the point limit.
        """
        recall: Any = getattr(samples, "recall", None)
        if recall is None or series.recalled is not None:
            return None
        keep = getattr(samples, "keep", None)
        if keep is not None:
            self._keepers[series.attribute] = keep
            keep(self._history_seconds)
        series.recalled = 0
        if series.problem is not None or not len(recall.t):
            return None
        recall = recall.since(now - self._history_seconds)
        t, v, q, f = (
            c[-self._history_points :] for c in (recall.t, recall.v, recall.q, recall.flags)
        )
        n = len(t)
        if not n:
            return None
        bad = (f != 0) | (q == _HISTORY_INVALID)  # error, stale, no value, not a number
        off = self.off_scale
        with np.errstate(invalid="ignore"):
            undrawn = ~bad & (np.isnan(v) | (v >= off) | (v <= -off))
        drawn = ~(bad | undrawn)
        gap = ~drawn
        gap_before = np.concatenate(([series.in_gap], gap[:-1]))
        row = drawn | (gap & ~gap_before)  # a value, or the NaN row where a gap starts
        codes = _HISTORY_CODES[q]
        codes[bad] = _INVALID
        y = np.where(drawn, v, math.nan)
        last_drawn = np.maximum.accumulate(np.where(drawn, np.arange(n), -1))
        if undrawn.any():
            marks = []
            for i in np.flatnonzero(undrawn):
                before = last_drawn[i]
                at = float(v[before]) if before >= 0 else series.last_y
                number = float(v[i])
                marker = undrawable(number, off) or "diamond"
                marks.append((float(t[i]), at, format_number(number), marker))
            self._mark(series, marks)
            series.undrawn_at = marks[-1][0]
        if last_drawn[-1] >= 0:
            series.last_y = float(v[last_drawn[-1]])
        series.in_gap = bool(gap[-1])
        rows_t = to_display_ms(t[row])
        if not math.isnan(series.last_t):
            rows_t = np.maximum(rows_t, series.last_t)
        series.last_t = float(rows_t[-1])
        series.carry = math.nan if series.in_gap else float(y[row][-1])
        series.recalled = int(row.sum())
        return {"t": rows_t, "y": y[row], "q": codes[row]}

    def _mark(self, series: _Series, marks: list[tuple[float, float, str, str]]) -> None:
        """Stream the marks of undrawn values (one update of the series' mark source)."""
        drawn = [m for m in marks if not math.isnan(m[1])]  # nothing drawn yet: no place
        if not drawn:
            return
        t = to_display_ms(np.asarray([m[0] for m in drawn], dtype=np.float64))
        new = {
            "t": list(map(float, t)),
            "y": [m[1] for m in drawn],
            "v": [m[2] for m in drawn],
            "marker": [m[3] for m in drawn],
        }
        series.undrawn.stream(new, rollover=self._history_points)
        series.undrawn_rows += len(drawn)

    def _apply(self, series: _Series, new: dict[str, np.ndarray] | None, now_ms: float) -> None:
        """At most one update of the series' source: a stream of the new rows, or nothing.

        The stream's ``rollover`` also drops the rows that left the time window: it keeps
        only the rows still inside it plus the new ones (and never more than
        ``history_points``), so time-bounding the history costs no extra message.

        But BokehJS (3.9, ``stream_to_column``) rolls a typed-array column over in place
        and never shortens it (bokeh issue 8690): a rollover below the rows held would
        leave the page's column at its length, with the new rows in the middle and older
        ones at its end, a line drawn back in time. So a stream never asks for fewer rows
        than are held (it drops at most as many as it brings); rows out of the window that
        this leaves (a tick brought fewer than left it) go with later streams, or, beyond
        ``SLACK_ROWS`` or an eighth of the rows, all at once by one replacement of the data.
        """
        self._now_ms = now_ms
        if new is None:
            return
        source = series.source
        t = source.data["t"]
        held = len(t)
        cutoff = now_ms - self._history_seconds * 1000.0
        aged = int(np.searchsorted(t, cutoff)) if held else 0
        keep = max(1, min(self._history_points, held - aged + len(new["t"])))
        if keep >= held:
            source.stream(new, rollover=keep)
        elif held - keep <= max(SLACK_ROWS, held // 8):
            source.stream(new, rollover=held)
        else:
            old = {k: np.asarray(source.data[k]) for k in ("t", "y", "q")}
            source.data = _joined(old, new, keep)
        series.rows_streamed += len(new["t"])

    def _cap_history(self, series: _Series) -> None:
        """Keep the newest ``history_points`` rows (when the control lowered it): one replace."""
        data = series.source.data
        series.source.data = {
            k: np.asarray(data[k])[-self._history_points :] for k in ("t", "y", "q")
        }

    def _carry_to(self, now_ms: float) -> None:
        """Redraw the "now" segments if one of them is wrong or lags by two pixels.

        A series in a gap gets an invisible segment instead, at its last drawn value: the
        x range follows "now" through an outage of every attribute (no line reaches it).
        """
        x0, x1, y, g = self._sent
        lag_ms = self.resolution * 1000.0
        resend = False
        for i, s in enumerate(self._series):
            drawn = not math.isnan(y[i])
            current = drawn and x0[i] == s.last_t and y[i] == s.carry
            # A segment left over from an earlier value is harmless under a step line only
            # while it ends before the newest point (the step line covers it).
            harmless = not drawn or (self.step and x1[i] <= s.last_t)
            if math.isnan(s.carry):
                resend |= not harmless
                if self._ghost(s):
                    resend |= g[i] != s.last_y or now_ms - x1[i] >= lag_ms
            elif current:
                resend |= now_ms - x1[i] >= lag_ms
            else:
                resend |= not harmless or now_ms - s.last_t >= lag_ms
        if not resend:
            return
        for i, s in enumerate(self._series):
            carry, ghost = not math.isnan(s.carry), self._ghost(s)
            x0[i] = s.last_t if carry or ghost else math.nan
            x1[i] = now_ms if carry or ghost else math.nan
            y[i] = s.carry if carry else math.nan
            g[i] = s.last_y if ghost else math.nan
        self._carry_source.data = self._carry_data()

    @staticmethod
    def _ghost(series: _Series) -> bool:
        """Whether ``series`` needs the invisible segment to "now" (in a gap, drawn before)."""
        return (
            series.in_gap
            and not series.retired
            and math.isnan(series.carry)
            and math.isfinite(series.last_y)
            and not math.isnan(series.last_t)
        )

    def _carry_data(self) -> dict[str, np.ndarray]:
        return {name: self._sent[row].copy() for row, name in enumerate(_CARRY)}

    # -- controls ------------------------------------------------------------------

    def clear(self) -> None:
        self._sent[:] = math.nan
        for series in self._series:
            series.last_t, series.carry, series.in_gap = math.nan, math.nan, False
            series.last_y, series.undrawn_at = math.nan, None
            series.source.data = _empty()
            series.undrawn.data = _no_marks()
        if self._model is not None:
            self._carry_source.data = self._carry_data()
        if self._archive is not None:
            self._archive.clear()

    def visible_ms(self, page: PageRanges | None = None) -> tuple[float, float]:
        """The x range the page shows (display ms): as the page synced it back, else the
        time window up to the latest update."""
        span = visible_span(self._figure, "x", page) if self._model is not None else None
        if span is not None:
            return span
        end = getattr(self, "_now_ms", math.inf)
        return end - self._history_seconds * 1000.0, end

    def shown(self, page: PageRanges | None = None) -> list[Shown]:
        """The points of visible series within the visible x range, live and archived
        together (per attribute and unit, in time order; on the loop: copies only)."""
        if self._model is None:
            return []
        start, end = self.visible_ms(page)
        found: list[Shown] = []
        for s in self._series:
            parts: list[tuple[np.ndarray, ...]] = []
            line = s.renderers[0]
            if line.visible and not line.muted:
                t, y, q = _rows_in(s.source.data["t"], s.source.data["y"], s.source.data["q"],
                                   start, end)  # fmt: skip
                marks = s.undrawn.data
                for mt, mv in zip(marks["t"], marks["v"], strict=False):
                    at = int(np.searchsorted(t, mt, "left"))  # the gap row a value left
                    if at < len(t) and t[at] == mt and math.isnan(y[at]):
                        with contextlib.suppress(ValueError):
                            y[at] = float(str(mv).replace("∞", "inf").replace("\u2212", "-"))
                parts.append((from_display_ms(t), y, q, np.zeros(len(t), dtype=np.uint8)))
            if self._archive is not None and not s.retired:
                archived = self._archive.shown_rows(s.attribute, start, end)
                if archived is not None:
                    parts.insert(0, archived)
            if not parts or not sum(len(p[0]) for p in parts):
                continue
            t, y, q, origin = (np.concatenate(c) for c in zip(*parts, strict=True))
            order = np.argsort(t, kind="stable")
            info = s.info
            label = s.label if s.label != s.attribute or info is None else info.label or s.label
            found.append(
                Shown(
                    s.attribute,
                    label,
                    "scalar",
                    t[order],
                    y[order],
                    q[order],
                    origin[order],
                    unit=s.unit or "",
                    display_format=info.display_format if info is not None else "",
                )
            )
        return found

    def to_csv(self) -> str:
        """Displayed points, long format: attribute, local time, value, quality; values not
        drawn (NaN, ±inf, off scale) as the device sent them, where their gap is."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["attribute", "label", "time", "value", "quality"])
        cutoff = getattr(self, "_now_ms", math.inf) - self._history_seconds * 1000.0
        for s in self._series:
            data, undrawn = s.source.data, s.undrawn.data
            rows = [
                (float(t), "" if math.isnan(y) else repr(float(y)), QUALITY_BY_CODE[int(q)])
                for t, y, q in zip(data["t"], data["y"], data["q"], strict=True)
            ]
            rows += [(float(t), v, "") for t, v in zip(undrawn["t"], undrawn["v"], strict=True)]
            rows.sort(key=lambda row: row[0])  # stable: a mark after its gap row
            for t, shown, quality in rows:
                if t < cutoff:
                    continue  # left the window: no longer displayed
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t / 1000.0))
                stamp += f".{int(t % 1000):03d}"
                writer.writerow([s.attribute, s.label, stamp, shown, quality])
        return out.getvalue()


def _rows_in(
    t: Any, y: Any, q: Any, start: float, end: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copies of the rows with ``start <= t <= end`` (columns read as one consistent length)."""
    n = min(len(t), len(y), len(q))
    t, y, q = np.asarray(t)[:n], np.asarray(y)[:n], np.asarray(q)[:n]
    lo, hi = int(np.searchsorted(t, start, "left")), int(np.searchsorted(t, end, "right"))
    return (np.array(t[lo:hi], dtype=np.float64), np.array(y[lo:hi], dtype=np.float64),
            np.array(q[lo:hi], dtype=np.uint8))  # fmt: skip


def _joined(first: dict[str, np.ndarray], then: dict[str, np.ndarray], limit: int) -> dict:
    """Rows of ``first`` followed by those of ``then``, the newest ``limit`` of them."""
    return {key: np.concatenate((first[key], then[key]))[-limit:] for key in first}
