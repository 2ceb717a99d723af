"""Shared history: a page opened late, and what an hour of 500 attributes costs.

    .venv/bin/python bench/bench_history.py [--part open|fill|memory|both] [--trends 20]
        [--minutes 10] [--rate 10] [--attributes 500] [--hours 1]

* **open**: a real bokeh server (this process) and Debian's Chromium. A page of
  ``--trends`` trends (one attribute each, 1 h window) on a hub whose attributes
  have ``--minutes`` of history at ``--rate`` Hz (with ``--live`` they keep
  arriving at that rate; else the page receives the initial transfer alone).
  Measured: time from ``page.goto`` to every trend holding its history (and from
  the page's first render), and the bytes the page's websocket received. Ours:
  the history in each trend's first stream, numpy arrays sent as binary.
  Baseline, same run, same page: the same rows sent as JSON lists
  (``NaiveTrend``). Target: bytes <= 0.3 x the baseline.
* **fill**: the server's side of the same opening, in this process: one session
  tick filling the trends from the hub's history, then bokeh's serialiser on the
  messages it made (CPU time), ours against the same rows as JSON lists.
* **memory**: ``--attributes`` scalar attributes x ``--hours`` at 1 Hz pushed
  into a hub as acquisition would (one reader each, reading every 10 samples).
  Ours: with the shared history; baseline, in a fresh process of the same
  script: ``history_budget=0``. Prints bytes per sample held (target <= 32) and
  one full ``gc.collect()`` for both (target ratio <= 2), in CPU time (the best of
  five), and the CPU time of the ingest itself.

The attributes are synthetic (``SyntheticAcquisition`` stands in for Tango: what
is measured is the hub, the views, bokeh and the browser); no Tango needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tango_bokeh.hub import Hub
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.names import AttributeName
from tango_bokeh.tango.sample import AttributeInfo, Quality, Sample

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


class SyntheticAcquisition:
    """Stands in for Tango: keeps the hub's feeds so that the benchmark can push samples."""

    def __init__(self) -> None:
        self.feeds: dict[str, object] = {}

    def start(self, name: AttributeName, feed, poll_period=None):
        feed.set_info(AttributeInfo(str(name), unit="mm"))
        feed.set_mode(Mode.CHANGE)
        self.feeds[str(name)] = feed
        return self

    def stop(self) -> None:
        pass

    running = True

    def stats(self) -> dict[str, int]:
        return {"subscriptions": 0, "polled": 0, "polled_devices": 0, "device_reads": 0}

    def close(self, wait: bool = True) -> None:
        pass


def _names(count: int) -> list[str]:
    return [f"bench/history/{i}/value" for i in range(count)]


def _value(i: int, k: np.ndarray | int) -> np.ndarray | float:
    """A device-like reading: a slow sine plus noise, full float64 precision."""
    return 10.0 * np.sin(k / 300.0 + i) + 0.01 * np.cos(k * 7.3 + i * 1.1)


# -- open -------------------------------------------------------------------------------


def open_page(
    trends: int, minutes: float, rate: float, naive: bool, live: bool
) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    from tango_bokeh.app import ThreadedServer, session_application
    from tango_bokeh.monitor import MonitorSession
    from tango_bokeh.views import Trend

    class NaiveTrend(Trend):
        """The same first fill, sent as JSON lists (what replaying history naively costs)."""

        def _apply(self, series, new, now_ms):
            if new is not None and series.rows_streamed == 0:
                new = {key: column.tolist() for key, column in new.items()}
                self._now_ms = now_ms
                series.source.stream(new, rollover=self.history_points)
                series.rows_streamed += len(new["t"])
                return
            super()._apply(series, new, now_ms)

    acquisition = SyntheticAcquisition()
    hub = Hub(acquisition, history_window=3600.0)  # all of it in every window, however late
    names = _names(trends)
    keepers = [hub.subscribe(name) for name in names]  # the hub acquires before the page
    count = int(minutes * 60 * rate)
    start = time.time() - count / rate
    for i, name in enumerate(names):
        k = np.arange(count)
        values = _value(i, k)
        acquisition.feeds[name].extend(
            [Sample(start + j / rate, float(values[j]), Quality.VALID) for j in range(count)]
        )
    for cursor in keepers:
        cursor.read()
    stop = threading.Event()

    def arrive() -> None:  # the attributes keep arriving at their rate
        k = count
        while not stop.wait(1.0 / rate):
            now = time.time()
            for i, name in enumerate(names):
                acquisition.feeds[name].extend([Sample(now, float(_value(i, k)))])
            for cursor in keepers:
                cursor.read()
            k += 1

    pusher = threading.Thread(target=arrive, daemon=True)
    if live:
        pusher.start()
    kind = NaiveTrend if naive else Trend

    def make() -> MonitorSession:
        views = [kind(name, history_seconds=3600.0) for name in names]
        return MonitorSession(*views, hub=hub, callback_period=0.5, layout="grid", ncols=4)

    server = ThreadedServer({"/history": session_application(lambda _doc: make())}).start()
    received = [0]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1200})

            def on_socket(ws) -> None:
                ws.on(
                    "framereceived",
                    lambda payload: received.__setitem__(0, received[0] + len(payload)),
                )

            page.on("websocket", on_socket)
            began = time.perf_counter()
            page.goto(f"{server.url}/history")
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0 && "
                "Bokeh.documents[0].roots().length > 0",
                polling="raf",
                timeout=600_000,
            )
            rendered = time.perf_counter()
            page.wait_for_function(
                """([n, rows]) => {
                  const doc = Bokeh.documents[0];
                  const full = [...doc.all_models].filter(m => m.type === 'ColumnDataSource'
                      && m.data.t && m.data.y && m.data.q && m.data.t.length >= rows);
                  return full.length >= n;
                }""",
                arg=[trends, count],
                polling="raf",
                timeout=600_000,
            )
            drawn = time.perf_counter()
            browser.close()
    finally:
        stop.set()
        server.stop()
        hub.close()
    return {
        "open_to_drawn_s": drawn - began,
        "render_to_drawn_s": drawn - rendered,
        "bytes": received[0],
        "rows": trends * count,
    }


# -- fill: the server's side of the same opening, in CPU time ---------------------------


def fill(trends: int, minutes: float, rate: float) -> dict[str, dict[str, float]]:
    """One session tick that fills ``trends`` trends from the hub's history, then the
    serialisation of the messages it makes (what the server does for a page opening), CPU
    time; ours against the same rows as JSON lists."""
    from bokeh.document import Document

    from tango_bokeh.monitor import MonitorSession
    from tango_bokeh.views import Trend
    from tango_bokeh.views.wire import WireTap

    class NaiveTrend(Trend):
        def _apply(self, series, new, now_ms):
            if new is not None and series.rows_streamed == 0:
                new = {key: column.tolist() for key, column in new.items()}
                series.source.stream(new, rollover=self.history_points)
                series.rows_streamed += len(new["t"])
                return
            super()._apply(series, new, now_ms)

    acquisition = SyntheticAcquisition()
    hub = Hub(acquisition, history_window=3600.0)
    names = _names(trends)
    keepers = [hub.subscribe(name) for name in names]
    count = int(minutes * 60 * rate)
    start = time.time() - count / rate
    for i, name in enumerate(names):
        values = _value(i, np.arange(count))
        acquisition.feeds[name].extend(
            [Sample(start + j / rate, float(values[j])) for j in range(count)]
        )
    for cursor in keepers:
        cursor.read()
    out = {}
    for label, kind in (("ours", Trend), ("naive", NaiveTrend)):
        views = [kind(name, history_seconds=3600.0) for name in names]
        session = MonitorSession(*views, hub=hub, callback_period=None)
        session.attach(Document())
        tap = WireTap(session.document)
        for name in names:  # one new sample each: the first read brings the history
            acquisition.feeds[name].extend([Sample(time.time(), 1.0)])
        began = time.process_time()
        session.tick()
        ticked = time.process_time()
        size = tap.bytes  # bokeh's own serialiser, as the server runs it
        done = time.process_time()
        assert all(len(v._series[0].source.data["t"]) > count for v in views)
        out[label] = {"tick_s": ticked - began, "serialise_s": done - ticked, "bytes": size}
        session.close()
    hub.close()
    return out


# -- memory -----------------------------------------------------------------------------


def memory(attributes: int, hours: float, budget: int) -> dict[str, float]:
    """One process: push an hour of 1 Hz samples, then measure what is held and a full GC."""
    acquisition = SyntheticAcquisition()
    hub = Hub(acquisition, history_budget=budget, history_window=hours * 3600.0)
    names = _names(attributes)
    cursors = [hub.subscribe(name) for name in names]
    feeds = [acquisition.feeds[name] for name in names]
    seconds = int(hours * 3600)
    start = time.time() - seconds
    began = time.process_time()  # CPU time: the machine may be shared
    for k in range(seconds):
        for i, feed in enumerate(feeds):
            feed.extend([Sample(start + k, 10.0 * math.sin(k / 300.0 + i), Quality.VALID)])
        if k % 10 == 9:
            for cursor in cursors:
                cursor.read()
    ingest = time.process_time() - began
    stats = hub.stats()
    rows = sum(s.history_rows for s in stats.attributes.values())
    gc.collect()
    timings = []
    for _ in range(5):
        started = time.process_time()
        gc.collect()
        timings.append(time.process_time() - started)
    return {
        "samples": attributes * seconds,
        "rows": rows,
        "history_bytes": stats.history_bytes,
        "gc_s": min(timings),
        "ingest_s": ingest,
        "tracked": len(gc.get_objects()),
    }


def _child(part: str, *args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", part, *args],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("open", "fill", "memory", "both"), default="both")
    parser.add_argument("--trends", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--attributes", type=int, default=500)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=256 * 2**20, help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--live",
        action="store_true",
        help="open: new samples keep arriving at --rate while the page opens (their deltas "
        "are then counted too)",
    )
    args = parser.parse_args()
    if args.child == "memory":
        print(json.dumps(memory(args.attributes, args.hours, args.budget)))
        return
    if args.child == "open":
        print(json.dumps(open_page(args.trends, args.minutes, args.rate, args.naive, args.live)))
        return
    if args.part in ("open", "both"):
        common = ["--trends", str(args.trends), "--minutes", str(args.minutes),
                  "--rate", str(args.rate)] + (["--live"] if args.live else [])  # fmt: skip
        ours = _child("open", *common)
        naive = _child("open", *common, "--naive")
        print(f"open: {args.trends} trends x {args.minutes:g} min at {args.rate:g} Hz "
              f"({ours['rows']:,} rows of history)")  # fmt: skip
        for label, r in (("binary (ours)", ours), ("JSON lists", naive)):
            print(f"  {label:<14} page open -> every trend drawn {r['open_to_drawn_s']:5.2f} s "
                  f"(first render -> drawn {r['render_to_drawn_s']:5.2f} s), "
                  f"websocket {r['bytes'] / 1e6:6.2f} MB")  # fmt: skip
        print(f"  bytes ours / JSON lists: {ours['bytes'] / naive['bytes']:.3f} (target <= 0.3)")
        print(
            f"  time ours / JSON lists:  {ours['open_to_drawn_s'] / naive['open_to_drawn_s']:.2f}"
        )
    if args.part == "fill":
        result = fill(args.trends, args.minutes, args.rate)
        ours, naive = result["ours"], result["naive"]
        print(f"fill: {args.trends} trends x {args.minutes:g} min at {args.rate:g} Hz, one tick "
              "(CPU)")  # fmt: skip
        for label, r in (("binary (ours)", ours), ("JSON lists", naive)):
            print(f"  {label:<14} tick {r['tick_s'] * 1e3:7.1f} ms, serialise "
                  f"{r['serialise_s'] * 1e3:7.1f} ms, {r['bytes'] / 1e6:5.2f} MB")  # fmt: skip
        total = (ours["tick_s"] + ours["serialise_s"]) / (naive["tick_s"] + naive["serialise_s"])
        print(f"  CPU ours / JSON lists: {total:.2f}; bytes {ours['bytes'] / naive['bytes']:.3f}")
    if args.part in ("memory", "both"):
        common = ["--attributes", str(args.attributes), "--hours", str(args.hours)]
        ours = _child("memory", *common)
        bare = _child("memory", *common, "--budget", "0")
        per = ours["history_bytes"] / max(1, ours["rows"])
        print(f"memory: {args.attributes} attributes x {args.hours:g} h at 1 Hz "
              f"({ours['samples']:,} samples)")  # fmt: skip
        print(f"  history: {ours['rows']:,} samples held in {ours['history_bytes'] / 2**20:.1f} MiB"
              f" = {per:.1f} bytes per sample (target <= 32)")  # fmt: skip
        print(f"  full GC: {ours['gc_s'] * 1e3:.1f} ms with history, {bare['gc_s'] * 1e3:.1f} ms "
              f"without; ratio {ours['gc_s'] / bare['gc_s']:.2f} (target <= 2)")  # fmt: skip
        print(f"  GC-tracked objects: {ours['tracked']:,} with, {bare['tracked']:,} without")
        print(f"  ingest: {ours['ingest_s']:.1f} s with history, {bare['ingest_s']:.1f} s without "
              f"(ratio {ours['ingest_s'] / bare['ingest_s']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
