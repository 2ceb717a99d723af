"""SimFaulty: a flaky controller to exercise every error path of a client.

* ``Value`` reads raise ``DevFailed`` with probability ``ErrorProbability`` and return
  ``ATTR_INVALID`` (no value) with probability ``InvalidProbability``; the outcome of the
  n-th read is fixed by the seed.
* The device falls into FAULT for ``FaultDuration`` s in every ``FaultPeriod`` s (reads
  then fail too); ``Reset`` clears the current fault.
* ``Crash`` answers, then kills the server process abruptly (``os._exit``) 0.2 s later,
  as a segfault or power cut would.
"""

from __future__ import annotations

import math
import os
import threading
import time

from tango import AttrQuality, DevState
from tango.server import Device, attribute, command, device_property

from ._sim import rng_for, throw

CRASH_DELAY = 0.2


class SimFaulty(Device):
    """Simulated unreliable device: read errors, invalid values, FAULT periods, crashes."""

    Seed = device_property(dtype=int, default_value=0)
    ErrorProbability = device_property(dtype=float, default_value=0.15)
    InvalidProbability = device_property(dtype=float, default_value=0.10)
    FaultPeriod = device_property(dtype=float, default_value=40.0, doc="Seconds per fault cycle")
    FaultDuration = device_property(dtype=float, default_value=8.0, doc="Seconds in FAULT")

    Value = attribute(dtype=float, unit="V", format="%.3f", doc="Unreliable reading")

    def init_device(self) -> None:
        super().init_device()
        self._t_start = time.monotonic()
        self._rng = rng_for(self.Seed, 3)
        self._reads = 0
        self._reset_cycle = -1
        self.set_state(DevState.ON)

    def _fault_cycle(self) -> int | None:
        """Index of the fault window we are in, or None when healthy."""
        if self.FaultPeriod <= 0 or self.FaultDuration <= 0:
            return None
        t = time.monotonic() - self._t_start
        cycle, phase = divmod(t, self.FaultPeriod)
        in_fault = phase >= self.FaultPeriod - self.FaultDuration
        return int(cycle) if in_fault and int(cycle) != self._reset_cycle else None

    def dev_state(self) -> DevState:
        state = DevState.FAULT if self._fault_cycle() is not None else DevState.ON
        self.set_state(state)
        return state

    def dev_status(self) -> str:
        if self.dev_state() == DevState.FAULT:
            text = "Controller FAULT: communication lost with the hardware (send Reset)"
        else:
            text = f"Running; {self._reads} reads served, some of them fail on purpose"
        self.set_status(text)
        return text

    def read_Value(self) -> float | tuple[float, float, AttrQuality]:
        self._reads += 1
        n = self._reads
        u, z = self._rng.random(), self._rng.standard_normal()  # always two draws per read
        if self._fault_cycle() is not None:
            throw(
                "SimFaulty_Fault",
                f"{self.get_name()} is in FAULT: hardware not responding (read #{n})",
                "SimFaulty.read_Value",
            )
        if u < self.ErrorProbability:
            throw(
                "SimFaulty_ReadError",
                f"Simulated communication timeout on read #{n} "
                f"(ErrorProbability={self.ErrorProbability:g})",
                "SimFaulty.read_Value",
            )
        now = time.time()
        if u < self.ErrorProbability + self.InvalidProbability:
            return 0.0, now, AttrQuality.ATTR_INVALID
        t = time.monotonic() - self._t_start
        return 5.0 + 2.0 * math.sin(2.0 * math.pi * t / 30.0) + 0.05 * z

    @command
    def Reset(self) -> None:
        """Clear the current FAULT (the next fault window comes anyway)."""
        cycle = self._fault_cycle()
        if cycle is not None:
            self._reset_cycle = cycle

    @command
    def Crash(self) -> None:
        """Reply, then kill this server process abruptly after 0.2 s (no clean shutdown)."""
        print(f"{self.get_name()}: Crash requested, exiting in {CRASH_DELAY} s", flush=True)
        timer = threading.Timer(CRASH_DELAY, os._exit, args=(17,))
        timer.daemon = True
        timer.start()
