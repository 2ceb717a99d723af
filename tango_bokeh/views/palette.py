"""The colours operators already know: Tango qualities, device states, acquisition modes.

Colours follow the Jive/Taurus conventions recorded in FIELD-NOTES.md, with
WARNING given a colour of its own (the existing tools reuse ALARM's orange,
which hides the difference between "getting close" and "out of range").
Text drawn on top of a colour is black or white, whichever contrasts more
(WCAG relative luminance), so every badge stays readable.
"""

from __future__ import annotations

from ..tango.modes import Mode
from ..tango.sample import Quality

QUALITY_COLORS: dict[Quality, str] = {
    Quality.VALID: "#00ff00",
    Quality.WARNING: "#ffc800",  # 255,200,0: distinct from ALARM
    Quality.ALARM: "#ff8c00",  # 255,140,0
    Quality.CHANGING: "#80a0ff",  # 128,160,255
    Quality.INVALID: "#808080",
}

#: Numeric codes of qualities as trends stream them (one byte per point, binary).
QUALITY_CODES: dict[Quality, int] = {
    Quality.VALID: 0,
    Quality.WARNING: 1,
    Quality.ALARM: 2,
    Quality.CHANGING: 3,
    Quality.INVALID: 4,
}
QUALITY_BY_CODE: tuple[Quality, ...] = tuple(sorted(QUALITY_CODES, key=QUALITY_CODES.__getitem__))

STATE_COLORS: dict[str, str] = {
    "ON": "#00ff00",
    "OPEN": "#00ff00",
    "EXTRACT": "#00ff00",
    "OFF": "#ffffff",
    "CLOSE": "#ffffff",
    "INSERT": "#ffffff",
    "MOVING": "#80a0ff",
    "RUNNING": "#80a0ff",
    "STANDBY": "#ffff00",
    "FAULT": "#ff0000",
    "INIT": "#cccc7a",
    "ALARM": "#ff8c00",
    "DISABLE": "#ff00ff",
    "UNKNOWN": "#808080",
}

#: How acquisition modes read in status lines and tables.
MODE_TEXT: dict[Mode, str] = {
    Mode.PENDING: "pending",
    Mode.CHANGE: "change events",
    Mode.PERIODIC: "periodic events",
    Mode.ARCHIVE: "archive events",
    Mode.POLL: "polling",
    Mode.FAILED: "failed",
    Mode.STOPPED: "stopped",
}

#: Dot colours of the status line: events green, polling blue, waiting amber, failed red.
MODE_COLORS: dict[Mode, str] = {
    Mode.PENDING: "#e0a000",
    Mode.CHANGE: "#1a9e3f",
    Mode.PERIODIC: "#1a9e3f",
    Mode.ARCHIVE: "#1a9e3f",
    Mode.POLL: "#3b6fd8",
    Mode.FAILED: "#d62728",
    Mode.STOPPED: "#808080",
}

ERROR_TEXT = "#b00020"  # readable red for error text on white
STALE_COLOR = "#e0a000"

#: Series colours of trends (bokeh's Category10, readable on white).
SERIES_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)


def _channel(c: int) -> float:
    s = c / 255
    return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    """WCAG relative luminance of a ``#rrggbb`` colour."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_color(background: str) -> str:
    """Black or white, whichever reads better on ``background``."""
    return (
        "#000000"
        if contrast(background, "#000000") >= contrast(background, "#ffffff")
        else "#ffffff"
    )


def state_color(state: str) -> str:
    """Operator colour of a DevState name (UNKNOWN's grey for anything unexpected)."""
    return STATE_COLORS.get(str(state).upper(), STATE_COLORS["UNKNOWN"])


def fade(color: str, amount: float) -> str:
    """``color`` mixed with white: 0 keeps it, 1 gives white (fading spectra)."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    mix = [round(c + (255 - c) * amount) for c in (r, g, b)]
    return "#{:02x}{:02x}{:02x}".format(*mix)
