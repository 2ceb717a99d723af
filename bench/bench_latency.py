"""Push-to-browser latency behind nginx with replicas, against the same dashboard served directly.

    .venv/bin/python bench/bench_latency.py [--replicas 3] [--viewers 50] [--pages 2] [--seconds 30]

The facility topology of tests/facility.py, all real processes (MariaDB, the C++ Tango
database server, the simulated beamline, ``--replicas`` ``tango-bokeh serve`` processes
behind nginx with docker/nginx's sticky-session template). The dashboard is
bench_replicas.py's (14 attributes, 0.5 s refresh) plus a trend of ``sim/storm/1/Counter``,
whose device pushes a change event 10 times a second; each event carries its push time
(the Tango timestamp, set by the device server when it pushes).

Headless Chromium pages record, for every new point of that trend, the time from the
device's push to the moment the page's data source received it (the same clock: all on
this machine): *every value* (what a viewer sees: includes the wait for the next tick,
0-0.5 s) and *newest value* (only the newest point of each update: the transport and
server path). Background load: ``--viewers`` bokeh clients per replica (bench_replicas'
viewers, through nginx, pinned to their replica by their route cookie, every tick
acknowledged as a page's script does).

Two phases, each measuring pages served directly and through nginx at the same moment:

1. one replica with ``--viewers`` viewers: ``--pages`` pages straight to that replica's
   port and ``--pages`` through nginx (pinned to the same replica);
2. ``--replicas`` replicas with ``--viewers`` viewers each (the scale-out): ``--pages``
   direct pages on the first replica, and through nginx ``--pages`` pages on the first
   replica plus one on every other.

Printed: p50/p95 of each group, the ratios nginx / direct of the same moment, and the
issue's figure: p95 through nginx with the replicas (phase 2) / p95 of one replica with
its viewers served directly (phase 1), target <= 1.2. Everything runs on the same two
cores (load averages printed): phase 2 has ``--replicas`` times the viewers of phase 1 on
those cores, which a real deployment would spread over machines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_replicas import DASHBOARD  # noqa: E402

from tests.facility import ROUTE_COOKIE, Facility, missing  # noqa: E402

STORM = "sim/storm/1"
RATE = 10.0  # events/s
LATENCY_DASHBOARD = (
    DASHBOARD.replace("title: Scale-out bench", "title: Latency bench")
    + f"""  - trend:
      title: Pushed
      attributes: [{STORM}/Counter]
      history: 1 min
"""
)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # every page is a measuring page: none is throttled as a background tab
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]  # fmt: skip

#: Installed in a page: per new point of the "Pushed" trend, [push time, age on arrival] (ms;
#: gap rows, NaN, are not values).
PROBE = """() => {
  window.__every = []; window.__newest = [];
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Pushed'));
  const sources = new Set(plot.renderers.map(r => r.data_source)
    .filter(s => s && s.data && 't' in s.data && 'q' in s.data));
  const offset = -new Date().getTimezoneOffset() * 60000;  // trends plot local time
  for (const source of sources) {
    let last = -Infinity;
    source.streaming.connect(() => {
      const now = Date.now(), t = source.data.t, y = source.data.y;
      let first = true;
      for (let i = t.length - 1; i >= 0 && t[i] > last; i--) {
        if (!Number.isFinite(y[i])) continue;
        const sample = [t[i] - offset, now - (t[i] - offset)];
        window.__every.push(sample);
        if (first) window.__newest.push(sample);
        first = false;
      }
      if (t.length) last = Math.max(last, t[t.length - 1]);
    });
  }
  return sources.size;
}"""
READY = "() => !!(window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].roots().length)"
TAKE = """() => { const r = [window.__every, window.__newest];
  window.__every = []; window.__newest = []; return r; }"""
WARM_UP = 6.0
#: Seconds after a window for its values to arrive; one that has not by then counts as
#: later than that (an infinite latency in the percentiles).
GRACE = 20.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def figure(ms: float) -> float | None:
    """A latency for the JSON (None: later than GRACE, or no value arrived)."""
    return round(ms) if math.isfinite(ms) else None


def routes_for(facility: Facility, per_replica: int) -> list[list[str]]:
    """``per_replica`` route cookies that nginx's consistent hash sends to each replica."""
    found: list[list[str]] = [[] for _ in facility.ports]
    n = 0
    while any(len(r) < per_replica for r in found):
        route = f"lat{n}"
        index = facility.replica_of(route)
        if index is not None and len(found[index]) < per_replica:
            found[index].append(route)
        n += 1
        if n > 200 * per_replica * len(found):
            raise RuntimeError(f"nginx placed routes unevenly: {[len(r) for r in found]}")
    return found


class Viewers:
    """bench_replicas' viewer processes: ``routes`` viewers through nginx until stopped."""

    def __init__(self, url: str, first: int, routes: list[str], where: Path) -> None:
        path = where / f"routes-{first}.json"
        path.write_text(json.dumps(routes))
        script = ROOT / "bench" / "bench_replicas.py"
        argv = [sys.executable, str(script), "--worker", url, str(first), str(len(routes)),
                "0", str(path)]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self) -> None:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        if not self.proc.stdout.readline():
            raise RuntimeError(f"a viewer process failed (exit {self.proc.wait()})")
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.communicate("stop\n", timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sessions(port: int) -> int:
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^tango_bokeh_sessions\{dashboard="latency"\} (\S+)$', text, re.M)
    return int(float(found[0])) if found else 0


def run(replicas: int, viewers: int, pages: int, seconds: float) -> dict:
    import tango
    from playwright.sync_api import sync_playwright

    result: dict = {"replicas": replicas, "viewers_per_replica": viewers, "pages": pages}
    with tempfile.TemporaryDirectory(prefix="latency-") as where_text:
        where = Path(where_text)
        path = where / "latency.yaml"
        path.write_text(LATENCY_DASHBOARD)
        facility = Facility(where / "facility", [path], replicas=replicas,
                            serve_args=["--max-sessions", "1000"]).start()  # fmt: skip
        groups: list[Viewers] = []
        storm = None
        try:
            url = f"{facility.url}/latency"
            routes = routes_for(facility, viewers + pages + 1)
            storm = tango.DeviceProxy(f"tango://{facility.tango_host}/{STORM}")
            storm.Payload = "scalar"
            storm.Rate = RATE
            storm.Start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                try:
                    opened: dict[str, list] = {"direct": [], "nginx": []}

                    def open_page(kind: str, replica: int, route: str | None = None) -> None:
                        context = browser.new_context(viewport={"width": 1400, "height": 1000})
                        if route is not None:
                            context.add_cookies(
                                [{"name": ROUTE_COOKIE, "value": route, "url": facility.url}]
                            )
                            target = url
                        else:
                            target = f"http://127.0.0.1:{facility.ports[replica]}/latency"
                        page = context.new_page()
                        page.goto(target)
                        page.wait_for_function(READY, timeout=120_000)
                        assert page.evaluate(PROBE) >= 1, "no Pushed trend in the page"
                        opened[kind].append((replica, page))

                    def measure(phase: str) -> None:
                        time.sleep(WARM_UP)
                        load0 = os.getloadavg()[0]
                        t0 = time.time() * 1000
                        time.sleep(seconds)
                        t1 = time.time() * 1000
                        time.sleep(GRACE)
                        expected = round(RATE * seconds)  # values pushed in the window
                        for kind, group in opened.items():
                            every: list[float] = []
                            newest: list[float] = []
                            per_page = []
                            for _, page in group:
                                e, n = page.evaluate(TAKE)
                                e = [age for t, age in e if t0 <= t < t1]
                                every += e + [float("inf")] * max(0, expected - len(e))
                                newest += [age for t, age in n if t0 <= t < t1]
                                per_page.append(len(e))
                            result[f"{phase}_{kind}"] = {
                                "pages": [replica for replica, _ in group],
                                "values_per_page": per_page,
                                "pushed_per_page": expected,
                                "every_p50_ms": figure(percentile(every, 0.5)),
                                "every_p95_ms": figure(percentile(every, 0.95)),
                                "newest_p50_ms": figure(percentile(newest, 0.5)),
                                "newest_p95_ms": figure(percentile(newest, 0.95)),
                            }
                        result[f"{phase}_sessions"] = [sessions(p) for p in facility.ports]
                        result[f"{phase}_load"] = round((load0 + os.getloadavg()[0]) / 2, 1)
                        print(json.dumps(result), file=sys.stderr, flush=True)

                    # Phase 1: one replica with its viewers.
                    start = time.monotonic()
                    groups.append(Viewers(url, 0, routes[0][:viewers], where))
                    groups[-1].ready()
                    result["open_viewers_s"] = [round(time.monotonic() - start)]
                    for k in range(pages):
                        open_page("direct", 0)
                        open_page("nginx", 0, routes[0][viewers + k])
                    measure("one")

                    # Phase 2: every replica with its viewers.
                    start = time.monotonic()
                    more = [Viewers(url, 1000 * i, routes[i][:viewers], where)
                            for i in range(1, replicas)]  # fmt: skip
                    groups += more
                    for group in more:
                        group.ready()
                    result["open_viewers_s"].append(round(time.monotonic() - start))
                    for i in range(1, replicas):
                        open_page("nginx", i, routes[i][viewers])
                    measure("scaled")
                    result["storm_rate_hz"] = round(storm.ActualRate, 2)
                finally:
                    browser.close()
        finally:
            if storm is not None:
                with contextlib.suppress(tango.DevFailed):
                    storm.Stop()
            for group in groups:
                group.stop()
            facility.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=50, help="background viewers per replica")
    parser.add_argument("--pages", type=int, default=2, help="measuring pages per group")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    # killed: still stop what was started (the finally clauses)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if missing():
        sys.exit(f"needs Debian's {', '.join(missing())} (see .ci/run)")
    r = run(args.replicas, args.viewers, args.pages, args.seconds)
    print(json.dumps(r))
    print()

    def ms(value: float | None) -> str:
        return f"{value}" if value is not None else f">{GRACE * 1000:.0f}"

    def ratio(a: float | None, b: float | None) -> str:
        if a is None or b is None:
            return "n/a (a p95 over the grace period)"
        return f"{a / b:.2f}"

    for phase, title in (("one", f"1 replica, {args.viewers} viewers"),
                         ("scaled", f"{args.replicas} replicas, "
                                    f"{args.replicas * args.viewers} viewers")):  # fmt: skip
        print(f"{title} (load average {r[f'{phase}_load']}, sessions per replica "
              f"{r[f'{phase}_sessions']}):")  # fmt: skip
        for kind in ("direct", "nginx"):
            g = r[f"{phase}_{kind}"]
            print(
                f"  {kind:6} pages on replicas {g['pages']}: every value p50/p95 "
                f"{ms(g['every_p50_ms'])}/{ms(g['every_p95_ms'])} ms, newest value p50/p95 "
                f"{ms(g['newest_p50_ms'])}/{ms(g['newest_p95_ms'])} ms (values per page "
                f"{g['values_per_page']} of {g['pushed_per_page']} pushed)"
            )
        for which in ("every", "newest"):
            nginx, direct = r[f"{phase}_nginx"], r[f"{phase}_direct"]
            print(f"  p95 nginx / direct, same moment ({which} value): "
                  f"{ratio(nginx[f'{which}_p95_ms'], direct[f'{which}_p95_ms'])}")  # fmt: skip
    print()
    for which in ("every", "newest"):
        a, b = r["scaled_nginx"][f"{which}_p95_ms"], r["one_direct"][f"{which}_p95_ms"]
        verdict = "" if a is None or b is None else (" met" if a / b <= 1.2 else " NOT met")
        print(f"p95 {args.replicas} replicas behind nginx / 1 replica served directly "
              f"({which} value): {ratio(a, b)} (target <= 1.2{verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
