"""Leak: many open/close cycles of a session with 5 attributes, against raw PyTango.

    .venv/bin/python bench/bench_leak.py [--cycles 1000]

Each of our cycles creates a session with 5 attributes (change events,
periodic events, pushed spectrum, client polling), attaches it to a new
bokeh Document holding a figure, waits until every attribute is live, ticks
once and closes it. The baseline does the same subscriptions with raw
PyTango (subscribe_event / unsubscribe_event on long-lived proxies) in the
same process, before ours. Prints residual sessions, Tango subscriptions,
polled attributes and threads, and RSS growth of both (target: 0 / 0 / 0 /
no growth, RSS growth ≤ 5 MB).

PyTango keeps each unsubscribed callback for 60 s (``_pending_unsubscribe``),
so a fast loop of the raw baseline holds up to a minute's worth of them:
bounded, not a leak (our subscriptions are in pull mode and give Tango no
callback). Both measurements wait that minute out and run one more cycle
(which makes PyTango drop the expired callbacks) before reading the final RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import threading
import time

import psutil
from _common import control_system, servers

ATTRIBUTES = (
    "sim/counter/1/Counts",
    "sim/motor/1/Position",
    "sim/beam/current/Current",
    "sim/temp/1/Temperature",
    "sim/spectro/1/Spectrum",
)


#: Cycles run before the first RSS reading: allocator arenas and Tango's own
#: per-process structures grow to their working size during the first few hundred.
WARM_UP = 200
PYTANGO_CALLBACK_LIFETIME = 61.0  # tango.device_proxy._UNSUBSCRIBE_LIFETIME + 1


def rss_mb() -> float:
    """Resident memory after a full collection, with freed heap pages handed back to the OS
    (so that fragmentation of freed memory is not counted as memory held)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return psutil.Process().memory_info().rss / 2**20


def raw_cycles(cycles: int) -> tuple[float, int]:
    """The naive approach: subscribe and unsubscribe by hand; returns (RSS growth, threads)."""
    import tango

    proxies = {a: tango.DeviceProxy(a.rsplit("/", 1)[0]) for a in ATTRIBUTES}
    kinds = {
        "sim/beam/current/Current": tango.EventType.PERIODIC_EVENT,
        "sim/temp/1/Temperature": None,  # no events: read it
    }

    def one_cycle() -> None:
        ids = []
        for attribute, proxy in proxies.items():
            name = attribute.rsplit("/", 1)[1]
            kind = kinds.get(attribute, tango.EventType.CHANGE_EVENT)
            if kind is None:
                proxy.read_attribute(name)
            else:
                ids.append((proxy, proxy.subscribe_event(name, kind, lambda _e: None)))
        for proxy, eid in ids:
            proxy.unsubscribe_event(eid)

    for _ in range(WARM_UP):
        one_cycle()
    before = rss_mb()
    for _ in range(cycles):
        one_cycle()
    time.sleep(PYTANGO_CALLBACK_LIFETIME)
    one_cycle()
    return rss_mb() - before, threading.active_count()


def our_cycles(cycles: int) -> dict:
    from bokeh.document import Document
    from bokeh.plotting import figure

    from tango_bokeh.hub import Hub
    from tango_bokeh.session import Session
    from tango_bokeh.tango.modes import Mode

    class Five(Session):
        attributes = ATTRIBUTES

        def setup_document(self) -> None:
            self.document.add_root(figure(height=200, width=400))

    hub = Hub.default()

    def one_cycle(i: int) -> None:
        session = Five(f"cycle-{i % 7}", callback_period=None)
        session.attach(Document())
        deadline = time.monotonic() + 30
        while any(c.mode is Mode.PENDING for c in session.cursors.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"attributes not live: {session.cursors}")
            time.sleep(0.005)
        session.tick()
        session.close()

    for i in range(WARM_UP):
        one_cycle(i)
    settle(hub)
    threads = threading.active_count()
    before = rss_mb()
    started = time.perf_counter()
    for i in range(cycles):
        one_cycle(i)
    elapsed = time.perf_counter() - started
    settle(hub)
    time.sleep(PYTANGO_CALLBACK_LIFETIME)
    one_cycle(cycles)
    settle(hub)
    stats = hub.stats()
    return {
        "rss_growth": rss_mb() - before,
        "threads_before": threads,
        "threads_after": threading.active_count(),
        "sessions": len(Session.sessions()),
        "subscriptions": stats.subscriptions,
        "polled": stats.polled,
        "channels": stats.channels,
        "seconds_per_cycle": elapsed / cycles,
    }


def settle(hub) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = hub.stats()
        if not (stats.subscriptions or stats.polled or stats.channels):
            return
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    args = parser.parse_args()
    with control_system(
        servers("SimCounter", "SimMotor", "SimBeamCurrent", "SimEnvironment", "SimSpectrometer")
    ):
        raw_growth, raw_threads = raw_cycles(args.cycles)
        ours = our_cycles(args.cycles)
    print(f"cycles: {args.cycles} x {len(ATTRIBUTES)} attributes")
    print(f"raw PyTango:  RSS growth {raw_growth:6.1f} MB, threads {raw_threads}")
    print(
        f"tango_bokeh:  RSS growth {ours['rss_growth']:6.1f} MB, threads "
        f"{ours['threads_before']} -> {ours['threads_after']}, "
        f"{1000 * ours['seconds_per_cycle']:.1f} ms/cycle"
    )
    ratio = ours["rss_growth"] / raw_growth if raw_growth > 0 else float("nan")
    print(f"RSS growth ratio tango_bokeh / raw PyTango: {ratio:.2f}")
    print(
        f"residual: sessions {ours['sessions']}, subscriptions {ours['subscriptions']}, "
        f"polled {ours['polled']}, channels {ours['channels']}"
    )
    ok = (
        ours["sessions"] == ours["subscriptions"] == ours["polled"] == 0
        and ours["threads_after"] <= ours["threads_before"]
        and ours["rss_growth"] <= 5.0
    )
    print("target (0 / 0 / no thread growth / RSS growth <= 5 MB):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
