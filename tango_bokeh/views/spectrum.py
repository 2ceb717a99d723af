"""Spectra: a 1-D attribute as a line, replaced at most once per tick.

Only the newest frame of a tick is drawn (frames arriving faster than the
tick are coalesced). Values travel as float32 (half the bytes of float64;
seven significant digits are plenty for a plot); the CSV export uses the
frame as received. With ``persistence=N`` the previous N frames stay drawn,
fading with age: each tick streams just the frame that became a ghost into a
rolling source (``rollover=N``) and moves the colour mapper's window by one,
so the wire cost is one frame plus two numbers, whatever N is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np
from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    HoverTool,
    LayoutDOM,
    LinearColorMapper,
    Range1d,
)
from bokeh.plotting import figure

from ..tango.sample import AttributeInfo, Format, Quality, Sample
from .banner import Level, Problem, clock, unsuitable
from .base import AttributeState
from .export_formats import PageRanges, Shown, visible_span
from .palette import QUALITY_CODES, SERIES_COLORS, fade
from .panel import PanelView
from .style import PANEL_STYLES, style_figure


def _newest_frame(samples: Sequence[Sample] | None) -> Sample | None:
    """The newest sample of the tick that carries data (older ones are coalesced away)."""
    for sample in reversed(samples or ()):
        if sample.ok:
            return sample
    return None


class Spectrum(PanelView):
    """A line plot of a spectrum attribute, optionally against another attribute as x.

    ``persistence`` keeps that many previous frames, fading; ``y_range=(low, high)``
    fixes the y axis (else it autoscales); ``log_y`` for spectra spanning decades.
    """

    def __init__(
        self,
        attribute: str,
        *,
        x_attribute: str | None = None,
        persistence: int = 0,
        y_range: tuple[float, float] | None = None,
        log_y: bool = False,
        title: str | None = None,
        height: int = 300,
        color: str = SERIES_COLORS[0],
    ) -> None:
        super().__init__(
            (attribute,) if x_attribute is None else (attribute, x_attribute), title=title
        )
        self.attribute = attribute
        self.x_attribute = x_attribute
        self.persistence = max(0, int(persistence))
        self.y_range = y_range
        self.log_y = log_y
        self.height = height
        self.color = color
        self._frame: np.ndarray | None = None  # newest frame as received (for CSV)
        self._frame_time: float | None = None
        self._frame_quality: Quality | None = None
        self._x: np.ndarray | None = None  # newest x attribute value
        self._shown_x: np.ndarray | None = None  # the x array the browser has
        self._problem: Problem | None = None
        self._info: AttributeInfo | None = None
        self._x_info: AttributeInfo | None = None
        self._ghosts = 0  # frames streamed into the ghost source so far
        self.frames_sent = 0

    # -- building ----------------------------------------------------------------

    def build(self) -> LayoutDOM:
        fig = figure(
            title=self.title or self.attribute,
            y_axis_type="log" if self.log_y else "linear",
            y_range=Range1d(*self.y_range) if self.y_range else DataRange1d(only_visible=True),
            x_range=DataRange1d(range_padding=0.0),
            height=self.height,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            active_drag="box_zoom",
        )
        style_figure(fig)
        fig.xaxis.axis_label = "index"
        self._figure = fig
        self._source = ColumnDataSource(
            data={"x": np.empty(0, np.float32), "y": np.empty(0, np.float32)}
        )
        if self.persistence:
            palette = [fade(self.color, 0.92 - 0.67 * i / 255) for i in range(256)]
            self._ghost_colors = LinearColorMapper(palette=palette, low=0, high=1)
            self._ghost_source = ColumnDataSource(data={"xs": [], "ys": [], "k": np.empty(0)})
            fig.multi_line(
                "xs",
                "ys",
                source=self._ghost_source,
                line_width=1.5,
                line_color={"field": "k", "transform": self._ghost_colors},
            )
        line = fig.line("x", "y", source=self._source, color=self.color, line_width=1.8)
        fig.add_tools(
            HoverTool(
                renderers=[line],
                mode="vline",
                tooltips=[("x", "@x{%.6g}"), ("y", "@y{%.6g}")],
                formatters={"@x": "printf", "@y": "printf"},
            )
        )
        return column(self._banner.model, fig, sizing_mode="stretch_width", styles=PANEL_STYLES)

    # -- data ----------------------------------------------------------------------

    def draw(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        self._learn(states)
        frame = _newest_frame(batch.get(self.attribute)) if self._problem is None else None
        if self.x_attribute is not None:
            x_sample = _newest_frame(batch.get(self.x_attribute))
            if x_sample is not None:
                self._x = np.asarray(x_sample.value, dtype=np.float64).ravel()
        if frame is not None:
            try:
                values = np.asarray(frame.value, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                self._problem = Problem(
                    self.attribute, Level.ERROR, "has values that are not numbers"
                )
            else:
                self._frame_quality = frame.quality
                self._show(values, frame.time)
        elif self._frame is not None and self._x_changed():
            self._show(self._frame, self._frame_time or now)

    def _learn(self, states: Mapping[str, AttributeState]) -> None:
        """Axis labels and type checks, whenever an attribute's configuration is new."""
        state = states.get(self.attribute)
        info = state.info if state is not None else None
        if info is not None and info is not self._info:
            self._info = info
            self._problem = (
                unsuitable(
                    self.attribute,
                    info,
                    Format.SPECTRUM,
                    "is a spectrum of {kind}s: a Spectrum plots numbers",
                )
                or self._problem
            )
            self._figure.yaxis.axis_label = _axis_label(info)
        if self.x_attribute:
            x_state = states.get(self.x_attribute)
            if x_state is not None and x_state.info not in (None, self._x_info):
                self._x_info = x_state.info
                self._figure.xaxis.axis_label = _axis_label(x_state.info)

    def _own_problems(self) -> dict[str, Problem]:
        found = {self.attribute: self._problem} if self._problem else {}
        if (
            self.x_attribute
            and self._x is not None
            and self._frame is not None
            and len(self._x) != len(self._frame)
        ):
            found[self.x_attribute] = Problem(
                self.x_attribute,
                Level.WARNING,
                f"has {len(self._x)} values for {len(self._frame)} points: plotting against index",
            )
        return found

    def _x_for(self, n: int) -> np.ndarray:
        if self._x is not None and len(self._x) == n:
            return self._x.astype(np.float32)
        return np.arange(n, dtype=np.float32)

    def _x_changed(self) -> bool:
        if self._frame is None:
            return False
        x = self._x_for(len(self._frame))
        return self._shown_x is None or not np.array_equal(x, self._shown_x)

    def _show(self, values: np.ndarray, when: float) -> None:
        """One update of the line's source (plus one ghost) for the newest frame."""
        if self.persistence and self._frame is not None:
            self._push_ghost()
        self._frame, self._frame_time = values, when
        y = values.astype(np.float32)
        x = self._x_for(len(values))
        if self._shown_x is not None and np.array_equal(x, self._shown_x):
            self._source.data["y"] = y  # the browser keeps its x: only y travels
        else:
            self._source.data = {"x": x, "y": y}
            self._shown_x = x
        self.frames_sent += 1

    def _push_ghost(self) -> None:
        """Stream the frame being replaced into the fading ghosts (rollover = persistence)."""
        x, y = self._source.data["x"], self._source.data["y"]
        self._ghosts += 1
        self._ghost_source.stream(
            {"xs": [x], "ys": [y], "k": np.array([float(self._ghosts)])},
            rollover=self.persistence,
        )
        self._ghost_colors.update(low=self._ghosts - self.persistence, high=self._ghosts)

    # -- controls ------------------------------------------------------------------

    def clear(self) -> None:
        self._frame = self._frame_time = None
        if self._model is None:
            return
        self._source.data = {"x": np.empty(0, np.float32), "y": np.empty(0, np.float32)}
        self._shown_x = None
        if self.persistence:
            self._ghost_source.data = {"xs": [], "ys": [], "k": np.empty(0)}

    def shown(self, page: PageRanges | None = None) -> list[Shown]:
        """The frame shown, channels within the visible x range, with its Tango time."""
        if self._frame is None or self._frame_time is None:
            return []
        frame = self._frame
        x = self._x if self._x is not None and len(self._x) == len(frame) else None
        axis = x if x is not None else np.arange(len(frame), dtype=np.float64)
        span = visible_span(self._figure, "x", page)
        keep = np.ones(len(frame), dtype=bool)
        if span is not None:
            keep = (axis >= span[0]) & (axis <= span[1])
        info = self._info
        quality = QUALITY_CODES.get(self._frame_quality or Quality.VALID, 0)
        return [
            Shown(
                self.attribute, (info.label if info is not None else "") or self.attribute,
                "spectrum", np.array([self._frame_time]), np.array(frame[keep]),
                np.array([quality], dtype=np.uint8), unit=info.unit if info is not None else "",
                display_format=info.display_format if info is not None else "",
                x=np.array(axis[keep]), x_name=self.x_attribute if x is not None else "index",
            )
        ]  # fmt: skip

    def to_csv(self) -> str:
        """The displayed frame as received: one row per point (x or index, value)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        frame = self._frame if self._frame is not None else np.empty(0)
        x = self._x if self._x is not None and len(self._x) == len(frame) else None
        stamp = f" at {clock(self._frame_time)}" if self._frame_time is not None else ""
        writer.writerow([self.x_attribute if x is not None else "index", self.attribute + stamp])
        for i, value in enumerate(frame):
            writer.writerow([repr(float(x[i])) if x is not None else i, repr(float(value))])
        return out.getvalue()


def _axis_label(info: AttributeInfo) -> str:
    label = info.label or info.name
    return f"{label} [{info.unit}]" if info.unit else label
