"""Errors in place: a message strip inside a view's own panel.

Errors are data (DESIGN.md): a failed read, an ``ATTR_INVALID`` value, an event
time-out or a wrong name must be visible where the operator looks, not in a
log. Every view keeps one :class:`Banner` above its plot; it is hidden while
all is well and changes (one small message) only when its text does.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from bokeh.models import Div

from ..tango.modes import Mode
from ..tango.sample import AttributeInfo, Format, Kind, Quality, Sample
from .base import AttributeState


class Level(IntEnum):
    """How bad a problem is; the banner takes the colour of the worst one."""

    INFO = 0  # waiting for the first data
    WARNING = 1  # stale, invalid value, retrying
    ERROR = 2  # failed read, wrong name, unsupported type


_STYLE = {
    Level.INFO: ("#eef3fb", "#3b6fd8", "#1d3a72"),
    Level.WARNING: ("#fff6e0", "#e0a000", "#5c4200"),
    Level.ERROR: ("#fdecec", "#d62728", "#7a0010"),
}


@dataclass(frozen=True)
class Problem:
    attribute: str
    level: Level
    text: str


def clock(t: float) -> str:
    """Local wall-clock time with milliseconds, with the date when it is not today."""
    local = time.localtime(t)
    text = time.strftime("%H:%M:%S", local) + f".{int((t % 1) * 1000):03d}"
    if time.strftime("%Y-%m-%d", local) != time.strftime("%Y-%m-%d"):
        text = time.strftime("%Y-%m-%d ", local) + text
    return text


#: The views that show each data format, for "use ..." advice.
VIEWS_FOR = {
    Format.SCALAR: "Trend or ValueTable",
    Format.SPECTRUM: "Spectrum",
    Format.IMAGE: "Image",
}


def unsuitable(
    attribute: str, info: AttributeInfo, wanted: Format, not_numbers: str
) -> Problem | None:
    """Why a view of ``wanted`` format cannot plot ``attribute``, if it cannot.

    ``not_numbers`` is the message for values that are not numbers, with ``{kind}``.
    """
    if info.format is not wanted:
        advice = f"is a {info.format} attribute: use {VIEWS_FOR[info.format]}"
        return Problem(attribute, Level.ERROR, advice)
    if info.kind not in (Kind.NUMBER, Kind.BOOL):
        return Problem(attribute, Level.ERROR, not_numbers.format(kind=info.kind))
    return None


def attribute_problem(
    attribute: str, state: AttributeState | None, last: Sample | None
) -> Problem | None:
    """What is wrong with ``attribute`` now, judging by its state and its newest sample."""
    if state is not None and state.mode is Mode.FAILED:
        return Problem(attribute, Level.ERROR, state.status or "acquisition failed")
    if last is not None:
        if last.stale:
            why = f" ({last.error})" if last.error else ""
            return Problem(attribute, Level.WARNING, f"stale since {clock(last.time)}{why}")
        if last.error:
            return Problem(attribute, Level.ERROR, f"{last.error} (at {clock(last.time)})")
        if last.value is None or last.quality is Quality.INVALID:
            return Problem(attribute, Level.WARNING, f"value INVALID since {clock(last.time)}")
    if state is not None and state.mode is Mode.PENDING and state.status:
        return Problem(attribute, Level.WARNING, f"retrying: {state.status}")
    return None


def problems(
    attributes: Iterable[str],
    states: Mapping[str, AttributeState],
    last: Mapping[str, Sample],
    extra: Mapping[str, Problem] | None = None,
) -> list[Problem]:
    """Problems of several attributes; ``extra`` (a view's own verdicts) wins per attribute."""
    found = []
    for name in attributes:
        problem = (extra or {}).get(name) or attribute_problem(
            name, states.get(name), last.get(name)
        )
        if problem is not None:
            found.append(problem)
    return found


class Banner:
    """A Div above a view's plot showing its problems; hidden when there is none."""

    def __init__(self) -> None:
        self.model = Div(visible=False, sizing_mode="stretch_width", margin=(0, 0, 4, 0))
        self._shown: tuple[Problem, ...] = ()

    @property
    def text(self) -> str:
        """The plain text shown (empty when hidden): what tests and status lines read."""
        return "\n".join(f"{p.attribute}: {p.text}" for p in self._shown)

    def show(self, found: Iterable[Problem], *, name_attributes: bool = True) -> None:
        """Show ``found`` (or hide when empty); sends nothing when nothing changed."""
        shown = tuple(found)
        if shown == self._shown:
            return
        self._shown = shown
        if not shown:
            self.model.visible = False
            return
        level = max(p.level for p in shown)
        background, border, color = _STYLE[level]
        lines = "".join(
            "<div>"
            + (f"<b>{html.escape(p.attribute)}</b>: " if name_attributes else "")
            + html.escape(p.text)
            + "</div>"
            for p in shown
        )
        self.model.text = (
            f'<div role="alert" style="background:{background};border-left:4px solid {border};'
            f"color:{color};padding:6px 10px;border-radius:4px;font-size:13px;"
            f'line-height:1.4;word-break:break-word">{lines}</div>'
        )
        self.model.visible = True
