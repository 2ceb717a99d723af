"""SimMotor: a stepper/servo axis with a trapezoidal velocity profile and soft limits.

The position is never integrated by a thread: a move is a list of constant-acceleration
segments planned when it starts, and every read evaluates the profile at the current
time. Polling (configured in the database) then produces change events while moving.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, device_property

from ._sim import SeededNormals, throw

DIRECTION_LABELS = ["Stopped", "Positive", "Negative"]


@dataclass(frozen=True)
class Segment:
    """Constant acceleration from ``t0`` for ``duration`` seconds."""

    t0: float
    x0: float
    v0: float
    a: float
    duration: float

    @property
    def t1(self) -> float:
        return self.t0 + self.duration

    def at(self, t: float) -> tuple[float, float]:
        """Position and velocity at time ``t`` (clamped to the segment)."""
        dt = min(max(t - self.t0, 0.0), self.duration)
        return self.x0 + self.v0 * dt + 0.5 * self.a * dt * dt, self.v0 + self.a * dt


def plan_trapezoid(x0: float, x1: float, vmax: float, amax: float, t0: float) -> list[Segment]:
    """Accelerate, cruise, decelerate from rest at ``x0`` to rest at ``x1``.

    Short moves never reach ``vmax`` and become triangles.
    """
    distance = abs(x1 - x0)
    if distance == 0.0:
        return []
    s = 1.0 if x1 > x0 else -1.0
    if distance >= vmax * vmax / amax:
        t_acc = vmax / amax
        t_cruise = (distance - vmax * vmax / amax) / vmax
        v_peak = vmax
    else:
        t_acc = math.sqrt(distance / amax)
        t_cruise = 0.0
        v_peak = amax * t_acc
    accel = Segment(t0, x0, 0.0, s * amax, t_acc)
    xa, _ = accel.at(accel.t1)
    cruise = Segment(accel.t1, xa, s * v_peak, 0.0, t_cruise)
    xc, _ = cruise.at(cruise.t1)
    decel = Segment(cruise.t1, xc, s * v_peak, -s * amax, t_acc)
    return [seg for seg in (accel, cruise, decel) if seg.duration > 0.0]


def plan_stop(x: float, v: float, amax: float, t0: float) -> list[Segment]:
    """Decelerate at ``amax`` from velocity ``v`` to rest."""
    if v == 0.0:
        return []
    return [Segment(t0, x, v, -math.copysign(amax, v), abs(v) / amax)]


class SimMotor(Device):
    """Simulated motor axis (unit mm) with soft limits, homing and power on/off."""

    Seed = device_property(dtype=int, default_value=0, doc="Seed of the encoder jitter")
    LowLimit = device_property(dtype=float, default_value=-100.0, doc="Soft low limit (mm)")
    HighLimit = device_property(dtype=float, default_value=100.0, doc="Soft high limit (mm)")
    HomePosition = device_property(dtype=float, default_value=0.0, doc="Home switch (mm)")
    InitialPosition = device_property(dtype=float, default_value=0.0, doc="Position at start")
    InitialVelocity = device_property(dtype=float, default_value=2.0, doc="mm/s")
    InitialAcceleration = device_property(dtype=float, default_value=4.0, doc="mm/s^2")
    EncoderNoise = device_property(
        dtype=float, default_value=0.0, doc="Encoder jitter RMS in mm while at rest (0 = none)"
    )
    FaultEvery = device_property(
        dtype=int, default_value=0, doc="Every N-th move ends in FAULT (following error); 0 = never"
    )

    Position = attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="mm",
        format="%8.4f",
        label="Position",
        doc="Dial position; writing it starts a move like MoveTo",
    )
    Velocity = attribute(
        dtype=float, access=AttrWriteType.READ_WRITE, unit="mm/s", format="%.3f", min_value=0.0
    )
    Acceleration = attribute(
        dtype=float, access=AttrWriteType.READ_WRITE, unit="mm/s^2", format="%.3f", min_value=0.0
    )
    Direction = attribute(dtype="DevEnum", enum_labels=DIRECTION_LABELS, doc="Current motion")
    AtHome = attribute(dtype=bool, doc="True when at rest on the home position")

    def init_device(self) -> None:
        super().init_device()
        self._position = float(self.InitialPosition)
        self._velocity = float(self.InitialVelocity)
        self._acceleration = float(self.InitialAcceleration)
        self._segments: list[Segment] = []
        self._target = self._position
        self._powered = True
        self._fault = ""
        self._moves = 0
        self._t_start = time.monotonic()
        self._jitter = SeededNormals(self.Seed, stream=1)
        self.set_state(DevState.ON)

    # --- motion model -------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic()

    def _kinematics(self, t: float) -> tuple[float, float]:
        """Position and velocity at time ``t``; completes the move when it is over."""
        if not self._segments:
            return self._position, 0.0
        if t >= self._segments[-1].t1:
            self._finish_move()
            return self._position, 0.0
        for seg in self._segments:
            if t < seg.t1:
                return seg.at(t)
        return self._segments[-1].at(t)  # not reached

    def _finish_move(self) -> None:
        last = self._segments[-1]
        self._position, _ = last.at(last.t1)
        if abs(self._position - self._target) < 1e-9:
            self._position = self._target
        self._segments = []
        self._moves += 1
        if self.FaultEvery > 0 and self._moves % self.FaultEvery == 0:
            self._fault = (
                f"Following error at {self._position:.4f} mm after move #{self._moves}; "
                "send On to re-enable the drive"
            )

    def _state_now(self) -> DevState:
        self._kinematics(self._now())
        if not self._powered:
            return DevState.OFF
        if self._fault:
            return DevState.FAULT
        if self._segments:
            return DevState.MOVING
        return DevState.ON

    def _start_move(self, target: float) -> None:
        name = self.get_name()
        state = self._state_now()
        if state == DevState.OFF:
            throw(
                "SimMotor_Off",
                f"{name} is OFF (drive disabled): cannot move to {target:g} mm; send On first",
                "SimMotor.MoveTo",
            )
        if state == DevState.FAULT:
            throw("SimMotor_Fault", f"{name} is in FAULT: {self._fault}", "SimMotor.MoveTo")
        if not math.isfinite(target):
            throw("SimMotor_BadTarget", f"{name}: target {target!r} is not a number", "MoveTo")
        low, high = float(self.LowLimit), float(self.HighLimit)
        if not low <= target <= high:
            throw(
                "SimMotor_SoftLimit",
                f"{name}: target {target:g} mm is outside the soft limits "
                f"[{low:g}, {high:g}] mm (LowLimit/HighLimit); move refused",
                "SimMotor.MoveTo",
            )
        now = self._now()
        x, v = self._kinematics(now)
        segments = plan_stop(x, v, self._acceleration, now)
        if segments:
            x, _ = segments[-1].at(segments[-1].t1)
            now = segments[-1].t1
        segments += plan_trapezoid(x, target, self._velocity, self._acceleration, now)
        self._target = target
        self._segments = segments
        if not segments:
            self._position = target
        self.get_device_attr().get_w_attr_by_name("Position").set_write_value(target)

    # --- state and status ---------------------------------------------------------------

    def dev_state(self) -> DevState:
        state = self._state_now()
        self.set_state(state)
        return state

    def dev_status(self) -> str:
        state = self.dev_state()
        x, v = self._kinematics(self._now())
        if state == DevState.MOVING:
            text = f"Moving to {self._target:.4f} mm, at {x:.4f} mm ({v:+.3f} mm/s)"
        elif state == DevState.FAULT:
            text = self._fault
        elif state == DevState.OFF:
            text = f"Drive disabled (OFF) at {x:.4f} mm"
        else:
            text = f"Idle at {x:.4f} mm"
        self.set_status(text)
        return text

    # --- attributes ---------------------------------------------------------------------

    def read_Position(self) -> float:
        now = self._now()
        x, _ = self._kinematics(now)
        if self.EncoderNoise > 0.0 and not self._segments:
            x += self.EncoderNoise * self._jitter(int((now - self._t_start) * 100.0))
        return x

    def write_Position(self, value: float) -> None:
        self._start_move(value)

    def read_Velocity(self) -> float:
        return self._velocity

    def write_Velocity(self, value: float) -> None:
        if not value > 0.0:
            throw("SimMotor_BadValue", f"Velocity must be > 0 mm/s, got {value}", "Velocity")
        self._velocity = value  # used by the next move

    def read_Acceleration(self) -> float:
        return self._acceleration

    def write_Acceleration(self, value: float) -> None:
        if not value > 0.0:
            throw("SimMotor_BadValue", f"Acceleration must be > 0, got {value}", "Acceleration")
        self._acceleration = value

    def read_Direction(self) -> int:
        _, v = self._kinematics(self._now())
        return 0 if v == 0.0 else (1 if v > 0 else 2)

    def read_AtHome(self) -> bool:
        x, _ = self._kinematics(self._now())
        return not self._segments and abs(x - float(self.HomePosition)) < 1e-6

    # --- commands -----------------------------------------------------------------------

    @command(dtype_in=float, doc_in="Target position in mm")
    def MoveTo(self, target: float) -> None:
        self._start_move(target)

    @command
    def Stop(self) -> None:
        """Decelerate to rest; the target becomes wherever the motor stops."""
        now = self._now()
        x, v = self._kinematics(now)
        if self._segments:
            self._segments = plan_stop(x, v, self._acceleration, now)
            if self._segments:
                self._target, _ = self._segments[-1].at(self._segments[-1].t1)
            else:
                self._position = self._target = x

    @command
    def Home(self) -> None:
        """Move to the home switch (property HomePosition)."""
        self._start_move(float(self.HomePosition))

    @command
    def On(self) -> None:
        """Enable the drive; also clears a FAULT."""
        self._kinematics(self._now())
        self._powered = True
        self._fault = ""

    @command
    def Off(self) -> None:
        """Disable the drive: any motion stops at once where it is."""
        x, _ = self._kinematics(self._now())
        self._segments = []
        self._position = self._target = x
        self._powered = False
