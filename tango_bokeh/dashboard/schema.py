"""What a dashboard file may say, as pydantic models (every key documented in docs/dashboards.md).

A dashboard is a title, a few page-wide settings and a list of panels laid
out top to bottom. A panel is one view (``trend``, ``spectrum``, ``image``,
``table``) or a container of panels (``row``, ``column``, ``tabs``). Every
model forbids unknown keys, so a typo is an error rather than a silently
ignored option. Validation here is pure (no Tango): whether attributes exist
is checked separately, by :mod:`tango_bokeh.dashboard.check`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..tango.modes import MAX_POLL_PERIOD, MIN_POLL_PERIOD
from ..tango.names import InvalidName, parse_name

#: Keys naming a panel; exactly one per list entry.
VIEW_KINDS = ("trend", "spectrum", "image", "table")
CONTAINER_KINDS = ("row", "column", "tabs")
PANEL_KINDS = VIEW_KINDS + CONTAINER_KINDS

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


def _command_name(value: str) -> str:
    try:
        parse_name(value)
    except InvalidName:
        raise ValueError(
            f"{value!r}: expected device/command, e.g. sim/motor/1/Home or mot1/Home"
        ) from None
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
CommandRef = Annotated[str, Field(max_length=MAX_NAME), AfterValidator(_command_name)]
Title = Annotated[str, Field(max_length=MAX_TITLE)]
ColorName = Annotated[str, AfterValidator(_color)]
Range = tuple[float, float]


def _ordered(value: Range | None) -> Range | None:
    if value is not None and not (math.isfinite(value[0]) and math.isfinite(value[1])):
        raise ValueError(f"bounds must be finite numbers, got [{value[0]}, {value[1]}]")
    if value is not None and not value[0] < value[1]:
        raise ValueError(f"the first bound must be below the second, got [{value[0]}, {value[1]}]")
    return value


OrderedRange = Annotated[Range, AfterValidator(_ordered)]


def _write_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "flag"
    return "list" if isinstance(value, list) else None


WriteSetting = Annotated[
    Annotated[bool, Tag("flag")] | Annotated[list[AttributeRef], Tag("list")],
    Discriminator(
        _write_kind,
        custom_error_type="write_setting",
        custom_error_message="expected true, false or a list of this panel's attributes",
    ),
]


class Strict(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Command(Strict):
    """A command button (``commands:`` list entry): shown to logged-in users only, confirmed."""

    command: CommandRef
    label: Title | None = None
    argument: bool = False  # show an input for the command's argument

    @property
    def device(self) -> str:
        return self.command.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        return self.command.rsplit("/", 1)[1]


def _command_entry(value: Any) -> Any:
    return {"command": value} if isinstance(value, str) else value


CommandEntry = Annotated[Command, BeforeValidator(_command_entry)]


class PanelBase(Strict):
    """Keys every view panel accepts."""

    title: Title | None = None
    poll_period: PollPeriod | None = None  # client polling of attributes without events
    commands: list[CommandEntry] = Field(default_factory=list)

    def attribute_refs(self) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
        """``(path below the panel, attribute, role)`` for every attribute the panel reads."""
        return iter(())


class _Labelled(PanelBase):
    attributes: list[AttributeRef] = Field(min_length=1)
    labels: list[Title] | None = None
    # Writing: ``true`` for every writable attribute of the panel, or a list of them.
    write: WriteSetting = False

    @field_validator("labels")
    @classmethod
    def _one_label_each(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        attributes = info.data.get("attributes")
        if value is not None and attributes is not None and len(value) != len(attributes):
            raise ValueError(f"{len(value)} label(s) for {len(attributes)} attribute(s)")
        return value

    @field_validator("write")
    @classmethod
    def _writes_are_shown(cls, value: bool | list[str], info: ValidationInfo) -> bool | list[str]:
        attributes = info.data.get("attributes")
        if isinstance(value, list) and attributes is not None:
            known = {a.lower() for a in attributes}
            for name in value:
                if name.lower() not in known:
                    raise ValueError(f"{name!r} is not one of this panel's attributes")
        return value

    @property
    def writable(self) -> list[str]:
        """The attributes offered for writing (those the file enables)."""
        if self.write is True:
            return list(self.attributes)
        return list(self.write) if isinstance(self.write, list) else []


class Trend(_Labelled):
    """Numeric or boolean scalars against time, one line each."""

    height: int | None = Field(default=None, ge=100, le=2000)
    colors: list[ColorName] | None = None
    history: History = 600.0  # time window kept and shown
    points: int = Field(default=10_000, ge=10, le=1_000_000)  # at most this many per line
    log_y: bool = False
    y_range: OrderedRange | None = None

    @field_validator("colors")
    @classmethod
    def _one_colour_each(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        attributes = info.data.get("attributes")
        if value is not None and attributes is not None and len(value) != len(attributes):
            raise ValueError(f"{len(value)} colour(s) for {len(attributes)} attribute(s)")
        return value

    def attribute_refs(self) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
        for i, name in enumerate(self.attributes):
            yield ("attributes", i), name, "trend"


class Table(_Labelled):
    """Label, value, unit, quality and state colours, time, acquisition mode, last error."""

    def attribute_refs(self) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
        for i, name in enumerate(self.attributes):
            yield ("attributes", i), name, "table"


class Spectrum(PanelBase):
    """A 1-D attribute as a line, optionally against another attribute, with persistence."""

    attribute: AttributeRef
    x_attribute: AttributeRef | None = None
    height: int | None = Field(default=None, ge=100, le=2000)
    persistence: int = Field(default=0, ge=0, le=50)  # earlier frames kept, fading
    log_y: bool = False
    y_range: OrderedRange | None = None

    def attribute_refs(self) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
        yield ("attribute",), self.attribute, "spectrum"
        if self.x_attribute:
            yield ("x_attribute",), self.x_attribute, "spectrum"


class Image(PanelBase):
    """A 2-D attribute, colour-mapped, decimated to ``max_display`` before sending."""

    attribute: AttributeRef
    palette: Annotated[str, AfterValidator(_palette)] = "Viridis256"
    range: OrderedRange | None = None  # colour-map bounds; automatic when absent
    max_display: tuple[
        Annotated[int, Field(ge=16, le=4096)], Annotated[int, Field(ge=16, le=4096)]
    ] = (
        400,
        400,
    )

    def attribute_refs(self) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
        yield ("attribute",), self.attribute, "image"


class Panel(Strict):
    """One entry of a panel list: exactly one of the keys below."""

    trend: Trend | None = None
    spectrum: Spectrum | None = None
    image: Image | None = None
    table: Table | None = None
    row: list[Panel] | None = None
    column: list[Panel] | None = None
    tabs: dict[Title, list[Panel]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(
                f"expected a panel (a mapping with one of the keys {', '.join(PANEL_KINDS)}), "
                f"got {type(value).__name__} {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Panel:
        given = [kind for kind in PANEL_KINDS if getattr(self, kind) is not None]
        if not given:
            raise ValueError(f"empty panel: give one of {', '.join(PANEL_KINDS)}")
        if len(given) > 1:
            raise ValueError(
                f"one panel per list entry, found {' and '.join(given)}: start each with '- '"
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in PANEL_KINDS if getattr(self, kind) is not None)

    @property
    def content(self) -> Any:
        return getattr(self, self.kind)

    @field_validator("row", "column")
    @classmethod
    def _not_empty(cls, value: list[Panel] | None) -> list[Panel] | None:
        if value is not None and not value:
            raise ValueError("a container needs at least one panel")
        return value

    @field_validator("tabs")
    @classmethod
    def _tabs_not_empty(cls, value: dict[str, list[Panel]] | None) -> Any:
        if value is not None:
            if not value:
                raise ValueError("tabs needs at least one tab (tab title: list of panels)")
            for title, panels in value.items():
                if not panels:
                    raise ValueError(f"tab {title!r} has no panel")
        return value


class Dashboard(Strict):
    """A whole dashboard file."""

    title: str = Field(min_length=1, max_length=MAX_TITLE)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    tango_host: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+:\d{1,5}$")] | None = None
    refresh: Refresh = 1.0  # seconds between page updates
    poll_period: PollPeriod | None = None  # default client polling period of this dashboard
    panels: list[Panel] = Field(min_length=1)

    def walk(self) -> Iterator[tuple[tuple[str | int, ...], Panel]]:
        """Every panel (containers too) with its key path, depth first."""

        def visit(
            path: tuple[str | int, ...], panels: list[Panel]
        ) -> Iterator[tuple[tuple[str | int, ...], Panel]]:
            for i, panel in enumerate(panels):
                here = (*path, i)
                yield here, panel
                kind = panel.kind
                if kind in ("row", "column"):
                    yield from visit((*here, kind), panel.content)
                elif kind == "tabs":
                    for title, inner in panel.content.items():
                        yield from visit((*here, "tabs", title), inner)

        return visit(("panels",), self.panels)

    def references(self) -> list[Reference]:
        """Every attribute and command the file names, with where it is named."""
        refs: list[Reference] = []
        for path, panel in self.walk():
            if panel.kind not in VIEW_KINDS:
                continue
            view = panel.content
            base = (*path, panel.kind)
            for sub, name, role in view.attribute_refs():
                refs.append(Reference((*base, *sub), self.qualify(name), role))
            write = getattr(view, "write", False)
            if isinstance(write, list):  # (``true`` offers the writable ones: nothing to check)
                for i, name in enumerate(write):
                    refs.append(Reference((*base, "write", i), self.qualify(name), "write"))
            for i, command in enumerate(view.commands):
                refs.append(
                    Reference((*base, "commands", i), self.qualify(command.command), "command")
                )
        return refs

    def attributes(self) -> list[str]:
        """Distinct attributes the dashboard reads (qualified with its ``tango_host``)."""
        seen: dict[str, str] = {}
        for ref in self.references():
            if ref.role != "command":
                seen.setdefault(parse_name(ref.name).key, ref.name)
        return list(seen.values())

    def qualify(self, name: str) -> str:
        """``name`` with this dashboard's ``tango_host`` when it has none of its own."""
        if self.tango_host and not name.lower().startswith("tango://"):
            return f"tango://{self.tango_host}/{name}"
        return name


@dataclass(frozen=True)
class Reference:
    """An attribute (or ``device/command``) named in a file, and where."""

    path: tuple[str | int, ...]
    name: str
    role: str  # trend | spectrum | image | table | write | command
