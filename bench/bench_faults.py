"""Bad weather, measured on Debian's C++ TangoTest: time to show trouble, time to heal, bytes.

    .venv/bin/python bench/bench_faults.py [--period 0.5] [--seconds 10]

Needs ``/usr/lib/tango/TangoTest`` (Debian's ``tango-test``, installed by ``.ci/run``).
Everything is real: PyTango's database server in a temp dir, TangoTest as
its own process, the hub polling ``double_scalar`` (TangoTest has no device
polling, so the client polls).

* **kill**: SIGKILL the server; seconds until the hub hands out the first
  error sample (what the page shows as stale), then restart it and seconds
  until a fresh value; baseline: the poll period (no viewer can know sooner).
* **hang**: SIGSTOP (a deadlocked server), same two figures after SIGCONT.
* **device polling stopped / started** (``stop_poll_attribute`` / ``poll_attribute``
  of ``double_scalar`` at 500 ms while the hub takes its periodic events, every 1 s):
  seconds until the hub polls it itself, and seconds until it is back on events
  (``events_recheck``, 10 s by default, bounds the second); baseline: the event
  period (the fall back must come within two).
* **unchanged images**: five TangoTest images (they change every ~2 s) polled
  every ``--period`` for ``--seconds``: bytes per viewer sent by the Image view
  against the naive view that re-sends every polled frame, and frames sent
  against the distinct frames the device produced (target: equal).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bokeh.document import Document

from tango_bokeh.hub import Hub
from tango_bokeh.sim import ControlSystem
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.views import Image
from tango_bokeh.views.wire import WireTap

TANGO_TEST = "/usr/lib/tango/TangoTest"
SERVER, DEVICE = "TangoTest/bench", "sys/tg_test/1"
#: TangoTest images that stay constant (float_image_ro and ushort_image_ro change).
IMAGES = ("double_image_ro", "long_image_ro", "short_image_ro", "uchar_image_ro",
          "ulong_image_ro")  # fmt: skip


def _until(predicate: Any, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def outage(system: ControlSystem, hub: Hub, how: str, timeout: float = 60.0) -> dict[str, Any]:
    cursor = hub.subscribe(f"{DEVICE}/double_scalar")
    _until(lambda: any(s.ok for s in cursor.read()), 30)
    cursor.read()
    if how == "kill":
        system.stop_named(SERVER, signal.SIGKILL)
    else:
        system.signal_named(SERVER, signal.SIGSTOP)
    shown = _until(lambda: any(not s.ok for s in cursor.read()), timeout)
    if how == "kill":
        system.restart_executable(SERVER, TANGO_TEST)
    else:
        system.signal_named(SERVER, signal.SIGCONT)
    back = time.time()
    healed = _until(lambda: any(s.ok and s.time >= back - 1 for s in cursor.read()), timeout)
    cursor.close()
    return {"shown_s": shown, "healed_s": healed}


def polling_switch(hub: Hub, timeout: float = 60.0) -> dict[str, Any]:
    import tango

    device = tango.DeviceProxy(DEVICE)
    device.poll_attribute("double_scalar", 500)
    try:
        cursor = hub.subscribe(f"{DEVICE}/double_scalar")
        _until(lambda: cursor.mode == "periodic", 30)
        device.stop_poll_attribute("double_scalar")
        fallback = _until(lambda: cursor.mode == "poll", timeout)
        stamp = time.time()
        _until(lambda: any(s.ok and s.time > stamp for s in cursor.read()), timeout)
        device.poll_attribute("double_scalar", 500)
        back = _until(lambda: cursor.mode == "periodic", timeout)
        cursor.close()
    finally:
        if device.is_attribute_polled("double_scalar"):
            device.stop_poll_attribute("double_scalar")
    return {"fallback_s": fallback, "back_s": back}


class NaiveImage(Image):
    """Re-sends every polled frame (what the view did before unchanged frames were skipped)."""

    def _show(self, sample: Any) -> None:
        self._shown = None
        super()._show(sample)


def image_bytes(hub: Hub, seconds: float, period: float) -> dict[str, float]:
    result = {}
    for kind, view_class in (("skip_unchanged", Image), ("naive", NaiveImage)):
        views = [view_class(f"{DEVICE}/{name}") for name in IMAGES]
        doc = Document()
        for view in views:
            doc.add_root(view.model)
        tap = WireTap(doc)
        cursors = {v.attribute: hub.subscribe(v.attribute) for v in views}
        total = 0
        distinct = 0
        last: dict[str, Any] = {}
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            batch = {name: c.read() for name, c in cursors.items()}
            for name, samples in batch.items():
                for sample in samples:
                    if sample.ok and not np.array_equal(sample.value, last.get(name)):
                        distinct += 1
                        last[name] = sample.value
            for view in views:
                view.update(batch, time.time(), {})
            total += tap.bytes
            tap.reset()
            time.sleep(period)
        for cursor in cursors.values():
            cursor.close()
        result[f"{kind}_bytes_per_s"] = total / seconds
        result[f"{kind}_frames"] = sum(v.frames_sent for v in views)
        result[f"{kind}_distinct"] = distinct
    result["ratio"] = result["skip_unchanged_bytes_per_s"] / max(result["naive_bytes_per_s"], 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", type=float, default=0.5, help="poll period (s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="image measurement (s)")
    args = parser.parse_args()
    if not Path(TANGO_TEST).exists():
        print(f"needs {TANGO_TEST} (apt-get install tango-test)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        system = ControlSystem(tmp, (), export_env=True).start()
        hub = Hub(Acquisition(AcquisitionConfig(poll_period=args.period, retry_delays=(0.5, 1.0))))
        try:
            system.start_executable(SERVER, TANGO_TEST, {DEVICE: "TangoTest"})
            for how in ("kill", "hang"):
                figures = outage(system, hub, how)
                print(f"{how}: trouble shown after {_fmt(figures['shown_s'])}, values back "
                      f"{_fmt(figures['healed_s'])} after the server is back "
                      f"(poll period {args.period:g} s)")  # fmt: skip
            switch = polling_switch(hub)
            print(f"device polling stopped: client polling after {_fmt(switch['fallback_s'])}"
                  f" (event period 1 s, target < 2 s); device polling started: events "
                  f"again after {_fmt(switch['back_s'])} (events_recheck "
                  f"{hub.acquisition.config.events_recheck:g} s)")  # fmt: skip
            images = image_bytes(hub, args.seconds, args.period)
            print(f"images: {images['skip_unchanged_bytes_per_s'] / 1e3:.1f} kB/s per viewer "
                  f"against {images['naive_bytes_per_s'] / 1e3:.1f} kB/s naive (ratio "
                  f"{images['ratio']:.3f}); frames sent {images['skip_unchanged_frames']} for "
                  f"{images['skip_unchanged_distinct']} distinct frames (naive: "
                  f"{images['naive_frames']} for {images['naive_distinct']})")  # fmt: skip
        finally:
            hub.close()
            system.stop()
    return 0


def _fmt(seconds: float | None) -> str:
    return "never (60 s)" if seconds is None else f"{seconds:.1f} s"


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
