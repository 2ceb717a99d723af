"""Soak: a dashboard server with 3 pages open for 10 minutes stays flat.

    .venv/bin/python bench/bench_soak.py [--seconds 600] [--viewers 3] [--interval 10]
                                         [--idle 60] [--warmup 120] [--refresh 0.5]

A private control system (ring current, counter, camera, motors) feeds a dashboard
of a trend, an image and a table (``--refresh``), served by the dashboard server in a
process of its own (``--serve``, as ``tango-bokeh serve`` runs it). Phases:

* idle (``--idle`` s): the server with no page at all, the baseline of the same
  process: how much its memory moves by itself (Tango's and the hub's threads
  waiting, the garbage collector);
* viewers (``--seconds`` s): ``--viewers`` pages, each a websocket client in a
  child process that applies every patch and acknowledges every tick as a
  browser's page does (dashboard/pace.py), so the server does a page's full work.
  Not bokeh's own client loop: it recurses once per message and overflows on a
  long connection; the pages' websockets are read here in a loop (as bench_replicas.py);
* closed: the pages closed; seconds until the server holds no session, no reader
  and no Tango subscription.

Every ``--interval`` s: the server's RSS, threads and open file descriptors
(psutil), and from its ``/metrics`` the hub's channels and readers, Tango event
subscriptions, polled attributes, sessions, the pages' worst lag and the ticks
skipped. Printed: each sample, then the RSS slope (MB/min, least squares) of the
idle phase and of the viewers phase after ``--warmup`` s (rings and trend
histories filling, caches warming), end/start ratios after the warm-up, and
whether the run is flat: growth after the warm-up within the noise (at most
``max(3 x the samples' scatter around the fit, 2 MB)`` over the measured window),
threads and fds with no new high in the second half of the run (omniORB opens and closes
connections: fds move by a few), sessions/channels/readers steady while the pages are
open, and every count back to 0 once the pages close.

Loopback only; every process started is stopped by its pid. About
``idle + seconds + 1`` minute in all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

DASHBOARD = """\
title: Soak bench
refresh: {refresh} s
poll_period: 1 s
panels:
  - row:
      - trend:
          title: Ring current and diode
          attributes: [sim/beam/current/Current, diode1/Counts]
          history: 1 min
      - image: {{title: Camera, attribute: sim/camera/1/Image}}
  - table:
      title: Values
      attributes: [sim/beam/current/Current, diode1/Counts, mot1/Position, mot2/Position,
                   sim/camera/1/FrameNumber, sim/motor/1/Velocity, sim/motor/1/State]
"""
GAUGES = {
    "channels": r"^tango_bokeh_attributes (\S+)$",
    "readers": r"^tango_bokeh_readers (\S+)$",
    "subscriptions": r"^tango_bokeh_tango_subscriptions (\S+)$",
    "polled": r"^tango_bokeh_polled_attributes (\S+)$",
    "sessions": r'^tango_bokeh_sessions\{dashboard="soak"\} (\S+)$',
    "lag_s": r'^tango_bokeh_page_lag_seconds_max\{dashboard="soak"\} (\S+)$',
    "skipped": r'^tango_bokeh_ticks_skipped\{dashboard="soak"\} (\S+)$',
}


# -- the server process ---------------------------------------------------------------------


def serve(path: Path) -> None:
    """``--serve FILE``: the dashboard server as shipped; prints its URL, runs until SIGTERM."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from tango_bokeh.dashboard.loader import load
    from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving

    serving = Serving(DashboardServer([load(path)]), ServeOptions(port=0, health_detail=True))
    print(serving.bind(), flush=True)
    serving.run(handle_signals=True)


# -- the pages (a child process) --------------------------------------------------------------


def pages(url: str, count: int) -> None:
    """``--pages URL N``: N pages that apply every patch and acknowledge every tick.

    Prints ``{"ready": N}`` once open, then every 5 s the patches and acknowledgements
    of each page so far; closes them all when its stdin closes.
    """
    from bokeh.client.util import websocket_url_for_server_url
    from bokeh.document.events import ModelChangedEvent
    from tornado.ioloop import IOLoop, PeriodicCallback

    from tango_bokeh.dashboard.client import PageSession, page_token

    loop = IOLoop(make_current=False)
    patches = [0] * count
    acks = [0] * count
    sessions = []

    def acknowledge(index: int):  # type: ignore[no-untyped-def]
        def on_change(event) -> None:  # type: ignore[no-untyped-def]
            changed = isinstance(event, ModelChangedEvent) and event.attr == "sent"
            if changed and event.model.__view_model__ == "PageClock":
                event.model.seen = event.new  # what the page's script does (pace.py)
                acks[index] += 1

        return on_change

    async def read(index: int, session: Any) -> None:
        connection = session._connection
        while True:
            message = await connection._pop_message()
            if message is None:
                return
            if message.msgtype == "PATCH-DOC":
                patches[index] += 1
                session._handle_patch(message)

    for index in range(count):
        token = page_token(url)
        session = PageSession(token, websocket_url_for_server_url(url), io_loop=loop)
        session.pull()
        session.document.on_change(acknowledge(index))
        sessions.append(session)
        loop.add_callback(read, index, session)
    print(json.dumps({"ready": count}), flush=True)

    def report() -> None:
        print(json.dumps({"patches": patches, "acks": acks}), flush=True)

    loop.add_callback(lambda: PeriodicCallback(report, 5000).start())  # on this loop

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.add_callback(loop.stop)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    loop.start()
    for session in sessions:
        session.close()
    report()


class Pages:
    """The ``--pages`` child process and what it last said."""

    def __init__(self, url: str, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--pages", url, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith('{"ready"'):
            self.stop()
            raise RuntimeError(f"the pages did not open: {line!r}")
        self.last: dict[str, list[int]] = {"patches": [0] * count, "acks": [0] * count}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.last = json.loads(line)

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()  # the pages close their websockets
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- measuring --------------------------------------------------------------------------------


class Server:
    """``bench_soak.py --serve``: its URL, its process, its metrics."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the server did not start: {self.url!r}")
        self.log_lines = 0
        self.tail: list[str] = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines += 1
            self.tail = [*self.tail[-4:], line.rstrip()[:200]]

    def sample(self) -> dict[str, float]:
        import psutil

        process = psutil.Process(self.proc.pid)
        row: dict[str, float] = {
            "rss_mb": process.memory_info().rss / 2**20,
            "threads": process.num_threads(),
            "fds": process.num_fds(),
            "cpu_s": sum(process.cpu_times()[:2]),
        }
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=60) as response:
            text = response.read().decode()
        for key, pattern in GAUGES.items():
            match = re.search(pattern, text, re.M)
            row[key] = float(match.group(1)) if match else 0.0
        return row

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def slope(rows: list[dict[str, float]], key: str = "rss_mb") -> tuple[float, float]:
    """Least-squares slope of ``key`` per minute, and the samples' scatter around the fit."""
    if len(rows) < 3:
        return float("nan"), float("nan")
    xs = [r["t"] / 60 for r in rows]
    ys = [r[key] for r in rows]
    fit = statistics.linear_regression(xs, ys)
    residuals = [y - (fit.intercept + fit.slope * x) for x, y in zip(xs, ys, strict=True)]
    return fit.slope, statistics.pstdev(residuals)


def run_phase(
    name: str, server: Server, seconds: float, interval: float, pages: Pages | None
) -> list[dict[str, float]]:
    rows = []
    start = time.monotonic()
    while True:
        t = time.monotonic() - start
        row = {"phase": name, "t": round(t, 1), **server.sample()}  # type: ignore[dict-item]
        if pages is not None:
            row["patches"] = sum(pages.last["patches"])
            row["acks"] = sum(pages.last["acks"])
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)  # fmt: skip
        if t >= seconds:
            return rows
        time.sleep(max(0.0, min(interval, seconds - t) - (time.monotonic() - start - t)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="pages open (s)")
    parser.add_argument("--viewers", type=int, default=3, help="pages")
    parser.add_argument("--interval", type=float, default=10.0, help="between samples (s)")
    parser.add_argument("--idle", type=float, default=60.0, help="baseline with no page (s)")
    parser.add_argument("--warmup", type=float, default=120.0, help="left out of the slope (s)")
    parser.add_argument("--refresh", type=float, default=0.5, help="the dashboard's refresh (s)")
    hidden = argparse.SUPPRESS
    parser.add_argument("--serve", metavar="FILE", help=hidden)
    parser.add_argument("--pages", nargs=2, metavar=("URL", "N"), help=hidden)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return
    if args.pages:
        pages(args.pages[0], int(args.pages[1]))
        return

    from _common import control_system, servers

    with (
        tempfile.TemporaryDirectory(prefix="soak-") as where,
        control_system(servers("SimMotor", "SimCounter", "SimBeamCurrent", "SimCamera")),
    ):
        path = Path(where) / "soak.yaml"
        path.write_text(DASHBOARD.format(refresh=args.refresh))
        server = Server(path)
        viewers = None
        try:
            idle = run_phase("idle", server, args.idle, args.interval, None)
            viewers = Pages(f"{server.url}/soak", args.viewers)
            loaded = run_phase("viewers", server, args.seconds, args.interval, viewers)
            closed_at = time.monotonic()
            viewers.stop()
            closed: list[dict[str, float]] = []
            while time.monotonic() - closed_at < 60:
                row = server.sample()
                closed.append(row)
                if not any(row[k] for k in ("sessions", "readers", "channels", "subscriptions")):
                    break
                time.sleep(0.5)
            released_s = time.monotonic() - closed_at
            alive = server.proc.poll() is None
        finally:
            if viewers is not None:
                viewers.stop()
            server.stop()
    report(args, idle, loaded, closed, released_s, alive, server)


def report(
    args: argparse.Namespace,
    idle: list[dict[str, float]],
    loaded: list[dict[str, float]],
    closed: list[dict[str, float]],
    released_s: float,
    alive: bool,
    server: Server,
) -> None:
    measured = [r for r in loaded if r["t"] >= args.warmup]
    idle_slope, idle_noise = slope(idle)
    run_slope, run_noise = slope(measured)
    window_min = (measured[-1]["t"] - measured[0]["t"]) / 60 if len(measured) > 1 else 0.0
    growth = run_slope * window_min
    allowed = max(3 * run_noise, 2.0)
    first, last, end = measured[0], measured[-1], closed[-1]

    def ratio(key: str) -> float:
        return last[key] / first[key] if first[key] else float("nan")

    patches = [r["patches"] for r in loaded]
    page_rate = (patches[-1] - patches[0]) / max(1e-9, loaded[-1]["t"] - loaded[0]["t"])
    # fds and threads come and go (omniORB closes idle connections, the sampler's own HTTP
    # connection): flat = no new high in the second half of the run
    half = len(loaded) // 2
    highs = {
        key: (max(r[key] for r in loaded[:half]), max(r[key] for r in loaded[half:]))
        for key in ("threads", "fds")
    }
    flat_threads = all(second <= first_half for first_half, second in highs.values())
    released = not any(end[k] for k in ("sessions", "readers", "channels", "subscriptions"))
    counts_steady = (
        len({(r["sessions"], r["channels"], r["readers"]) for r in measured}) == 1
        and measured[0]["sessions"] == args.viewers
    )
    flat = growth <= allowed and flat_threads and released and counts_steady and alive
    print(
        f"\nsoak: {args.viewers} pages x {args.seconds:g} s (refresh {args.refresh:g} s, "
        f"warm-up {args.warmup:g} s, a sample every {args.interval:g} s), after {args.idle:g} s "
        f"idle; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"RSS idle {idle[0]['rss_mb']:.1f} -> {idle[-1]['rss_mb']:.1f} MB (slope "
        f"{idle_slope:+.3f} MB/min, scatter {idle_noise:.2f} MB); with pages "
        f"{loaded[0]['rss_mb']:.1f} at open, {first['rss_mb']:.1f} after warm-up -> "
        f"{last['rss_mb']:.1f} MB at the end (slope {run_slope:+.3f} MB/min, scatter "
        f"{run_noise:.2f} MB; fitted growth {growth:+.2f} MB over {window_min:.1f} min, "
        f"allowed {allowed:.2f} MB)"
    )
    print(
        f"end/start after warm-up: RSS {ratio('rss_mb'):.3f}, threads {ratio('threads'):.3f} "
        f"({first['threads']:.0f} -> {last['threads']:.0f}), fds {ratio('fds'):.3f} "
        f"({first['fds']:.0f} -> {last['fds']:.0f}); highest in the first / second half: "
        f"threads {highs['threads'][0]:.0f} / {highs['threads'][1]:.0f}, fds "
        f"{highs['fds'][0]:.0f} / {highs['fds'][1]:.0f} (range "
        f"{min(r['fds'] for r in loaded):.0f}-{max(r['fds'] for r in loaded):.0f}); idle "
        f"threads {idle[-1]['threads']:.0f}, fds {idle[-1]['fds']:.0f}"
    )
    print(
        f"with pages: sessions {first['sessions']:.0f}, hub channels {first['channels']:.0f}, "
        f"readers {first['readers']:.0f}, Tango subscriptions {first['subscriptions']:.0f}, "
        f"polled {first['polled']:.0f} (steady: {counts_steady}); pages got "
        f"{page_rate:.1f} patches/s, worst lag seen {max(r['lag_s'] for r in loaded):.1f} s, "
        f"ticks skipped {loaded[-1]['skipped']:.0f}; server CPU "
        f"{(loaded[-1]['cpu_s'] - loaded[0]['cpu_s']) / max(1e-9, loaded[-1]['t']):.2f} cores"
    )
    print(
        f"pages closed: sessions {end['sessions']:.0f}, readers {end['readers']:.0f}, "
        f"channels {end['channels']:.0f}, Tango subscriptions {end['subscriptions']:.0f} after "
        f"{released_s:.1f} s; threads {end['threads']:.0f}, fds {end['fds']:.0f}; server log "
        f"lines {server.log_lines}{' (last: ' + server.tail[-1] + ')' if server.tail else ''}"
    )
    print(f"flat: {'yes' if flat else 'NO'}")


if __name__ == "__main__":
    main()
