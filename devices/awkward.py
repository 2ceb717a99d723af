"""SimAwkward: one device with every awkward behaviour real devices have, for tests and benches.

Not part of the demo beamline: it exists so that tests can meet, on a real
device server, what a device nobody here wrote does to a client.

* ``Slow``: a read takes ``SlowDelay`` seconds (3 s by default; the ``SlowDelay``
  attribute is writable so tests can shorten it). Like any read it holds the
  device's monitor meanwhile, so the device can do nothing else.
* ``Flaky``: every third read (the 3rd, 6th, ...) raises ``DevFailed``.
* ``NonFinite``: successive reads return 1.5, NaN, 2.5, +inf, 3.5, -inf, 4.5, 1e308,
  then again (non-finite values between finite ones, so a plot has a scale to wreck).
* ``EncodedJson``, ``EncodedText``, ``EncodedBinary``: ``DevEncoded`` with the formats
  ``json``, ``utf8`` and ``gray8`` (8 raw bytes).
* ``Phase``: an enum whose labels are not ASCII.
* ``Spectrum``: declared 65,536 points long, returns 1,024.
* ``Temperature``: unit and alarm limits change at run time (``SetUnit("K")`` or
  ``SetUnit("degC")``); the device sends an attribute-configuration event, as
  Tango does when a client changes the configuration.
* ``Late``: a dynamic attribute that does not exist until ``AddLate`` (``RemoveLate``
  removes it again).
* ``Counter``: pushed by the device itself (``push_change_event``, no polling) at
  ``CounterRate`` Hz; its value is the number of events pushed so far. A push waits
  for the device monitor, so a read in progress (``Slow``) delays it; the pusher does
  not burst to catch up after a stall of more than a second (see :class:`._sim.PacedLoop`).
* ``Fast``: a plain, cheap scalar.

Nothing here is polled by the device (no ``polled_attr``): every attribute but
``Counter`` is read by client polling.
"""

from __future__ import annotations

import contextlib
import json
import math
import time

import numpy as np
import tango
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, device_property

from ._sim import PacedLoop, throw

MAX_POINTS = 65536
SPECTRUM_POINTS = 1024
NON_FINITE = (1.5, math.nan, 2.5, math.inf, 3.5, -math.inf, 4.5, 1e308)
PHASES = ("Arrêt", "Démarrage", "Régulé", "Überlast", "冷却 µ°")
#: Temperature per unit: (offset from kelvin, min_alarm, max_alarm, min_warning, max_warning).
UNITS = {
    "K": (0.0, 250.0, 350.0, 260.0, 340.0),
    "degC": (-273.15, -23.15, 76.85, -13.15, 66.85),
}
MAX_SLOW_DELAY = 60.0


def non_finite_value(n: int) -> float:
    """Value of the ``n``-th read (from 1) of ``NonFinite``."""
    return NON_FINITE[(n - 1) % len(NON_FINITE)]


def flaky_fails(n: int) -> bool:
    """Whether the ``n``-th read (from 1) of ``Flaky`` fails."""
    return n % 3 == 0


class SimAwkward(Device):
    """Slow and flaky reads, odd values, a configuration that changes, late attributes."""

    SlowDelay = device_property(dtype=float, default_value=3.0, doc="Seconds a Slow read takes")
    CounterRate = device_property(dtype=float, default_value=5.0, doc="Counter events per second")

    Slow = attribute(dtype=float, doc="Takes SlowDelay seconds to read")
    slow_delay = attribute(
        name="SlowDelay",
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="s",
        fget="read_slow_delay",
        fset="write_slow_delay",
        doc="Seconds a read of Slow takes (0 to 60)",
    )
    Flaky = attribute(dtype=float, unit="V", doc="Every third read fails")
    NonFinite = attribute(dtype=float, doc="1.5, NaN, 2.5, +inf, 3.5, -inf, 4.5, 1e308, ...")
    EncodedJson = attribute(dtype=tango.DevEncoded, doc="DevEncoded, format json")
    EncodedText = attribute(dtype=tango.DevEncoded, doc="DevEncoded, format utf8")
    EncodedBinary = attribute(dtype=tango.DevEncoded, doc="DevEncoded, format gray8 (8 bytes)")
    Phase = attribute(dtype=tango.DevEnum, enum_labels=list(PHASES), doc="Labels not in ASCII")
    Spectrum = attribute(
        dtype=(float,), max_dim_x=MAX_POINTS, unit="counts", doc="Declared 65536, sends 1024"
    )
    Temperature = attribute(
        dtype=float,
        unit="K",
        format="%.2f",
        min_alarm=UNITS["K"][1],
        max_alarm=UNITS["K"][2],
        min_warning=UNITS["K"][3],
        max_warning=UNITS["K"][4],
        doc="Unit and alarm limits change with SetUnit",
    )
    Counter = attribute(dtype="DevLong64", doc="Events pushed by the device (CounterRate Hz)")
    Fast = attribute(dtype=float, unit="mm", format="%.3f", doc="Cheap to read")

    def init_device(self) -> None:
        super().init_device()
        self._t0 = time.monotonic()
        self._slow_delay = min(max(float(self.SlowDelay), 0.0), MAX_SLOW_DELAY)
        self._flaky_reads = 0
        self._non_finite_reads = 0
        self._unit = "K"
        self._counter = 0
        self._spectrum = 100.0 + 10.0 * np.sin(np.linspace(0.0, 8.0 * np.pi, SPECTRUM_POINTS))
        self.set_change_event("Counter", True, False)
        self.set_state(DevState.ON)
        self.set_status("Awkward on purpose")
        rate = max(float(self.CounterRate), 0.01)
        self._loop = PacedLoop(self, lambda: rate, self._next_count, self._push_count)
        self._loop.start()

    def delete_device(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.stop()
        super().delete_device()

    # -- the self-pushed counter ------------------------------------------------------

    def _next_count(self, _sim_time: float) -> int:
        return self._counter + 1

    def _push_count(self, count: int) -> None:
        """Under the device monitor (taken by PacedLoop), as a device's own thread pushes."""
        self._counter = count
        self.push_change_event("Counter", count)

    def read_Counter(self) -> int:
        return self._counter

    # -- reads --------------------------------------------------------------------------

    def read_Slow(self) -> float:
        time.sleep(self._slow_delay)
        return time.monotonic() - self._t0

    def read_slow_delay(self) -> float:
        return self._slow_delay

    def write_slow_delay(self, value: float) -> None:
        if not 0.0 <= value <= MAX_SLOW_DELAY:
            throw("SimAwkward_BadDelay", f"SlowDelay must be 0..{MAX_SLOW_DELAY:g} s", "SlowDelay")
        self._slow_delay = float(value)

    def read_Flaky(self) -> float:
        self._flaky_reads += 1
        n = self._flaky_reads
        if flaky_fails(n):
            throw("SimAwkward_Flaky", f"read #{n} fails on purpose (every third)", "read_Flaky")
        return 1.0 + 0.1 * (n % 10)

    def read_NonFinite(self) -> float:
        self._non_finite_reads += 1
        return non_finite_value(self._non_finite_reads)

    def read_EncodedJson(self) -> tuple[str, bytes]:
        payload = {"phase": PHASES[self._phase()], "temperature": self._kelvin(), "ok": True}
        return "json", json.dumps(payload, ensure_ascii=False).encode()

    def read_EncodedText(self) -> tuple[str, bytes]:
        return "utf8", f"température {self._kelvin() - 273.15:.1f} °C".encode()

    def read_EncodedBinary(self) -> tuple[str, bytes]:
        return "gray8", bytes(range(8))

    def read_Phase(self) -> int:
        return self._phase()

    def read_Spectrum(self) -> np.ndarray:
        return self._spectrum

    def read_Temperature(self) -> float:
        return self._kelvin() + UNITS[self._unit][0]

    def read_Fast(self) -> float:
        return math.sin(time.monotonic() - self._t0)

    def _phase(self) -> int:
        return int((time.monotonic() - self._t0) / 2.0) % len(PHASES)

    def _kelvin(self) -> float:
        return 300.0 + 5.0 * math.sin((time.monotonic() - self._t0) / 10.0)

    # -- the configuration that changes ----------------------------------------------------

    @command(dtype_in=str, doc_in="K or degC")
    def SetUnit(self, unit: str) -> None:
        """Switch Temperature to ``unit`` and matching alarm limits; sends a configuration event."""
        if unit not in UNITS:
            throw("SimAwkward_BadUnit", f"unit must be one of {', '.join(UNITS)}", "SetUnit")
        attr = self.get_device_attr().get_attr_by_name("Temperature")
        props = attr.get_properties()
        _, min_alarm, max_alarm, min_warning, max_warning = UNITS[unit]
        props.unit = unit
        props.min_alarm, props.max_alarm = f"{min_alarm:g}", f"{max_alarm:g}"
        props.min_warning, props.max_warning = f"{min_warning:g}", f"{max_warning:g}"
        attr.set_properties(props)  # Tango sends the attribute-configuration event
        self._unit = unit

    @command
    def AddLate(self) -> None:
        """Create the dynamic attribute ``Late`` (idempotent)."""
        try:
            self.get_device_attr().get_attr_by_name("Late")
            return
        except tango.DevFailed:
            pass
        late = tango.Attr("Late", tango.DevDouble, tango.AttrWriteType.READ)
        props = tango.UserDefaultAttrProp()
        props.set_unit("bar")
        late.set_default_properties(props)
        self.add_attribute(late, self._read_late)

    @command
    def RemoveLate(self) -> None:
        """Remove ``Late`` again (idempotent)."""
        with contextlib.suppress(tango.DevFailed):
            self.remove_attribute("Late")

    def _read_late(self, attr: tango.Attribute) -> None:
        attr.set_value(1.0 + 0.5 * math.sin(time.monotonic() - self._t0))
