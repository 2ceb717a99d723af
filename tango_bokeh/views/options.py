"""Option types the views and the dashboard files share, as pydantic types.

Durations ("10 min"), Tango names, titles, colours, palettes and ranges are
validated the same wherever they are given: a dashboard file, a view kind's
options (:mod:`.kinds`). Pure: no Tango, no bokeh server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ..tango.modes import MAX_POLL_PERIOD, MIN_POLL_PERIOD
from ..tango.names import InvalidName, parse_name

_DURATION = re.compile(
    r"^\s*(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)\s*"
    r"(?P<unit>ms|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hour|hours|d|day|days)?"
    r"\s*$"
)
_UNIT_SECONDS = {
    None: 1.0, "ms": 1e-3, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_DURATION_HINT = "write e.g. 30, '30 s', '10 min' or '2 h'"


def parse_duration(value: Any) -> Any:
    """``600``, ``"600 s"``, ``"10 min"``, ``"1.5 h"``, ``"250 ms"`` -> seconds (a finite float)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30 s', '10 min' or '2 h'")
    seconds = None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value.lower())
        if match:
            seconds = float(match.group("number")) * _UNIT_SECONDS[match.group("unit")]
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration: {_DURATION_HINT}")
    if not math.isfinite(seconds):  # YAML's .inf and .nan, or '1e400 s'
        shown = value if isinstance(value, str) else seconds
        raise ValueError(f"{shown!r} is not a finite duration: {_DURATION_HINT}")
    return seconds


#: (minimum, maximum) in seconds of each duration key; docs/dashboards.md states them.
REFRESH_BOUNDS = (0.1, 60.0)  # page updates: faster loads the browser, slower is not live
POLL_PERIOD_BOUNDS = (MIN_POLL_PERIOD, MAX_POLL_PERIOD)  # the acquisition's own rule
HISTORY_BOUNDS = (1.0, 7 * 86400.0)  # a trend's window (its points are bounded apart)


def _spoken(seconds: float) -> str:
    """A bound as the documentation writes it: ``0.1 s``, ``1 min``, ``1 h``, ``7 days``."""
    for size, one, many in ((86400.0, "day", "days"), (3600.0, "h", "h"), (60.0, "min", "min")):
        if seconds >= size and seconds % size == 0:
            count = seconds / size
            return f"{count:g} {one if count == 1 else many}"
    return f"{seconds:g} s"


def _within(low: float, high: float) -> Callable[[float], float]:
    """Validator: a duration between ``low`` and ``high`` seconds (both allowed)."""

    def check(value: float) -> float:
        if value < low:
            raise ValueError(f"must be at least {_spoken(low)}, got {value:g} s")
        if value > high:
            raise ValueError(f"must be at most {_spoken(high)}, got {value:g} s")
        return value

    return check


def _attribute_name(value: str) -> str:
    try:
        parse_name(value)
    except InvalidName as exc:
        raise ValueError(str(exc)) from None
    return value.strip()


def _color(value: str) -> str:
    from bokeh.core.property.color import Color

    if not Color().is_valid(value):
        raise ValueError(f"{value!r} is not a colour: use a CSS name (e.g. 'crimson') or '#rrggbb'")
    return value


def _palette(value: str) -> str:
    from bokeh import palettes

    if value not in palettes.__palettes__:
        close = [p for p in palettes.__palettes__ if p.lower().startswith(value.lower()[:4])]
        hint = f" (e.g. {', '.join(close[-3:])})" if close else " (e.g. Viridis256, Greys256)"
        raise ValueError(f"{value!r} is not a bokeh palette name{hint}")
    return value


#: Longest texts a file may give (docs/dashboards.md, "Limits"): a title is one line,
#: a description a paragraph, a Tango name at most a few hundred characters.
MAX_TITLE = 200
MAX_DESCRIPTION = 4000
MAX_NAME = 512

Duration = Annotated[float, BeforeValidator(parse_duration)]
Refresh = Annotated[Duration, AfterValidator(_within(*REFRESH_BOUNDS))]
PollPeriod = Annotated[Duration, AfterValidator(_within(*POLL_PERIOD_BOUNDS))]
History = Annotated[Duration, AfterValidator(_within(*HISTORY_BOUNDS))]
AttributeRef = Annotated[str, Field(max_length=MAX_NAME), AfterValidator(_attribute_name)]
Title = Annotated[str, Field(max_length=MAX_TITLE)]
ColorName = Annotated[str, AfterValidator(_color)]
PaletteName = Annotated[str, AfterValidator(_palette)]
Range = tuple[float, float]


def _ordered(value: Range | None) -> Range | None:
    if value is not None and not (math.isfinite(value[0]) and math.isfinite(value[1])):
        raise ValueError(f"bounds must be finite numbers, got [{value[0]}, {value[1]}]")
    if value is not None and not value[0] < value[1]:
        raise ValueError(f"the first bound must be below the second, got [{value[0]}, {value[1]}]")
    return value


OrderedRange = Annotated[Range, AfterValidator(_ordered)]


class Strict(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
