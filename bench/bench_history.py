"""Shared history: a page opened late, and what an hour of 500 attributes costs.

    .venv/bin/python bench/bench_history.py [--part open|fill|memory|both] [--trends 20]
        [--minutes 10] [--rate 10] [--compression 1] [--mem-level 5] [--attributes 500]
        [--hours 1]

* **open**: a real bokeh server (this process) and Debian's Chromium. A page of
  ``--trends`` trends (one attribute each, 1 h window) on a hub whose attributes
  have ``--minutes`` of history at ``--rate`` Hz (with ``--live`` they keep
  arriving at that rate; else the page receives the initial transfer alone).
  Four runs: our trends (the history in each trend's first stream, numpy arrays
  sent as binary) and the same rows as JSON lists (``NaiveTrend``, what
  replaying the history as deltas sent before), each with the websocket's
  permessage-deflate off and at ``--compression`` (``--mem-level``).
  Bytes: what the server sent on the page's websocket connection as it crossed
  the wire (a TCP relay between Chromium and the server counts it, compressed
  frames, frame headers and the upgrade response included; Chromium's own
  count, after decompression, is printed too). Target: ours compressed <= 0.3 x
  the JSON lists uncompressed. Times, measured in the page (``performance.now()``,
  0 = navigation start): the document's first render (``Document.is_idle``) and
  the first repaint of each trend's plot once its source holds the history.
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
import os
import socket
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


class WireCounter:
    """A TCP relay between Chromium and the server that counts what the server sends on
    websocket connections: the frames as they cross the wire, compressed or not (what
    Chromium reports through CDP is each message after permessage-deflate is undone)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.websocket_bytes = 0
        self._target = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._accepting: threading.Thread | None = None

    def start(self, target_port: int) -> WireCounter:
        self._target = target_port
        self._accepting = threading.Thread(target=self._accept, name="wire-counter", daemon=True)
        self._accepting.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self._target))
        with self._lock:
            self._sockets += [client, server]
        first = client.recv(65536)
        target = first.split(b"\r\n", 1)[0].split(b" ")
        websocket = len(target) > 1 and target[1].split(b"?")[0].endswith(b"/ws")
        server.sendall(first)
        threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
        self._pump(server, client, websocket)

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if count:
                    with self._lock:
                        self.websocket_bytes += len(chunk)
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        if self._accepting is not None:
            self._accepting.join(5)
        with self._lock:
            for sock in self._sockets:
                sock.close()


#: Runs in the page from its first script on: the document's first render
#: (``Document.is_idle``: every root painted once) and, for each trend's plot, its first
#: repaint with the whole history in its source (``PlotView.repaint`` wrapped as soon as
#: the view exists; a plot whose source was full before its view existed is drawn by the
#: first render at the latest), in ``performance.now()`` (0 = navigation start), polled
#: each frame.
TIMING = """
(() => {
  const out = window.__bench = {first_render: null, drawn: {}, full_at_wrap: 0};
  const wrapped = new Set();
  const early = [];  // full before their view existed: drawn by the first render at the latest
  const step = () => {
    const B = window.Bokeh;
    const rows = window.__bench_rows;
    if (B && B.documents && B.documents.length > 0 && rows !== undefined) {
      const doc = B.documents[0];
      if (out.first_render === null && doc.roots().length > 0 && doc.is_idle) {
        out.first_render = performance.now();
        for (const id of early) if (out.drawn[id] === undefined) out.drawn[id] = out.first_render;
      }
      for (const m of doc.all_models) {
        if (m.type !== 'Figure' || wrapped.has(m.id)) continue;
        const view = B.index.find_one(m);
        if (view === null || view === undefined) continue;
        wrapped.add(m.id);
        const sources = m.renderers.map(r => r.data_source)
          .filter(s => s && s.data && s.data.q !== undefined);
        const full = () => sources.some(s => s.data.t.length >= rows);
        if (full()) { out.full_at_wrap += 1; early.push(m.id); }
        const repaint = view.repaint.bind(view);
        view.repaint = (...args) => {
          const result = repaint(...args);
          if (out.drawn[m.id] === undefined && full()) out.drawn[m.id] = performance.now();
          return result;
        };
      }
    }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
})();
"""


def open_page(
    trends: int,
    minutes: float,
    rate: float,
    naive: bool,
    live: bool,
    compression: int,
    mem_level: int,
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

    wire = WireCounter()
    deflate = (
        {"websocket_compression_level": compression, "websocket_compression_mem_level": mem_level}
        if compression
        else {}
    )
    server = ThreadedServer(
        {"/history": session_application(lambda _doc: make())},
        allow_websocket_origin=[f"127.0.0.1:{wire.port}"],
        **deflate,
    ).start()
    wire.start(server.port)
    payload = [0]
    extensions: list[str] = []
    load = os.getloadavg()[0]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.add_init_script(f"window.__bench_rows = {count};" + TIMING)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.on(
                "Network.webSocketHandshakeResponseReceived",
                lambda e: extensions.append(
                    {k.lower(): v for k, v in e["response"]["headers"].items()}.get(
                        "sec-websocket-extensions", ""
                    )
                ),
            )

            def on_socket(ws) -> None:
                ws.on(
                    "framereceived",
                    lambda data: payload.__setitem__(0, payload[0] + len(data)),
                )

            page.on("websocket", on_socket)
            page.goto(f"http://127.0.0.1:{wire.port}/history", wait_until="commit", timeout=600_000)
            page.wait_for_function(
                "n => window.__bench && window.__bench.first_render !== null"
                " && Object.keys(window.__bench.drawn).length >= n",
                arg=trends,
                polling=100,
                timeout=600_000,
            )
            timing = page.evaluate("window.__bench")
            browser.close()
    finally:
        stop.set()
        server.stop()
        wire.stop()
        hub.close()
    drawn = max(timing["drawn"].values()) / 1e3
    first_render = timing["first_render"] / 1e3
    return {
        "open_to_drawn_s": drawn,
        "render_to_drawn_s": max(0.0, drawn - first_render),
        "first_render_s": first_render,
        "full_at_first_render": timing["full_at_wrap"],
        "wire_bytes": wire.websocket_bytes,
        "payload_bytes": payload[0],
        "extensions": ";".join(extensions),
        "load": load,
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


# -- deflate: what permessage-deflate costs the server, per page ------------------------


def deflate(trends: int, minutes: float, rate: float, level: int, mem_level: int, ticks: int):
    """One page's session (``trends`` trends, ``minutes`` of history at ``rate`` Hz): its
    first tick (the history) and ``ticks`` one-second ticks of live deltas; for each, CPU
    of the tick, of bokeh's serialiser (the websocket messages) and of compressing them as
    tornado does for one connection (one ``zlib`` context kept across messages, a sync
    flush per message), and the bytes before and after. Also what the zlib contexts of
    one connection hold (``tracemalloc``: CPython's zlib allocates through it)."""
    import tracemalloc

    from bokeh.document import Document
    from tornado.websocket import _PerMessageDeflateCompressor

    from tango_bokeh.monitor import MonitorSession
    from tango_bokeh.views import Trend
    from tango_bokeh.views.wire import WireTap, message_frames

    acquisition = SyntheticAcquisition()
    hub = Hub(acquisition, history_window=3600.0)
    names = _names(trends)
    keepers = [hub.subscribe(name) for name in names]
    count = int(minutes * 60 * rate)
    now = time.time()
    for i, name in enumerate(names):
        values = _value(i, np.arange(count))
        acquisition.feeds[name].extend(
            [Sample(now - (count - j) / rate, float(values[j])) for j in range(count)]
        )
    for cursor in keepers:
        cursor.read()
    views = [Trend(name, history_seconds=3600.0) for name in names]
    session = MonitorSession(*views, hub=hub, callback_period=None)
    session.attach(Document())
    tap = WireTap(session.document)
    tracemalloc.start()
    held = tracemalloc.get_traced_memory()[0]
    compressor = _PerMessageDeflateCompressor(
        persistent=True,
        max_wbits=None,
        compression_options={"compression_level": level, "mem_level": mem_level},
    )
    held = tracemalloc.get_traced_memory()[0] - held
    tracemalloc.stop()
    rows = []
    for k in range(ticks + 1):
        if k:  # one second of live samples
            stamp = time.time()
            for i, name in enumerate(names):
                acquisition.feeds[name].extend(
                    [Sample(stamp - 1 + j / rate, float(_value(i, count + k * rate + j)))
                     for j in range(int(rate))]
                )  # fmt: skip
            for cursor in keepers:
                cursor.read()
        tap.reset()
        began = time.process_time()
        session.tick()
        ticked = time.process_time()
        frames = [f for event in tap.events for f in message_frames(event)]
        serialised = time.process_time()
        compressed = sum(len(compressor.compress(f)) for f in frames)
        done = time.process_time()
        raw = sum(len(f) for f in frames)
        rows.append((ticked - began, serialised - ticked, done - serialised, raw, compressed))
    session.close()
    hub.close()
    first, live = rows[0], rows[1:]

    def total(i: int) -> float:
        return sum(r[i] for r in live)

    return {
        "open": dict(
            zip(("tick_s", "serialise_s", "compress_s", "bytes", "wire"), first, strict=True)
        ),
        "live": {
            "tick_s": total(0) / len(live),
            "serialise_s": total(1) / len(live),
            "compress_s": total(2) / len(live),
            "bytes": total(3) / len(live),
            "wire": total(4) / len(live),
        },
        "context_bytes": held,
    }


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
    parser.add_argument(
        "--part", choices=("open", "fill", "deflate", "memory", "both"), default="both"
    )
    parser.add_argument("--trends", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--attributes", type=int, default=500)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument(
        "--compression",
        type=int,
        default=1,
        help="open: the websocket's permessage-deflate level of the compressed runs (1-9)",
    )
    parser.add_argument(
        "--mem-level", type=int, default=5, help="open: zlib's mem_level of the compressed runs"
    )
    parser.add_argument("--ticks", type=int, default=60, help="deflate: live ticks measured")
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
        result = open_page(
            args.trends,
            args.minutes,
            args.rate,
            args.naive,
            args.live,
            args.compression,
            args.mem_level,
        )
        print(json.dumps(result))
        return
    if args.part in ("open", "both"):
        common = ["--trends", str(args.trends), "--minutes", str(args.minutes),
                  "--rate", str(args.rate)] + (["--live"] if args.live else [])  # fmt: skip
        compressed = ["--compression", str(args.compression), "--mem-level", str(args.mem_level)]
        runs = {
            "binary (ours), compressed": _child("open", *common, *compressed),
            "binary (ours), uncompressed": _child("open", *common, "--compression", "0"),
            "JSON lists, uncompressed": _child("open", *common, "--naive", "--compression", "0"),
            "JSON lists, compressed": _child("open", *common, "--naive", *compressed),
        }
        rows = next(iter(runs.values()))["rows"]
        print(f"open: {args.trends} trends x {args.minutes:g} min at {args.rate:g} Hz "
              f"({rows:,} rows of history); compressed = permessage-deflate level "
              f"{args.compression}, mem_level {args.mem_level}")  # fmt: skip
        for label, r in runs.items():
            print(f"  {label:<28} wire {r['wire_bytes'] / 1e6:5.2f} MB "
                  f"(payload {r['payload_bytes'] / 1e6:5.2f} MB); "
                  f"first render {r['first_render_s']:5.2f} s, "
                  f"every trend drawn {r['open_to_drawn_s']:5.2f} s "
                  f"(+{r['render_to_drawn_s']:.2f} s; "
                  f"{r['full_at_first_render']} full when first seen); load {r['load']:.1f}; "
                  f"extensions {r['extensions'] or '-'!r}")  # fmt: skip
        ours = runs["binary (ours), compressed"]
        baseline = runs["JSON lists, uncompressed"]
        for label in list(runs)[1:]:
            print(f"  wire bytes ours compressed / {label}: "
                  f"{ours['wire_bytes'] / runs[label]['wire_bytes']:.3f}")  # fmt: skip
        print(f"  target: ours compressed / JSON lists uncompressed "
              f"{ours['wire_bytes'] / baseline['wire_bytes']:.3f} <= 0.3; first render -> every "
              f"trend drawn {ours['render_to_drawn_s']:.2f} s <= 1 s")  # fmt: skip
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
    if args.part == "deflate":
        r = deflate(
            args.trends, args.minutes, args.rate, args.compression, args.mem_level, args.ticks
        )
        print(f"deflate: one page of {args.trends} trends x {args.minutes:g} min at "
              f"{args.rate:g} Hz, permessage-deflate level {args.compression}, mem_level "
              f"{args.mem_level}, CPU")  # fmt: skip
        for label, x in (
            ("open (first tick)", r["open"]),
            (f"live (mean of {args.ticks})", r["live"]),
        ):
            work = x["tick_s"] + x["serialise_s"]
            print(f"  {label:<18} tick + serialise {work * 1e3:7.2f} ms, compress "
                  f"{x['compress_s'] * 1e3:6.2f} ms (+{x['compress_s'] / work:.0%}); "
                  f"{x['bytes']:>11,.0f} -> {x['wire']:>10,.0f} bytes "
                  f"({x['wire'] / x['bytes']:.3f})")  # fmt: skip
        print(f"  zlib compressor of one connection: {r['context_bytes'] / 1e3:.0f} kB")
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
