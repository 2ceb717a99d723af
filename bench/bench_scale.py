"""Start-up and scale of one dashboard with 500 event-driven attributes, seen by a real browser.

    .venv/bin/python bench/bench_scale.py [--attributes 500] [--rate 10] [--seconds 20]

A private control system runs ``--attributes`` SimEventStorm devices (100
per device server process) whose ``Counter`` pushes change events at
``--rate`` Hz once started. One dashboard shows every Counter (value tables
of 100 rows each) and is served by the dashboard server in this process;
headless Chromium opens it.

Start-up: time from opening the page until every attribute is live (event
subscription made and a first value received), and the longest stall of the
server's loop meanwhile (a 10 ms heartbeat on the loop). Baseline, same
run: the same subscriptions made one after the other with plain PyTango, as
a server subscribing on its loop would (that whole time is a stall).

Scale: with every device pushing, the server process's CPU (fraction of one
core), the sessions' tick duration and the latency from the device's push
(the Tango timestamp) to the browser's update of the cell (measured in the
page when the table's data source is patched), p50/p95, against the target
"one tick + 100 ms".
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import control_system

from tango_bokeh_devices.catalog import DeviceSpec, ServerSpec

PER_SERVER = 100
ROWS_PER_TABLE = 100
LINES_PER_TREND = 10
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

#: Installed in the page: a latency sample per patched cell, from its Tango time to now.
LATENCY_PROBE = """() => {
  window.__latencies = [];
  const doc = Bokeh.documents[0];
  for (const table of [...doc.all_models].filter(m => m.type === 'DataTable')) {
    const source = table.source;
    source.patching.connect((indices) => {
      const now = Date.now(), times = source.data.time;
      for (const i of indices) {
        const text = times[i];
        if (!text) continue;
        const [hms, ms] = text.split('.');
        const [h, m, s] = hms.split(':').map(Number);
        const when = new Date(); when.setHours(h, m, s, Number(ms));
        window.__latencies.push(now - when.getTime());
      }
    });
  }
  const offset = -new Date().getTimezoneOffset() * 60000;  // trends plot local time
  for (const source of [...doc.all_models].filter(
      m => m.type === 'ColumnDataSource' && 'q' in m.data && 't' in m.data)) {
    source.streaming.connect(() => {
      const t = source.data.t;
      if (t.length) window.__latencies.push(Date.now() - (t[t.length - 1] - offset));
    });
  }
  return true;
}"""


def storm_servers(count: int, rate: float) -> list[ServerSpec]:
    servers = []
    for k in range(math.ceil(count / PER_SERVER)):
        devices = tuple(
            DeviceSpec(
                f"bench/storm/{i}",
                "SimEventStorm",
                None,
                {"Seed": [str(i)], "Points": ["4"], "Rate": [str(rate)]},
            )
            for i in range(k * PER_SERVER, min(count, (k + 1) * PER_SERVER))
        )
        servers.append(ServerSpec("SimEventStorm", f"bench{k}", devices))
    return servers


def dashboard_text(count: int, refresh: float, layout: str = "tables") -> str:
    lines = [f"title: {count} attributes", f"refresh: {refresh} s", "panels:"]
    if layout == "trends":
        for start in range(0, count, LINES_PER_TREND):
            end = min(count, start + LINES_PER_TREND)
            lines += ["  - trend:", f"      title: storms {start}-{end - 1}"]
            lines += ["      history: 1 min", "      height: 200", "      attributes:"]
            lines += [f"        - bench/storm/{i}/Counter" for i in range(start, end)]
        return "\n".join(lines) + "\n"
    for start in range(0, count, ROWS_PER_TABLE):
        end = min(count, start + ROWS_PER_TABLE)
        lines += ["  - table:", f"      title: storms {start}-{end - 1}", "      attributes:"]
        lines += [
            f"        - bench/storm/{i}/Counter"
            for i in range(start, min(count, start + ROWS_PER_TABLE))
        ]
    return "\n".join(lines) + "\n"


class GcPauses:
    """Longest garbage collection per generation (a collection stops every thread)."""

    def __init__(self) -> None:
        import gc

        self.worst = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.count[generation] += 1
            self.worst[generation] = max(
                self.worst[generation], time.perf_counter() - self._started
            )

    def reset(self) -> tuple[list[float], list[int]]:
        worst, count = self.worst, self.count
        self.worst, self.count = [0.0, 0.0, 0.0], [0, 0, 0]
        return worst, count


class Heartbeat:
    """A 10 ms periodic callback on the server's loop; the longest gap is the longest stall."""

    def __init__(self, loop, period: float = 0.01) -> None:  # type: ignore[no-untyped-def]
        from tornado.ioloop import PeriodicCallback

        self.period = period
        self._last = time.perf_counter()
        self.worst = 0.0
        self.stalls: list[tuple[float, float]] = []  # (start, length) of gaps over 50 ms
        self._callback = PeriodicCallback(self._beat, period * 1000)
        loop.add_callback(self._callback.start)
        self._loop = loop

    def _beat(self) -> None:
        now = time.perf_counter()
        gap = now - self._last - self.period
        if gap > 0.05:
            self.stalls.append((self._last, gap))
        self.worst = max(self.worst, gap)
        self._last = now

    def reset(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst

    def stop(self) -> None:
        self._loop.add_callback(self._callback.stop)


def serial_subscriptions(names: list[str]) -> float:
    """Baseline: what subscribing on the loop would block it for (plain PyTango, one by one)."""
    import tango

    proxies = {}
    ids = []
    started = time.perf_counter()
    for name in names:
        device, attribute = name.rsplit("/", 1)
        proxy = proxies.get(device) or proxies.setdefault(device, tango.DeviceProxy(device))
        ids.append((proxy, proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT,
                                                 lambda _e: None)))  # fmt: skip
    elapsed = time.perf_counter() - started
    for proxy, event_id in ids:
        proxy.unsubscribe_event(event_id)
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(
    count: int, rate: float, seconds: float, refresh: float, where: Path, layout: str = "tables"
) -> dict:
    import tango
    from playwright.sync_api import sync_playwright

    from tango_bokeh.dashboard.build import DashboardSession
    from tango_bokeh.dashboard.guard import UNLIMITED
    from tango_bokeh.dashboard.loader import load
    from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
    from tango_bokeh.hub import Hub
    from tango_bokeh.tango.modes import Mode

    server_ages: list[float] = []  # age of the newest sample of each attribute at each tick
    measuring = threading.Event()

    class Measured(DashboardSession):
        def on_samples(self, batch):  # type: ignore[no-untyped-def]
            if measuring.is_set():
                now = time.time()
                server_ages.extend(now - samples[-1].time for samples in batch.values())
            super().on_samples(batch)

    names = [f"bench/storm/{i}/Counter" for i in range(count)]
    path = where / "scale.yaml"
    path.write_text(dashboard_text(count, refresh, layout))
    result: dict = {"attributes": count, "rate": rate, "refresh": refresh, "layout": layout}

    result["baseline_serial_subscribe_s"] = serial_subscriptions(names)

    hub = Hub()

    class Server(DashboardServer):
        def _factory(self, dashboard):  # type: ignore[no-untyped-def]
            def factory(doc):  # type: ignore[no-untyped-def]
                return Measured(dashboard, hub=hub)

            return factory

    server: DashboardServer = Server([load(path)], hub=hub)
    running = Serving(server, ServeOptions(port=0, limits=UNLIMITED)).start_thread(freeze_gc=True)
    heartbeat = Heartbeat(running._loop)
    pauses = GcPauses()
    storms = [tango.DeviceProxy(f"bench/storm/{i}") for i in range(count)]
    pool = ThreadPoolExecutor(16)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            time.sleep(1.0)
            heartbeat.reset()
            pauses.reset()
            opened = time.perf_counter()
            page.goto(f"{running.url}/scale")

            def live() -> int:
                stats = hub.stats().attributes.values()
                return sum(1 for c in stats if Mode(c.mode).is_event and c.received > 0)

            while live() < count:
                if time.perf_counter() - opened > 120:
                    raise RuntimeError(f"only {live()} of {count} attributes live after 120 s")
                time.sleep(0.05)
            result["startup_live_s"] = time.perf_counter() - opened
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000
            )
            result["startup_page_s"] = time.perf_counter() - opened
            time.sleep(0.5)
            result["startup_worst_stall_ms"] = 1000 * heartbeat.reset()
            result["startup_gc"] = pauses.reset()

            list(pool.map(lambda d: d.Start(), storms))
            time.sleep(5.0)  # warm up
            page.evaluate(LATENCY_PROBE)
            sessions = server.sessions()
            ticks: list[float] = []
            heartbeat.reset()
            pauses.reset()
            import psutil

            chromium = [
                p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()
            ]

            def browser_cpu() -> float:
                total = 0.0
                for proc in chromium:
                    try:
                        times = proc.cpu_times()
                        total += times.user + times.system
                    except psutil.Error:
                        pass
                return total

            browser0 = browser_cpu()
            cpu0, t0 = time.process_time(), time.perf_counter()
            received0 = sum(c.received for c in hub.stats().attributes.values())
            stop = threading.Event()

            def sample_ticks() -> None:
                while not stop.wait(refresh):
                    ticks.extend(s.last_tick_duration for s in sessions)

            measuring.set()
            sampler = threading.Thread(target=sample_ticks, daemon=True)
            sampler.start()
            time.sleep(seconds)
            stop.set()
            sampler.join()
            wall = time.perf_counter() - t0
            result["cpu_cores"] = (time.process_time() - cpu0) / wall
            result["browser_cores"] = (browser_cpu() - browser0) / wall
            result["load"] = psutil.getloadavg()[0]
            result["events_per_s"] = (
                sum(c.received for c in hub.stats().attributes.values()) - received0
            ) / wall
            result["worst_stall_ms"] = 1000 * heartbeat.reset()
            result["gc"] = pauses.reset()
            latencies = page.evaluate("() => window.__latencies")
            measuring.clear()
            result["server_age_p50_ms"] = 1000 * percentile(server_ages, 0.50)
            result["server_age_p95_ms"] = 1000 * percentile(server_ages, 0.95)
            result["latency_samples"] = len(latencies)
            result["latency_p50_ms"] = percentile(latencies, 0.50)
            result["latency_p95_ms"] = percentile(latencies, 0.95)
            result["tick_p50_ms"] = 1000 * percentile(ticks, 0.50)
            result["tick_p95_ms"] = 1000 * percentile(ticks, 0.95)
            result["tick_max_ms"] = 1000 * max(ticks)
            result["tick_mean_ms"] = 1000 * statistics.fmean(ticks)
            result["dropped"] = sum(c.dropped for c in hub.stats().attributes.values())
        finally:
            list(pool.map(lambda d: d.Stop(), storms))
            browser.close()
            heartbeat.stop()
            running.join()
            hub.close()
            pool.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attributes", type=int, default=500)
    parser.add_argument("--rate", type=float, default=10.0, help="events/s per attribute")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--refresh", type=float, default=0.5, help="dashboard refresh (s)")
    parser.add_argument("--layout", choices=("tables", "trends"), default="tables",
                        help="tables of 100 rows, or trends of 10 lines")  # fmt: skip
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="scale-") as where,
        control_system(storm_servers(args.attributes, args.rate)),
    ):
        r = run(args.attributes, args.rate, args.seconds, args.refresh, Path(where), args.layout)
    target = 1000 * args.refresh + 100
    print(
        f"{r['attributes']} attributes, events at {r['rate']:g} Hz each, refresh {r['refresh']:g} s"
    )
    print("Start-up (page opened -> every attribute live):")
    print(
        f"  live after {r['startup_live_s']:.2f} s (page shown after "
        f"{r['startup_page_s']:.2f} s), longest loop stall {r['startup_worst_stall_ms']:.0f} ms "
        "(target <= 100 ms)"
    )
    print(
        f"  longest garbage collection per generation (ms): "
        f"{[round(1000 * w) for w in r['startup_gc'][0]]}, collections {r['startup_gc'][1]}"
    )
    print(
        f"  baseline: {r['attributes']} subscriptions made one by one would block a loop "
        f"{r['baseline_serial_subscribe_s']:.2f} s; stall ratio "
        f"{r['startup_worst_stall_ms'] / 1000 / r['baseline_serial_subscribe_s']:.3f}"
    )
    print(f"Scale ({args.seconds:g} s, {r['events_per_s']:.0f} events/s received, "
          f"{r['dropped']} samples dropped):")  # fmt: skip
    print(
        f"  server CPU {r['cpu_cores']:.2f} core (target <= 0.5); browser {r['browser_cores']:.2f} "
        f"core; machine load average {r['load']:.1f} (2 cores)"
    )
    print(
        f"  tick p50 {r['tick_p50_ms']:.1f} ms, p95 {r['tick_p95_ms']:.1f} ms, "
        f"max {r['tick_max_ms']:.1f} ms; longest loop stall {r['worst_stall_ms']:.0f} ms"
    )
    print(
        f"  longest garbage collection per generation (ms): "
        f"{[round(1000 * w) for w in r['gc'][0]]}, collections {r['gc'][1]}"
    )
    print(
        f"  age of the newest value when the tick sends it: p50 {r['server_age_p50_ms']:.0f} ms, "
        f"p95 {r['server_age_p95_ms']:.0f} ms"
    )
    print(
        f"  push -> browser latency p50 {r['latency_p50_ms']:.0f} ms, p95 "
        f"{r['latency_p95_ms']:.0f} ms over {r['latency_samples']} cells "
        f"(target p95 <= {target:.0f} ms: ratio {r['latency_p95_ms'] / target:.2f})"
    )


if __name__ == "__main__":
    main()
