"""Gauge: one value in big figures, for the control-room wall (a view kind of its own).

The whole kind is this module: the view, its options, and its registration
(:func:`~.kinds.register`), which the dashboard schema (``gauge:`` panels),
the builder, the name check and automatic choice pick up from the registry.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator, Mapping, Sequence

from bokeh.layouts import column
from bokeh.models import Div, LayoutDOM

from ..tango.sample import Kind, Quality, Sample
from .base import AttributeState
from .kinds import SCALAR, ViewKind, register
from .options import AttributeRef, Strict
from .palette import QUALITY_COLORS, state_color, text_color
from .panel import PanelView
from .style import PANEL_STYLES
from .table import format_value


class Gauge(PanelView):
    """The newest value of one scalar attribute, large, on its quality (or state) colour.

    The figure changes only when the text or colour shown does (one small message).
    """

    def __init__(self, attribute: str, *, title: str | None = None) -> None:
        super().__init__((attribute,), title=title)
        self.attribute = attribute
        self.shown = ""

    def build(self) -> LayoutDOM:
        self.shown = self._html("…", "#eef1f5")
        self._figure = Div(text=self.shown, sizing_mode="stretch_width")
        return column(
            self._banner.model, self._figure, sizing_mode="stretch_width", styles=PANEL_STYLES
        )

    def draw(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        last = self._last.get(self.attribute)
        if last is not None:
            state = states.get(self.attribute)
            info = state.info if state is not None else None
            ok = last.error is None and last.value is not None
            text = format_value(info, last.value) if ok else "—"
            if ok and info is not None and info.kind is Kind.STATE:
                colour = state_color(str(last.value))
            else:
                colour = QUALITY_COLORS[last.quality if ok else Quality.INVALID]
            shown = self._html(text, colour)
            if shown != self.shown:
                self.shown = self._figure.text = shown

    def _html(self, text: str, colour: str) -> str:
        return (
            f"<div style='background:{colour};color:{text_color(colour)};border-radius:6px;"
            "padding:10px 16px;text-align:center;font:600 48px system-ui,sans-serif'>"
            f"<div style='font-size:14px;font-weight:400'>"
            f"{html.escape(self.title or self.attribute)}</div>{html.escape(text)}</div>"
        )


class GaugeOptions(Strict):
    """One scalar attribute in big figures, on its quality or state colour."""

    attribute: AttributeRef

    def attribute_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        yield ("attribute",), self.attribute


def _build(options: GaugeOptions, qualify: Callable[[str], str]) -> Gauge:
    return Gauge(qualify(options.attribute), title=getattr(options, "title", None))


register(ViewKind("gauge", Gauge, GaugeOptions, _build, SCALAR,
                  frozenset({Kind.NUMBER, Kind.BOOL, Kind.STATE, Kind.ENUM, Kind.STRING}),
                  summary="one value in big figures"))  # fmt: skip
