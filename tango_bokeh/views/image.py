"""Images: a colour-mapped 2-D attribute, decimated on the server to what the screen shows.

Only the newest frame of a tick is sent (a camera pushing 10-20 Hz costs one
frame per tick, not one per event), and a frame larger than ``max_display`` is
reduced first by an integer *block mean* (each displayed pixel is the mean of
an ``f x f`` block, ``f`` the smallest integer that fits the frame into
``max_display``; unlike striding it does not alias and keeps the picture's
signal-to-noise). Integer cameras keep their
integer type after the mean (a 16-bit frame travels as 2 bytes per pixel).
Nothing but the displayed frame is kept, and a frame equal to the one on
screen (a polled camera that did not change) is not sent again: only the
title's time moves. float64 frames travel as float32.

Rows are drawn top-down, as cameras and image viewers number them (row 0 at
the top), with the aspect ratio of the frame. The colour range is fixed
(``range=(low, high)``) or automatic: then the browser scales each frame to
its own minimum and maximum, which costs no message at all.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

import bokeh.palettes
import numpy as np
from bokeh.layouts import column
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
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
from .palette import QUALITY_CODES
from .panel import PanelView
from .spectrum import _newest_frame
from .style import PANEL_STYLES, style_figure

#: dtypes bokeh sends as binary buffers; anything else is converted to float32.
_WIRE_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}


def decimation_factor(shape: tuple[int, int], max_display: tuple[int, int]) -> int:
    """The smallest integer block size that fits an (H, W) frame into (W, H) pixels."""
    height, width = shape
    max_w, max_h = max_display
    return max(1, math.ceil(width / max_w), math.ceil(height / max_h))


def decimate(frame: np.ndarray, factor: int) -> np.ndarray:
    """Block mean of ``factor x factor`` pixels (edges that do not fill a block are cut).

    Computed as ``factor`` strided additions per axis into an integer (or float)
    accumulator, several times faster than a reshape-and-mean. Integer frames
    stay integer (rounded mean) so that they travel compactly.
    """
    if factor <= 1:
        return frame
    if frame.dtype == np.bool_:
        frame = frame.view(np.uint8)
    height, width = (frame.shape[0] // factor) * factor, (frame.shape[1] // factor) * factor
    integer = np.issubdtype(frame.dtype, np.integer)
    if integer:
        small = frame.dtype.itemsize <= 2 and factor <= 256  # the sum fits in 32 bits
        unsigned = np.issubdtype(frame.dtype, np.unsignedinteger)
        acc = (
            (np.uint32 if unsigned else np.int32)
            if small
            else (np.uint64 if unsigned else np.int64)
        )
    else:
        acc = np.float64 if frame.dtype.itemsize > 4 else np.float32
    rows = np.zeros((height // factor, width), acc)
    for i in range(factor):
        rows += frame[i:height:factor, :width]
    blocks = np.zeros((height // factor, width // factor), acc)
    for j in range(factor):
        blocks += rows[:, j::factor]
    count = factor * factor
    if integer and frame.dtype.name in _WIRE_DTYPES:
        return ((blocks + count // 2) // count).astype(frame.dtype)
    return (blocks / count).astype(np.float32)


#: float32 holds every value up to here (and ~7 significant digits: more than a colour map shows).
_FLOAT32_MAX = float(np.finfo(np.float32).max) / 2


def for_the_wire(frame: np.ndarray) -> np.ndarray:
    """The smallest dtype that bokeh sends as a binary buffer and that holds the frame.

    Integer frames keep their type; float64 frames travel as float32 (half the
    bytes) unless a value would not fit.
    """
    if frame.dtype == np.bool_:
        return frame.astype(np.uint8)
    if frame.dtype == np.float64:
        finite = np.abs(frame[np.isfinite(frame)]) if frame.size else frame
        if finite.size == 0 or float(finite.max()) < _FLOAT32_MAX:
            return frame.astype(np.float32)
        return np.ascontiguousarray(frame)
    if frame.dtype.name not in _WIRE_DTYPES:
        return frame.astype(np.float32)
    return np.ascontiguousarray(frame)


def _within(centres: np.ndarray, span: tuple[float, float] | None) -> np.ndarray:
    """Which pixel centres lie within the visible span (all when it is unknown)."""
    if span is None:
        return np.ones(len(centres), dtype=bool)
    return (centres >= span[0]) & (centres <= span[1])


def _palette(palette: str | Sequence[str]) -> Sequence[str]:
    if isinstance(palette, str):
        try:
            return getattr(bokeh.palettes, palette)
        except AttributeError:
            raise ValueError(f"unknown bokeh palette {palette!r} (e.g. 'Viridis256')") from None
    return list(palette)


class Image(PanelView):
    """A colour-mapped image with a colour bar; at most one (decimated) frame per tick.

    ``range=(low, high)`` fixes the colour scale (default: each frame's own
    minimum and maximum); ``max_display=(width, height)`` is the largest size in
    screen pixels, and frames larger than that are block-averaged before sending.
    """

    def __init__(
        self,
        attribute: str,
        *,
        palette: str | Sequence[str] = "Viridis256",
        range: tuple[float, float] | None = None,
        max_display: tuple[int, int] = (400, 400),
        title: str | None = None,
    ) -> None:
        super().__init__((attribute,), title=title)
        self.attribute = attribute
        self.palette = _palette(palette)
        self.value_range = range
        self.max_display = (int(max_display[0]), int(max_display[1]))
        self._shape: tuple[int, int] | None = None  # of the frames received
        self._shown: np.ndarray | None = None  # the displayed (decimated) frame: all we keep
        self._shown_time: float | None = None
        self._shown_quality: Quality = Quality.VALID
        self._factor = 1
        self._problem: Problem | None = None
        self._info: AttributeInfo | None = None
        self.frames_sent = 0

    def build(self) -> LayoutDOM:
        max_w, max_h = self.max_display
        fig = figure(
            title=self.title or self.attribute,
            x_range=Range1d(0, 1),
            y_range=Range1d(1, 0),  # row 0 at the top
            frame_width=max_w,
            frame_height=max_h,
            tools="pan,wheel_zoom,box_zoom,reset,save",
            active_drag="box_zoom",
            toolbar_location="above",
        )
        style_figure(fig)
        fig.grid.visible = False
        fig.xaxis.axis_label = "column (pixel)"
        fig.yaxis.axis_label = "row (pixel)"
        self._figure = fig
        low, high = self.value_range if self.value_range else (None, None)
        self._colors = LinearColorMapper(palette=self.palette, low=low, high=high)
        self._source = ColumnDataSource(data={"image": [], "x": [], "y": [], "dw": [], "dh": []})
        image = fig.image(
            image="image",
            x="x",
            y="y",
            dw="dw",
            dh="dh",
            source=self._source,
            color_mapper=self._colors,
        )
        fig.add_layout(
            ColorBar(
                color_mapper=self._colors,
                width=14,
                padding=4,
                major_label_text_font_size="11px",
                title_text_font_size="11px",
                title_text_font_style="normal",
            ),
            "right",
        )
        fig.add_tools(
            HoverTool(
                renderers=[image],
                tooltips=[("column", "$x{0}"), ("row", "$y{0}"), ("value", "@image{%.6g}")],
                formatters={"@image": "printf"},
            )
        )
        return column(
            self._banner.model,
            fig,
            sizing_mode="stretch_width",
            styles={**PANEL_STYLES, "align-items": "center"},
        )

    def draw(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        self._learn(states.get(self.attribute))
        frame = _newest_frame(batch.get(self.attribute)) if self._problem is None else None
        if frame is not None:
            self._show(frame)

    def _learn(self, state: AttributeState | None) -> None:
        info = state.info if state is not None else None
        if info is None or self._info is info:
            return
        self._info = info
        problem = unsuitable(
            self.attribute, info, Format.IMAGE, "is an image of {kind}s: an Image shows numbers"
        )
        if problem is not None:
            self._problem = problem
        elif info.unit:
            self._figure.right[0].title = info.unit

    def _own_problems(self) -> dict[str, Problem]:
        return {self.attribute: self._problem} if self._problem else {}

    def _show(self, sample: Sample) -> None:
        frame = np.asarray(sample.value)
        if frame.ndim != 2:
            self._problem = Problem(
                self.attribute, Level.ERROR, f"has {frame.ndim}-D values: an Image shows 2-D frames"
            )
            return
        if frame.size == 0:
            return
        shape = (int(frame.shape[0]), int(frame.shape[1]))
        if shape != self._shape:
            self._resize(shape)
        shown = for_the_wire(decimate(frame, self._factor))
        previous = self._shown
        unchanged = (
            previous is not None
            and previous.shape == shown.shape
            and previous.dtype == shown.dtype
            and np.array_equal(previous, shown, equal_nan=shown.dtype.kind == "f")
        )
        if not unchanged:  # a polled constant image costs a title change, not a frame
            height, width = shown.shape[0] * self._factor, shown.shape[1] * self._factor
            self._source.data = {
                "image": [shown], "x": [0], "y": [0], "dw": [width], "dh": [height],
            }  # fmt: skip
            self.frames_sent += 1
        self._shown, self._shown_time = shown, sample.time
        self._shown_quality = sample.quality
        reduced = f" · {shape[1]}x{shape[0]}" + (f" (1/{self._factor})" if self._factor > 1 else "")
        self._figure.title.text = f"{self.title or self.attribute} · {clock(sample.time)}{reduced}"

    def _resize(self, shape: tuple[int, int]) -> None:
        """Fit a new frame size into ``max_display`` keeping its aspect ratio."""
        self._shape = shape
        height, width = shape
        self._factor = decimation_factor(shape, self.max_display)
        max_w, max_h = self.max_display
        scale = min(max_w / width, max_h / height)
        fig = self._figure
        fig.frame_width = max(50, round(width * scale))
        fig.frame_height = max(50, round(height * scale))
        used_w = (width // self._factor) * self._factor
        used_h = (height // self._factor) * self._factor
        fig.x_range.update(start=0, end=used_w)
        fig.y_range.update(start=used_h, end=0)

    @property
    def displayed(self) -> np.ndarray | None:
        """The frame as sent to the browser (decimated), or None."""
        return self._shown

    def clear(self) -> None:
        self._shown = self._shown_time = None
        if self._model is not None:
            self._source.data = {"image": [], "x": [], "y": [], "dw": [], "dh": []}

    def shown(self, page: PageRanges | None = None) -> list[Shown]:
        """The frame shown (as displayed: block-averaged when the view reduces it), the
        pixels within the visible x/y ranges, with its Tango time and quality."""
        if self._shown is None or self._shown_time is None:
            return []
        factor = self._factor
        rows = (np.arange(self._shown.shape[0]) + 0.5) * factor  # pixel centres, full frame
        cols = (np.arange(self._shown.shape[1]) + 0.5) * factor
        fig = self._figure
        keep_r = _within(rows, visible_span(fig, "y", page))
        keep_c = _within(cols, visible_span(fig, "x", page))
        info = self._info
        return [
            Shown(
                self.attribute, (info.label if info is not None else "") or self.attribute,
                "image", np.array([self._shown_time]),
                np.array(self._shown[np.ix_(keep_r, keep_c)]),
                np.array([QUALITY_CODES.get(self._shown_quality, 0)], dtype=np.uint8),
                unit=info.unit if info is not None else "",
                display_format=info.display_format if info is not None else "",
                x=np.flatnonzero(keep_c) * factor, y=np.flatnonzero(keep_r) * factor,
                step=factor,
                notes=[f"block-averaged {factor}x{factor} as displayed"] if factor > 1 else [],
            )
        ]  # fmt: skip

    def to_csv(self) -> str:
        """The displayed (decimated) frame, one CSV row per image row."""
        out = io.StringIO()
        if self._shown is None:
            return ""
        writer = csv.writer(out, lineterminator="\n")
        for row in self._shown:
            writer.writerow([repr(v) for v in row.tolist()])
        return out.getvalue()
