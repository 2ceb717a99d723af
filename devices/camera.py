"""SimCamera: a beam viewer (YAG screen + CCD) with a wandering Gaussian spot.

Frames (uint16, ``Height`` x ``Width``) are produced by a background thread at
``FrameRate`` Hz and pushed as change events on ``Image`` and ``FrameNumber``. Longer
``Exposure`` gives a brighter spot and saturates at 65535 like a real 16-bit sensor.
"""

from __future__ import annotations

import numpy as np
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, device_property

from ._sim import PacedLoop, rng_for, throw

MAX_SIDE = 4096
MAX_FRAME_RATE = 200.0


def frame_at(width: int, height: int, sim_time: float, exposure_ms: float, seed: int, frame: int):
    """One camera frame: dark level + Gaussian spot on a Lissajous path + noise, as uint16."""
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    cx = width * (0.5 + 0.25 * np.sin(2.0 * np.pi * sim_time / 17.0))
    cy = height * (0.5 + 0.25 * np.sin(2.0 * np.pi * sim_time / 11.0 + 0.7))
    sx = max(2.0, 0.06 * width)
    sy = max(2.0, 0.04 * height)
    peak = 3000.0 * exposure_ms  # counts at the spot centre
    gx = np.exp(-0.5 * ((x - cx) / sx) ** 2)
    gy = np.exp(-0.5 * ((y - cy) / sy) ** 2)
    image = np.outer(gy, gx * np.float32(peak))
    image += 200.0  # dark level
    noise = rng_for(seed, 11, frame).standard_normal((height, width), dtype=np.float32)
    image += noise * np.sqrt(image * 0.5 + 25.0)
    np.clip(image, 0.0, 65535.0, out=image)
    return image.astype(np.uint16)


class SimCamera(Device):
    """Simulated 16-bit camera pushing ``Image`` and ``FrameNumber`` change events."""

    Seed = device_property(dtype=int, default_value=0)
    Width = device_property(dtype=int, default_value=512)
    Height = device_property(dtype=int, default_value=512)
    FrameRate = device_property(dtype=float, default_value=10.0, doc="Initial frame rate (Hz)")

    Image = attribute(
        dtype=((np.uint16,),),
        max_dim_x=MAX_SIDE,
        max_dim_y=MAX_SIDE,
        unit="counts",
        doc="Last frame (pushed change events)",
    )
    FrameNumber = attribute(dtype="DevLong", doc="Number of the last frame (pushed change events)")
    Exposure = attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="ms",
        format="%.2f",
        min_value=0.0,
        doc="Exposure time; the spot saturates above ~21 ms",
    )
    frame_rate = attribute(
        name="FrameRate",
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="Hz",
        format="%.2f",
        fget="read_frame_rate",
        fset="write_frame_rate",
        doc="Frames per second",
    )

    def init_device(self) -> None:
        super().init_device()
        width, height = int(self.Width), int(self.Height)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            throw("SimCamera_BadSize", f"Width and Height must be 1..{MAX_SIDE}", "init_device")
        self._size = (width, height)
        self._rate = min(max(float(self.FrameRate), 0.01), MAX_FRAME_RATE)
        self._exposure = 10.0
        self._frame = self._made = 0
        self._image = frame_at(width, height, 0.0, self._exposure, self.Seed, 0)
        self.set_change_event("Image", True, False)
        self.set_change_event("FrameNumber", True, False)
        self.set_state(DevState.ON)
        self._set_status()
        self._loop = PacedLoop(self, lambda: self._rate, self._make, self._publish)
        self._loop.start()

    def delete_device(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.stop()
        super().delete_device()

    def _set_status(self) -> None:
        w, h = self._size
        self.set_status(f"Acquiring {w}x{h} at {self._rate:g} Hz, exposure {self._exposure:g} ms")

    def _make(self, sim_time: float) -> tuple[int, np.ndarray]:
        """Runs on the frame thread only, without the monitor (the expensive part)."""
        self._made += 1
        image = frame_at(*self._size, sim_time, self._exposure, self.Seed, self._made)
        return self._made, image

    def _publish(self, item: tuple[int, np.ndarray]) -> None:
        """Runs under the device monitor, like the read methods."""
        self._frame, self._image = item
        self.push_change_event("Image", self._image)
        self.push_change_event("FrameNumber", self._frame)

    def read_Image(self) -> np.ndarray:
        return self._image

    def read_FrameNumber(self) -> int:
        return self._frame

    def read_Exposure(self) -> float:
        return self._exposure

    def write_Exposure(self, value: float) -> None:
        if not 0.001 <= value <= 10_000.0:
            throw("SimCamera_BadExposure", "Exposure must be 0.001..10000 ms", "Exposure")
        self._exposure = float(value)
        self._set_status()

    def read_frame_rate(self) -> float:
        return self._rate

    def write_frame_rate(self, value: float) -> None:
        if not 0.01 <= value <= MAX_FRAME_RATE:
            throw(
                "SimCamera_BadRate", f"FrameRate must be 0.01..{MAX_FRAME_RATE:g} Hz", "FrameRate"
            )
        self._rate = float(value)
        self._set_status()
