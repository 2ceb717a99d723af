"""Ingest: event-storm device → hub → one consumer draining every 100 ms,
against a bare PyTango subscriber counting events, in the same run.

    .venv/bin/python bench/bench_ingest.py [--seconds 5] [--rates 2000,0]

Each measurement runs in a fresh process, one after the other, against the
same device server; rate 0 means "as fast as the device can push". Prints
events/s received by both, the ratio (target ≥ 0.9 for scalar events), what
the hub dropped (ring overflow, by design bounded), how often a drain found
Tango's bounded event queue full (events lost before the hub), and the CPU
(cores) each client process used, for each payload.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

DEVICE = "sim/storm/1"


def measure(kind: str, payload: str, rate: float, seconds: float) -> dict:
    """Runs in the child process."""
    import tango

    storm = tango.DeviceProxy(DEVICE)
    storm.Stop()
    storm.Payload = payload
    storm.Rate = rate
    attribute = "Counter" if payload == "scalar" else "Spectrum"
    result: dict = {"kind": kind, "payload": payload, "rate": rate}
    if kind == "bare":
        count = [0]
        lock = threading.Lock()

        def callback(event) -> None:
            if not event.err:
                with lock:
                    count[0] += 1

        eid = storm.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, callback)
        pushed0 = storm.Pushed
        storm.Start()
        time.sleep(1.0)
        c0, p0, t0, u0 = count[0], storm.Pushed, time.perf_counter(), time.process_time()
        time.sleep(seconds)
        c1, p1, t1, u1 = count[0], storm.Pushed, time.perf_counter(), time.process_time()
        storm.Stop()
        storm.unsubscribe_event(eid)
        del pushed0
        result.update(
            received=(c1 - c0) / (t1 - t0), pushed=(p1 - p0) / (t1 - t0), cpu=(u1 - u0) / (t1 - t0)
        )
        return result

    from tango_bokeh.hub import Hub
    from tango_bokeh.tango.modes import Mode

    hub = Hub()
    cursor = hub.subscribe(f"{DEVICE}/{attribute}")
    deadline = time.monotonic() + 30
    while cursor.mode is not Mode.CHANGE and time.monotonic() < deadline:
        time.sleep(0.05)
    storm.Start()
    time.sleep(1.0)
    cursor.read()
    channel = cursor.channel
    r0, l0, q0, p0, t0 = (
        channel.received,
        cursor.lost,
        channel.queue_full,
        storm.Pushed,
        time.perf_counter(),
    )
    u0 = time.process_time()
    consumed = 0
    end = t0 + seconds
    while time.perf_counter() < end:
        time.sleep(0.1)  # a session tick
        consumed += len(cursor.read())
    r1, l1, q1 = channel.received, cursor.lost, channel.queue_full
    p1, t1, u1 = storm.Pushed, time.perf_counter(), time.process_time()
    storm.Stop()
    elapsed = t1 - t0
    result.update(
        received=(r1 - r0) / elapsed,
        consumed=consumed / elapsed,
        dropped=(l1 - l0) / elapsed,
        queue_full=(q1 - q0) / elapsed,
        cpu=(u1 - u0) / elapsed,
        pushed=(p1 - p0) / elapsed,
    )
    cursor.close()
    hub.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="2000,0", help="comma-separated events/s (0: max)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PAYLOAD", "RATE"))
    args = parser.parse_args()
    if args.child:
        kind, payload, rate = args.child
        print(json.dumps(measure(kind, payload, float(rate), args.seconds)))
        return

    from pathlib import Path

    from _common import control_system, run_child, servers

    me = Path(__file__)
    rows = []
    with control_system(servers("SimEventStorm")) as system:
        env = system.env()
        for payload in ("scalar", "spectrum"):
            for rate in [float(r) for r in args.rates.split(",")]:
                extra = ["--seconds", str(args.seconds), "--child"]
                bare = run_child(me, *extra, "bare", payload, str(rate), env=env)
                ours = run_child(me, *extra, "hub", payload, str(rate), env=env)
                rows.append((payload, rate, bare, ours))
    print(f"{'payload':<9} {'rate':>8} {'pushed/s':>10} {'bare/s':>10} {'hub/s':>10} "
          f"{'ratio':>6} {'consumed/s':>11} {'dropped/s':>10} {'q-full/s':>9} "
          f"{'bare cpu':>8} {'hub cpu':>8}")  # fmt: skip
    for payload, rate, bare, ours in rows:
        ratio = ours["received"] / bare["received"] if bare["received"] else float("nan")
        label = "max" if rate == 0 else f"{rate:.0f}"
        print(
            f"{payload:<9} {label:>8} {ours['pushed']:>10.0f} {bare['received']:>10.0f} "
            f"{ours['received']:>10.0f} {ratio:>6.2f} {ours['consumed']:>11.0f} "
            f"{ours['dropped']:>10.0f} {ours['queue_full']:>9.1f} "
            f"{bare['cpu']:>8.2f} {ours['cpu']:>8.2f}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
