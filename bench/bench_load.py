"""Anonymous load: a viewer's updates while others load pages, forge websockets and send junk.

    .venv/bin/python bench/bench_load.py [--seconds 8] [--configs limits,unlimited] [--refresh 0.1]

A private control system (counter, ring current, event storm pushing its
``Counter`` at ``--rate`` Hz) feeds a dashboard of three trends and a table
(``--refresh``), served by the dashboard server in a process of its own
(``--serve``, logging as ``tango-bokeh serve`` does). A viewer in this process
loads the page and opens its websocket with the page's token as BokehJS does,
pulls the document and counts the data updates in the patches it receives
(``ColumnsStreamed``/``ColumnsPatched`` events); a prober GETs ``/healthz``
every 0.5 s. Phases, each at least ``--seconds`` long:

* alone: nobody else;
* pages: an attacker process GETs the dashboard page 200 times, 16 at a time;
* forged: 200 websockets with forged tokens (unsigned, signed with another key,
  junk), 20 at a time, and no page load;
* junk: one page loaded properly, its websocket opened, then 2,000 junk frames
  (text and binary) written back to back.

An attack phase lasts until the attacker is done (it is stopped after 60 s)
and the server holds no session but the viewer's again (pages it opened
expire after 5 s), so what an attack leaves behind is measured too. About
2 minutes in all on a quiet machine; up to a few more when other work loads it.
Per phase: the viewer's updates/s, its largest gap, /healthz latency (p50,
max), log records at WARNING and above written by the server, the server's
CPU time, and the ratio of the rate to the same server's "alone" rate
(target >= 0.8). Server configurations (``--configs``):

* limits: the defaults, ``Limits()`` (fields changed by ``--limits page_burst=5,...``);
* unlimited: ``UNLIMITED`` caps (the baseline "before" the caps); sessions still
  signed, logs still rate limited;
* open: ``UNLIMITED`` caps, unsigned tokens accepted and no log rate limit, close
  to bokeh as it comes (not in the default run).

Loopback only; every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIGS = ("limits", "unlimited", "open")
ATTACKS = ("pages", "forged", "junk")
PAGES = 200
FORGED = 200
FRAMES = 2000
PAGE_CONCURRENCY = 16
#: An attack still going after this long is stopped (a saturated server, a loaded machine).
ATTACK_SECONDS = 60
WS_CONCURRENCY = 20

DASHBOARD = """\
title: Load bench
refresh: {refresh} s
panels:
  - row:
      - trend:
          title: Storm counter
          attributes: [sim/storm/1/Counter]
          history: 1 min
      - trend:
          title: Diode
          attributes: [diode1/Counts]
          history: 1 min
      - trend:
          title: Ring current
          attributes: [sim/beam/current/Current]
          history: 1 min
  - table:
      title: Values
      attributes: [sim/storm/1/Counter, diode1/Counts, sim/beam/current/Current]
"""

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (WARNING|ERROR|CRITICAL) ")


# -- the server process ---------------------------------------------------------------------


def serve(config: str, path: Path, overrides: dict[str, float]) -> None:
    """``--serve``: the dashboard server with ``config``; prints its URL, runs until SIGTERM."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from tango_bokeh.dashboard.guard import NOISY_LOGGERS, UNLIMITED, Limits, RateLimitedLog
    from tango_bokeh.dashboard.loader import load
    from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving

    limits = replace(Limits(), **overrides) if config == "limits" else UNLIMITED
    options = ServeOptions(port=0, limits=limits, health_detail=True)
    if config == "open":
        options.extra = {"sign_sessions": False}
    serving = Serving(DashboardServer([load(path)]), options)
    url = serving.bind()
    if config == "open":  # bind() installed the rate limit: take it off again
        for name in NOISY_LOGGERS:
            logger = logging.getLogger(name)
            for f in [f for f in logger.filters if isinstance(f, RateLimitedLog)]:
                logger.removeFilter(f)
    print(url, flush=True)
    serving.run(handle_signals=True)


class ServerProcess:
    """``bench_load.py --serve``: its URL and the times of the log records it writes."""

    def __init__(self, config: str, path: Path, overrides: dict[str, float]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", config, str(path), json.dumps(overrides)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the server did not start: {self.url!r}")
        self.records: list[float] = []
        self.lines = 0
        self.tail: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines += 1
            if RECORD.match(line):
                self.records.append(time.monotonic())
                self.tail = [*self.tail[-4:], line.rstrip()[:160]]

    def cpu(self) -> float:
        """CPU seconds the server process has used so far."""
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def records_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in list(self.records) if t0 <= t <= t1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the attacker process ---------------------------------------------------------------------


def forged_tokens(n: int) -> list[str]:
    from bokeh.util.token import generate_jwt_token

    tokens = []
    for i in range(n):
        session_id = secrets.token_urlsafe(32)
        kind = i % 4
        if kind == 0:
            tokens.append(generate_jwt_token(session_id, signed=False))
        elif kind == 1:
            tokens.append(generate_jwt_token(session_id, secret_key=b"k" * 40, signed=True))
        elif kind == 2:
            tokens.append(secrets.token_urlsafe(40))
        else:
            tokens.append(f"{secrets.token_urlsafe(30)}.{secrets.token_urlsafe(20)}")
    return tokens


async def _acknowledged(url: str, token: str) -> Any:
    """A websocket bokeh acknowledged, else None."""
    from tornado.httpclient import HTTPClientError
    from tornado.websocket import websocket_connect

    try:
        socket = await websocket_connect(url, subprotocols=["bokeh", token], connect_timeout=60)
    except (HTTPClientError, OSError, TimeoutError):
        return None
    try:
        while True:
            message = await asyncio.wait_for(socket.read_message(), 30)
            if message is None:
                return None
            if isinstance(message, str) and '"msgtype":"ACK"' in message.replace(" ", ""):
                return socket
    except TimeoutError:
        socket.close()
        return None


async def _drain(socket: Any) -> None:
    while await socket.read_message() is not None:
        pass


async def attack(kind: str, url: str, result: dict[str, Any]) -> None:
    """``--attack``: one attack on the dashboard page ``url``; what the server answered goes
    into ``result`` as it comes (an attack stopped half-way still says what it got)."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import WebSocketClosedError

    from tango_bokeh.dashboard.client import page_token

    ws = url.replace("http://", "ws://") + "/ws"
    if kind == "pages":
        client = AsyncHTTPClient(force_instance=True, max_clients=PAGE_CONCURRENCY)

        async def load() -> None:
            try:
                answer = await client.fetch(
                    url, raise_error=False, connect_timeout=ATTACK_SECONDS,
                    request_timeout=ATTACK_SECONDS,
                )  # fmt: skip
            except Exception as exc:  # timeouts: the server is too slow to answer
                status = type(exc).__name__
            else:
                status = str(answer.code)
            statuses[status] = statuses.get(status, 0) + 1

        statuses: dict[str, int] = {}
        result["statuses"] = statuses
        await asyncio.gather(*(load() for _ in range(PAGES)))
        client.close()
        return
    if kind == "forged":
        gate = asyncio.Semaphore(WS_CONCURRENCY)

        async def one(token: str) -> None:
            async with gate:
                socket = await _acknowledged(ws, token)
                if socket is not None:
                    socket.close()
                key = "refused" if socket is None else "acknowledged"
                result[key] = result.get(key, 0) + 1

        result.update(acknowledged=0, refused=0)
        await asyncio.gather(*(one(t) for t in forged_tokens(FORGED)))
        return
    if kind == "junk":
        result.update(frames=0, connections=0)
        sent = connections = 0
        while sent < FRAMES and connections < 10:
            token = await asyncio.to_thread(page_token, url, 60.0)
            socket = await _acknowledged(ws, token)
            connections += 1
            result["connections"] = connections
            if socket is None:
                continue
            drain = asyncio.ensure_future(_drain(socket))  # else tornado stops reading
            try:  # back to back: the server reads what is buffered until it sees our close
                while sent < FRAMES:
                    if sent % 2:
                        socket.write_message(secrets.token_bytes(64), binary=True)
                    else:
                        socket.write_message(f"junk {sent} {{not json")
                    sent += 1
                    result["frames"] = sent
            except WebSocketClosedError:
                pass
            try:
                await asyncio.wait_for(drain, 30)  # until the server closes
            except TimeoutError:
                socket.close()
        return
    raise ValueError(kind)


def run_attack(kind: str, url: str) -> None:
    started = time.monotonic()

    result: dict[str, Any] = {}

    async def bounded() -> None:
        try:
            await asyncio.wait_for(attack(kind, url, result), ATTACK_SECONDS)
        except TimeoutError:
            result["stopped"] = f"after {ATTACK_SECONDS} s"

    asyncio.run(bounded())
    result["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(result), flush=True)


# -- the viewer and the prober ------------------------------------------------------------------


class Viewer(threading.Thread):
    """A viewer as BokehJS is one: loads the page, opens its websocket with the page's token,
    pulls the document, then receives the session's patches. The times of the data updates
    (``ColumnsStreamed``/``ColumnsPatched`` events) are kept.

    Not bokeh's Python client: its receive loop recurses once per message and dies of a
    RecursionError after a few hundred messages (10-15 s at this rate).
    """

    KINDS = ("ColumnsStreamed", "ColumnsPatched")

    def __init__(self, url: str) -> None:
        super().__init__(name="viewer", daemon=True)
        self.url = url
        self.times: list[float] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.disconnected_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._view())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.disconnected_at = time.monotonic()
            self.ready.set()
            self._loop.close()

    async def _view(self) -> None:
        from bokeh.protocol import Protocol
        from tornado.websocket import websocket_connect

        from tango_bokeh.dashboard.client import page_token

        token = await asyncio.to_thread(page_token, self.url, 60.0)
        ws = self.url.replace("http://", "ws://") + "/ws"
        socket = await websocket_connect(ws, subprotocols=["bokeh", token], connect_timeout=60)
        try:
            while True:  # header, metadata, content, then a header and a payload per buffer
                header = await socket.read_message()
                if header is None:
                    return
                frames = [await socket.read_message() for _ in range(2)]
                msgtype = json.loads(header)["msgtype"]
                for _ in range(2 * json.loads(header).get("num_buffers", 0)):
                    await socket.read_message()
                if msgtype == "ACK":
                    pull = Protocol().create("PULL-DOC-REQ")
                    for frame in (pull.header_json, pull.metadata_json, pull.content_json):
                        await socket.write_message(frame)
                    self.ready.set()
                elif msgtype == "PATCH-DOC" and isinstance(frames[1], str):
                    now = time.monotonic()
                    for event in json.loads(frames[1]).get("events", ()):
                        if event.get("kind") in self.KINDS:
                            self.times.append(now)
        finally:
            socket.close()

    def between(self, t0: float, t1: float) -> list[float]:
        return [t for t in list(self.times) if t0 <= t <= t1]

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and self.is_alive():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self.join(15)


class Prober(threading.Thread):
    """GETs /healthz every 0.5 s (one at a time); (start, latency, status, detail) of each."""

    def __init__(self, url: str) -> None:
        super().__init__(name="prober", daemon=True)
        self.url = url
        self.probes: list[tuple[float, float, int, dict[str, Any]]] = []
        self.pending_since: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        import urllib.error
        import urllib.request

        while not self._halt.is_set():
            started = self.pending_since = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=120) as response:
                    status, body = response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                status, body = exc.code, {}
            except OSError:
                status, body = 0, {}
            ended = time.monotonic()
            self.pending_since = None
            self.probes.append((started, ended - started, status, body))
            self._halt.wait(max(0.0, 0.5 - (ended - started)))

    def sessions(self) -> int | None:
        """Sessions the server holds, from the newest answer."""
        for _, _, _, body in reversed(self.probes):
            if "sessions" in body:
                return int(body["sessions"])
        return None

    def latencies(self, t0: float, t1: float) -> list[float]:
        found = [latency for start, latency, _, _ in list(self.probes) if t0 <= start <= t1]
        pending = self.pending_since
        if pending is not None and pending <= t1:
            found.append(t1 - pending)  # still waiting: at least this long
        return found

    def stop(self) -> None:
        self._halt.set()
        self.join(130)


# -- one configuration -----------------------------------------------------------------------


def gaps(times: list[float], t0: float, t1: float) -> float:
    edges = [t0, *times, t1]
    return max(b - a for a, b in itertools.pairwise(edges))


def phase(
    name: str,
    server: ServerProcess,
    viewer: Viewer,
    prober: Prober,
    seconds: float,
    page: str,
) -> dict[str, Any]:
    """One phase: the attack ``name`` (or none), measured until it and its sessions are gone."""
    t0, cpu0 = time.monotonic(), server.cpu()
    attacker = None
    if name != "alone":
        attacker = subprocess.Popen(
            [sys.executable, __file__, "--attack", name, page], stdout=subprocess.PIPE, text=True
        )
    result: dict[str, Any] = {}
    deadline = t0 + seconds + ATTACK_SECONDS + 60
    try:
        while time.monotonic() < t0 + seconds or (attacker is not None and attacker.poll() is None):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the attack did not end")
            time.sleep(0.1)
        if attacker is not None:
            assert attacker.stdout is not None
            said = attacker.stdout.read().strip().splitlines()
            result = json.loads(said[-1]) if said else {"failed": attacker.returncode}
            attack_end = time.monotonic()
            # what the attack left behind (pages expire after the unused session lifetime)
            while prober.sessions() != 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            result["aftermath_s"] = round(time.monotonic() - attack_end, 1)
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait()
    t1, cpu1 = time.monotonic(), server.cpu()
    times = viewer.between(t0, t1)
    latencies = prober.latencies(t0, t1)
    return {
        "phase": name,
        "window_s": round(t1 - t0, 1),
        "updates_per_s": len(times) / (t1 - t0),
        "largest_gap_s": gaps(times, t0, t1),
        "healthz_p50_s": statistics.median(latencies) if latencies else float("nan"),
        "healthz_max_s": max(latencies) if latencies else float("nan"),
        "log_records": server.records_between(t0, t1),
        "server_cpu_s": cpu1 - cpu0,
        "attack": result,
    }


def measure(
    config: str, path: Path, seconds: float, overrides: dict[str, float]
) -> list[dict[str, Any]]:
    server = ServerProcess(config, path, overrides)
    viewer = prober = None
    try:
        page = f"{server.url}/{path.stem}"
        viewer = Viewer(page)
        viewer.start()
        viewer.ready.wait(90)
        if viewer.error is not None:
            raise RuntimeError(f"{config}: the viewer could not open the page") from viewer.error
        prober = Prober(f"{server.url}/healthz")
        prober.start()
        started = time.monotonic()  # warm-up: every trend updating, one session
        while len(viewer.between(time.monotonic() - 2, time.monotonic())) < 10 or (
            prober.sessions() != 1
        ):
            if time.monotonic() - started > 60:
                raise RuntimeError(f"{config}: the viewer gets no updates")
            time.sleep(0.2)
        time.sleep(2)
        rows = [phase("alone", server, viewer, prober, seconds, page)]
        for attack_name in ATTACKS:
            time.sleep(1)
            rows.append(phase(attack_name, server, viewer, prober, seconds, page))
        if viewer.disconnected_at is not None:
            for row in rows:
                row["viewer_disconnected"] = True
        for row in rows:
            row["config"] = config
            row["ratio"] = row["updates_per_s"] / rows[0]["updates_per_s"]
        return rows
    finally:
        try:
            if viewer is not None:
                viewer.stop()
            if prober is not None:
                prober.stop()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="shortest phase (s)")
    parser.add_argument("--configs", default="limits,unlimited", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--refresh", type=float, default=0.1, help="the dashboard's refresh (s)")
    parser.add_argument("--rate", type=float, default=20.0, help="storm Counter events/s")
    parser.add_argument(
        "--limits",
        default="",
        metavar="FIELD=VALUE,...",
        help="change fields of Limits() in the limits config (e.g. page_burst=5)",
    )
    hidden = argparse.SUPPRESS
    parser.add_argument("--serve", nargs=3, metavar=("CONFIG", "FILE", "LIMITS"), help=hidden)
    parser.add_argument("--attack", nargs=2, metavar=("KIND", "URL"), help=hidden)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), json.loads(args.serve[2]))
        return
    if args.attack:
        run_attack(*args.attack)
        return
    overrides = {}
    for item in filter(None, (i.strip() for i in args.limits.split(","))):
        key, _, value = item.partition("=")
        overrides[key.strip()] = float(value) if "." in value else int(value)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")

    import tango
    from _common import control_system, servers

    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="load-") as where,
        control_system(servers("SimCounter", "SimBeamCurrent", "SimEventStorm")),
    ):
        path = Path(where) / "load.yaml"
        path.write_text(DASHBOARD.format(refresh=args.refresh))
        storm = tango.DeviceProxy("sim/storm/1")
        storm.write_attribute("Payload", "scalar")
        storm.write_attribute("Rate", args.rate)
        storm.Start()
        try:
            for config in configs:
                rows += measure(config, path, args.seconds, overrides)
                for row in rows[-len(ATTACKS) - 1 :]:
                    print(json.dumps(row), flush=True)
        finally:
            storm.Stop()
    print(
        f"viewer: 3 trends + a table, refresh {args.refresh:g} s, storm at {args.rate:g} Hz; "
        f"attacks: {PAGES} pages ({PAGE_CONCURRENCY} at a time), {FORGED} forged websockets, "
        f"{FRAMES} junk frames; phases >= {args.seconds:g} s; limits changed: "
        f"{overrides or 'none'}; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        "| config | phase | window | updates/s | ratio | largest gap | /healthz p50 / max | "
        "log records | server CPU | attack |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        attack_result = r["attack"]
        print(
            f"| {r['config']} | {r['phase']} | {r['window_s']:.1f} s | {r['updates_per_s']:.1f} | "
            f"{r['ratio']:.2f} | {r['largest_gap_s']:.2f} s | {r['healthz_p50_s'] * 1000:.0f} / "
            f"{r['healthz_max_s'] * 1000:.0f} ms | {r['log_records']} | "
            f"{r['server_cpu_s']:.1f} s | "
            f"{json.dumps(attack_result) if attack_result else '-'} |"
        )
    for config in configs:
        mine = [r for r in rows if r["config"] == config and r["phase"] != "alone"]
        worst = min(r["ratio"] for r in mine)
        print(
            f"{config}: loaded / alone = "
            + ", ".join(f"{r['phase']} {r['ratio']:.2f}" for r in mine)
            + f" (worst {worst:.2f}, target >= 0.8: {'met' if worst >= 0.8 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
