"""Does a big export stall the other viewers of the same server? (issue 10, section 3)

    .venv/bin/python bench/bench_export.py [--seconds 20] [--format csv]

One bokeh server (tango_bokeh's ThreadedServer, in this process) serves two pages:

* an *observer*: a trend of one attribute that gets a new value 10 times a second (the
  in-memory acquisition, ``tango/fake.py``: no Tango needed), ticking every 0.1 s;
* an *exporter*: a trend of 10 attributes holding 1 h at 10 Hz each (360,000 rows,
  put in its sources as the trend would have streamed them).

Both pages are bokeh clients, each in a child process of its own (they apply every
message, as a page does, on other cores' time than the server's). The observer's child
records when each update of its trend arrives; the server records the gaps between the
observer session's ticks (its loop's stalls). Three phases of ``--seconds`` each, in one run:

1. *idle*: nothing exported;
2. *streamed*: the exporter exports again and again, as the Export menu does
   (copies on the loop, the file written on the export worker, sent in 256 KiB chunks,
   one per loop callback);
3. *naive*: the old way: the file built on the loop and sent as one message.

Printed: per phase, the observer's update intervals in the client (p50, p99, max), the
server's longest tick gap, the exports done and their size; then the ratios p99 and max
streamed / idle and naive / idle.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ATTRIBUTES = [f"fake/bench/1/A{i}" for i in range(10)]
OBSERVED = "fake/bench/2/Live"
HOUR_ROWS = 36_000  # 1 h at 10 Hz

CLIENT = r"""
import json, sys, threading, time
from bokeh.client import pull_session
# bokeh's Python client awaits itself once per message it reads (ClientConnection._next):
# a long run needs a deep stack (a browser has no such limit).
sys.setrecursionlimit(1_000_000)
threading.stack_size(512 * 1024 * 1024)
url, page = sys.argv[1], sys.argv[2]
client = pull_session(url=url + page)
arrivals = []
def changed(event):
    arrivals.append(time.time())
client.document.on_change(changed)
# the client's own loop applies what the server sends
threading.Thread(target=client._connection.loop_until_closed, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "dump":
        print(json.dumps(arrivals), flush=True)
        arrivals.clear()
    elif line.strip() == "quit":
        break
"""


def _fill(trend, now: float) -> None:
    """1 h at 10 Hz in each series, as the trend would have streamed it (display ms)."""
    from tango_bokeh.views.trend import to_display_ms

    t = to_display_ms(now - 3600.0 + np.arange(HOUR_ROWS) / 10.0)
    rng = np.random.default_rng(1)
    for series in trend._series:
        series.source.data = {
            "t": t.copy(),
            "y": rng.normal(100.0, 5.0, HOUR_ROWS),
            "q": np.zeros(HOUR_ROWS, dtype=np.uint8),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--format", choices=("csv", "hdf5"), default="csv")
    args = parser.parse_args()

    from tango_bokeh.app import ThreadedServer, session_application
    from tango_bokeh.hub import Hub
    from tango_bokeh.session import Session
    from tango_bokeh.tango.fake import FakeAcquisition
    from tango_bokeh.views import Trend
    from tango_bokeh.views.export import build, snapshot

    acquisition = FakeAcquisition()
    hub = Hub(acquisition)
    ticks: list[float] = []
    sessions: dict[str, Session] = {}

    class Page(Session):
        def setup_document(self) -> None:  # the views, and the export's hidden source
            doc = self.document
            assert doc is not None
            for view in self.views:
                doc.add_root(view.model)
            doc.add_root(self.download.source)

    class Observer(Page):
        def periodic_callback(self) -> None:
            ticks.append(time.perf_counter())

    def observer(_doc: object) -> Session:
        session = Observer(hub=hub, callback_period=0.1)
        session.add_view(Trend([OBSERVED], history_seconds=60.0))
        sessions["observer"] = session
        return session

    def exporter(_doc: object) -> Session:
        session = Page(hub=hub, callback_period=1.0)
        trend = Trend(ATTRIBUTES, history_seconds=4000.0, history_points=HOUR_ROWS + 10)
        session.add_view(trend)
        trend.model  # noqa: B018 - built: its sources are filled now
        _fill(trend, time.time())
        sessions["exporter"] = session
        return session

    running = threading.Event()
    running.set()

    def push() -> None:
        n = 0
        while running.is_set():
            acquisition.push(OBSERVED, float(n))
            n += 1
            time.sleep(0.1)

    server = ThreadedServer(
        {"/observer": session_application(observer), "/exporter": session_application(exporter)}
    ).start()
    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, server.url, page],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for page in ("/observer", "/exporter")
    ]  # fmt: skip: one process each, as two browsers would be
    client = clients[0]
    try:
        for each in clients:
            assert each.stdout is not None and each.stdin is not None
            assert each.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while len(sessions) < 2 or not all(s.ready for s in sessions.values()):
            assert time.monotonic() < deadline, "the pages did not open"
            time.sleep(0.1)
        exp = sessions["exporter"]
        time.sleep(2.0)  # settle

        def phase(name: str, export: str | None) -> dict:
            client.stdin.write("dump\n")
            client.stdin.flush()
            client.stdout.readline()  # forget what came before
            ticks.clear()
            began = time.time()
            done: list[int] = []
            sizes: list[int] = []
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                if export is None:
                    time.sleep(0.05)
                    continue
                download = exp.download
                sent = download.sent
                if export == "streamed":
                    exp.safe_document_modifications(lambda: exp.start_export(args.format))
                else:

                    def naive(download=download) -> None:  # old way: built on the loop, 1 message
                        made = build(snapshot(exp.views), args.format, "naive")
                        download.chunk = len(made.payload)
                        download.send(made)
                        download.chunk = 256 * 1024
                        sizes.append(len(made.payload))

                    exp.safe_document_modifications(naive)
                while download.sent == sent and time.monotonic() < end + 120:
                    time.sleep(0.02)
                if download.sent > sent:
                    done.append(1)
                time.sleep(0.2)
            client.stdin.write("dump\n")
            client.stdin.flush()
            arrivals = json.loads(client.stdout.readline())
            # from the phase's start to its end: a stall before the first update counts
            gaps = np.diff([began, *arrivals, time.time()])
            tick_gaps = np.diff(ticks) if len(ticks) > 1 else np.zeros(1)
            row = {
                "phase": name,
                "updates": len(arrivals),
                "p50_ms": float(np.percentile(gaps, 50) * 1000),
                "p99_ms": float(np.percentile(gaps, 99) * 1000),
                "max_ms": float(gaps.max() * 1000),
                "tick_gap_max_ms": float(tick_gaps.max() * 1000),
                "exports": len(done),
                "bytes": sizes[-1] if sizes else None,
            }
            print(json.dumps(row), flush=True)
            return row

        idle = phase("idle", None)
        streamed = phase("streamed", "streamed")
        naive = phase("naive", "naive")
        size = len(build(snapshot(exp.views), args.format, "size").payload)
        print(f"file: {args.format}, {len(ATTRIBUTES) * HOUR_ROWS} rows, {size / 1e6:.1f} MB")
        for key in ("p99_ms", "max_ms", "tick_gap_max_ms"):
            base = max(idle[key], 1e-9)
            print(f"{key}: streamed/idle {streamed[key] / base:.2f}, "
                  f"naive/idle {naive[key] / base:.2f}")  # fmt: skip
    finally:
        running.clear()
        for each in clients:
            if each.poll() is None and each.stdin is not None:
                try:
                    each.stdin.write("quit\n")
                    each.stdin.flush()
                    each.wait(20)
                except (OSError, subprocess.TimeoutExpired):
                    each.kill()
                    each.wait()
        for session in sessions.values():
            session.close()
        server.stop()
        hub.close()


if __name__ == "__main__":
    main()
