"""Events lost before the hub: the hub's estimate against the truth, in the same run.

    .venv/bin/python bench/bench_losses.py [--seconds 3] [--rates 20000,0]

The event-storm device numbers its events (``Counter`` is the sequence number,
element 0 of each ``Spectrum`` too) and counts what it pushed (``Pushed``), so the
events lost before the hub are known exactly: pushed - events the channel took in
(a reader drains the cursor every 0.1 s, as a session tick does). Printed for each
payload, rate and queue setting: that truth, the hub's ``lost_estimate`` (from the
counter for ``Counter``, an integer stepping by one; from Tango timestamps for
``Spectrum``, whose element 0 the hub knows nothing of), their ratio (target:
1.0 for the counter, within a factor of two for timestamps), the drains that
found the queue full and the missed-events notices of ZMQ turned into counts.
Each measurement runs in a fresh process against the same device server.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

DEVICE = "sim/storm/1"
#: (name, AcquisitionConfig keywords): Tango's queue as shipped, and a small one.
QUEUES = (("default", {}), ("small", {"max_queue": 5, "drain_period": 0.2}))


def measure(payload: str, rate: float, queue: str, seconds: float) -> dict:
    """Runs in the child process."""
    import tango

    from tango_bokeh.hub import Hub
    from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
    from tango_bokeh.tango.modes import Mode

    storm = tango.DeviceProxy(DEVICE)
    storm.Stop()
    storm.Payload = payload
    storm.Rate = rate
    attribute = "Counter" if payload == "scalar" else "Spectrum"
    hub = Hub(Acquisition(AcquisitionConfig(**dict(QUEUES)[queue])))
    cursor = hub.subscribe(f"{DEVICE}/{attribute}")
    deadline = time.monotonic() + 30
    while cursor.mode is not Mode.CHANGE and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    cursor.read()
    before = cursor.channel.stats()
    storm.Start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)  # a session tick
        cursor.read()
    storm.Stop()
    pushed = storm.Pushed
    time.sleep(0.5)
    cursor.read()
    after = cursor.channel.stats()
    taken = (after.received - before.received) - (after.errors - before.errors)
    result = {
        "payload": payload,
        "rate": rate,
        "queue": queue,
        "pushed": pushed,
        "lost": pushed - taken,
        "estimate": after.lost_estimate - before.lost_estimate,
        "queue_full": after.queue_full - before.queue_full,
        "errors": after.errors - before.errors,
    }
    hub.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rates", default="20000,0", help="comma-separated events/s (0: max)")
    parser.add_argument("--child", nargs=3, metavar=("PAYLOAD", "RATE", "QUEUE"))
    args = parser.parse_args()
    if args.child:
        payload, rate, queue = args.child
        print(json.dumps(measure(payload, float(rate), queue, args.seconds)))
        return

    from pathlib import Path

    from _common import control_system, run_child, servers

    me = Path(__file__)
    rows = []
    with control_system(servers("SimEventStorm")) as system:
        env = system.env()
        for payload in ("scalar", "spectrum"):
            for rate in [float(r) for r in args.rates.split(",")]:
                for queue, _ in QUEUES:
                    extra = ["--seconds", str(args.seconds), "--child"]
                    rows.append(run_child(me, *extra, payload, str(rate), queue, env=env))
    print(f"{'payload':<9} {'rate':>6} {'queue':>8} {'pushed':>8} {'lost':>8} {'estimate':>9} "
          f"{'ratio':>6} {'q-full':>7} {'errors':>6}")  # fmt: skip
    for row in rows:
        ratio = row["estimate"] / row["lost"] if row["lost"] else float("nan")
        rate = "max" if row["rate"] == 0 else f"{row['rate']:.0f}"
        print(
            f"{row['payload']:<9} {rate:>6} {row['queue']:>8} {row['pushed']:>8} "
            f"{row['lost']:>8} {row['estimate']:>9} {ratio:>6.2f} {row['queue_full']:>7} "
            f"{row['errors']:>6}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
