"""The small typed values that flow from Tango to the views."""

from __future__ import annotations

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
    OTHER = "other"


class Format(StrEnum):
    SCALAR = "scalar"
    SPECTRUM = "spectrum"
    IMAGE = "image"


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
    """Static configuration of an attribute, read once when acquisition starts."""

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

    def format_value(self, value: Any) -> str:
        """Render ``value`` the way the device's ``format`` property asks."""
        if value is None:
            return ""
        if self.kind is Kind.ENUM and self.enum_labels:
            try:
                return self.enum_labels[int(value)]
            except (ValueError, IndexError):
                return str(value)
        if self.kind is Kind.NUMBER and self.format is Format.SCALAR and self.display_format:
            try:
                return self.display_format % value
            except (TypeError, ValueError):
                pass
        return str(value)
