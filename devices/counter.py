"""SimCounter: a photodiode/scaler reading counts per second.

The count rate drifts slowly (sine) and carries Poisson-like noise, so that the value
crosses the warning and alarm thresholds declared below and the attribute quality goes
VALID -> WARNING -> ALARM -> WARNING -> VALID periodically; Tango's default State then
reports ALARM while the value is out of range.

Each integration period ``k`` has one value that is a pure function of (Seed, k), so
the same seed gives the same sequence whoever reads it and when.
"""

from __future__ import annotations

import math
import time

from tango import AttrWriteType, DevState
from tango.server import Device, attribute, device_property

from ._sim import SeededNormals, throw

NOMINAL_RATE = 10_000.0  # counts/s
DRIFT_AMPLITUDE = 0.35  # relative; crosses warning (+-25 %) and alarm (+-30 %)
MODES = ("continuous", "single", "gated")


def counts_at(seed: int, k: int, integration_time: float, drift_period: float) -> float:
    """Count rate of integration period ``k``: the model, exposed so tests can check it."""
    return _counts(SeededNormals(seed), k, integration_time, drift_period)


def _counts(noise: SeededNormals, k: int, integration_time: float, drift_period: float) -> float:
    t_mid = (k + 0.5) * integration_time
    rate = NOMINAL_RATE * (1.0 + DRIFT_AMPLITUDE * math.sin(2.0 * math.pi * t_mid / drift_period))
    sigma = math.sqrt(rate / integration_time)  # Poisson statistics of rate*T counts
    return max(0.0, rate + sigma * noise(k))


class SimCounter(Device):
    """Simulated diode counter with drift, noise and alarm thresholds."""

    Seed = device_property(dtype=int, default_value=0)
    IntegrationTime = device_property(dtype=float, default_value=0.1, doc="Seconds per value")
    DriftPeriod = device_property(dtype=float, default_value=60.0, doc="Seconds per drift cycle")

    Counts = attribute(
        dtype=float,
        unit="counts/s",
        format="%.1f",
        label="Counts",
        min_alarm=NOMINAL_RATE * 0.70,
        min_warning=NOMINAL_RATE * 0.75,
        max_warning=NOMINAL_RATE * 1.25,
        max_alarm=NOMINAL_RATE * 1.30,
        doc="Count rate of the last completed integration",
    )
    AcquisitionNumber = attribute(
        dtype="DevLong64", doc="Index k of the integration that Counts belongs to"
    )
    Mode = attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="Acquisition mode: " + " | ".join(MODES),
    )

    def init_device(self) -> None:
        super().init_device()
        self._t_start = time.monotonic()
        self._noise = SeededNormals(self.Seed)
        self._mode = MODES[0]
        self._k = 0
        self.set_state(DevState.ON)
        self.set_status("Counting")

    def _current_k(self) -> int:
        return int((time.monotonic() - self._t_start) / self.IntegrationTime)

    def read_attr_hardware(self, attr_list: list[int]) -> None:
        # one instant per request, so Counts and AcquisitionNumber read together agree
        self._k = self._current_k()

    def read_Counts(self) -> float:
        return _counts(self._noise, self._k, self.IntegrationTime, self.DriftPeriod)

    def read_AcquisitionNumber(self) -> int:
        return self._k

    def read_Mode(self) -> str:
        return self._mode

    def write_Mode(self, value: str) -> None:
        mode = value.strip().lower()
        if mode not in MODES:
            throw(
                "SimCounter_BadMode",
                f"Unknown mode {value!r}; expected one of {', '.join(MODES)}",
                "SimCounter.write_Mode",
            )
        self._mode = mode
