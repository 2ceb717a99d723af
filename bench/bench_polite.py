"""Polling as a guest: a device's own events while a dashboard polls it, slow attribute included.

    .venv/bin/python bench/bench_polite.py [--seconds 180] [--baseline 60] [--budgets 0.05,0.2,1]

The awkward device (``sim/awkward/1``) pushes its ``Counter`` change events at
5 Hz itself, under its monitor, like a device's acquisition thread; its
``Slow`` attribute takes 3 s to read, and a read holds the device. A bare
PyTango subscriber in this process counts the ``Counter`` events:

* first with nobody polling the device (the baseline, ``--baseline`` seconds);
* then, for each polling budget, while a hub in a fresh process polls what a
  dashboard of the device shows (eight cheap attributes and ``Slow``, 1 s
  period, default client time-out 3 s) for ``--seconds`` seconds, counted from
  the moment the hub subscribes (its first reads, slow one included, count).

Prints the event rate and its ratio to the baseline (target ≥ 0.9 at the
default budget), and what the hub did: reads, the slow attribute's period,
the share of wall time its reads took. Budget 1 stands for "no budget": the
slow attribute is still read alone, as often as it can be.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

DEVICE = "sim/awkward/1"
DASHBOARD = ("Fast", "Flaky", "NonFinite", "Temperature", "Phase", "SlowDelay", "Spectrum",
             "State", "Slow")  # fmt: skip


def poll(budget: float, seconds: float) -> dict:
    """Runs in the child process: a hub polling the dashboard's attributes for ``seconds``."""
    from tango_bokeh.hub import Hub
    from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig

    hub = Hub(Acquisition(AcquisitionConfig(poll_budget=budget)))
    started = time.monotonic()
    cursors = [hub.subscribe(f"{DEVICE}/{name}") for name in DASHBOARD]
    print("subscribed", flush=True)
    ok = dict.fromkeys(DASHBOARD, 0)
    while time.monotonic() - started < seconds:
        time.sleep(0.1)  # a session tick
        for name, cursor in zip(DASHBOARD, cursors, strict=True):
            ok[name] += sum(1 for s in cursor.read() if s.ok)
    elapsed = time.monotonic() - started
    stats = hub.stats()
    busy = hub.acquisition.stats()["poll_busy"].get(DEVICE, 0.0)
    slow = stats.attributes[f"{DEVICE}/slow"]
    fast = stats.attributes[f"{DEVICE}/fast"]
    hub.close()
    return {
        "budget": budget,
        "reads": stats.device_reads,
        "busy": busy / elapsed,
        "slow_period": slow.poll_period,
        "slow_read": slow.read_seconds,
        "slow_values": ok["Slow"],
        "fast_period": fast.poll_period,
        "fast_values_per_s": ok["Fast"] / elapsed,
    }


class Counter:
    """Counts the device's Counter events (a bare PyTango callback subscriber)."""

    def __init__(self) -> None:
        import tango

        self.count = 0
        self._lock = threading.Lock()
        self._proxy = tango.DeviceProxy(DEVICE)
        self._eid = self._proxy.subscribe_event(
            "Counter", tango.EventType.CHANGE_EVENT, self._callback
        )

    def _callback(self, event) -> None:  # type: ignore[no-untyped-def]
        if not event.err:
            with self._lock:
                self.count += 1

    def now(self) -> tuple[int, float]:
        with self._lock:
            return self.count, time.perf_counter()

    def close(self) -> None:
        self._proxy.unsubscribe_event(self._eid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--baseline", type=float, default=60.0)
    parser.add_argument("--budgets", default="0.05,0.2,1")
    parser.add_argument("--child", type=float, metavar="BUDGET")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(poll(args.child, args.seconds)), flush=True)
        return

    from _common import control_system

    from tango_bokeh_devices.catalog import AWKWARD

    rows = []
    with control_system(AWKWARD) as system:
        counter = Counter()
        time.sleep(2.0)
        c0, t0 = counter.now()
        time.sleep(args.baseline)
        c1, t1 = counter.now()
        baseline = (c1 - c0) / (t1 - t0)
        for budget in [float(b) for b in args.budgets.split(",")]:
            argv = [
                sys.executable,
                __file__,
                "--seconds",
                str(args.seconds),
                "--child",
                str(budget),
            ]
            child = subprocess.Popen(argv, env=system.env(), stdout=subprocess.PIPE, text=True)
            assert child.stdout is not None
            child.stdout.readline()  # "subscribed": the count starts with the hub's first reads
            c0, t0 = counter.now()
            last = child.stdout.readlines()[-1]
            child.wait(timeout=60)
            c1, t1 = counter.now()
            if child.returncode != 0:
                raise RuntimeError(f"the polling child failed ({child.returncode})")
            rows.append({**json.loads(last), "rate": (c1 - c0) / (t1 - t0)})
            time.sleep(5.0)  # the device finishes what the child left
        counter.close()
    print(f"baseline (nobody polling): {baseline:.2f} events/s over {args.baseline:g} s")
    print(f"{'budget':>7} {'events/s':>9} {'ratio':>6} {'busy':>6} {'reads':>6} "
          f"{'slow period':>12} {'slow read':>10} {'slow values':>12} {'fast period':>12} "
          f"{'fast values/s':>14}")  # fmt: skip
    for r in rows:
        print(
            f"{r['budget']:>7g} {r['rate']:>9.2f} {r['rate'] / baseline:>6.2f} "
            f"{r['busy'] * 100:>5.1f}% {r['reads']:>6} {r['slow_period']:>11.1f}s "
            f"{r['slow_read']:>9.2f}s {r['slow_values']:>12} {r['fast_period']:>11.2f}s "
            f"{r['fast_values_per_s']:>14.2f}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
