"""The simulated beamline: which device servers exist and what the Tango database says about them.

The embedded control system (:mod:`tango_bokeh.sim`) registers exactly what is
listed here, so that polling and event configuration live in the database like
on a real beamline rather than being hard-wired in the device classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceSpec:
    """One device as the Tango database knows it."""

    name: str  # dom/fam/member
    tango_class: str  # Tango class name, e.g. "SimMotor"
    alias: str | None = None
    properties: dict[str, list[str]] = field(default_factory=dict)
    # attribute name -> {property name -> value}, e.g. {"Position": {"abs_change": "0.001"}}
    attribute_properties: dict[str, dict[str, str]] = field(default_factory=dict)
    # attribute name -> polling period in ms (stored as the device's polled_attr property)
    polled: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSpec:
    """One device server process: ``python -m tango_bokeh_devices <server> <instance>``."""

    server: str  # executable name, e.g. "SimMotor"
    instance: str
    devices: tuple[DeviceSpec, ...]

    @property
    def full_name(self) -> str:
        return f"{self.server}/{self.instance}"


def _device(
    name: str,
    tango_class: str,
    alias: str | None = None,
    properties: dict[str, object] | None = None,
    attribute_properties: dict[str, dict[str, str]] | None = None,
    polled: dict[str, int] | None = None,
) -> DeviceSpec:
    """DeviceSpec with property values turned into the list-of-strings form the DB stores."""
    props = {key: [str(value)] for key, value in (properties or {}).items()}
    return DeviceSpec(name, tango_class, alias, props, attribute_properties or {}, polled or {})


def catalog(instance: str = "demo", domain: str = "sim") -> tuple[ServerSpec, ...]:
    """The simulated beamline for server instance ``instance`` and device domain ``domain``.

    Acquisition modes a client meets (that is the point of the variety):

    * change events from DB polling (numbers need ``abs_change``; State, enums and
      booleans need none): motor ``Position``, ``State``, ``Direction`` (enum), ``AtHome``
      (bool); counter ``Counts``; faulty ``State`` and ``Value`` (with error events);
    * periodic events only: beam ``Current`` and ``Lifetime`` (polled, no change threshold);
    * events pushed by code: spectrometer ``Spectrum`` (``Wavelength`` is static: only the
      subscription's first event), camera ``Image``/``FrameNumber``, storm ``Counter``/``Spectrum``;
    * client polling only: thermocouple ``Temperature``, gauge ``Pressure``, and every
      attribute not listed above.

    Aliases are the plain names (``mot1``...) for the default domain "sim" and are prefixed
    with the domain otherwise (``<domain>_mot1``), so several beamlines can share a database.
    """

    def dev(member: str) -> str:
        return f"{domain}/{member}"

    def alias(name: str) -> str:
        return name if domain == "sim" else f"{domain}_{name}"

    motor_attrs = {
        "Position": {
            "abs_change": "0.0005",
            "archive_abs_change": "0.1",
            "archive_period": "10000",
        },
    }
    motors = tuple(
        _device(
            dev(f"motor/{i}"),
            "SimMotor",
            alias(f"mot{i}"),
            {
                "Seed": i,
                "LowLimit": low,
                "HighLimit": high,
                "HomePosition": 0.0,
                "InitialPosition": start,
                "InitialVelocity": velocity,
                "InitialAcceleration": 4 * velocity,
            },
            motor_attrs,
            {"Position": 100, "State": 200, "Direction": 200, "AtHome": 500},
        )
        for i, low, high, start, velocity in (
            (1, -50.0, 50.0, 0.0, 2.0),
            (2, -10.0, 90.0, 25.0, 5.0),
        )
    )
    counter = _device(
        dev("counter/1"),
        "SimCounter",
        alias("diode1"),
        {"Seed": 11, "IntegrationTime": 0.1, "DriftPeriod": 60.0},
        {"Counts": {"abs_change": "1", "archive_period": "1000"}},
        {"Counts": 100},
    )
    beam = _device(
        dev("beam/current"),
        "SimBeamCurrent",
        None,
        {"Seed": 21, "NominalCurrent": 200.0, "LifetimeHours": 10.0, "TopUpPeriod": 60.0},
        {
            "Current": {"event_period": "500", "archive_period": "5000"},
            "Lifetime": {"event_period": "2000"},
        },
        {"Current": 250, "Lifetime": 1000},
    )
    environment = (
        _device(dev("temp/1"), "SimThermocouple", None, {"Seed": 31, "Setpoint": 23.0}),
        _device(dev("temp/2"), "SimThermocouple", None, {"Seed": 32, "Setpoint": 31.5}),
        _device(dev("vacuum/1"), "SimVacuumGauge", None, {"Seed": 41, "CyclePeriod": 120.0}),
    )
    spectrometer = _device(
        dev("spectro/1"), "SimSpectrometer", None, {"Seed": 51, "Points": 1024, "Rate": 5.0}
    )
    camera = _device(
        dev("camera/1"),
        "SimCamera",
        None,
        {"Seed": 61, "Width": 512, "Height": 512, "FrameRate": 10.0},
    )
    faulty = _device(
        dev("faulty/1"),
        "SimFaulty",
        None,
        {"Seed": 71, "ErrorProbability": 0.15, "InvalidProbability": 0.1},
        {"Value": {"abs_change": "0.01"}},
        {"Value": 1000, "State": 1000},
    )
    storm = _device(
        dev("storm/1"), "SimEventStorm", None, {"Seed": 81, "Points": 1024, "Rate": 1000.0}
    )
    return (
        ServerSpec("SimMotor", instance, motors),
        ServerSpec("SimCounter", instance, (counter,)),
        ServerSpec("SimBeamCurrent", instance, (beam,)),
        ServerSpec("SimEnvironment", instance, environment),
        ServerSpec("SimSpectrometer", instance, (spectrometer,)),
        ServerSpec("SimCamera", instance, (camera,)),
        ServerSpec("SimFaulty", instance, (faulty,)),
        ServerSpec("SimEventStorm", instance, (storm,)),
    )


DEMO: tuple[ServerSpec, ...] = catalog()


def awkward_catalog(instance: str = "test", domain: str = "sim") -> tuple[ServerSpec, ...]:
    """The awkward test device (``<domain>/awkward/1``, :mod:`.awkward`): tests and benches only.

    Not in :data:`DEMO`, so neither the demo nor the demo dashboard starts it.
    Nothing is polled by the device: a client polls every attribute but the
    self-pushed ``Counter``.
    """
    device = _device(
        f"{domain}/awkward/1", "SimAwkward", None, {"SlowDelay": 3.0, "CounterRate": 5.0}
    )
    return (ServerSpec("SimAwkward", instance, (device,)),)


AWKWARD: tuple[ServerSpec, ...] = awkward_catalog()
