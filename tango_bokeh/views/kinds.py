"""The one registry of view kinds: what each shows, which options it takes, how it is built.

A view kind is declared once, here for the built-in ones or in a module of
its own in this package (it calls :func:`register` when imported; every
module of the package is imported the first time :func:`kinds` is asked).
Automatic choice (:mod:`.auto`), the dashboard schema (one ``<name>:`` panel
key per kind, its options model), the dashboard builder, the name check and
the documentation test all read this registry: adding a kind is one module,
its test and its section in ``docs/views.md``.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from ..tango.sample import AttributeInfo, Format, Kind
from .image import Image
from .options import (
    AttributeRef,
    ColorName,
    History,
    OrderedRange,
    PaletteName,
    Strict,
    Title,
)
from .spectrum import Spectrum
from .table import ValueTable
from .trend import Trend

#: The value kinds a plot can draw.
NUMBERS = frozenset({Kind.NUMBER, Kind.BOOL})
#: What a table cell can show.
ANYTHING = frozenset(Kind) - {Kind.OTHER}

Refs = Iterator[tuple[tuple[str | int, ...], str]]


@dataclass(frozen=True)
class ViewKind:
    """One kind of view, as dashboards and automatic choice know it.

    ``build(options, qualify)`` makes the view from a validated ``options``
    model (``qualify`` adds a dashboard's ``tango_host`` to a name);
    ``auto``: the rank when choosing a view for an attribute from its
    configuration (lower first; None: never chosen automatically).
    """

    name: str
    view: type  # the View class
    options: type[BaseModel]
    build: Callable[[Any, Callable[[str], str]], Any]
    formats: frozenset[Format]
    kinds: frozenset[Kind] = NUMBERS
    auto: int | None = None
    summary: str = ""

    def accepts(self, info: AttributeInfo) -> bool:
        """Whether this kind can show an attribute of this format and type."""
        return info.format in self.formats and info.kind in self.kinds


_KINDS: dict[str, ViewKind] = {}
_lock = threading.Lock()
_discovered = False


def register(kind: ViewKind) -> ViewKind:
    """Add ``kind`` (a module of this package calls it when imported)."""
    with _lock:
        if kind.name in _KINDS and _KINDS[kind.name] != kind:
            raise ValueError(f"a view kind named {kind.name!r} exists already")
        _KINDS[kind.name] = kind
    return kind


def kinds() -> dict[str, ViewKind]:
    """Every view kind, built-in ones first, by name."""
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module(__package__ or "tango_bokeh.views")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    with _lock:
        return dict(_KINDS)


# -- options of the built-in kinds (the keys a dashboard panel takes, beyond its title) ---------


class Labelled(Strict):
    """Several attributes, optionally relabelled."""

    attributes: list[AttributeRef] = Field(min_length=1)
    labels: list[Title] | None = None

    @field_validator("labels")
    @classmethod
    def _one_label_each(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        attributes = info.data.get("attributes")
        if value is not None and attributes is not None and len(value) != len(attributes):
            raise ValueError(f"{len(value)} label(s) for {len(attributes)} attribute(s)")
        return value

    def attribute_refs(self) -> Refs:
        for i, name in enumerate(self.attributes):
            yield ("attributes", i), name


class TrendOptions(Labelled):
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


class TableOptions(Labelled):
    """Label, value, unit, quality and state colours, time, acquisition mode, last error."""


class SpectrumOptions(Strict):
    """A 1-D attribute as a line, optionally against another attribute, with persistence."""

    attribute: AttributeRef
    x_attribute: AttributeRef | None = None
    height: int | None = Field(default=None, ge=100, le=2000)
    persistence: int = Field(default=0, ge=0, le=50)  # earlier frames kept, fading
    log_y: bool = False
    y_range: OrderedRange | None = None

    def attribute_refs(self) -> Refs:
        yield ("attribute",), self.attribute
        if self.x_attribute:
            yield ("x_attribute",), self.x_attribute


Pixels = Annotated[int, Field(ge=16, le=4096)]


class ImageOptions(Strict):
    """A 2-D attribute, colour-mapped, decimated to ``max_display`` before sending."""

    attribute: AttributeRef
    palette: PaletteName = "Viridis256"
    range: OrderedRange | None = None  # colour-map bounds; automatic when absent
    max_display: tuple[Pixels, Pixels] = (400, 400)

    def attribute_refs(self) -> Refs:
        yield ("attribute",), self.attribute


# -- the built-in kinds ----------------------------------------------------------------------


def _height(options: Any) -> dict[str, int]:
    return {"height": options.height} if getattr(options, "height", None) else {}


def _trend(options: TrendOptions, qualify: Callable[[str], str]) -> Any:
    return Trend(
        [qualify(a) for a in options.attributes],
        title=getattr(options, "title", None),
        history_points=options.points,
        history_seconds=options.history,
        log_y=options.log_y,
        y_range=options.y_range,
        labels=options.labels,
        colors=options.colors,
        **_height(options),
    )


def _table(options: TableOptions, qualify: Callable[[str], str]) -> Any:
    return ValueTable(
        [qualify(a) for a in options.attributes],
        labels=options.labels,
        title=getattr(options, "title", None),
    )


def _spectrum(options: SpectrumOptions, qualify: Callable[[str], str]) -> Any:
    return Spectrum(
        qualify(options.attribute),
        x_attribute=qualify(options.x_attribute) if options.x_attribute else None,
        persistence=options.persistence,
        y_range=options.y_range,
        log_y=options.log_y,
        title=getattr(options, "title", None),
        **_height(options),
    )


def _image(options: ImageOptions, qualify: Callable[[str], str]) -> Any:
    return Image(
        qualify(options.attribute),
        palette=options.palette,
        range=options.range,
        max_display=options.max_display,
        title=getattr(options, "title", None),
    )


SCALAR, SPECTRUM, IMAGE = (frozenset({f}) for f in (Format.SCALAR, Format.SPECTRUM, Format.IMAGE))
register(
    ViewKind(
        "trend",
        Trend,
        TrendOptions,
        _trend,
        SCALAR,
        NUMBERS,
        auto=0,
        summary="numeric or boolean scalars against time",
    )
)
register(
    ViewKind(
        "spectrum",
        Spectrum,
        SpectrumOptions,
        _spectrum,
        SPECTRUM,
        NUMBERS,
        auto=0,
        summary="a 1-D attribute as a line",
    )
)
register(
    ViewKind(
        "image",
        Image,
        ImageOptions,
        _image,
        IMAGE,
        NUMBERS,
        auto=0,
        summary="a 2-D attribute, colour-mapped",
    )
)
register(ViewKind("table", ValueTable, TableOptions, _table, SCALAR, ANYTHING, auto=1,
                  summary="values with quality and state colours"))  # fmt: skip
