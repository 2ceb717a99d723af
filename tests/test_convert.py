"""Conversion of PyTango values and errors into samples, on real PyTango objects."""

from __future__ import annotations

import enum

import numpy as np
import pytest
import tango

from tango_bokeh.tango.convert import (
    _value,
    error_text,
    sample_from_error,
    sample_from_exception,
)
from tango_bokeh.tango.sample import Quality


def dev_failed(reason: str, desc: str) -> tango.DevFailed:
    try:
        tango.Except.throw_exception(reason, desc, "test")
    except tango.DevFailed as exc:
        return exc
    raise AssertionError("throw_exception did not raise")


def test_values_become_plain_python_or_numpy():
    class Direction(enum.IntEnum):
        FORWARD = 0
        BACKWARD = 1

    assert _value(tango.DevState.MOVING) == "MOVING"
    assert type(_value(Direction.BACKWARD)) is int and _value(Direction.BACKWARD) == 1
    assert type(_value(np.int32(7))) is int
    assert type(_value(np.float32(0.5))) is float
    assert _value(np.bool_(True)) is True
    assert _value(["a", "b"]) == ("a", "b")
    assert np.array_equal(_value([1.0, 2.0]), np.array([1.0, 2.0]))
    spectrum = np.arange(4.0)
    assert _value(spectrum) is spectrum  # no copy
    assert _value(None) is None


def test_error_text_names_the_most_specific_reason():
    exc = dev_failed("API_AttrNotFound", "Attribute Nope not found\nin device sim/motor/1")
    reason, text = error_text(exc.args)
    assert reason == "API_AttrNotFound"
    assert text == "API_AttrNotFound: Attribute Nope not found in device sim/motor/1"
    assert error_text([]) == ("Unknown", "Unknown: unknown Tango error")


def test_errors_are_samples_and_timeouts_are_stale():
    timeout = sample_from_error(dev_failed("API_EventTimeout", "no news").args, when=12.5)
    assert (timeout.time, timeout.value, timeout.quality) == (12.5, None, Quality.INVALID)
    assert timeout.stale and not timeout.ok
    wrong = sample_from_exception(dev_failed("API_AttrNotFound", "no such attribute"))
    assert not wrong.stale and wrong.error.startswith("API_AttrNotFound")
    other = sample_from_exception(RuntimeError("boom"))
    assert other.error == "RuntimeError: boom" and other.quality is Quality.INVALID


def test_state_names_compare_with_pytangos_enum():
    import tango

    from tango_bokeh.tango.convert import devstate

    assert devstate("ON") == tango.DevState.ON
    assert devstate(tango.DevState.FAULT) == tango.DevState.FAULT
    with pytest.raises(ValueError, match="not a Tango state name"):
        devstate("SLEEPY")


def test_one_error_text_for_samples_writes_and_checks():
    """A delayed connection is said to be the connection failure it is (Tango's wording
    hides it), the same way in a failed read's sample and in every other message."""
    from tango_bokeh.tango.errors import describe

    delayed = dev_failed(
        "API_CantConnectToDevice",
        "Failed to connect to device sim/motor/1\nThe connection request was delayed.\n"
        "The last connection request was done less than 1000 ms ago",
    )
    reason, text = describe(delayed)
    assert reason == "API_CantConnectToDevice"
    assert text == (
        "Failed to connect to device sim/motor/1: it did not answer the previous attempt, "
        "less than a second ago (Tango tries again after that)"
    )
    assert error_text(delayed.args) == (reason, f"{reason}: {text}")
    assert sample_from_exception(delayed).error == f"{reason}: {text}"
    plain = dev_failed("API_AttrNotFound", "no attribute\nNope here")
    assert describe(plain) == ("API_AttrNotFound", "no attribute Nope here")
    assert describe(ValueError("bad  value")) == ("", "bad value")
