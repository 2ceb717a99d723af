"""SimSpectrometer: a fibre spectrometer whose emission lines drift, pushed as change events.

A background thread produces one spectrum per period (``Rate`` Hz) and pushes it with
``push_change_event`` under the device monitor (see :class:`._sim.PacedLoop`). The events
are declared in code (pushed, no detection), so clients can subscribe to change events
without any polling. Frame ``n`` depends only on (Seed, n, Rate history), not on thread
scheduling.
"""

from __future__ import annotations

import numpy as np
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, device_property

from ._sim import PacedLoop, rng_for, throw

MAX_POINTS = 65536
MAX_RATE = 1000.0

# (centre nm, swing nm, swing period s, amplitude counts, sigma nm)
PEAKS = (
    (486.1, 12.0, 23.0, 900.0, 4.0),
    (589.3, 25.0, 41.0, 1500.0, 6.0),
    (656.3, 8.0, 13.0, 600.0, 3.0),
    (810.0, 40.0, 67.0, 400.0, 15.0),
)


def spectrum_at(wavelength: np.ndarray, sim_time: float, seed: int, frame: int) -> np.ndarray:
    """Baseline + moving Gaussian lines + shot/read noise for one frame."""
    y = 80.0 + 40.0 * np.exp(-(((wavelength - 550.0) / 300.0) ** 2))
    for centre, swing, period, amplitude, sigma in PEAKS:
        c = centre + swing * np.sin(2.0 * np.pi * sim_time / period)
        y += amplitude * np.exp(-0.5 * ((wavelength - c) / sigma) ** 2)
    noise = rng_for(seed, 7, frame).standard_normal(wavelength.size)
    return y + np.sqrt(y + 25.0) * noise


class SimSpectrometer(Device):
    """Simulated spectrometer pushing ``Spectrum`` change events at ``Rate`` Hz."""

    Seed = device_property(dtype=int, default_value=0)
    Points = device_property(dtype=int, default_value=1024, doc="Pixels of the detector")
    Rate = device_property(dtype=float, default_value=5.0, doc="Initial frame rate (Hz)")
    WavelengthMin = device_property(dtype=float, default_value=200.0, doc="nm")
    WavelengthMax = device_property(dtype=float, default_value=1000.0, doc="nm")

    Spectrum = attribute(
        dtype=(float,),
        max_dim_x=MAX_POINTS,
        unit="counts",
        format="%.1f",
        doc="Intensity per pixel (pushed change events)",
    )
    Wavelength = attribute(
        dtype=(float,), max_dim_x=MAX_POINTS, unit="nm", format="%.2f", doc="Pixel wavelengths"
    )
    rate = attribute(
        name="Rate",
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="Hz",
        format="%.2f",
        fget="read_rate",
        fset="write_rate",
        doc="Frames per second pushed as change events",
    )

    def init_device(self) -> None:
        super().init_device()
        points = int(self.Points)
        if not 1 <= points <= MAX_POINTS:
            throw("SimSpectrometer_BadPoints", f"Points must be 1..{MAX_POINTS}", "init_device")
        self._rate = min(max(float(self.Rate), 0.01), MAX_RATE)
        self._wavelength = np.linspace(self.WavelengthMin, self.WavelengthMax, points)
        self._frame = self._made = 0
        self._spectrum = spectrum_at(self._wavelength, 0.0, self.Seed, 0)
        self.set_change_event("Spectrum", True, False)
        self.set_change_event("Wavelength", True, False)
        self.set_state(DevState.ON)
        self.set_status(f"Acquiring {points} points at {self._rate:g} Hz")
        self._loop = PacedLoop(self, lambda: self._rate, self._make, self._publish)
        self._loop.start()

    def delete_device(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.stop()
        super().delete_device()

    def _make(self, sim_time: float) -> tuple[int, np.ndarray]:
        """Runs on the frame thread only, without the monitor."""
        self._made += 1
        return self._made, spectrum_at(self._wavelength, sim_time, self.Seed, self._made)

    def _publish(self, item: tuple[int, np.ndarray]) -> None:
        """Runs under the device monitor, like the read methods."""
        self._frame, self._spectrum = item
        self.push_change_event("Spectrum", self._spectrum)

    def read_Spectrum(self) -> np.ndarray:
        return self._spectrum

    def read_Wavelength(self) -> np.ndarray:
        return self._wavelength

    def read_rate(self) -> float:
        return self._rate

    def write_rate(self, value: float) -> None:
        if not 0.01 <= value <= MAX_RATE:
            throw("SimSpectrometer_BadRate", f"Rate must be 0.01..{MAX_RATE:g} Hz", "Rate")
        self._rate = float(value)
        self.set_status(f"Acquiring {self._wavelength.size} points at {self._rate:g} Hz")
