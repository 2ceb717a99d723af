"""Lamps: one indicator light per boolean or state attribute (interlocks, valves, shutters).

The whole kind is this module — view, options and registration — as the
registry of view kinds intends (see :mod:`.kinds`): the dashboard schema
(``lamps:`` panels), the builder and the name check pick it up from there.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence

from bokeh.layouts import column
from bokeh.models import Div, LayoutDOM

from ..tango.sample import Kind, Sample
from .base import AttributeState
from .kinds import SCALAR, Labelled, ViewKind, register
from .palette import ERROR_TEXT, state_color
from .panel import PanelView
from .style import PANEL_STYLES

ON = "#00c853"  # a true boolean
OFF = "#9aa5b1"  # a false boolean
UNKNOWN = "#eef1f5"  # nothing read yet, or no value


class Lamps(PanelView):
    """A row of lamps: green/grey for booleans, the Tango colour for states.

    The row is re-sent only when a lamp changes (colour or text).
    """

    def __init__(
        self, attributes: Sequence[str], *, labels: Sequence[str] | None = None,
        title: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(attributes, title=title)
        self.labels = list(labels) if labels else list(self.attributes)
        self.shown = ""

    def build(self) -> LayoutDOM:
        self._row = Div(text=self._html({}), sizing_mode="stretch_width")
        self.shown = self._row.text
        return column(self._banner.model, self._row, sizing_mode="stretch_width",
                      styles=PANEL_STYLES)  # fmt: skip

    def draw(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        shown = self._html(states)
        if shown != self.shown:
            self.shown = self._row.text = shown

    def lamp(self, attribute: str, states: Mapping[str, AttributeState]) -> tuple[str, str]:
        """The colour and the text of ``attribute``'s lamp."""
        last = self._last.get(attribute)
        if last is None:
            return UNKNOWN, "…"
        if last.error is not None or last.value is None:
            return ERROR_TEXT, "no value"
        state = states.get(attribute)
        info = state.info if state is not None else None
        if info is not None and info.kind is Kind.STATE:
            return state_color(str(last.value)), str(last.value)
        return (ON, "on") if bool(last.value) else (OFF, "off")

    def _html(self, states: Mapping[str, AttributeState]) -> str:
        cells = []
        for attribute, label in zip(self.attributes, self.labels, strict=True):
            colour, text = self.lamp(attribute, states)
            cells.append(
                "<div style='display:flex;align-items:center;gap:8px;min-width:140px'>"
                f"<span style='width:22px;height:22px;border-radius:50%;background:{colour};"
                "border:1px solid rgba(0,0,0,0.3);box-shadow:inset 0 -2px 4px rgba(0,0,0,0.2)'>"
                f"</span><span title='{html.escape(attribute)}'>{html.escape(label)}"
                f"<br><small style='color:#6b7280'>{html.escape(text)}</small></span></div>"
            )
        return (
            "<div style='display:flex;flex-wrap:wrap;gap:10px 18px;"
            f"font:13px system-ui,sans-serif'>{''.join(cells)}</div>"
        )


class LampOptions(Labelled):
    """Boolean or state attributes, one lamp each, optionally relabelled."""


def _build(options: LampOptions, qualify: Callable[[str], str]) -> Lamps:
    return Lamps([qualify(a) for a in options.attributes], labels=options.labels,
                 title=getattr(options, "title", None))  # fmt: skip


register(ViewKind("lamps", Lamps, LampOptions, _build, SCALAR, frozenset({Kind.BOOL, Kind.STATE}),
                  summary="one indicator light per boolean or state"))  # fmt: skip
