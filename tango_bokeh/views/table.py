"""Value / state tables: one row per attribute, in the colours operators know.

Each row shows the attribute's label, its value formatted as the device asks
(Tango ``format``, unit, enum label), the quality as a coloured badge, a
DevState value as a badge in the operator palette, the Tango timestamp, how it
is acquired (event type or polling, with the period when polling reads it less
often than asked, "stale" when the device went quiet) and the current error.
Each tick sends at most one ``patch`` with just the cells that changed, and
nothing when none did.

Text from devices is HTML-escaped by the cell templates (``<%- %>``); badge
text is black or white, whichever contrasts more with the badge colour.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
from collections.abc import Mapping, Sequence

import numpy as np
from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    LayoutDOM,
    TableColumn,
)

from ..tango.modes import Mode
from ..tango.sample import AttributeInfo, Format, Kind, Quality, Sample
from .banner import Level, Onsets, Problem, attribute_problem, clock, poll_mode_text
from .base import AttributeState
from .palette import ERROR_TEXT, MODE_TEXT, QUALITY_COLORS, STALE_COLOR, state_color, text_color
from .panel import PanelView
from .style import FONT, PANEL_STYLES

COLUMNS = (
    "label",
    "value",
    "value_bg",
    "value_fg",
    "quality",
    "quality_bg",
    "quality_fg",
    "time",
    "mode",
    "mode_fg",
    "error",
)

_BADGE = (
    '<span style="background:<%= {bg} %>;color:<%= {fg} %>;padding:1px 8px;'
    'border-radius:3px;font-weight:600;border:1px solid rgba(0,0,0,0.25)"><%- {text} %></span>'
)
_VALUE = (
    "<% if (value_bg) { %>"
    + _BADGE.format(bg="value_bg", fg="value_fg", text="value")
    + '<% } else { %><span style="font-variant-numeric:tabular-nums"><%- value %></span><% } %>'
)
_QUALITY = (
    "<% if (quality) { %>"
    + _BADGE.format(bg="quality_bg", fg="quality_fg", text="quality")
    + "<% } %>"
)
_PLAIN = '<span title="<%- value %>"><%- value %></span>'
_MODE = '<span style="color:<%= mode_fg %>"><%- value %></span>'
#: Browser side of a patch: redraw only the cells whose data changed (see ValueTable.build).
_REDRAW_CELLS = """
const data = table.source.data
const needs = {value: ["value", "value_bg", "value_fg"],
               quality: ["quality", "quality_bg", "quality_fg"], mode: ["mode", "mode_fg"]}
const index = window.Bokeh != null ? window.Bokeh.index : null
let redrawn = false
if (index != null && typeof index.find == "function") {
    for (const view of index.find(table)) {
        const grid = view.grid
        if (grid == null || typeof grid.updateCell != "function") continue
        const last = view._tango_bokeh_cells ?? {}
        const columns = grid.getColumns()
        const rows = data[columns[0].field].length
        columns.forEach((column, c) => {
            const fields = needs[column.field] ?? [column.field]
            for (let r = 0; r < rows; r++) {
                if (fields.some((f) => last[f] == null || last[f][r] !== data[f][r])) {
                    grid.updateCell(r, c)
                }
            }
        })
        view._tango_bokeh_cells = Object.fromEntries(
            Object.keys(data).map((k) => [k, Array.from(data[k])]))
        redrawn = true
    }
}
if (!redrawn) table.view.change.emit()
"""
_ERROR = f'<span style="color:{ERROR_TEXT}" title="<%- value %>"><%- value %></span>'


def format_value(info: AttributeInfo | None, value: object) -> str:
    """A value as the device's configuration says to show it, with its unit."""
    if value is None:
        return "—"
    if info is None:
        return str(value)
    if info.format is Format.IMAGE and isinstance(value, np.ndarray):
        return f"[{value.shape[-1]}x{value.shape[0]} image]"
    if info.format is Format.SPECTRUM:
        size = len(value) if hasattr(value, "__len__") else 1
        return f"[{size} values]"
    text = info.format_value(value)
    if info.kind is Kind.NUMBER and info.unit:
        text = f"{text.strip()} {info.unit}"
    return text.strip() if info.kind is Kind.NUMBER else text


def row_for(
    label: str, state: AttributeState | None, last: Sample | None, onsets: Onsets | None = None
) -> dict[str, str]:
    """The cells of one attribute's row.

    With ``onsets``, a row in trouble shows when the trouble began (time and error
    cells stay put while every poll fails) instead of the time of the latest failure.
    """
    info = state.info if state is not None else None
    mode = state.mode if state is not None else Mode.PENDING
    row = dict.fromkeys(COLUMNS, "")
    row["label"] = label
    row["mode"] = poll_mode_text(state) or MODE_TEXT.get(mode, str(mode))
    row["mode_fg"] = "#4b5563"
    if last is None:
        row["value"] = "…" if mode is not Mode.FAILED else "—"
    else:
        ok = last.error is None and last.value is not None
        row["value"] = format_value(info, last.value) if ok else "—"
        if ok and info is not None and info.kind is Kind.STATE:
            row["value_bg"] = state_color(str(last.value))
            row["value_fg"] = text_color(row["value_bg"])
        quality = Quality.INVALID if not ok else last.quality
        row["quality"] = str(quality)
        row["quality_bg"] = QUALITY_COLORS[quality]
        row["quality_fg"] = text_color(row["quality_bg"])
        row["time"] = clock(last.time)
        if last.stale:
            row["mode"] = f"stale · {row['mode']}"
            row["mode_fg"] = STALE_COLOR
    if mode is Mode.FAILED:
        row["mode_fg"] = ERROR_TEXT
    problem = attribute_problem(label, state, last)
    if onsets is not None:
        onsets.update([problem] if problem is not None else [])
    if problem is None:
        row["error"] = ""
    elif onsets is None:
        row["error"] = " ".join(filter(None, (problem.text, problem.detail)))
    else:
        row["error"] = " ".join(filter(None, (problem.text, onsets.detail(problem))))
        start = onsets.start(problem)
        if start is not None:
            row["time"] = clock(start)
    return row


class ValueTable(PanelView):
    """A table of scalar attributes: value, quality, state colours, time, mode, error."""

    def __init__(
        self,
        attributes: Sequence[str] | str,
        *,
        labels: Sequence[str] | None = None,
        title: str | None = None,
    ) -> None:
        if isinstance(attributes, str):
            attributes = (attributes,)
        super().__init__(attributes, title=title)
        if labels is not None and len(labels) != len(self.attributes):
            raise ValueError("ValueTable: give one label per attribute")
        self.labels = tuple(labels) if labels else self.attributes
        self._rows: list[dict[str, str]] = [row_for(label, None, None) for label in self.labels]
        self._onsets = [Onsets() for _ in self.labels]  # when each row's trouble began
        #: Per row, the configuration last seen and the one it replaced.
        self._configs: list[tuple[AttributeInfo | None, AttributeInfo | None]] = [
            (None, None) for _ in self.labels
        ]
        self.patches_sent = 0

    def build(self) -> LayoutDOM:
        self._source = ColumnDataSource(
            data={name: [row[name] for row in self._rows] for name in COLUMNS}
        )

        def col(field: str, title: str, width: int, template: str) -> TableColumn:
            return TableColumn(
                field=field,
                title=title,
                width=width,
                formatter=HTMLTemplateFormatter(template=template),
                sortable=False,
            )

        columns = [
            col("label", "Attribute", 190, _PLAIN),
            col("value", "Value", 150, _VALUE),
            col("quality", "Quality", 90, _QUALITY),
            col("time", "Time", 100, _PLAIN),
            col("mode", "Acquisition", 150, _MODE),
            col("error", "Error", 260, _ERROR),
        ]
        self._table = DataTable(
            source=self._source,
            columns=columns,
            index_position=None,
            row_height=28,
            height=32 + 28 * len(self._rows) + 4,
            sizing_mode="stretch_width",
            selectable=False,
            editable=False,
            reorderable=False,
        )
        # bokeh 3.9's DataTable redraws only when its CDSView's indices change, which a
        # patch (same rows) never does. Redraw just the cells whose data changed: the
        # others (a state badge that did not change) stay the same DOM elements.
        self._source.js_on_change(
            "patching", CustomJS(args={"table": self._table}, code=_REDRAW_CELLS)
        )
        self._source.js_on_change(
            "data", CustomJS(args={"view": self._table.view}, code="view.change.emit()")
        )
        header = Div(
            text=_title_html(self.title or "Values"),
            sizing_mode="stretch_width",
            margin=(0, 0, 4, 0),
        )
        return column(
            header,
            self._banner.model,
            self._table,
            sizing_mode="stretch_width",
            styles=PANEL_STYLES,
        )

    def draw(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        patches: dict[str, list[tuple[int, str]]] = {}
        for index, (name, label) in enumerate(zip(self.attributes, self.labels, strict=True)):
            state = self._in_force(index, states.get(name), self._last.get(name))
            row = row_for(label, state, self._last.get(name), self._onsets[index])
            old = self._rows[index]
            for key, value in row.items():
                if old[key] != value:
                    patches.setdefault(key, []).append((index, value))
            self._rows[index] = row
        if patches:
            self._source.patch(patches)
            self.patches_sent += 1

    def _in_force(
        self, index: int, state: AttributeState | None, last: Sample | None
    ) -> AttributeState | None:
        """``state`` with the configuration ``last`` was taken under: a value sent before a
        unit or format change is shown as it was meant, until the next value comes."""
        info = state.info if state is not None else None
        seen, previous = self._configs[index]
        if info is not None and info is not seen:
            previous = seen if seen is not None and seen != info else previous
            self._configs[index] = (info, previous)
        since = info.since if info is not None else None
        if state is None or last is None or previous is None or since is None:
            return state
        return dataclasses.replace(state, info=previous) if last.time < since else state

    def _refresh_banner(self) -> None:
        """Attribute problems are in the rows; the banner only reports the view's own failure."""
        if self._failure:
            self._banner.show([Problem(self.title or "table", Level.ERROR, self._failure)])
        else:
            self._banner.show([])

    @property
    def rows(self) -> list[dict[str, str]]:
        """The cells as displayed (what tests and exports read)."""
        return [dict(row) for row in self._rows]

    def clear(self) -> None:
        """Forget the values shown (rows come back with the next samples)."""
        self._last.clear()
        for index, label in enumerate(self.labels):
            self._rows[index] = row_for(label, self._states.get(self.attributes[index]), None)
        if self._model is not None:
            self._source.data = {name: [row[name] for row in self._rows] for name in COLUMNS}

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["attribute", "label", "value", "quality", "time", "acquisition", "error"])
        for name, row in zip(self.attributes, self._rows, strict=True):
            writer.writerow(
                [
                    name,
                    row["label"],
                    row["value"],
                    row["quality"],
                    row["time"],
                    row["mode"],
                    row["error"],
                ]
            )
        return out.getvalue()


def _title_html(text: str) -> str:
    return (
        f'<div style="font: bold 14px {FONT};color:#1f2937;padding:2px 0">{html.escape(text)}</div>'
    )
