"""SimEventStorm: pushes change events as fast as asked, for benchmarks of event clients.

Usage from a benchmark::

    storm.Payload = "spectrum"      # or "scalar"
    storm.Rate = 5000               # events/s; 0 = as fast as the machine can
    storm.Start(); time.sleep(10); storm.Stop()
    pushed = storm.Pushed           # events pushed by the server during the run

Each event carries its sequence number (``Counter`` value, or element 0 of ``Spectrum``),
so a client can count what it lost. Pacing is by deadline; above ``SPIN_ABOVE`` Hz the
pusher spins instead of sleeping (sleep granularity would cap the rate).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import tango
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, device_property

from ._sim import rng_for, throw

PAYLOADS = ("scalar", "spectrum")
SPIN_ABOVE = 2000.0  # Hz
MAX_POINTS = 65536


class SimEventStorm(Device):
    """Pushes ``Counter`` or ``Spectrum`` change events at ``Rate`` Hz between Start and Stop."""

    Seed = device_property(dtype=int, default_value=0)
    Points = device_property(dtype=int, default_value=1024, doc="Length of Spectrum")
    Rate = device_property(dtype=float, default_value=1000.0, doc="Initial rate (events/s)")

    Counter = attribute(dtype="DevLong64", doc="Sequence number of the last scalar event")
    Spectrum = attribute(
        dtype=(float,),
        max_dim_x=MAX_POINTS,
        doc="Last spectrum event; element 0 is its sequence number",
    )
    rate = attribute(
        name="Rate",
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="Hz",
        fget="read_rate",
        fset="write_rate",
        doc="Target events per second (0 = unlimited)",
    )
    Payload = attribute(
        dtype=str, access=AttrWriteType.READ_WRITE, doc="What to push: scalar | spectrum"
    )
    Pushed = attribute(dtype="DevLong64", doc="Events pushed since the last Start")
    ActualRate = attribute(dtype=float, unit="Hz", format="%.1f", doc="Pushed / run duration")

    def init_device(self) -> None:
        super().init_device()
        points = int(self.Points)
        if not 1 <= points <= MAX_POINTS:
            throw("SimEventStorm_BadPoints", f"Points must be 1..{MAX_POINTS}", "init_device")
        self._rate = max(float(self.Rate), 0.0)
        self._payload = "scalar"
        self._counter = 0
        self._pushed = 0
        self._t_run = (0.0, 0.0)  # start, end (end 0 = running)
        self._spectrum = 100.0 + rng_for(self.Seed, 5).standard_normal(points)
        self._spectrum[0] = 0.0
        self._running: threading.Event | None = None  # stop flag of the current run
        self.set_change_event("Counter", True, False)
        self.set_change_event("Spectrum", True, False)
        self.set_state(DevState.ON)
        self.set_status("Idle: set Payload and Rate, then Start")

    def delete_device(self) -> None:
        self._halt()
        super().delete_device()

    # --- pusher -------------------------------------------------------------------------

    def _run(self, payload: str, stop: threading.Event) -> None:
        """Pusher thread of one run; each push happens under the device monitor."""
        push_scalar = payload == "scalar"
        with tango.EnsureOmniThread():
            rate = -1.0
            base_t, base_n = 0.0, 0
            n = 0
            while not stop.is_set():
                if self._rate != rate:  # (re)start the schedule at a rate change
                    rate = self._rate
                    base_t, base_n = time.perf_counter(), n
                if rate > 0.0:
                    due = base_t + (n - base_n) / rate
                    now = time.perf_counter()
                    if now < due:
                        if rate <= SPIN_ABOVE:
                            stop.wait(due - now)
                        continue
                    if now - due > 0.5:  # far behind: do not burst to catch up
                        base_t, base_n = now, n
                n += 1
                try:
                    with tango.AutoTangoMonitor(self):
                        if stop.is_set():  # Stop ran while we waited for the monitor
                            break
                        if push_scalar:
                            self._counter = n
                            self.push_change_event("Counter", n)
                        else:
                            self._spectrum[0] = n
                            self.push_change_event("Spectrum", self._spectrum)
                        self._pushed = n
                except tango.DevFailed as exc:  # e.g. monitor timeout under extreme load
                    print(f"storm: push {n} failed: {exc.args[0].desc}", flush=True)

    def _halt(self) -> None:
        """Signal the pusher to end; never join (it may be waiting for the monitor we hold)."""
        if self._running is not None:
            self._running.set()
            self._running = None
            self._t_run = (self._t_run[0], time.perf_counter())

    # --- attributes ---------------------------------------------------------------------

    def read_Counter(self) -> int:
        return self._counter

    def read_Spectrum(self) -> np.ndarray:
        return self._spectrum

    def read_rate(self) -> float:
        return self._rate

    def write_rate(self, value: float) -> None:
        if not 0.0 <= value <= 1e7:
            throw("SimEventStorm_BadRate", "Rate must be 0 (unlimited) .. 1e7 Hz", "Rate")
        self._rate = float(value)

    def read_Payload(self) -> str:
        return self._payload

    def write_Payload(self, value: str) -> None:
        payload = value.strip().lower()
        if payload not in PAYLOADS:
            throw(
                "SimEventStorm_BadPayload",
                f"Unknown payload {value!r}; expected one of {', '.join(PAYLOADS)}",
                "SimEventStorm.write_Payload",
            )
        self._payload = payload

    def read_Pushed(self) -> int:
        return self._pushed

    def read_ActualRate(self) -> float:
        start, end = self._t_run
        duration = (end or time.perf_counter()) - start
        return self._pushed / duration if start and duration > 0 else 0.0

    # --- commands -----------------------------------------------------------------------

    @command
    def Start(self) -> None:
        """Start pushing (restarts the sequence and the Pushed count)."""
        self._halt()
        self._pushed = self._counter = 0
        self._t_run = (time.perf_counter(), 0.0)
        self._running = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(self._payload, self._running), name="storm", daemon=True
        )
        thread.start()
        self.set_state(DevState.RUNNING)
        rate = f"{self._rate:g} Hz" if self._rate > 0 else "unlimited rate"
        self.set_status(f"Storming {self._payload} events at {rate}")

    @command
    def Stop(self) -> None:
        """Stop pushing; Pushed and ActualRate keep the figures of the run."""
        self._halt()
        self.set_state(DevState.ON)
        self.set_status(f"Stopped after {self._pushed} events")
