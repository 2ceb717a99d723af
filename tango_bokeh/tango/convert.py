"""Conversion of PyTango objects into :class:`Sample` and :class:`AttributeInfo`.

Kept free of any state so that it can be unit-tested on real PyTango objects
and called from acquisition threads without locks.
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from typing import Any

import numpy as np
import tango

from .errors import describe_stack
from .modes import RETRY_REASONS
from .sample import AttributeInfo, Encoded, Format, Kind, Quality, Sample

#: Error reasons that mean "the device is not talking to us", not a bad value: the
#: same ones for which acquisition keeps retrying.
STALE_REASONS = RETRY_REASONS

_QUALITY = {
    tango.AttrQuality.ATTR_VALID: Quality.VALID,
    tango.AttrQuality.ATTR_INVALID: Quality.INVALID,
    tango.AttrQuality.ATTR_ALARM: Quality.ALARM,
    tango.AttrQuality.ATTR_CHANGING: Quality.CHANGING,
    tango.AttrQuality.ATTR_WARNING: Quality.WARNING,
}

_FORMAT = {
    tango.AttrDataFormat.SCALAR: Format.SCALAR,
    tango.AttrDataFormat.SPECTRUM: Format.SPECTRUM,
    tango.AttrDataFormat.IMAGE: Format.IMAGE,
}

_NUMERIC_DTYPES = {
    tango.CmdArgType.DevShort: "int16",
    tango.CmdArgType.DevUShort: "uint16",
    tango.CmdArgType.DevLong: "int32",
    tango.CmdArgType.DevULong: "uint32",
    tango.CmdArgType.DevLong64: "int64",
    tango.CmdArgType.DevULong64: "uint64",
    tango.CmdArgType.DevFloat: "float32",
    tango.CmdArgType.DevDouble: "float64",
    tango.CmdArgType.DevUChar: "uint8",
}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None  # Tango says "Not specified"


def error_text(errors: Sequence[Any]) -> tuple[str, str]:
    """``(reason, "reason: description")`` of the most specific error of a Tango error stack."""
    if not errors:
        return "Unknown", "Unknown: unknown Tango error"
    reason, desc = describe_stack(errors)
    reason = reason or "Unknown"
    return reason, f"{reason}: {desc}"


def kind_of(dtype: Any) -> tuple[Kind, str]:
    """The kind of value and the numpy dtype of a Tango data type (``CmdArgType``)."""
    if dtype == tango.CmdArgType.DevState:
        return Kind.STATE, "object"
    if dtype == tango.CmdArgType.DevEnum:
        return Kind.ENUM, "int16"
    if dtype == tango.CmdArgType.DevBoolean:
        return Kind.BOOL, "bool"
    if dtype == tango.CmdArgType.DevString:
        return Kind.STRING, "object"
    if dtype == tango.CmdArgType.DevEncoded:
        return Kind.ENCODED, "object"
    if dtype in _NUMERIC_DTYPES:
        return Kind.NUMBER, _NUMERIC_DTYPES[dtype]
    return Kind.OTHER, "object"


def format_of(data_format: Any) -> Format:
    """Our :class:`Format` of a Tango ``AttrDataFormat``."""
    return _FORMAT.get(data_format, Format.SCALAR)


def info_from_config(config: Any) -> AttributeInfo:
    """Build :class:`AttributeInfo` from an ``AttributeInfoEx``."""
    labels = tuple(getattr(config, "enum_labels", ()) or ())
    kind, np_dtype = kind_of(config.data_type)
    alarms = config.alarms
    unit = config.unit if config.unit not in ("No unit", "") else ""
    fmt = config.format if config.format not in ("Not specified",) else ""
    return AttributeInfo(
        name=config.name,
        format=_FORMAT.get(config.data_format, Format.SCALAR),
        kind=kind,
        dtype=np_dtype,
        label=config.label or config.name,
        unit=unit,
        display_format=fmt,
        writable=config.writable != tango.AttrWriteType.READ,
        enum_labels=labels,
        min_value=_number(config.min_value),
        max_value=_number(config.max_value),
        min_alarm=_number(alarms.min_alarm),
        max_alarm=_number(alarms.max_alarm),
        min_warning=_number(alarms.min_warning),
        max_warning=_number(alarms.max_warning),
        max_dim_x=int(config.max_dim_x),
        max_dim_y=int(config.max_dim_y),
    )


_AS_IS = frozenset({float, int, bool, str, np.ndarray})


def _value(raw: Any) -> Any:
    kind = type(raw)
    if kind in _AS_IS or raw is None:  # the hot path: one set lookup
        return raw
    if isinstance(raw, tango.DevState):
        return str(raw)
    if isinstance(raw, np.ndarray):
        return raw
    if isinstance(raw, np.bool_):
        return bool(raw)
    if isinstance(raw, int | np.integer):  # IntEnum (DevEnum) and numpy integers: plain ints
        return int(raw)
    if isinstance(raw, np.floating | float):
        return float(raw)
    if isinstance(raw, list | tuple):
        if len(raw) == 2 and isinstance(raw[0], str) and isinstance(raw[1], bytes | bytearray):
            return Encoded(raw[0], bytes(raw[1]))  # DevEncoded: (format, data)
        if raw and all(isinstance(v, str) for v in raw):
            return tuple(raw)
        return np.asarray(raw)
    return raw


def devstate(value: str | Any) -> Any:
    """A State sample's value (its name, e.g. ``"ON"``) as ``tango.DevState``.

    Samples carry states by name so that what everyone shares imports no PyTango;
    ``devstate(sample.value) == tango.DevState.ON`` compares with PyTango's enum.
    """
    if isinstance(value, tango.DevState):
        return value
    try:
        return tango.DevState.names[str(value)]
    except KeyError:
        raise ValueError(f"{value!r} is not a Tango state name") from None


def sample_from_attribute(attr: Any) -> Sample:
    """Convert a ``DeviceAttribute`` (from a read) into a :class:`Sample`."""
    if attr.has_failed:
        _, text = error_text(attr.get_err_stack())
        return Sample(_time.time(), None, Quality.INVALID, text)
    return _sample(attr)


def _sample(attr: Any) -> Sample:
    quality = _QUALITY.get(attr.quality, Quality.INVALID)
    if quality is Quality.INVALID:
        return Sample(attr.time.totime(), None, quality)
    return Sample(attr.time.totime(), _value(attr.value), quality)


def sample_from_error(errors: Sequence[Any], when: float | None = None) -> Sample:
    """An error sample; event time-outs and lost connections are marked stale."""
    reason, text = error_text(errors)
    return Sample(
        time=_time.time() if when is None else when,
        value=None,
        quality=Quality.INVALID,
        error=text,
        stale=reason in STALE_REASONS,
    )


def sample_from_exception(exc: BaseException) -> Sample:
    if isinstance(exc, tango.DevFailed):
        return sample_from_error(exc.args)
    return Sample(
        time=_time.time(), value=None, quality=Quality.INVALID, error=f"{type(exc).__name__}: {exc}"
    )


def sample_from_event(event: Any) -> Sample:
    """Convert an ``EventData`` into a :class:`Sample`."""
    if event.err:
        when = event.reception_date.totime() if event.reception_date else None
        return sample_from_error(event.errors, when)
    return _sample(event.attr_value)


def samples_from_events(events: Sequence[Any]) -> list[Sample]:
    """Convert a batch of ``EventData`` (from ``get_events``), oldest first.

    The same result as :func:`sample_from_event` on each; written as one loop
    with its lookups hoisted because it runs for every event of a storm.
    """
    out: list[Sample] = []
    append = out.append
    qualities, invalid, as_is, make = _QUALITY, Quality.INVALID, _AS_IS, Sample
    for event in events:
        if event.err:
            append(sample_from_event(event))
            continue
        attr = event.attr_value
        if attr is None:  # a subscription notice without a value (asynchronous modes)
            continue
        quality = qualities.get(attr.quality, invalid)
        if quality is invalid:
            append(make(attr.time.totime(), None, quality))
            continue
        raw = attr.value
        append(make(attr.time.totime(), raw if type(raw) in as_is else _value(raw), quality))
    return out
