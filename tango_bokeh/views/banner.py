"""Errors in place: a message strip inside a view's own panel.

Errors are data (DESIGN.md): a failed read, an ``ATTR_INVALID`` value, an event
time-out or a wrong name must be visible where the operator looks, not in a
log. Every view keeps one :class:`Banner` above its plot; it is hidden while
all is well and changes (one small message) only when a problem begins or
ends: a device that fails every poll for an hour changes nothing on the
page after the first failure ("stale since 10:31:07" keeps the time the
outage began), so a dashboard in error costs the browser no more than a
healthy one.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from bokeh.models import Div

from ..tango.modes import Mode
from ..tango.polling import describe
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
    """What is wrong with one attribute. ``at``: the time of the sample that shows it.

    Two problems are the same when attribute, level and text are: ``at`` moves with
    every failed read and must not make a banner or a table cell change.
    """

    attribute: str
    level: Level
    text: str
    at: float | None = field(default=None, compare=False)
    #: Shown after the start time: ``stale since 10:31:07 (API_EventTimeout: ...)``. While
    #: the problem lasts the first detail stays (a device that is down answers first
    #: "connection failed", then "connection request delayed": the first one is the news).
    detail: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, Level, str]:
        return (self.attribute, self.level, self.text)


class Onsets:
    """When each current problem began and its first detail, forgetting ended ones."""

    def __init__(self) -> None:
        self._since: dict[tuple[str, Level, str], tuple[float | None, str]] = {}

    def update(self, found: Iterable[Problem]) -> None:
        """Record ``found`` (the problems now)."""
        now = time.time()
        current = {}
        for problem in found:
            known = self._since.get(problem.key)
            if known is None:
                start = None if problem.at is None else min(problem.at, now)
                known = (start, problem.detail)
            current[problem.key] = known
        self._since = current

    def start(self, problem: Problem) -> float | None:
        known = self._since.get(problem.key)
        return known[0] if known is not None else problem.at

    def detail(self, problem: Problem) -> str:
        known = self._since.get(problem.key)
        return known[1] if known is not None else problem.detail

    def described(self, problem: Problem) -> str:
        """The problem's text with the time it began (if it carries a time) and its detail."""
        start = self.start(problem)
        text = problem.text if start is None else f"{problem.text} since {clock(start)}"
        detail = self.detail(problem)
        return f"{text} {detail}" if detail else text


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
            why = f"({last.error})" if last.error else ""
            return Problem(attribute, Level.WARNING, "stale", last.time, why)
        if last.error:
            return Problem(attribute, Level.ERROR, last.error, last.time)
        if last.value is None or last.quality is Quality.INVALID:
            return Problem(attribute, Level.WARNING, "value INVALID", last.time)
    if state is not None and state.mode is Mode.PENDING and state.status:
        return Problem(attribute, Level.WARNING, f"retrying: {state.status}")
    return None


def poll_notice(attribute: str, state: AttributeState | None) -> Problem | None:
    """A polled attribute read less often than asked (slow, or over its device's budget)."""
    if state is None or state.mode is not Mode.POLL:
        return None
    text = describe(state.poll)
    return Problem(attribute, Level.INFO, text) if text else None


def poll_mode_text(state: AttributeState | None) -> str | None:
    """The short mode text of a polled attribute read less often than asked, else None."""
    rate = state.poll if state is not None and state.mode is Mode.POLL else None
    if rate is None or not (rate.slowed or rate.alone):
        return None
    every = f"{rate.period:.2g} s" if rate.period < 10 else f"{rate.period:.0f} s"
    return f"polling · every {every} ({'slow read' if rate.alone else 'budget'})"


def problems(
    attributes: Iterable[str],
    states: Mapping[str, AttributeState],
    last: Mapping[str, Sample],
    extra: Mapping[str, Problem] | None = None,
) -> list[Problem]:
    """Problems of several attributes; ``extra`` (a view's own verdicts) wins per attribute;
    a slowed polling rate is said when nothing is wrong."""
    found = []
    for name in attributes:
        state = states.get(name)
        problem = (
            (extra or {}).get(name)
            or attribute_problem(name, state, last.get(name))
            or poll_notice(name, state)
        )
        if problem is not None:
            found.append(problem)
    return found


class Banner:
    """A Div above a view's plot showing its problems; hidden when there is none."""

    def __init__(self) -> None:
        self.model = Div(visible=False, sizing_mode="stretch_width", margin=(0, 0, 4, 0))
        self._shown: tuple[Problem, ...] = ()
        self._onsets = Onsets()

    @property
    def text(self) -> str:
        """The plain text shown (empty when hidden): what tests and status lines read."""
        return "\n".join(f"{p.attribute}: {self._onsets.described(p)}" for p in self._shown)

    def show(self, found: Iterable[Problem], *, name_attributes: bool = True) -> None:
        """Show ``found`` (or hide when empty); sends nothing unless a problem began or ended."""
        shown = tuple(found)
        self._onsets.update(shown)
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
            + html.escape(self._onsets.described(p))
            + "</div>"
            for p in shown
        )
        self.model.text = (
            f'<div role="alert" style="background:{background};border-left:4px solid {border};'
            f"color:{color};padding:6px 10px;border-radius:4px;font-size:13px;"
            f'line-height:1.4;word-break:break-word">{lines}</div>'
        )
        self.model.visible = True
