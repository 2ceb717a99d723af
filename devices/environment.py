"""SimThermocouple and SimVacuumGauge: slow environment readings, never polled by Tango.

Neither class configures polling or events, and the catalog puts none in the database,
so event subscriptions fail with ``API_AttributePollingNotStarted`` and clients must poll.
"""

from __future__ import annotations

import math
import time

from tango import DevState
from tango.server import Device, attribute, device_property

from ._sim import SeededNormals


class SimThermocouple(Device):
    """Type-K thermocouple: mean-reverting random walk around ``Setpoint`` (degC)."""

    Seed = device_property(dtype=int, default_value=0)
    Setpoint = device_property(dtype=float, default_value=23.0, doc="Mean temperature (degC)")
    Wander = device_property(dtype=float, default_value=0.5, doc="Long-term RMS wander (K)")
    Relaxation = device_property(dtype=float, default_value=120.0, doc="Correlation time (s)")

    SAMPLE_PERIOD = 0.5  # s: one new reading per conversion

    Temperature = attribute(
        dtype=float,
        unit="degC",
        format="%6.2f",
        label="Temperature",
        max_warning=60.0,
        max_alarm=80.0,
        doc="Thermocouple temperature",
    )

    def init_device(self) -> None:
        super().init_device()
        self._t_start = time.monotonic()
        self._noise = SeededNormals(self.Seed)
        self._k = 0
        self._value = float(self.Setpoint)
        self.set_state(DevState.ON)
        self.set_status("Reading")

    def _advance(self) -> float:
        """Step the Ornstein-Uhlenbeck walk up to now; sample k depends only on (Seed, k)."""
        k_now = int((time.monotonic() - self._t_start) / self.SAMPLE_PERIOD)
        decay = math.exp(-self.SAMPLE_PERIOD / self.Relaxation)
        kick = self.Wander * math.sqrt(1.0 - decay * decay)
        mean = float(self.Setpoint)
        while self._k < k_now:
            self._k += 1
            self._value = mean + (self._value - mean) * decay + kick * self._noise(self._k)
        return self._value

    def read_Temperature(self) -> float:
        return self._advance()


class SimVacuumGauge(Device):
    """Cold-cathode gauge on a chamber that is pumped down and then vented by a leak, cyclically.

    log10(pressure) falls exponentially from ``HighPressure`` towards ``BasePressure`` for
    70 % of the cycle, then rises linearly back (leak) for the remaining 30 %.
    """

    Seed = device_property(dtype=int, default_value=0)
    BasePressure = device_property(dtype=float, default_value=1e-9, doc="mbar")
    HighPressure = device_property(dtype=float, default_value=1e-5, doc="mbar")
    CyclePeriod = device_property(dtype=float, default_value=120.0, doc="Seconds per cycle")

    SAMPLE_PERIOD = 0.1
    PUMP_FRACTION = 0.7

    Pressure = attribute(
        dtype=float,
        unit="mbar",
        format="%.2e",
        label="Pressure",
        max_warning=1e-6,
        max_alarm=5e-6,
        doc="Chamber pressure",
    )

    def init_device(self) -> None:
        super().init_device()
        self._t_start = time.monotonic()
        self._noise = SeededNormals(self.Seed)
        self.set_state(DevState.ON)
        self.set_status("Gauge on, high voltage on")

    def pressure_at(self, t: float) -> float:
        """Noise-free pressure (mbar) ``t`` seconds into the simulation."""
        period = float(self.CyclePeriod)
        lo = math.log10(self.BasePressure)
        hi = math.log10(self.HighPressure)
        pump_time = self.PUMP_FRACTION * period
        tau = pump_time / 6.0
        phase = t % period
        if phase < pump_time:
            log_p = lo + (hi - lo) * math.exp(-phase / tau)
        else:
            end = lo + (hi - lo) * math.exp(-pump_time / tau)
            log_p = end + (hi - end) * (phase - pump_time) / (period - pump_time)
        return 10.0**log_p

    def read_Pressure(self) -> float:
        k = int((time.monotonic() - self._t_start) / self.SAMPLE_PERIOD)
        return self.pressure_at(k * self.SAMPLE_PERIOD) * (1.0 + 0.02 * self._noise(k))
