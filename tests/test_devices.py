"""Fast tests of the simulated device servers, run without a Tango database.

Each test group starts one real device server process (``process=True``) so that
events and background threads behave as in production. The full beamline with the
database is exercised by the tests of ``tango_bokeh.sim``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import tango
from tango.test_context import DeviceTestContext, MultiDeviceTestContext

from tango_bokeh_devices.camera import SimCamera
from tango_bokeh_devices.catalog import DEMO, DeviceSpec, ServerSpec, catalog
from tango_bokeh_devices.counter import SimCounter, counts_at
from tango_bokeh_devices.faulty import SimFaulty
from tango_bokeh_devices.motor import SimMotor, plan_trapezoid
from tango_bokeh_devices.servers import SERVER_CLASSES
from tango_bokeh_devices.spectrometer import SimSpectrometer
from tango_bokeh_devices.storm import SimEventStorm

ON, MOVING, OFF = tango.DevState.ON, tango.DevState.MOVING, tango.DevState.OFF


def wait_for(predicate, timeout: float = 5.0, period: float = 0.02) -> bool:
    """Poll ``predicate`` until true; the devices evolve with wall-clock time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


# --- pure model and catalog (no server) -----------------------------------------------


def test_trapezoid_reaches_target_within_limits() -> None:
    """Long moves cruise at vmax, short ones are triangles; both end exactly at rest."""
    for x0, x1 in ((0.0, 10.0), (5.0, 4.9), (-3.0, 3.0)):
        segs = plan_trapezoid(x0, x1, vmax=2.0, amax=4.0, t0=100.0)
        end, v_end = segs[-1].at(segs[-1].t1)
        assert end == pytest.approx(x1) and v_end == pytest.approx(0.0, abs=1e-12)
        peak = max(abs(s.v0 + s.a * s.duration) for s in segs)
        assert peak <= 2.0 + 1e-9
    assert len(plan_trapezoid(0.0, 10.0, 2.0, 4.0, 0.0)) == 3  # accel, cruise, decel
    assert len(plan_trapezoid(0.0, 0.1, 2.0, 4.0, 0.0)) == 2  # triangle


def test_catalog_matches_device_classes() -> None:
    """Every polled or configured attribute exists, so the DB never refers to a typo."""
    classes = {cls.__name__: cls for group in SERVER_CLASSES.values() for cls in group}
    assert catalog() == DEMO
    names = set()
    for server in DEMO:
        assert isinstance(server, ServerSpec) and server.instance == "demo"
        hosted = {cls.__name__ for cls in SERVER_CLASSES[server.server]}
        for dev in server.devices:
            assert isinstance(dev, DeviceSpec) and dev.tango_class in hosted
            tango_class = classes[dev.tango_class].TangoClassClass
            attrs = set(tango_class.attr_list) | {"State", "Status"}
            assert set(dev.polled) <= attrs, dev.name
            assert set(dev.attribute_properties) <= attrs, dev.name
            assert set(dev.properties) <= set(tango_class.device_property_list), dev.name
            assert all(isinstance(v, list) for v in dev.properties.values())
            names.add(dev.name)
    assert {"sim/motor/1", "sim/counter/1", "sim/beam/current", "sim/storm/1"} <= names
    other = catalog("t7", "lab")
    assert {s.full_name for s in other} >= {"SimMotor/t7", "SimEnvironment/t7"}
    aliases = {d.alias for s in other for d in s.devices if d.alias}
    assert aliases == {"lab_mot1", "lab_mot2", "lab_diode1"}


def test_main_rejects_unknown_server(capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in the server name gets a usage message, not a Tango traceback."""
    from tango_bokeh_devices.__main__ import main

    assert main(["NoSuchServer", "demo"]) == 2
    assert "SimMotor" in capsys.readouterr().err


# --- motor --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def motor() -> Iterator[tango.DeviceProxy]:
    props = {"LowLimit": -5.0, "HighLimit": 5.0, "InitialVelocity": 10.0}
    props["InitialAcceleration"] = 40.0
    with DeviceTestContext(SimMotor, properties=props, process=True) as proxy:
        yield proxy


def test_motor_moves_then_stops_on_target(motor: tango.DeviceProxy) -> None:
    """MoveTo gives MOVING with a direction, then ON exactly at the target."""
    motor.On()
    motor.MoveTo(2.0)
    assert motor.state() == MOVING
    assert motor.read_attribute("Direction").value == 1  # Positive
    assert wait_for(lambda: motor.state() == ON, timeout=3.0)
    assert motor.Position == pytest.approx(2.0)
    assert motor.Direction == 0 and not motor.AtHome
    motor.Home()
    assert wait_for(lambda: motor.state() == ON, timeout=3.0)
    assert motor.AtHome and motor.Position == pytest.approx(0.0)


def test_motor_stop_decelerates_short_of_target(motor: tango.DeviceProxy) -> None:
    motor.MoveTo(4.5)
    time.sleep(0.15)
    motor.Stop()
    assert wait_for(lambda: motor.state() == ON, timeout=3.0)
    assert 0.0 < motor.Position < 4.5
    motor.MoveTo(0.0)
    assert wait_for(lambda: motor.state() == ON, timeout=3.0)


def test_motor_refuses_limits_and_off(motor: tango.DeviceProxy) -> None:
    """The error names the limit and the reason is stable for programs."""
    with pytest.raises(tango.DevFailed) as err:
        motor.MoveTo(7.0)
    assert err.value.args[0].reason == "SimMotor_SoftLimit"
    assert "soft limits [-5, 5]" in err.value.args[0].desc
    with pytest.raises(tango.DevFailed):
        motor.Position = -6.0
    motor.Off()
    assert motor.state() == OFF
    with pytest.raises(tango.DevFailed) as err:
        motor.MoveTo(1.0)
    assert err.value.args[0].reason == "SimMotor_Off"
    motor.On()
    assert motor.state() == ON


# --- counter ------------------------------------------------------------------------


def test_counter_is_seeded_and_crosses_thresholds() -> None:
    """Same seed, same values; a fast drift visits VALID, WARNING and ALARM."""
    props = {"IntegrationTime": 0.01, "DriftPeriod": 1.0}
    devices = [
        {"name": f"test/counter/{i}", "properties": {**props, "Seed": seed}}
        for i, seed in ((1, 5), (2, 5), (3, 6))
    ]
    with MultiDeviceTestContext([{"class": SimCounter, "devices": devices}], process=True) as ctx:
        c1, c2, c3 = (ctx.get_device(f"test/counter/{i}") for i in (1, 2, 3))
        seen = set()
        for _ in range(40):
            for dev, seed in ((c1, 5), (c2, 5), (c3, 6)):
                counts, k = dev.read_attributes(["Counts", "AcquisitionNumber"])
                assert counts.value == pytest.approx(counts_at(seed, k.value, 0.01, 1.0))
                seen.add(counts.quality)
            time.sleep(0.03)
        assert counts_at(5, 17, 0.01, 1.0) != counts_at(6, 17, 0.01, 1.0)
        q = tango.AttrQuality
        assert {q.ATTR_VALID, q.ATTR_WARNING, q.ATTR_ALARM} <= seen
        assert c1.Mode == "continuous"
        c1.Mode = "gated"
        with pytest.raises(tango.DevFailed, match="SimCounter_BadMode"):
            c1.Mode = "turbo"


# --- pushed spectra and images ------------------------------------------------------


def count_events(proxy: tango.DeviceProxy, attr: str, seconds: float) -> list[tango.EventData]:
    events: list[tango.EventData] = []
    eid = proxy.subscribe_event(attr, tango.EventType.CHANGE_EVENT, events.append)
    time.sleep(seconds)
    proxy.unsubscribe_event(eid)
    return events


def test_spectrometer_shape_and_push_rate() -> None:
    """Points sets both axes; change events arrive at Rate without any polling."""
    props = {"Points": 256, "Rate": 20.0, "Seed": 3}
    with DeviceTestContext(SimSpectrometer, properties=props, process=True) as spectro:
        spectrum, wavelength = (
            a.value for a in spectro.read_attributes(["Spectrum", "Wavelength"])
        )
        assert spectrum.shape == wavelength.shape == (256,)
        assert np.all(np.diff(wavelength) > 0)
        events = count_events(spectro, "Spectrum", 1.0)
        assert not any(e.err for e in events)
        assert 12 <= len(events) <= 30  # 20 Hz + the initial event
        assert events[-1].attr_value.value.shape == (256,)
        with pytest.raises(tango.DevFailed):
            spectro.Rate = -1.0


def test_camera_shape_and_frames() -> None:
    props = {"Width": 64, "Height": 48, "FrameRate": 25.0}
    with DeviceTestContext(SimCamera, properties=props, process=True) as camera:
        image = camera.Image
        assert image.shape == (48, 64) and image.dtype == np.uint16
        events = count_events(camera, "FrameNumber", 0.6)
        frames = [e.attr_value.value for e in events if not e.err]
        assert len(frames) >= 8 and frames == sorted(frames)
        camera.Exposure = 100.0  # saturates the spot
        assert wait_for(lambda: camera.Image.max() == 65535, timeout=2.0)


# --- faulty and storm ---------------------------------------------------------------


def test_faulty_fails_sometimes_and_is_seeded() -> None:
    """Errors and invalid values come in a sequence fixed by the seed."""
    props = {"Seed": 9, "ErrorProbability": 0.3, "InvalidProbability": 0.2, "FaultPeriod": 0.0}
    devices = [{"name": f"test/faulty/{i}", "properties": props} for i in (1, 2)]
    with MultiDeviceTestContext([{"class": SimFaulty, "devices": devices}], process=True) as ctx:
        outcomes = []
        for name in ("test/faulty/1", "test/faulty/2"):
            dev = ctx.get_device(name)
            seq = []
            for _ in range(40):
                try:
                    value = dev.read_attribute("Value")
                    seq.append("invalid" if value.value is None else "ok")
                except tango.DevFailed as exc:
                    assert exc.args[0].reason == "SimFaulty_ReadError"
                    seq.append("error")
            outcomes.append(seq)
        assert outcomes[0] == outcomes[1]
        assert {"ok", "invalid", "error"} == set(outcomes[0])


def test_storm_respects_rate() -> None:
    with DeviceTestContext(SimEventStorm, properties={"Points": 128}, process=True) as storm:
        storm.Payload = "spectrum"
        storm.Rate = 400.0
        events = []
        eid = storm.subscribe_event("Spectrum", tango.EventType.CHANGE_EVENT, events.append)
        storm.Start()
        assert storm.state() == tango.DevState.RUNNING
        time.sleep(0.5)
        storm.Stop()
        pushed = storm.Pushed
        deadline = time.monotonic() + 10  # events in flight arrive late on a loaded machine
        while len(events) - 1 < pushed and time.monotonic() < deadline:
            time.sleep(0.05)
        storm.unsubscribe_event(eid)
        assert 150 <= pushed <= 260
        assert storm.Pushed == pushed  # nothing after Stop
        sequence = [e.attr_value.value[0] for e in events[1:] if not e.err]
        assert sequence[-1] == pushed and len(sequence) == pushed
        with pytest.raises(tango.DevFailed, match="SimEventStorm_BadPayload"):
            storm.Payload = "image"
