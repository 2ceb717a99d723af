"""Fan-out: N viewer sessions of one dashboard of polled attributes, against the naive design.

    .venv/bin/python bench/bench_fanout.py [--viewers 50] [--seconds 10] [--poll 0.5]

A dashboard of 20 attributes that have no Tango events (so they are client
polled, every ``--poll`` seconds) is served by the real dashboard server
and opened by ``--viewers`` bokeh clients at once. Measured: attribute reads
per second (one sample per polled attribute per read) divided by
(attributes x polling rate), and read_attributes calls per second.

* shared: the dashboard server as it is (every session reads the process hub);
* naive: the same server, but each session has a hub of its own, as if each
  viewer polled the devices for itself.

Target: shared 1.0, naive = the number of viewers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEMO, control_system

#: 20 attributes of the simulated beamline without events: each is client polled.
POLLED = [
    "sim/temp/1/Temperature", "sim/temp/2/Temperature", "sim/vacuum/1/Pressure",
    "sim/motor/1/Velocity", "sim/motor/1/Acceleration", "sim/motor/2/Velocity",
    "sim/motor/2/Acceleration", "sim/beam/current/NextInjection", "sim/camera/1/Exposure",
    "sim/camera/1/FrameRate", "sim/spectro/1/Rate", "sim/counter/1/AcquisitionNumber",
    "sim/storm/1/Rate", "sim/storm/1/Pushed", "sim/storm/1/ActualRate", "sim/temp/1/State",
    "sim/temp/2/State", "sim/vacuum/1/State", "sim/spectro/1/State", "sim/camera/1/State",
]  # fmt: skip


def dashboard_text(poll: float) -> str:
    rows = "\n".join(f"        - {name}" for name in POLLED)
    return (
        f"title: Fan-out bench\nrefresh: 0.5 s\npoll_period: {poll} s\npanels:\n"
        f"  - table:\n      title: Polled attributes\n      attributes:\n{rows}\n"
    )


def measure(design: str, viewers: int, seconds: float, poll: float, path: Path) -> dict:
    from tango_bokeh.dashboard.build import DashboardSession
    from tango_bokeh.dashboard.client import open_page
    from tango_bokeh.dashboard.guard import UNLIMITED
    from tango_bokeh.dashboard.loader import load
    from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
    from tango_bokeh.hub import Hub
    from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
    from tango_bokeh.tango.modes import Mode

    dashboard = load(path)
    hubs: list[Hub] = []
    config = AcquisitionConfig(poll_period=poll)

    class Naive(DashboardServer):
        """Every page gets a hub of its own: every viewer polls for itself."""

        def _factory(self, dashboard):  # type: ignore[no-untyped-def]
            def factory(doc):  # type: ignore[no-untyped-def]
                hub = Hub(Acquisition(AcquisitionConfig(poll_period=poll, workers=2)))
                hubs.append(hub)
                session = DashboardSession(dashboard, hub=hub)
                session.on_close(hub.close)
                return session

            return factory

    if design == "shared":
        shared = Hub(Acquisition(config))
        hubs.append(shared)
        server = DashboardServer([dashboard], hub=shared)
    else:
        server = Naive([dashboard])
    running = Serving(server, ServeOptions(port=0, limits=UNLIMITED)).start_thread()
    clients = []
    try:
        for _ in range(viewers):
            clients.append(open_page(f"{running.url}/{dashboard.name}"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            modes = [c.mode for h in hubs for c in h._channels.values()]
            if len(modes) == len(hubs) * len(POLLED) and all(m is Mode.POLL for m in modes):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{design}: not every attribute is polled: {modes}")
        time.sleep(2 * poll + 1)  # warm up

        def totals() -> tuple[int, int]:
            received = reads = 0
            for hub in hubs:
                stats = hub.stats()
                received += sum(c.received for c in stats.attributes.values())
                reads += stats.device_reads
            return received, reads

        r0, d0, t0 = *totals(), time.perf_counter()
        cpu0 = time.process_time()
        time.sleep(seconds)
        r1, d1, t1 = *totals(), time.perf_counter()
        cpu = (time.process_time() - cpu0) / (t1 - t0)
        sessions = len(server.sessions()) if design == "shared" else len(hubs)
    finally:
        for client in clients:
            client.close()
        running.join()
        for hub in hubs:
            hub.close()
    attribute_reads = (r1 - r0) / (t1 - t0)
    return {
        "design": design,
        "sessions": sessions,
        "attribute_reads_per_s": attribute_reads,
        "device_reads_per_s": (d1 - d0) / (t1 - t0),
        "ratio": attribute_reads / (len(POLLED) / poll),
        "process_cpu": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.5, help="client polling period (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanout-") as where, control_system(DEMO):
        path = Path(where) / "fanout.yaml"
        path.write_text(dashboard_text(args.poll))
        results = [
            measure(design, args.viewers, args.seconds, args.poll, path)
            for design in ("shared", "naive")
        ]
    rate = 1 / args.poll
    print(f"{args.viewers} viewers x {len(POLLED)} polled attributes at {rate:g} Hz "
          f"({len(POLLED) * rate:g} attribute reads/s needed), {args.seconds:g} s each, "
          f"pid {os.getpid()}")  # fmt: skip
    print(
        "| design | sessions | attribute reads/s | read_attributes calls/s | ratio | CPU (cores) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['design']} | {r['sessions']} | {r['attribute_reads_per_s']:.1f} | "
            f"{r['device_reads_per_s']:.1f} | {r['ratio']:.2f} | {r['process_cpu']:.2f} |"
        )
    print(f"naive / shared = {results[1]['ratio'] / results[0]['ratio']:.1f}")


if __name__ == "__main__":
    main()
