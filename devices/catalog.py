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
