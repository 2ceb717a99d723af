"""The awkward test device (``devices/awkward.py``) does each awkward thing it promises.

One real device server process without a database (``process=True``), so that
the self-pushed events and the monitor behave as in production.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tango
from tango.test_context import DeviceTestContext

from tango_bokeh_devices.awkward import (
    NON_FINITE,
    PHASES,
    SPECTRUM_POINTS,
    SimAwkward,
    flaky_fails,
    non_finite_value,
)
from tango_bokeh_devices.catalog import AWKWARD, DEMO, awkward_catalog
from tango_bokeh_devices.servers import SERVER_CLASSES


@pytest.fixture(scope="module")
def awkward() -> Iterator[tango.DeviceProxy]:
    props = {"SlowDelay": 0.5, "CounterRate": 5.0}
    with DeviceTestContext(SimAwkward, properties=props, process=True) as proxy:
        proxy.set_timeout_millis(5000)
        yield proxy


def test_the_catalog_keeps_it_out_of_the_demo() -> None:
    assert [s.server for s in AWKWARD] == ["SimAwkward"] and awkward_catalog() == AWKWARD
    (device,) = AWKWARD[0].devices
    assert device.name == "sim/awkward/1" and not device.polled
    assert "SimAwkward" in SERVER_CLASSES
    attrs = set(SimAwkward.TangoClassClass.attr_list)
    assert set(device.properties) <= set(SimAwkward.TangoClassClass.device_property_list)
    assert {"Slow", "Flaky", "NonFinite", "Counter", "Temperature"} <= attrs
    assert all(d.tango_class != "SimAwkward" for s in DEMO for d in s.devices)


def test_policies_of_the_reads() -> None:
    assert [flaky_fails(n) for n in range(1, 7)] == [False, False, True, False, False, True]
    values = [non_finite_value(n) for n in range(1, 9)]
    assert values[1] != values[1] and values[3] == math.inf and values[5] == -math.inf
    assert values[7] == 1e308 and non_finite_value(9) == NON_FINITE[0]


def test_slow_read_takes_its_delay_and_the_delay_is_writable(awkward) -> None:
    awkward.write_attribute("SlowDelay", 0.4)
    started = time.monotonic()
    awkward.read_attribute("Slow")
    assert time.monotonic() - started >= 0.4
    with pytest.raises(tango.DevFailed, match="SlowDelay must be"):
        awkward.write_attribute("SlowDelay", 1e6)


def test_flaky_fails_every_third_read(awkward) -> None:
    outcomes = [
        not reply.has_failed for reply in (awkward.read_attributes(["Flaky"])[0] for _ in range(6))
    ]
    assert outcomes.count(False) == 2
    assert outcomes.index(False) in (0, 1, 2) and outcomes[outcomes.index(False) + 3] is False


def test_non_finite_values_in_turn(awkward) -> None:
    seen = [awkward.read_attribute("NonFinite").value for _ in range(len(NON_FINITE))]
    assert sum(math.isnan(v) for v in seen) == 1
    assert math.inf in seen and -math.inf in seen and 1e308 in seen


def test_encoded_formats(awkward) -> None:
    fmt, data = awkward.read_attribute("EncodedJson").value
    assert fmt == "json" and json.loads(bytes(data).decode())["phase"] in PHASES
    fmt, data = awkward.read_attribute("EncodedText").value
    assert fmt == "utf8" and "température" in bytes(data).decode()
    fmt, data = awkward.read_attribute("EncodedBinary").value
    assert fmt == "gray8" and bytes(data) == bytes(range(8))


def test_enum_labels_and_short_spectrum(awkward) -> None:
    assert tuple(awkward.get_attribute_config("Phase").enum_labels) == PHASES
    config = awkward.get_attribute_config("Spectrum")
    assert config.max_dim_x == 65536
    assert np.asarray(awkward.read_attribute("Spectrum").value).shape == (SPECTRUM_POINTS,)


def test_unit_change_sends_a_configuration_event(awkward) -> None:
    eid = awkward.subscribe_event("Temperature", tango.EventType.ATTR_CONF_EVENT, 10)
    try:
        awkward.SetUnit("degC")
        deadline = time.monotonic() + 5
        units: list[str] = []
        while "degC" not in units and time.monotonic() < deadline:
            units += [e.attr_conf.unit for e in awkward.get_events(eid) if not e.err]
            time.sleep(0.05)
        assert "degC" in units
        config = awkward.get_attribute_config("Temperature")
        assert config.unit == "degC" and float(config.alarms.max_alarm) < 100
        assert awkward.read_attribute("Temperature").value < 100
    finally:
        awkward.SetUnit("K")
        awkward.unsubscribe_event(eid)
    assert awkward.read_attribute("Temperature").value > 200
    with pytest.raises(tango.DevFailed, match="unit must be"):
        awkward.SetUnit("F")


def test_late_attribute_appears_and_goes(awkward) -> None:
    with pytest.raises(tango.DevFailed, match=r"API_AttrNotFound|Late"):
        awkward.get_attribute_config("Late")
    awkward.AddLate()
    awkward.AddLate()  # idempotent
    try:
        assert awkward.get_attribute_config("Late").unit == "bar"
        assert awkward.read_attribute("Late").value > 0
    finally:
        awkward.RemoveLate()
    with pytest.raises(tango.DevFailed):
        awkward.get_attribute_config("Late")


def test_counter_is_pushed_by_the_device_at_its_rate(awkward) -> None:
    with pytest.raises(tango.DevFailed, match="API_AttributePollingNotStarted"):
        awkward.subscribe_event("Fast", tango.EventType.CHANGE_EVENT, 10)
    eid = awkward.subscribe_event("Counter", tango.EventType.CHANGE_EVENT, 100)
    try:
        time.sleep(2.0)
        values = [e.attr_value.value for e in awkward.get_events(eid) if not e.err]
    finally:
        awkward.unsubscribe_event(eid)
    assert len(values) >= 4  # 5 Hz, loosely: the machine is shared
    assert values == sorted(values)
