"""Scale-out: dashboard replicas behind nginx share the viewers; Tango sees replicas, not viewers.

    .venv/bin/python bench/bench_replicas.py [--replicas 3] [--viewers 150] [--seconds 20]

The facility topology of tests/facility.py, all real processes: MariaDB, the C++
Tango database server, the simulated beamline, ``--replicas`` ``tango-bokeh serve``
processes behind nginx (the sticky-session template of docker/nginx). ``--viewers``
bokeh clients open one dashboard through nginx, each as a new browser would: its own
route cookie (nginx picks its replica) and its own client address (X-Forwarded-For,
believed from nginx), page and websocket both through nginx.

Measured, from each replica's /metrics and process:

* viewers per replica (how evenly nginx's consistent hash spreads them);
* Tango load: event subscriptions and client-polled attributes in all replicas,
  against replicas x attributes (the target) and viewers x attributes (what one
  acquisition per viewer would cost); read_attributes calls per second;
* CPU of each replica (and of nginx) per viewer: the sizing figure. Baseline in the
  same run: one replica with viewers / replicas viewers, as many per process.

Each viewer acknowledges every tick as a browser's page does (dashboard/pace.py), so
the servers do a page's full work. The viewers run in worker processes (50 each) on
the same 2 cores as everything else: the load average is printed with the figures.
Push-to-screen latency is not measured here: these Python viewers' own delay (tenths of
a second to seconds when 50 share a process on a busy machine) would swamp the servers'.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.facility import ROUTE_COOKIE, Facility, missing  # noqa: E402

#: Polled attributes (no Tango events: client polling) and event-driven ones.
POLLED = [
    "sim/temp/1/Temperature", "sim/temp/2/Temperature", "sim/vacuum/1/Pressure",
    "sim/motor/1/Velocity", "sim/motor/2/Velocity", "sim/camera/1/Exposure",
    "sim/spectro/1/Rate", "sim/temp/1/State", "sim/vacuum/1/State", "sim/camera/1/State",
]  # fmt: skip
EVENTS = ["sim/beam/current/Current", "mot1/Position", "mot2/Position", "diode1/Counts"]
DASHBOARD = f"""\
title: Scale-out bench
refresh: 0.5 s
poll_period: 1 s
panels:
  - trend:
      title: Ring current
      attributes: [sim/beam/current/Current]
      history: 2 min
  - trend:
      title: Motors and diode
      attributes: [{", ".join(EVENTS[1:])}]
      history: 2 min
  - table:
      title: Polled
      attributes: [{", ".join(POLLED)}]
"""
ATTRIBUTES = len(POLLED) + len(EVENTS)


class Viewer:
    """A bokeh client that opened the dashboard through nginx like a new browser."""

    def __init__(self, url: str, index: int, route: str) -> None:
        self.route = route
        self.address = f"10.{index // 250 % 250}.{index % 250}.{1 + index // 62500}"
        self.headers = {"Cookie": f"{ROUTE_COOKIE}={route}", "X-Forwarded-For": self.address}
        self.session = _open(url, self.headers)
        self.acknowledge()

    def acknowledge(self) -> None:
        """Do what the page's script does: copy each tick's ``sent`` into ``seen`` (pace.py)."""
        from bokeh.document.events import ModelChangedEvent

        def on_change(event) -> None:  # type: ignore[no-untyped-def]
            changed = isinstance(event, ModelChangedEvent) and event.attr == "sent"
            if changed and event.model.__view_model__ == "PageClock":
                event.model.seen = event.new

        self.session.document.on_change(on_change)

    def close(self) -> None:
        self.session.close()


_request_headers = threading.local()


def _patch_bokeh_client() -> None:
    """bokeh's client sends no cookies on its websocket: add this viewer's (nginx routes by it)."""
    import bokeh.client.connection as connection

    original = connection.HTTPRequest

    def request(url: str, **kwargs):  # type: ignore[no-untyped-def]
        headers = {**kwargs.pop("headers", {}), **getattr(_request_headers, "value", {})}
        return original(url, headers=headers, **kwargs)

    connection.HTTPRequest = request


_loop = None


def _open(url: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """A viewer's session; every viewer of a process on one loop (bokeh makes one each)."""
    global _loop
    from bokeh.client.util import websocket_url_for_server_url
    from tornado.ioloop import IOLoop

    from tango_bokeh.dashboard.client import PageSession, page_token

    if _loop is None:
        _loop = IOLoop(make_current=False)
    token = page_token(url, headers=headers)
    _request_headers.value = headers
    try:
        session = PageSession(token, websocket_url_for_server_url(url), io_loop=_loop)
        session.pull()
    finally:
        _request_headers.value = {}
    return session


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for name in ("tango_bokeh_tango_subscriptions", "tango_bokeh_polled_attributes",
                 "tango_bokeh_attributes", "tango_bokeh_device_reads_total"):  # fmt: skip
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(match.group(1)) if match else 0.0
    sessions = re.findall(r'^tango_bokeh_sessions\{dashboard="bench"\} (\S+)$', text, re.M)
    out["sessions"] = float(sessions[0]) if sessions else 0.0
    return out


#: Viewers per worker process (each pumps its clients' websockets on one loop).
PER_WORKER = 50
#: Seconds between every viewer being open and the measurement: subscriptions made,
#: late pages caught up.
WARM_UP = 6.0


def worker(
    url: str, first: int, count: int, seconds: float, routes: list[str] | None = None
) -> None:
    """Child process: open ``count`` viewers and read their websockets, acknowledging ticks.

    ``routes``: the viewers' route cookies (to place them on chosen replicas), else new
    random ones. ``seconds`` <= 0: read until a second line (or the end) on stdin.
    """
    _patch_bokeh_client()
    # bokeh's client reads its websocket only inside its blocking calls, by a recursion
    # that overflows after a few hundred messages: read every viewer's here, in a loop,
    # from the moment it is open (a page that stops reading falls behind).
    window = {"end": float("inf")}

    async def read(viewer: Viewer) -> None:
        connection = viewer.session._connection
        while time.monotonic() < window["end"]:
            message = await connection._pop_message()
            if message is None:
                return
            if message.msgtype == "PATCH-DOC":
                viewer.session._handle_patch(message)

    viewers = []
    for k, index in enumerate(range(first, first + count)):
        route = routes[k] if routes else f"v{index}-{os.urandom(4).hex()}"
        viewers.append(Viewer(url, index, route))
        assert _loop is not None
        _loop.add_callback(read, viewers[-1])  # runs while the next viewers open
    assert _loop is not None
    loop = _loop
    print(json.dumps({"ready": [v.route for v in viewers]}), flush=True)

    def wait_for_go() -> None:
        sys.stdin.readline()  # every worker's viewers are open: measure together

        def go() -> None:
            window["end"] = time.monotonic() + WARM_UP + seconds
            loop.call_later(WARM_UP + seconds + 0.5, loop.stop)

        if seconds > 0:
            loop.add_callback(go)
        else:
            sys.stdin.readline()  # until told to stop
            loop.add_callback(loop.stop)

    threading.Thread(target=wait_for_go, daemon=True).start()
    loop.start()
    for viewer in viewers:
        viewer.close()
    print(json.dumps({"done": len(viewers)}), flush=True)


def _cpu(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:  # nginx: its worker
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def run(replicas: int, viewers: int, seconds: float) -> dict:
    import subprocess

    with tempfile.TemporaryDirectory(prefix="replicas-") as where:
        path = Path(where) / "bench.yaml"
        path.write_text(DASHBOARD)
        facility = Facility(Path(where) / "facility", [path], replicas=replicas,
                            serve_args=["--max-sessions", "1000"]).start()  # fmt: skip
        workers: list[subprocess.Popen] = []
        try:
            url = f"{facility.url}/bench"
            start = time.monotonic()
            for first in range(0, viewers, PER_WORKER):
                count = min(PER_WORKER, viewers - first)
                argv = [sys.executable, __file__, "--worker", url, str(first), str(count),
                        str(seconds)]  # fmt: skip
                workers.append(
                    subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                )
            routes = []
            for proc in workers:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"a viewer process failed (exit {proc.wait()})")
                routes += json.loads(line)["ready"]
            open_time = time.monotonic() - start
            for proc in workers:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            placed = [facility.replica_of(route) for route in routes]
            time.sleep(WARM_UP)
            pids = [r.proc.pid for r in facility.replicas]
            assert facility.nginx is not None and facility.nginx.proc is not None
            nginx = facility.nginx.proc.pid
            before = [_metrics(p) for p in facility.ports]
            cpu0 = [_cpu(p) for p in [*pids, nginx]]
            t0 = time.monotonic()
            time.sleep(seconds)
            after = [_metrics(p) for p in facility.ports]
            cpu1 = [_cpu(p) for p in [*pids, nginx]]
            elapsed = time.monotonic() - t0
            for proc in workers:
                proc.communicate(timeout=180)
                if proc.returncode:
                    raise RuntimeError(f"a viewer process failed (exit {proc.returncode})")
            cores = [(c1 - c0) / elapsed for c0, c1 in zip(cpu0, cpu1, strict=True)]
            reads = sum(
                a["tango_bokeh_device_reads_total"] - b["tango_bokeh_device_reads_total"]
                for a, b in zip(after, before, strict=True)
            )
            sessions = [int(m["sessions"]) for m in after]
            return {
                "replicas": replicas,
                "viewers": viewers,
                "open_s": round(open_time, 1),
                "viewers_per_replica": [placed.count(i) for i in range(replicas)],
                "sessions_per_replica": sessions,
                "attributes_per_replica": [int(m["tango_bokeh_attributes"]) for m in after],
                "tango_subscriptions": int(
                    sum(m["tango_bokeh_tango_subscriptions"] for m in after)
                ),
                "polled_attributes": int(sum(m["tango_bokeh_polled_attributes"] for m in after)),
                "acquisitions": int(sum(m["tango_bokeh_attributes"] for m in after)),
                "target": replicas * ATTRIBUTES,
                "per_viewer_design": viewers * ATTRIBUTES,
                "device_reads_per_s": round(reads / elapsed, 1),
                "replica_cores": [round(c, 3) for c in cores[:-1]],
                "nginx_cores": round(cores[-1], 3),
                "cores_per_100_viewers": round(100 * sum(cores[:-1]) / max(1, sum(sessions)), 3),
                "load_average": round(os.getloadavg()[0], 1),
            }
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            facility.stop()


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        url, first, count, seconds = sys.argv[2:6]
        routes = json.loads(Path(sys.argv[6]).read_text()) if len(sys.argv) > 6 else None
        worker(url, int(first), int(count), float(seconds), routes)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if missing():
        sys.exit(f"needs Debian's {', '.join(missing())} (see .ci/run)")
    per_replica = max(1, args.viewers // args.replicas)
    baseline = run(1, per_replica, args.seconds)
    scaled = run(args.replicas, args.viewers, args.seconds)
    for result in (baseline, scaled):
        print(json.dumps(result))
    met = scaled["acquisitions"] == scaled["target"]
    print(
        f"\n{args.replicas} replicas, {args.viewers} viewers: {scaled['viewers_per_replica']} "
        f"per replica; Tango acquisitions {scaled['acquisitions']} (replicas x attributes = "
        f"{scaled['target']}: {'met' if met else 'NOT met'}; one per viewer would be "
        f"{scaled['per_viewer_design']}): {scaled['tango_subscriptions']} event subscriptions, "
        f"{scaled['polled_attributes']} polled, {scaled['device_reads_per_s']} "
        f"read_attributes/s; replicas' CPU {scaled['cores_per_100_viewers']} cores per 100 "
        f"viewers vs {baseline['cores_per_100_viewers']} with one replica of {per_replica}"
    )


if __name__ == "__main__":
    main()
