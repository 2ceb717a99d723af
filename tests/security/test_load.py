"""Anonymous load must not starve the other viewers (security finding 7).

Each test runs the real dashboard server (``Serving`` on a thread, the
embedded Tango database) with the caps of :class:`~tango_bokeh.dashboard.guard.Limits`
it checks, and attacks it from loopback:

* page loads beyond the sessions allowed per address, in total, and per
  second are refused with a status and one line saying why, and make no
  session;
* websockets with forged tokens make no session, and the lines bokeh and
  tornado log for them are rate limited;
* junk frames on a real websocket are rate limited in the log too, and the
  server and its other viewers carry on;
* one page's token opens at most ``max_connections_per_session`` websockets.

Client addresses other than 127.0.0.1 come from ``X-Forwarded-For``, believed
because the server trusts 127.0.0.1 as a proxy here. Nothing here asserts a
duration: rates and buckets are set so that time cannot refill them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bokeh.util.token import generate_jwt_token
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from tango_bokeh.dashboard.client import page_token
from tango_bokeh.dashboard.guard import NOISY_LOGGERS, Limits
from tango_bokeh.dashboard.loader import load
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub

pytestmark = [pytest.mark.tango]

DASHBOARD = """\
title: Load
refresh: 0.2 s
panels:
  - trend:
      title: Diode
      attributes: [diode1/Counts]
  - table:
      attributes: [sim/beam/current/Current]
"""

#: Plenty, so that only the cap a test sets is ever reached.
MANY = 10_000


# -- helpers ------------------------------------------------------------------------------------


@contextmanager
def serve(hub: Hub, tmp_path: Path, limits: Limits) -> Iterator[Serving]:
    """The dashboard ``/load`` served with ``limits``; 127.0.0.1 is a trusted proxy.

    Unconnected pages live 60 s, so every page a test opens is still there when it counts.
    """
    path = tmp_path / "load.yaml"
    path.write_text(DASHBOARD)
    server = DashboardServer([load(path)], hub=hub)
    options = ServeOptions(
        port=0,
        limits=limits,
        unused_session_lifetime=60.0,
        check_unused_sessions=0.5,
        trusted_proxies=["127.0.0.1"],
    )
    running = Serving(server, options).start_thread()
    try:
        yield running
    finally:
        running.join()


def get(url: str, address: str | None = None) -> tuple[int, str, dict[str, str]]:
    """GET ``url`` as client ``address`` (through the trusted proxy); status, body, headers."""
    headers = {"X-Forwarded-For": address} if address else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def session_ids(serving: Serving) -> set[str]:
    """The sessions bokeh holds for the dashboard (whatever made them)."""
    return {s.id for s in list(serving.tornado_app._applications["/load"].sessions)}


def sessions_made(serving: Serving) -> int:
    return len(session_ids(serving))


class LogCount(logging.Handler):
    """Records at WARNING+ of bokeh, tornado and the guard: written (a handler on the root
    logger, after every logger filter) and raised (a filter put first on each noisy logger,
    i.e. what would have been written without the rate limiter)."""

    PREFIXES = ("bokeh", "tornado", "tango_bokeh.dashboard.guard")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.written: list[logging.LogRecord] = []
        self.raised = 0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(self.PREFIXES):
            self.written.append(record)

    def count_raised(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            with self._lock:
                self.raised += 1
        return True


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogCount]:
    count = LogCount()
    root = logging.getLogger()
    # bokeh gives its logger a handler of its own and stops propagation when it is imported
    # before logging is configured; let its records reach the root handler like the others.
    monkeypatch.setattr(logging.getLogger("bokeh"), "propagate", True)
    root.addHandler(count)
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    for logger in loggers:
        logger.filters.insert(0, count.count_raised)
    try:
        yield count
    finally:
        root.removeHandler(count)
        for logger in loggers:
            logger.removeFilter(count.count_raised)


def ws_url(serving: Serving) -> str:
    return serving.url.replace("http://", "ws://") + "/load/ws"


def is_patch(message: str | bytes | None) -> bool:
    return isinstance(message, str) and '"msgtype":"PATCH-DOC"' in message.replace(" ", "")


async def connect(url: str, token: str) -> WebSocketClientConnection | None:
    """A websocket that bokeh acknowledged with ``token``, else None (refused or closed)."""
    try:
        socket = await websocket_connect(url, subprotocols=["bokeh", token])
    except (HTTPClientError, OSError):
        return None
    try:
        while True:
            message = await asyncio.wait_for(socket.read_message(), 20)
            if message is None:
                return None
            if isinstance(message, str) and '"msgtype":"ACK"' in message.replace(" ", ""):
                return socket
    except TimeoutError:
        socket.close()
        return None


class Viewer:
    """A page's websocket that counts the document patches it receives (a viewer's updates)."""

    def __init__(self, socket: WebSocketClientConnection) -> None:
        self.socket = socket
        self.patches = 0
        self.closed = False
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.socket.read_message()
            if message is None:
                self.closed = True
                return
            if is_patch(message):
                self.patches += 1

    async def more_patches(self, than: int, timeout: float = 30.0) -> bool:
        """Whether more than ``than`` patches arrive within ``timeout`` (a generous bound)."""
        return await until(lambda: self.patches > than, timeout)

    def close(self) -> None:
        self.socket.close()
        self.task.cancel()


async def until(predicate: Callable[[], object], timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# -- (a) caps on pages ------------------------------------------------------------------------


def test_sessions_per_address_are_capped(hub: Hub, tmp_path: Path):
    """Guards ``max_sessions_per_address``: without it the 4th page makes a 4th session."""
    limits = Limits(
        max_sessions=MANY, max_sessions_per_address=3, page_burst=MANY, server_page_burst=MANY
    )
    with serve(hub, tmp_path, limits) as serving:
        url = f"{serving.url}/load"
        for _ in range(3):
            status, body, _ = get(url, "10.0.0.1")
            assert status == 200 and '"token"' in body
        ids = session_ids(serving)
        assert len(ids) == 3 and serving.server.sessions_of("10.0.0.1") == 3
        status, body, headers = get(url, "10.0.0.1")
        assert status == 429
        assert "too many open pages from 10.0.0.1: close some first" in body
        assert headers.get("Retry-After") == "10" and '"token"' not in body
        # No 4th session; the three stay; another address is not affected.
        assert session_ids(serving) == ids
        assert serving.server.sessions_of("10.0.0.1") == 3
        assert get(url, "10.0.0.2")[0] == 200
        assert serving.server.sessions_of("10.0.0.2") == 1
        assert serving.server.guard_stats.refused.get("address full") == 1


def test_sessions_in_total_are_capped(hub: Hub, tmp_path: Path):
    """Guards ``max_sessions``: without it a 4th address makes a 4th session."""
    limits = Limits(
        max_sessions=3, max_sessions_per_address=MANY, page_burst=MANY, server_page_burst=MANY
    )
    with serve(hub, tmp_path, limits) as serving:
        url = f"{serving.url}/load"
        for n in range(1, 4):
            assert get(url, f"10.0.1.{n}")[0] == 200
        status, body, headers = get(url, "10.0.1.4")
        assert status == 503
        assert "too many open pages on this server: try later" in body
        assert headers.get("Retry-After") == "10"
        assert sessions_made(serving) == 3 and len(serving.server.sessions()) == 3
        assert serving.server.sessions_of("10.0.1.4") == 0
        assert serving.server.guard_stats.refused.get("server full") == 1


def test_pages_per_second_are_capped_after_a_burst(hub: Hub, tmp_path: Path):
    """Guards the page token bucket: without it the 5th page of the burst is served.

    The bucket refills one page per 1000 s, so no elapsed time can let a 5th page through.
    """
    limits = Limits(
        max_sessions=MANY, max_sessions_per_address=MANY, pages_per_second=0.001, page_burst=4
    )
    with serve(hub, tmp_path, limits) as serving:
        url = f"{serving.url}/load"
        for _ in range(4):
            assert get(url, "10.0.2.1")[0] == 200
        status, body, _ = get(url, "10.0.2.1")
        assert status == 429 and "pages opened too fast from one address" in body
        assert get(url, "10.0.2.1")[0] == 429
        assert sessions_made(serving) == 4
        assert get(url, "10.0.2.2")[0] == 200  # a bucket per address
        assert serving.server.guard_stats.refused.get("page rate") == 2


def test_pages_the_whole_server_builds_are_capped_and_browsers_retry_by_themselves(
    hub: Hub, tmp_path: Path
):
    """Guards the server-wide bucket: without it twenty addresses get twenty pages built.

    Building a page runs on the loop every open page is served from, so many addresses
    must not be able to starve the viewers already there.
    """
    limits = Limits(
        max_sessions=MANY, max_sessions_per_address=MANY, pages_per_second=MANY,
        page_burst=MANY, server_pages_per_second=0.001, server_page_burst=3,
    )  # fmt: skip
    with serve(hub, tmp_path, limits) as serving:
        url = f"{serving.url}/load"
        for n in range(3):
            assert get(url, f"10.0.3.{n}")[0] == 200
        status, body, headers = get(url, "10.0.3.9")
        assert status == 503 and "the server is busy opening other pages" in body
        assert headers.get("Retry-After") == "3"
        request = urllib.request.Request(
            url, headers={"X-Forwarded-For": "10.0.3.10", "Accept": "text/html"}
        )
        try:
            urllib.request.urlopen(request, timeout=20)
        except urllib.error.HTTPError as exc:
            page = exc.read().decode()
        assert "http-equiv='refresh' content='3'" in page  # a browser asks again by itself
        assert sessions_made(serving) == 3
        assert serving.server.guard_stats.refused.get("server busy") == 2


# -- (b) forged tokens --------------------------------------------------------------------------


def forged_tokens(n: int) -> list[str]:
    """Unsigned tokens, tokens signed with another key, and junk subprotocol values."""
    tokens = []
    for i in range(n):
        session_id = secrets.token_urlsafe(32)
        kind = i % 4
        if kind == 0:
            tokens.append(generate_jwt_token(session_id, signed=False))
        elif kind == 1:
            tokens.append(generate_jwt_token(session_id, secret_key=b"k" * 40, signed=True))
        elif kind == 2:
            tokens.append(secrets.token_urlsafe(40))  # no "."
        else:
            tokens.append(f"{secrets.token_urlsafe(30)}.{secrets.token_urlsafe(20)}")
    return tokens


def test_forged_websockets_make_no_session_and_little_log(hub: Hub, tmp_path: Path, logs: LogCount):
    """Guards signed sessions (bokeh's ``sign_sessions`` with the server's secret: without
    it each unsigned token would create a session of its own) and the rate limit of the
    loggers (without it every refusal writes one or two ERROR lines, 200 to 400 here)."""
    with serve(hub, tmp_path, Limits()) as serving:
        url = ws_url(serving)
        tokens = forged_tokens(200)

        async def attack() -> list[bool]:
            gate = asyncio.Semaphore(20)

            async def one(token: str) -> bool:
                async with gate:
                    socket = await connect(url, token)
                    if socket is not None:
                        socket.close()
                    return socket is not None

            return await asyncio.gather(*(one(t) for t in tokens))

        opened = asyncio.run(attack())
        assert not any(opened)
        assert sessions_made(serving) == 0 and not serving.server.sessions()
        # What bokeh and tornado raised (one or two ERROR records per refusal) against what
        # reached the root logger's handlers: 5 per message per minute.
        assert logs.raised >= len(tokens)
        assert len(logs.written) <= 20, [r.getMessage()[:120] for r in logs.written]


# -- (c) junk frames ------------------------------------------------------------------------------


def test_junk_frames_are_logged_a_few_times_and_others_carry_on(
    hub: Hub, tmp_path: Path, logs: LogCount
):
    """Guards the rate limit of the loggers against junk frames on a real session (bokeh
    logs two ERROR lines with a traceback per junk text frame and one per binary frame:
    about 3,000 here), and checks /healthz and another viewer keep working."""
    with serve(hub, tmp_path, Limits()) as serving:
        page = f"{serving.url}/load"
        url = ws_url(serving)

        async def scenario() -> tuple[int, int]:
            other = await connect(url, await asyncio.to_thread(page_token, page))
            assert other is not None
            viewer = Viewer(other)
            try:
                assert await viewer.more_patches(0), "the viewer gets no update before the junk"
                attacker = await connect(url, await asyncio.to_thread(page_token, page))
                assert attacker is not None
                junk = Viewer(attacker)  # reads, so that tornado sees the server's close
                sent = 0
                # Written back to back, before the server's close can reach us: the server
                # goes on reading what is already buffered until it sees our close.
                try:
                    for i in range(2000):
                        if i % 2:
                            attacker.write_message(secrets.token_bytes(64), binary=True)
                        else:
                            attacker.write_message(f"junk {i} {{not json")
                        sent += 1
                except WebSocketClosedError:
                    pass
                assert await until(lambda: junk.closed, 30), "the server kept the junk socket"
                junk.close()
                seen = viewer.patches
                status, _, _ = await asyncio.to_thread(get, f"{serving.url}/healthz")
                assert status == 200
                assert await viewer.more_patches(seen), "the other viewer got no update after"
                assert not viewer.closed
                return sent, viewer.patches
            finally:
                viewer.close()

        sent, _ = asyncio.run(scenario())
        assert sent == 2000
        assert logs.raised >= 100  # the junk reached bokeh's handlers (≈ 3,000 records)
        assert len(logs.written) <= 30, [r.getMessage()[:120] for r in logs.written]


# -- (d) connections per session ------------------------------------------------------------------


def test_connections_per_session_are_capped(hub: Hub, tmp_path: Path):
    """Guards ``max_connections_per_session``: without it a third websocket with the
    same token joins the session (and N copies of one token make N connections)."""
    limits = Limits(max_connections_per_session=2)
    with serve(hub, tmp_path, limits) as serving:
        url = ws_url(serving)
        token = page_token(f"{serving.url}/load")

        async def scenario() -> None:
            first = await connect(url, token)
            second = await connect(url, token)
            assert first is not None and second is not None
            viewer = Viewer(first)
            try:
                for _ in range(3):
                    assert await connect(url, token) is None
                assert serving.server.guard_stats.refused.get("connections per session") == 3
                (session,) = serving.tornado_app._applications["/load"].sessions
                assert session.connection_count == 2
                seen = viewer.patches
                assert await viewer.more_patches(seen), "the first connection stopped updating"
            finally:
                viewer.close()
                second.close()

        asyncio.run(scenario())
        assert sessions_made(serving) == 1
