"""The small typed values that flow from Tango to the views."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class Quality(StrEnum):
    """Tango attribute quality, named as operators read it."""

    VALID = "VALID"
    INVALID = "INVALID"
    ALARM = "ALARM"
    CHANGING = "CHANGING"
    WARNING = "WARNING"


class Kind(StrEnum):
    """What a value is, as far as a view cares."""

    NUMBER = "number"
    BOOL = "bool"
    STRING = "string"
    ENUM = "enum"
    STATE = "state"
    ENCODED = "encoded"  # DevEncoded: a format name and bytes
    OTHER = "other"


class Format(StrEnum):
    SCALAR = "scalar"
    SPECTRUM = "spectrum"
    IMAGE = "image"


#: Longest text a decoded DevEncoded value is shown as (the rest is cut, with "…").
ENCODED_TEXT_LIMIT = 200
#: DevEncoded formats decoded as text (case-insensitive); "json" is parsed and re-written.
TEXT_FORMATS = frozenset({"utf8", "utf-8", "text", "string", "ascii"})


@dataclass(frozen=True)
class Encoded:
    """A ``DevEncoded`` value: the device's format name and the raw bytes."""

    format: str
    data: bytes

    def text(self, limit: int = ENCODED_TEXT_LIMIT) -> str:
        """Decoded where the format says how (``json``, ``utf8``), else size and format."""
        name = self.format.strip().lower()
        try:
            if name == "json" or name.endswith("/json"):
                decoded = json.loads(self.data.decode("utf-8"))
                shown = json.dumps(decoded, ensure_ascii=False, separators=(", ", ": "))
            elif name in TEXT_FORMATS:
                shown = self.data.decode("utf-8")
            else:
                return self.summary()
        except (UnicodeDecodeError, ValueError):
            return f"{self.summary()}, not valid {self.format}"
        return shown if len(shown) <= limit else shown[: limit - 1] + "…"

    def summary(self) -> str:
        return f"{len(self.data):,} bytes, format {self.format!r}"


#: Magnitude from which a finite number is shown in scientific notation whatever the
#: device's format asks ("%.3f" % 1e308 is 312 characters).
LONG_NUMBER = 1e15


def format_number(value: float, display_format: str = "") -> str:
    """A number as the device's ``format`` asks; NaN and the infinities by name (``NaN``,
    ``+∞``, and ``-∞`` with a true minus sign), huge numbers short."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+\u221e" if value > 0 else "\u2212\u221e")
    if display_format and abs(value) < LONG_NUMBER:
        try:
            return display_format % value
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and (abs(value) >= LONG_NUMBER):
        return f"{value:.6g}"
    return str(value)


class Sample(NamedTuple):
    """One reading of an attribute.

    ``time`` is the Tango timestamp (epoch seconds); for errors it is the time
    the error was seen. ``value`` is ``None`` for errors and ``ATTR_INVALID``.
    ``stale`` marks "no news from the device" (event time-outs), which views
    must show as disconnection rather than as a value. A named tuple because
    one is made per Tango event (by the acquisition's drain thread): it must be cheap.
    """

    time: float
    value: Any
    quality: Quality = Quality.VALID
    error: str | None = None
    stale: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.quality is not Quality.INVALID and self.value is not None


@dataclass(frozen=True)
class AttributeInfo:
    """Configuration of an attribute: read when acquisition starts, then each time the device
    sends an attribute-configuration event (a unit, format, limit or label changed)."""

    name: str
    format: Format = Format.SCALAR
    kind: Kind = Kind.NUMBER
    dtype: str = "float64"
    label: str = ""
    unit: str = ""
    display_format: str = ""
    writable: bool = False
    enum_labels: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    min_alarm: float | None = None
    max_alarm: float | None = None
    min_warning: float | None = None
    max_warning: float | None = None
    max_dim_x: int = 1
    max_dim_y: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: When this configuration replaced another (epoch s, when it was received), None for
    #: the first one: samples stamped before it belong to the previous configuration.
    since: float | None = field(default=None, compare=False)

    def format_value(self, value: Any) -> str:
        """Render ``value`` the way the device's ``format`` property asks."""
        if value is None:
            return ""
        if self.kind is Kind.ENUM and self.enum_labels:
            try:
                return self.enum_labels[int(value)]
            except (ValueError, IndexError):
                return str(value)
        if isinstance(value, Encoded):
            return value.text()
        number = isinstance(value, float | int) and not isinstance(value, bool)
        if number and self.kind is Kind.NUMBER and self.format is Format.SCALAR:
            return format_number(value, self.display_format)
        return str(value)
