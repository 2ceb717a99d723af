"""Scale-out: dashboard replicas behind nginx share the viewers; Tango sees replicas, not viewers.

    .venv/bin/python bench/bench_replicas.py [--replicas 3] [--viewers 150] [--seconds 20]
        [--viewer-kind bokeh|light]

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
the servers do a page's full work. ``--viewer-kind bokeh`` (the default): bokeh clients
that apply every patch to a Python Document; ``light``: :class:`LightViewer`, the same on
the wire (compressed websocket, every tick acknowledged) without a Document, a fraction
of the client CPU. The viewers run in worker processes (50 each) on
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


class LightViewer:
    """A viewer that does on the wire what a quick page does, with no bokeh Document.

    It loads the page through nginx as a new browser would (:class:`Viewer`'s cookie and
    address), opens the session's websocket with the page's token (compressed, as a
    browser asks for it), pulls the document,
    reads every message and acknowledges every tick: a PATCH-DOC that copies ``sent``
    into ``seen``, what the page's script sends (dashboard/pace.py). The server does the
    same work for it as for a page; the patches are decoded (bokeh's ``Receiver``) but not
    applied to a Document, the page's own cost: 50 Python Documents in one process cost
    more CPU than the replica that serves them, and on the same two cores that CPU would
    be measured as the product's latency (bench_latency.py).
    """

    def __init__(self, url: str, index: int, route: str) -> None:
        self.url, self.route = url, route
        self.address = f"10.{index // 250 % 250}.{index % 250}.{1 + index // 62500}"
        self.headers = {"Cookie": f"{ROUTE_COOKIE}={route}", "X-Forwarded-For": self.address}
        self.messages = 0  # complete bokeh messages received
        self.acks = 0  # ticks acknowledged
        self._socket = None
        self._clock: str | None = None  # id of the page's PageClock

    async def open(self) -> None:
        import asyncio

        from bokeh.client.util import websocket_url_for_server_url
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        from tango_bokeh.dashboard.client import page_token

        loop = asyncio.get_running_loop()
        token = await loop.run_in_executor(None, page_token, self.url, 60.0, self.headers)
        request = HTTPRequest(websocket_url_for_server_url(self.url), headers=self.headers,
                              request_timeout=60)  # fmt: skip
        # permessage-deflate, as a browser asks for it (the server compresses for pages)
        self._socket = await websocket_connect(
            request, subprotocols=["bokeh", token], compression_options={}
        )
        from bokeh.protocol import Protocol
        from bokeh.protocol.receiver import Receiver

        self._receiver = Receiver(Protocol())
        ack = await self._next()
        if ack is None or ack.msgtype != "ACK":
            raise RuntimeError(f"viewer {self.route}: no ACK from the server ({ack!r})")
        await self._send("PULL-DOC-REQ", {})
        while True:
            message = await self._next()
            if message is None:
                raise RuntimeError(f"viewer {self.route}: closed before its document came")
            if message.msgtype == "PULL-DOC-REPLY":
                self._clock = _clock_id(message.content["doc"])
                return
            await self._handle(message)

    async def _next(self):  # type: ignore[no-untyped-def]
        """The next complete bokeh message (None: the connection closed)."""
        assert self._socket is not None
        while True:
            fragment = await self._socket.read_message()
            if fragment is None:
                return None
            message = await self._receiver.consume(fragment)
            if message is not None:
                self.messages += 1
                return message

    async def _send(self, msgtype: str, content: dict) -> None:
        from bokeh.core.serialization import make_id

        assert self._socket is not None
        header = json.dumps({"msgid": make_id(), "msgtype": msgtype})
        for fragment in (header, "{}", json.dumps(content)):
            await self._socket.write_message(fragment)

    async def _handle(self, message) -> None:  # type: ignore[no-untyped-def]
        if message.msgtype != "PATCH-DOC" or self._clock is None:
            return
        for event in message.content.get("events", ()):
            model = event.get("model")
            if (event.get("kind") == "ModelChanged" and event.get("attr") == "sent"
                    and isinstance(model, dict) and model.get("id") == self._clock):  # fmt: skip
                seen = {"kind": "ModelChanged", "model": {"id": self._clock}, "attr": "seen",
                        "new": event["new"]}  # fmt: skip
                await self._send("PATCH-DOC", {"events": [seen]})
                self.acks += 1

    async def run(self) -> None:
        """Read and acknowledge until the connection closes."""
        while True:
            message = await self._next()
            if message is None:
                return
            await self._handle(message)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()


def _clock_id(doc: dict) -> str:
    """The id of the page's PageClock among a pulled document's roots."""
    from tango_bokeh.dashboard.pace import PageClock

    for root in doc["roots"]:
        if root.get("name") == PageClock.__qualified_model__:
            return root["id"]
    raise RuntimeError("the dashboard's document has no PageClock (dashboard/pace.py)")


#: Light viewers opening at the same time in a worker (each loads its page, then connects).
OPENING = 4


def light_worker(url: str, first: int, count: int, routes: list[str] | None = None) -> None:
    """Child process: ``count`` :class:`LightViewer` s on one asyncio loop until told to stop.

    Prints a "ready" line once every viewer is open, then waits for two lines on stdin
    ("go", "stop"), and prints the viewers' totals when they are closed.
    """
    import asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        viewers = [
            LightViewer(url, index, routes[k] if routes else f"v{index}-{os.urandom(4).hex()}")
            for k, index in enumerate(range(first, first + count))
        ]
        gate = asyncio.Semaphore(OPENING)
        readers = []

        async def start(viewer: LightViewer) -> None:
            async with gate:
                await viewer.open()
            readers.append(asyncio.ensure_future(viewer.run()))

        await asyncio.gather(*(start(v) for v in viewers))
        print(json.dumps({"ready": [v.route for v in viewers]}), flush=True)

        def lines() -> None:
            sys.stdin.readline()  # go
            sys.stdin.readline()  # stop (or the end of stdin)
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=lines, daemon=True).start()
        await stop.wait()
        closed = sum(r.done() for r in readers)  # connections the server closed meanwhile
        for viewer in viewers:
            viewer.close()
        await asyncio.sleep(0.5)
        for reader in readers:
            reader.cancel()
        totals = {"done": len(viewers), "closed_early": closed,
                  "messages": sum(v.messages for v in viewers),
                  "acks": sum(v.acks for v in viewers)}  # fmt: skip
        print(json.dumps(totals), flush=True)

    asyncio.run(main())


def _cpu(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:  # nginx: its worker
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def run(replicas: int, viewers: int, seconds: float, kind: str = "bokeh") -> dict:
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
                if kind == "light":
                    argv = [sys.executable, __file__, "--light-worker", url, str(first), str(count)]
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
                proc.communicate("stop\n" if kind == "light" else None, timeout=180)
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
    if sys.argv[1:2] == ["--light-worker"]:
        url, first, count = sys.argv[2:5]
        routes = json.loads(Path(sys.argv[5]).read_text()) if len(sys.argv) > 5 else None
        light_worker(url, int(first), int(count), routes)
        return
    if sys.argv[1:2] == ["--worker"]:
        url, first, count, seconds = sys.argv[2:6]
        routes = json.loads(Path(sys.argv[6]).read_text()) if len(sys.argv) > 6 else None
        worker(url, int(first), int(count), float(seconds), routes)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--viewer-kind", choices=("bokeh", "light"), default="bokeh",
                        help="bokeh clients (apply every patch) or LightViewer")  # fmt: skip
    args = parser.parse_args()
    if missing():
        sys.exit(f"needs Debian's {', '.join(missing())} (see .ci/run)")
    per_replica = max(1, args.viewers // args.replicas)
    baseline = run(1, per_replica, args.seconds, args.viewer_kind)
    scaled = run(args.replicas, args.viewers, args.seconds, args.viewer_kind)
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
