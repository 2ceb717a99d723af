"""SimBeamCurrent: storage-ring current in top-up mode.

The current decays exponentially with the beam lifetime and is refilled to the nominal
value every ``TopUpPeriod`` seconds (a short linear injection ramp), giving the familiar
saw-tooth. The database polls ``Current`` without change thresholds, so clients get
periodic events (change subscriptions fail with ``API_EventPropertiesNotSet``).
"""

from __future__ import annotations

import math
import time

from tango import DevState
from tango.server import Device, attribute, device_property

from ._sim import SeededNormals

SAMPLE_PERIOD = 0.05  # s: one noise sample per DCCT reading
CURRENT_NOISE = 0.003  # mA RMS


def current_at(t: float, nominal: float, lifetime_s: float, period: float, ramp: float) -> float:
    """Noise-free current (mA) ``t`` seconds after the device started (just after a fill)."""
    phase = t % period
    lowest = nominal * math.exp(-(period - ramp) / lifetime_s)
    if phase >= period - ramp:  # injecting: linear ramp back to nominal
        return lowest + (nominal - lowest) * (phase - (period - ramp)) / ramp
    return nominal * math.exp(-phase / lifetime_s)


class SimBeamCurrent(Device):
    """Simulated DCCT of a storage ring in top-up mode."""

    Seed = device_property(dtype=int, default_value=0)
    NominalCurrent = device_property(dtype=float, default_value=200.0, doc="mA after a fill")
    LifetimeHours = device_property(dtype=float, default_value=10.0, doc="Beam lifetime (h)")
    TopUpPeriod = device_property(dtype=float, default_value=60.0, doc="Seconds between fills")
    InjectionTime = device_property(dtype=float, default_value=2.0, doc="Seconds per injection")

    Current = attribute(
        dtype=float, unit="mA", format="%7.3f", label="Ring current", doc="Stored beam current"
    )
    Lifetime = attribute(dtype=float, unit="h", format="%5.2f", doc="Measured beam lifetime")
    NextInjection = attribute(dtype=float, unit="s", format="%4.1f", doc="Time to next top-up")

    def init_device(self) -> None:
        super().init_device()
        self._t_start = time.monotonic()
        self._noise = SeededNormals(self.Seed, stream=0)
        self._lifetime_noise = SeededNormals(self.Seed, stream=1)
        self._ramp = min(float(self.InjectionTime), 0.5 * float(self.TopUpPeriod))
        self.set_state(DevState.ON)

    def _elapsed(self) -> float:
        return time.monotonic() - self._t_start

    def _current(self, t: float) -> float:
        k = int(t / SAMPLE_PERIOD)
        base = current_at(
            k * SAMPLE_PERIOD,
            self.NominalCurrent,
            self.LifetimeHours * 3600.0,
            self.TopUpPeriod,
            self._ramp,
        )
        return base + CURRENT_NOISE * self._noise(k)

    def _next_injection(self, t: float) -> float:
        return max(0.0, self.TopUpPeriod - self._ramp - t % self.TopUpPeriod)

    def dev_status(self) -> str:
        t = self._elapsed()
        if self._next_injection(t) == 0.0:
            text = f"Top-up injection in progress: {self._current(t):.3f} mA"
        else:
            text = (
                f"Beam delivered, top-up mode: {self._current(t):.3f} mA, lifetime "
                f"{self.LifetimeHours:.1f} h, next injection in {self._next_injection(t):.0f} s"
            )
        self.set_status(text)
        return text

    def read_Current(self) -> float:
        return self._current(self._elapsed())

    def read_Lifetime(self) -> float:
        k = int(self._elapsed())  # the lifetime fit updates once a second
        return self.LifetimeHours * (1.0 + 0.01 * self._lifetime_noise(k))

    def read_NextInjection(self) -> float:
        return self._next_injection(self._elapsed())
