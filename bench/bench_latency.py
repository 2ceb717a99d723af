"""Push-to-browser latency behind nginx with replicas, against the same dashboard served directly.

    .venv/bin/python bench/bench_latency.py [--replicas 3] [--viewers 50] [--pages 2] [--seconds 30]

The facility topology of tests/facility.py, all real processes (MariaDB, the C++ Tango
database server, the simulated beamline, ``--replicas`` ``tango-bokeh serve`` processes
behind nginx with docker/nginx's sticky-session template). The dashboard is
bench_replicas.py's (14 attributes, 0.5 s refresh) plus a trend of ``sim/storm/1/Counter``,
whose device pushes a change event 10 times a second; each event carries its sequence
number (the value) and its push time (the Tango timestamp, set by the device server).

Headless Chromium pages record every value of that trend as it reaches the page's
document (every stream, data replacement or patch of its source, before the stream's
rollover), by sequence number: the values pushed in the window are the device's
``Pushed`` count from the window's start to its end, so a value that never reached a page
is named, not guessed. Per value, the time from the device's push to its arrival (one
clock: all on this machine): *every value* (what a viewer sees: includes the wait for the
next tick, 0-0.5 s) and *newest value* (only the newest point of each update: the
transport and server path). A value that has not arrived ``GRACE`` s after the window
counts as infinitely late in the percentiles.

Background load: ``--viewers`` viewers per replica, through nginx, pinned to their
replica by their route cookie. By default bench_replicas' light viewers (one asyncio
process per replica's group, each viewer loading its page, pulling the document and
acknowledging every tick as a page's script does: the server's full work per page, not
a Python Document's); ``--viewer-kind bokeh`` for bench_replicas' bokeh-client viewers
(each applies every patch to a Python Document: their own CPU then loads the cores).

Three phases, each measuring pages served directly and through nginx at the same moment:

0. one replica, no viewers: the pages alone (the load without the viewers);
1. one replica with ``--viewers`` viewers: ``--pages`` pages straight to that replica's
   port and ``--pages`` through nginx (pinned to the same replica);
2. ``--replicas`` replicas with ``--viewers`` viewers each (the scale-out): the same pages,
   and through nginx one more page on every other replica.

Printed per phase: values arrived of those pushed per page (and how the missing ones are
spread), p50/p95 of each group, the replicas' own counters for the storm attribute
(events received, lost before the hub, lost by readers, ticks skipped for late pages),
the CPU used by the replicas, the viewers, Chromium and the machine, and the load
average. Then the ratios nginx / direct of the same moment, and the issue's figure: p95
through nginx with the replicas (phase 2) / p95 of one replica with its viewers served
directly (phase 1), target <= 1.2. Everything runs on the same cores: phase 2 has
``--replicas`` times the viewers of phase 1 on them, which a real deployment would spread
over machines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
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

#: Installed in a page: every value of the "Pushed" trend as it reaches the page's document,
#: by sequence number (the Counter's value), whichever way it comes (a stream, a replaced
#: ``data``, a patch), before a stream's rollover: [sequence, push time, age on arrival] (ms);
#: NaN rows (gaps) are not values. ``newest``: the newest value of each update; ``how``: the
#: updates that brought values, by kind; ``cut``: streamed rows dropped at once by their own
#: rollover (never on screen).
PROBE = """() => {
  const doc = Bokeh.documents[0];
  const plot = [...doc.all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Pushed'));
  const sources = new Set(plot.renderers.map(r => r.data_source)
    .filter(s => s && s.data && 't' in s.data && 'q' in s.data));
  const offset = -new Date().getTimezoneOffset() * 60000;  // trends plot local time
  const probe = window.__probe = {rows: [], newest: [], how: {stream: 0, data: 0, patch: 0},
                                  cut: 0, seen: new Set()};
  const column = (data, key) => data instanceof Map ? data.get(key) : data[key];
  const take = (data, how) => {
    const now = Date.now(), t = column(data, 't'), y = column(data, 'y');
    let newest = null;
    for (let i = 0; i < t.length; i++) {
      const seq = y[i];
      if (!Number.isFinite(seq) || probe.seen.has(seq)) continue;
      probe.seen.add(seq);
      newest = [seq, t[i] - offset, now - (t[i] - offset)];
      probe.rows.push(newest);
    }
    if (newest !== null) { probe.newest.push(newest); probe.how[how] += 1; }
  };
  doc.on_change((event) => {
    if (!sources.has(event.model)) return;
    if (event.kind === 'ColumnsStreamed') {
      take(event.data, 'stream');
      const n = column(event.data, 't').length;
      if (event.rollover != null && n > event.rollover) probe.cut += n - event.rollover;
    } else if (event.kind === 'ColumnsPatched') {
      take(event.model.data, 'patch');
    } else if (event.kind === 'ColumnDataChanged' || event.attr === 'data') {
      take(event.model.data, 'data');
    }
  });
  for (const source of sources) take(source.data, 'data');  // what it holds already
  return sources.size;
}"""
READY = "() => !!(window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].roots().length)"
TAKE = """() => { const p = window.__probe;
  if (p === undefined) return null;  // the page was loaded afresh: the probe is gone
  const r = {rows: p.rows, newest: p.newest, how: p.how, cut: p.cut};
  p.rows = []; p.newest = []; p.how = {stream: 0, data: 0, patch: 0}; p.cut = 0;
  return r; }"""
HAS = "(seq) => window.__probe !== undefined && window.__probe.seen.has(seq)"
WARM_UP = 6.0
#: Seconds after a window for its values to arrive; one that has not by then counts as
#: later than that (an infinite latency in the percentiles).
GRACE = 20.0
#: Counters of the storm attribute in each replica's /metrics (per attribute) and of the
#: dashboard (ticks skipped for pages behind their allowance, dashboard/pace.py).
COUNTERS = {
    "received": "tango_bokeh_events_received_total",
    "lost_before_hub": "tango_bokeh_events_lost_estimate_total",
    "queue_full": "tango_bokeh_event_queue_full_total",
    "lost_by_readers": "tango_bokeh_samples_dropped_total",
    "out_of_order": "tango_bokeh_samples_out_of_order_total",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def figure(ms: float) -> float | None:
    """A latency for the JSON (None: later than GRACE, or no value arrived)."""
    return round(ms) if math.isfinite(ms) else None


def runs(missing: list[int]) -> list[int]:
    """Lengths of the runs of consecutive sequence numbers in ``missing`` (sorted)."""
    lengths: list[int] = []
    for i, seq in enumerate(missing):
        if i and seq == missing[i - 1] + 1:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


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
    """bench_replicas' viewers in one child process: ``routes`` viewers through nginx until
    stopped (``kind`` "light": :class:`bench_replicas.LightViewer`; "bokeh": its bokeh clients)."""

    def __init__(self, url: str, first: int, routes: list[str], where: Path, kind: str) -> None:
        path = where / f"routes-{first}.json"
        path.write_text(json.dumps(routes))
        script = ROOT / "bench" / "bench_replicas.py"
        if kind == "light":
            argv = [sys.executable, str(script), "--light-worker", url, str(first),
                    str(len(routes)), str(path)]  # fmt: skip
        else:
            argv = [sys.executable, str(script), "--worker", url, str(first), str(len(routes)),
                    "0", str(path)]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.totals: dict = {}

    def ready(self) -> None:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        if not self.proc.stdout.readline():
            raise RuntimeError(f"a viewer process failed (exit {self.proc.wait()})")
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                out, _ = self.proc.communicate("stop\n", timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return
            lines = [line for line in out.splitlines() if line.startswith("{")]
            self.totals = json.loads(lines[-1]) if lines else {}


def scrape(port: int) -> dict[str, float]:
    """The storm attribute's counters, the dashboard's sessions and skipped ticks, of a replica."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for key, name in COUNTERS.items():
        found = re.findall(rf"^{name}\{{[^}}]*storm/1/counter[^}}]*\}} (\S+)$", text, re.M | re.I)
        out[key] = float(found[0]) if found else 0.0
    for key, name in (("sessions", "tango_bokeh_sessions"),
                      ("ticks_skipped", "tango_bokeh_ticks_skipped")):  # fmt: skip
        found = re.findall(rf'^{name}\{{dashboard="latency"\}} (\S+)$', text, re.M)
        out[key] = float(found[0]) if found else 0.0
    return out


class CpuMeter:
    """CPU seconds of groups of this bench's processes, and of the whole machine."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        import psutil

        self._psutil = psutil
        self.groups = groups
        self._start = self._sample()

    def _sample(self) -> tuple[float, dict[str, dict[int, float]], float]:
        psutil = self._psutil
        taken: dict[str, dict[int, float]] = {}
        mine = {p.pid for p in psutil.Process().children(recursive=True)}
        placed: set[int] = set()
        for name, pids in self.groups.items():
            found: dict[int, float] = {}
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    for proc in [process, *process.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            found[proc.pid] = sum(proc.cpu_times()[:2])
            taken[name] = found
            placed |= set(found)
        chromium: dict[int, float] = {}  # the browser and playwright's driver
        for pid in mine - placed:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if re.search(r"chrom|node|playwright", proc.name(), re.I):
                    chromium[pid] = sum(proc.cpu_times()[:2])
        taken["chromium"] = chromium
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return time.monotonic(), taken, busy

    def cores(self) -> dict[str, float]:
        """Cores each group used since the meter was made (processes new since: all theirs)."""
        t0, before, busy0 = self._start
        t1, after, busy1 = self._sample()
        elapsed = max(t1 - t0, 1e-6)
        out = {}
        for name, now in after.items():
            then = before.get(name, {})
            used = sum(cpu - then.get(pid, 0.0) for pid, cpu in now.items())
            out[name] = round(used / elapsed, 2)
        out["machine"] = round((busy1 - busy0) / elapsed, 2)
        return out


def run(replicas: int, viewers: int, pages: int, seconds: float, kind: str) -> dict:
    import tango
    from playwright.sync_api import sync_playwright

    result: dict = {"replicas": replicas, "viewers_per_replica": viewers, "pages": pages,
                    "viewer_kind": kind, "cores": os.cpu_count()}  # fmt: skip
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

                    def open_page(group: str, replica: int, route: str | None = None) -> None:
                        context = browser.new_context(viewport={"width": 1400, "height": 1000})
                        if route is not None:
                            context.add_cookies(
                                [{"name": ROUTE_COOKIE, "value": route, "url": facility.url}]
                            )
                            target = url
                        else:
                            target = f"http://127.0.0.1:{facility.ports[replica]}/latency"
                        page = context.new_page()
                        page.goto(target, timeout=120_000)
                        page.wait_for_function(READY, timeout=120_000)
                        assert page.evaluate(PROBE) >= 1, "no Pushed trend in the page"
                        loads = {"loads": 0, "sockets": 0}  # a reload drops the probe
                        page.on("load", lambda _: loads.__setitem__("loads", loads["loads"] + 1))
                        page.on(
                            "websocket",
                            lambda _: loads.__setitem__("sockets", loads["sockets"] + 1),
                        )
                        opened[group].append((replica, page, loads))

                    def measure(phase: str) -> None:
                        time.sleep(WARM_UP)
                        for _, page, _ in opened["direct"] + opened["nginx"]:
                            page.evaluate(TAKE)  # what came before the window
                        load0 = os.getloadavg()[0]
                        before = [scrape(p) for p in facility.ports]
                        pids = {
                            f"replica {i}": [r.proc.pid] for i, r in enumerate(facility.replicas)
                        }
                        assert facility.nginx is not None and facility.nginx.proc is not None
                        pids["nginx"] = [facility.nginx.proc.pid]
                        pids["viewers"] = [g.proc.pid for g in groups]
                        meter = CpuMeter(pids)
                        n0 = int(storm.Pushed)
                        time.sleep(seconds)
                        n1 = int(storm.Pushed)
                        cores = meter.cores()
                        after = [scrape(p) for p in facility.ports]
                        load1 = os.getloadavg()[0]
                        everyone = opened["direct"] + opened["nginx"]
                        deadline = time.monotonic() + GRACE
                        while time.monotonic() < deadline and not all(
                            page.evaluate(HAS, n1) for _, page, _ in everyone
                        ):
                            time.sleep(1.0)
                        waited = round(GRACE - max(0.0, deadline - time.monotonic()), 1)
                        pushed = n1 - n0  # sequence numbers n0+1 .. n1
                        for group, members in opened.items():
                            every: list[float] = []
                            newest: list[float] = []
                            per_page = []
                            for replica, page, loads in members:
                                taken = page.evaluate(TAKE) or {
                                    "rows": [], "newest": [], "how": {}, "cut": 0
                                }  # fmt: skip
                                got = {int(s): age for s, _, age in taken["rows"] if n0 < s <= n1}
                                absent = sorted(set(range(n0 + 1, n1 + 1)) - set(got))
                                gaps = runs(absent)
                                mine = list(got.values()) + [math.inf] * len(absent)
                                every += mine
                                newest += [age for s, _, age in taken["newest"] if n0 < s <= n1]
                                per_page.append({
                                    "replica": replica, "values": len(got),
                                    "every_p95_ms": figure(percentile(mine, 0.95)),
                                    "missing_runs": len(gaps), "longest_run": max(gaps, default=0),
                                    "updates": taken["how"], "cut_by_rollover": taken["cut"],
                                    "page_loads": loads["loads"], "websockets": loads["sockets"],
                                })  # fmt: skip
                            result[f"{phase}_{group}"] = {
                                "pages": per_page,
                                "pushed": pushed,
                                "every_p50_ms": figure(percentile(every, 0.5)),
                                "every_p95_ms": figure(percentile(every, 0.95)),
                                "newest_p50_ms": figure(percentile(newest, 0.5)),
                                "newest_p95_ms": figure(percentile(newest, 0.95)),
                            }
                        result[f"{phase}_replicas"] = [
                            {key: int(a[key] - (0 if key == "sessions" else b[key])) for key in a}
                            for a, b in zip(after, before, strict=True)
                        ]
                        result[f"{phase}_cores"] = cores
                        result[f"{phase}_load"] = [round(load0, 1), round(load1, 1)]
                        result[f"{phase}_waited_s"] = waited
                        print(json.dumps(result), file=sys.stderr, flush=True)

                    def add_viewers(replica: int) -> None:
                        group = Viewers(url, 1000 * replica, routes[replica][:viewers], where, kind)
                        groups.append(group)
                        group.ready()

                    # Phase 0: one replica, its pages alone.
                    for k in range(pages):
                        open_page("direct", 0)
                        open_page("nginx", 0, routes[0][viewers + k])
                    measure("alone")

                    # Phase 1: one replica with its viewers.
                    start = time.monotonic()
                    if viewers:
                        add_viewers(0)
                    result["open_viewers_s"] = [round(time.monotonic() - start)]
                    measure("one")

                    # Phase 2: every replica with its viewers.
                    start = time.monotonic()
                    for i in range(1, replicas):
                        if viewers:
                            add_viewers(i)
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
            result["viewer_totals"] = [g.totals for g in groups]
            facility.stop()
    return result


def report(r: dict) -> None:
    """The figures, each saying what it is."""

    def ms(value: float | None) -> str:
        return f"{value}" if value is not None else f">{GRACE * 1000:.0f}"

    def ratio(a: float | None, b: float | None) -> str:
        if a is None or b is None:
            return "n/a (a p95 over the grace period)"
        return f"{a / b:.2f}"

    viewers, replicas = r["viewers_per_replica"], r["replicas"]
    print(f"{r['cores']} cores; background viewers: {r['viewer_kind']}; the storm device pushed "
          f"{r.get('storm_rate_hz', '?')} values/s (asked {RATE:g})")  # fmt: skip
    titles = {
        "alone": "1 replica, no viewers",
        "one": f"1 replica, {viewers} viewers",
        "scaled": f"{replicas} replicas, {replicas * viewers} viewers",
    }
    for phase, title in titles.items():
        if f"{phase}_direct" not in r:
            continue
        cores = r[f"{phase}_cores"]
        load0, load1 = r[f"{phase}_load"]
        replica_cores = [v for k, v in cores.items() if k.startswith("replica")]
        print(
            f"\n{title}: load average {load0} -> {load1}; cores used: replicas {replica_cores}, "
            f"nginx {cores['nginx']}, viewers {cores['viewers']}, Chromium {cores['chromium']}, "
            f"whole machine {cores['machine']} (of {r['cores']}; the rest is other work)"
        )
        for kind in ("direct", "nginx"):
            g = r[f"{phase}_{kind}"]
            values = ", ".join(
                f"{p['values']} (replica {p['replica']}, p95 {ms(p['every_p95_ms'])} ms"
                + (f", {p['missing_runs']} gaps, longest {p['longest_run']}" if p["missing_runs"]
                   else "")
                + (f", reloaded {p['page_loads']}x" if p["page_loads"] else "")
                + ")"
                for p in g["pages"]
            )  # fmt: skip
            print(
                f"  {kind:6} every value p50/p95 "
                f"{ms(g['every_p50_ms'])}/{ms(g['every_p95_ms'])} ms,"
                f" newest value p50/p95 {ms(g['newest_p50_ms'])}/{ms(g['newest_p95_ms'])} ms;"
                f" values that reached each page, of {g['pushed']} pushed: {values}"
            )
        for i, c in enumerate(r[f"{phase}_replicas"]):
            print(f"  replica {i}: {c['sessions']} sessions; storm events received "
                  f"{c['received']}, lost before the hub {c['lost_before_hub']} "
                  f"(queue full {c['queue_full']}), lost by readers {c['lost_by_readers']}, "
                  f"out of order {c['out_of_order']}; ticks skipped for late pages "
                  f"{c['ticks_skipped']}")  # fmt: skip
        for which in ("every", "newest"):
            nginx, direct = r[f"{phase}_nginx"], r[f"{phase}_direct"]
            print(f"  p95 nginx / direct, same moment ({which} value): "
                  f"{ratio(nginx[f'{which}_p95_ms'], direct[f'{which}_p95_ms'])}")  # fmt: skip
    print()
    for which in ("every", "newest"):
        a, b = r["scaled_nginx"][f"{which}_p95_ms"], r["one_direct"][f"{which}_p95_ms"]
        verdict = "" if a is None or b is None else (" met" if a / b <= 1.2 else " NOT met")
        print(f"p95 {replicas} replicas behind nginx / 1 replica served directly "
              f"({which} value): {ratio(a, b)} (target <= 1.2{verdict})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=50, help="background viewers per replica")
    parser.add_argument("--pages", type=int, default=2, help="measuring pages per group")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--viewer-kind", choices=("light", "bokeh"), default="light",
                        help="background viewers: wire-level (light) or bokeh clients")  # fmt: skip
    args = parser.parse_args()
    # killed: still stop what was started (the finally clauses)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if missing():
        sys.exit(f"needs Debian's {', '.join(missing())} (see .ci/run)")
    r = run(args.replicas, args.viewers, args.pages, args.seconds, args.viewer_kind)
    print(json.dumps(r))
    print()
    report(r)


if __name__ == "__main__":
    main()
