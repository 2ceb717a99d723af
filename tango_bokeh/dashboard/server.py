"""The dashboard server: bokeh applications per file, index page, /metrics, /healthz, login.

:class:`DashboardServer` holds what one server process serves and gives the
keyword arguments for a bokeh ``Server`` (or :class:`~tango_bokeh.app.ThreadedServer`).
:func:`serve_forever` is the ``tango-bokeh serve`` main loop. With
``num_procs > 1`` it binds the socket, then forks; Tango is only used after
the fork, in each worker (the parent never creates a proxy, a database
object or the hub's threads), and the parent only supervises: a signal to
it stops every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import html
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bokeh.application import Application
from bokeh.document import Document
from bokeh.server.server import BaseServer
from bokeh.server.util import bind_sockets, create_hosts_allowlist
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from ..app import WEBSOCKET_COMPRESSION, session_application, websocket_compression
from ..hub import Hub
from ..session import Session
from ..tango.archive import open_archive
from ..views.archive_fill import SharedArchive, default_opener
from .auth import USER_COOKIE, Access, page
from .build import DashboardSession, RefusedSession, url_arguments
from .control import Actuator
from .guard import GuardedTornado, GuardStats, Limits, quiet_refusals
from .keys import derive
from .loader import DashboardFile
from .metrics import SecurityCollector, hub_closed, make_registry
from .resume import ALIVE_PATH
from .schema import VIEW_KINDS

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    """What ``tango-bokeh serve`` takes, with bokeh serve's defaults where they exist."""

    address: str = "127.0.0.1"
    port: int = 5006
    allow_websocket_origin: Sequence[str] = ()
    num_procs: int = 1
    #: A closed tab's session (and its share of the subscriptions) lives this long.
    unused_session_lifetime: float = 5.0
    check_unused_sessions: float = 1.0
    keep_alive: float = 10.0
    #: How long a page's signed token lets it reconnect. Joining a session also needs the
    #: session's own login (see guard.py), so a long life lends nobody anything.
    session_token_expiration: float = 7 * 86400.0
    limits: Limits = field(default_factory=Limits)
    #: Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or networks).
    trusted_proxies: Sequence[str] = ()
    #: /healthz tells anonymous callers only ok/failing unless this is set.
    health_detail: bool = False
    #: The secret's file (else $TANGO_BOKEH_SECRET, else state_dir/secret; see keys.py).
    secret_file: Path | None = None
    #: Where the secret and the logins are kept (default: keys.default_state_dir()).
    state_dir: Path | None = None
    audit_log: Path | None = None
    #: The websockets' permessage-deflate level (0: off; app.websocket_compression).
    websocket_compression: int = WEBSOCKET_COMPRESSION
    extra: dict[str, Any] = field(default_factory=dict)


class DashboardServer:
    """Everything one server process serves."""

    def __init__(
        self,
        dashboards: Sequence[DashboardFile],
        *,
        access: Access | None = None,
        hub: Hub | None = None,
        actuator: Actuator | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.dashboards = list(dashboards)
        #: Signs session ids and tokens (shared by workers and replicas that share it).
        self.secret = secret or secrets.token_urlsafe(48).encode()
        self.access = access or Access(None, derive(self.secret, "cookies"))
        self.access.destinations = frozenset({"/", *(f"/{d.name}" for d in self.dashboards)})
        self._owners: weakref.WeakKeyDictionary[Document, str | None] = weakref.WeakKeyDictionary()
        self._hub = hub
        self.actuator = actuator or Actuator()
        self.started = time.time()
        self.health = Health(self._tango_hosts(), self.hub)
        self.registry = make_registry(self.existing_hub, self.sessions, _dashboard_name)
        self.guard_stats = GuardStats()
        #: One archive per dashboard file (its ``archive:`` key, else pyhdbpp's default),
        #: opened at the first read of one of its trends, off the loop.
        self.archives = {d.name: self._archive(d) for d in self.dashboards}
        self.registry.register(
            SecurityCollector(self.access, lambda: dict(self.guard_stats.refused))
        )

    # -- what is served --------------------------------------------------------------------

    def hub(self) -> Hub:
        """The hub every session of this process shares (created after any fork)."""
        return self._hub or Hub.default()

    def existing_hub(self) -> Hub | None:
        return self._hub or Hub._default

    def sessions(self) -> list[Session]:
        names = {d.name for d in self.dashboards}
        return [
            s
            for s in DashboardSession.sessions()
            if isinstance(s, DashboardSession) and s.dashboard.name in names and s.hub is self.hub()
        ]

    def applications(self) -> dict[str, Application]:
        return {
            f"/{d.name}": session_application(self._factory(d), self._identify)
            for d in self.dashboards
        }

    def _identify(self, request: Any) -> dict[str, Any]:
        """Who opened the page, kept in the session's signed token (bokeh's process_request)."""
        cookie = request.cookies.get(USER_COOKIE) if request.cookies else None
        viewer = self.access.viewer_from_cookie(cookie.value if cookie is not None else None)
        address = getattr(request, "client_address", None) or request.remote_ip
        return {"tango_bokeh": {"login": viewer.login, "address": address}}

    def owner_of(self, document: Document) -> str | None:
        """The login (reference) of the page request that made this session, if any."""
        return self._owners.get(document)

    def sessions_of(self, address: str | None) -> int:
        """Open dashboard sessions from ``address`` (all of them for None)."""
        sessions = self.sessions()
        if address is None:
            return len(sessions)
        return sum(1 for s in sessions if getattr(s, "address", None) == address)

    def _factory(self, dashboard: DashboardFile) -> Callable[[Document], Session]:
        def factory(doc: Document) -> Session:
            arguments = url_arguments(doc)
            if arguments:
                log.warning(
                    "refused /%s with URL arguments %s",
                    dashboard.name,
                    ", ".join(sorted(arguments)),
                )
                return RefusedSession(dashboard, arguments)
            context = doc.session_context
            try:
                who = context.token_payload.get("tango_bokeh", {})  # type: ignore[union-attr]
            except (AttributeError, AssertionError):  # a bare Document, no token
                who = {}
            viewer = self.access.viewer_from_login(who.get("login"))
            self._owners[doc] = viewer.login
            session = DashboardSession(
                dashboard,
                viewer=viewer,
                actuator=self.actuator,
                can_login=self.access.can_login,
                hub=self.hub(),
                authorize=self.access.still_allowed,
                archive=self.archives.get(dashboard.name),
            )
            session.address = str(who.get("address") or "?")
            return session

        return factory

    def tornado_kwargs(self, options: ServeOptions) -> dict[str, Any]:
        """Keyword arguments for bokeh's ``Server``/``BokehTornado`` (not the address or port)."""
        return {
            "extra_patterns": [
                (r"/?", IndexHandler, {"server": self}),
                (r"/metrics", MetricsHandler, {"server": self}),
                (ALIVE_PATH, AliveHandler),
                (r"/healthz", HealthHandler, {"server": self, "detail": options.health_detail}),
            ],
            "auth_provider": self.access.provider(),
            "cookie_secret": self.access.cookie_secret,
            "xsrf_cookie_kwargs": {"httponly": True, "samesite": "Strict"},
            "use_index": False,
            "redirect_root": False,
            # Only the server names sessions: ids and tokens signed with its secret.
            "sign_sessions": True,
            "secret_key": derive(self.secret, "bokeh-sessions"),
            "generate_session_ids": True,
            "session_token_expiration": int(options.session_token_expiration),
            # bokeh copies cookies and headers into the token a page's scripts can read:
            # copy none (who opened the page travels as a login reference, see _identify).
            "include_cookies": [],
            "include_headers": [],
            "unused_session_lifetime_milliseconds": int(options.unused_session_lifetime * 1000),
            "check_unused_sessions_milliseconds": int(options.check_unused_sessions * 1000),
            "keep_alive_milliseconds": int(options.keep_alive * 1000),
            **websocket_compression(options.websocket_compression),
            **options.extra,
        }

    def websocket_origins(self, options: ServeOptions, port: int) -> list[str]:
        """``--allow-websocket-origin`` values, else the loopback names of this port."""
        if options.allow_websocket_origin:
            return create_hosts_allowlist(list(options.allow_websocket_origin), port)
        hosts = {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
        if options.address not in ("", "0.0.0.0", "::"):
            hosts.add(f"{options.address}:{port}")
        return sorted(hosts)

    @staticmethod
    def _archive(dashboard: DashboardFile) -> SharedArchive:
        settings = dashboard.model.archive
        if settings is None:  # pyhdbpp's default, if it has one
            return SharedArchive(default_opener(open_archive))
        config = settings.config()
        return SharedArchive(lambda: open_archive(config))

    def _tango_hosts(self) -> list[str | None]:
        hosts: set[str | None] = set()
        for d in self.dashboards:
            hosts.add(d.model.tango_host)
        return sorted(hosts, key=lambda h: h or "")

    def close_sessions(self) -> None:
        for session in self.sessions():
            session.close()

    def shutdown(self) -> None:
        """Close every session (drops the subscriptions), the writer pool and the health pool."""
        self.close_sessions()
        self.actuator.close()
        self.health.close()
        for archive in self.archives.values():
            archive.close()


def _dashboard_name(session: Session) -> str:
    dashboard = getattr(session, "dashboard", None)
    return dashboard.name if dashboard is not None else "?"


# -- /healthz -----------------------------------------------------------------------------------


class Health:
    """Database reachability checked on a thread of its own, cached; the hub's state."""

    def __init__(self, hosts: Sequence[str | None], hub: Callable[[], Hub], ttl: float = 10.0):
        self.hosts = list(hosts) or [None]
        self._hub = hub
        self.ttl = ttl
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._cache: dict[str | None, tuple[float, bool, str]] = {}
        self._running: dict[str | None, Any] = {}

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="healthz")
            return self._pool

    @staticmethod
    def _ping(host: str | None) -> tuple[bool, str]:
        from ..tango.database import ping  # on the health thread, after any fork

        return ping(host)

    async def database(self, host: str | None, wait: float = 3.0) -> tuple[bool, str, float]:
        """(ok, detail, age of the answer in seconds); the check never runs on the loop."""
        now = time.monotonic()
        cached = self._cache.get(host)
        if cached is None or now - cached[0] > self.ttl:
            future = self._running.get(host)
            if future is None:
                future = asyncio.wrap_future(self._executor().submit(self._ping, host))
                self._running[host] = future

                def store(f: Any, host: str | None = host) -> None:
                    self._running.pop(host, None)
                    if not f.cancelled() and f.exception() is None:
                        ok, detail = f.result()
                        self._cache[host] = (time.monotonic(), ok, detail)

                future.add_done_callback(store)
            try:
                await asyncio.wait_for(asyncio.shield(future), wait)
            except TimeoutError:
                if cached is None:
                    return False, f"no answer within {wait:g} s", 0.0
            cached = self._cache.get(host, cached)
        assert cached is not None
        return cached[1], cached[2], time.monotonic() - cached[0]

    def hub_state(self) -> tuple[bool, dict[str, Any]]:
        hub = self._hub()
        stats = hub.stats()
        running = not hub_closed(hub)
        return running, {
            "running": running,
            "attributes": stats.channels,
            "readers": stats.consumers,
            "tango_subscriptions": stats.subscriptions,
            "polled_attributes": stats.polled,
        }

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class HealthHandler(RequestHandler):
    """200 when every database answers and the hub runs, else 503; JSON either way."""

    def initialize(self, server: DashboardServer, detail: bool = False) -> None:
        self.server = server
        self.detail = detail

    async def get(self) -> None:
        health = self.server.health
        databases = {}
        ok = True
        for host in health.hosts:
            reachable, detail, age = await health.database(host)
            shown = host or os.environ.get("TANGO_HOST", "") or "(TANGO_HOST unset)"
            databases[shown] = {"reachable": reachable, "detail": detail, "age_s": round(age, 1)}
            ok = ok and reachable
        hub_ok, hub = health.hub_state()
        ok = ok and hub_ok
        body = {
            "status": "ok" if ok else "failing",
            "databases": databases,
            "hub": hub,
            "sessions": len(self.server.sessions()),
            "dashboards": [d.name for d in self.server.dashboards],
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.server.started, 1),
        }
        viewer = self.server.access.viewer_from_cookie(self.get_cookie(USER_COOKIE))
        if not (self.detail or viewer.authenticated):
            body = {"status": body["status"]}  # hosts, pids and names are for operators
        self.set_status(200 if ok else 503)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(body, indent=1))


class AliveHandler(RequestHandler):
    """``200 alive``: what a page that lost its connection probes before reloading itself."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "text/plain")
        self.write("alive\n")


class MetricsHandler(RequestHandler):
    def initialize(self, server: DashboardServer) -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.write(generate_latest(self.server.registry))


class IndexHandler(RequestHandler):
    """The list of dashboards this server serves."""

    def initialize(self, server: DashboardServer) -> None:
        self.server = server

    def get(self) -> None:
        viewer = self.server.access.viewer_from_cookie(self.get_cookie(USER_COOKIE))
        cards = []
        for d in self.server.dashboards:
            model = d.model
            panels = sum(1 for _, p in model.walk() if p.kind in VIEW_KINDS)
            attributes = len(model.attributes())
            description = f"<p>{html.escape(model.description)}</p>" if model.description else ""
            cards.append(
                f"<div class='card'><h2><a href='/{html.escape(d.name)}'>"
                f"{html.escape(model.title)}</a></h2>{description}"
                f"<div class='muted'>/{html.escape(d.name)} · {panels} panel(s) · "
                f"{attributes} attribute(s) · refresh {model.refresh:g} s · "
                f"{html.escape(d.path.name)}</div></div>"
            )
        footer = (
            "<p class='muted'>Machine-readable: <a href='/metrics'>/metrics</a> (Prometheus) · "
            "<a href='/healthz'>/healthz</a></p>"
        )
        self.set_header("Cache-Control", "no-store")
        self.write(
            page("Tango dashboards", "".join(cards) + footer, viewer, self.server.access.can_login)
        )


# -- tango-bokeh serve ------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """In a worker: get SIGTERM if the supervising parent dies, so nothing is orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)


class _Stop(BaseException):
    """Raised in the supervising parent by SIGINT/SIGTERM."""


class Serving:
    """One server process's run: bind, (fork), serve until :meth:`stop` or a signal.

    ``tango-bokeh serve`` runs it on the main thread (:func:`serve_forever`);
    tests and benchmarks may run :meth:`run` on a thread of their own.
    """

    def __init__(self, server: DashboardServer, options: ServeOptions) -> None:
        self.server = server
        self.options = options
        self.port = 0
        self.url = ""
        self._sockets: list[Any] = []
        self._loop: IOLoop | None = None
        self._stopping = threading.Event()
        self.ready = threading.Event()

    def bind(self) -> str:
        """Listen (no Tango, no thread: safe before a fork); returns the base URL."""
        options = self.options
        self._sockets, self.port = bind_sockets(options.address, options.port)
        shown = options.address if options.address not in ("", "0.0.0.0", "::") else "localhost"
        self.url = f"http://{shown}:{self.port}"
        hosts = self.server.websocket_origins(options, self.port)
        quiet_refusals()
        self.tornado_app = GuardedTornado(
            self.server.applications(),
            access=self.server.access,
            hosts=hosts,
            owner_of=self.server.owner_of,
            sessions_of=self.server.sessions_of,
            limits=options.limits,
            trusted_proxies=options.trusted_proxies,
            stats=self.server.guard_stats,
            extra_websocket_origins=hosts,
            absolute_url=self.url,
            **self.server.tornado_kwargs(options),
        )
        self.http_server = HTTPServer(self.tornado_app, xheaders=False)
        return self.url

    def run(self, handle_signals: bool = True, freeze_gc: bool | None = None) -> None:
        """Serve on this thread's loop until :meth:`stop` (or SIGINT/SIGTERM).

        ``freeze_gc`` (default: as ``handle_signals``, i.e. in a server process of its own)
        moves every object alive at start out of the garbage collector's sight.
        """
        self.http_server.add_sockets(self._sockets)
        loop = self._loop = IOLoop.current()
        self.bokeh_server = BaseServer(loop, self.tornado_app, self.http_server)
        if handle_signals:

            def on_signal(_signum: int, _frame: Any) -> None:
                loop.add_callback_from_signal(self._shutdown)

            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, on_signal)
        self.bokeh_server.start()
        if handle_signals if freeze_gc is None else freeze_gc:
            # Everything alive now (modules, bokeh, numpy, Tango) lives as long as the process:
            # keep it out of full garbage collections, which stop every thread (and the loop).
            gc.collect()
            gc.freeze()
        self.ready.set()
        try:
            loop.start()
        finally:
            hub = self.server.existing_hub()
            if hub is not None and self.server._hub is None:
                hub.close()

    def stop(self) -> None:
        """Stop serving (from any thread): sessions closed, subscriptions dropped."""
        if self._loop is not None:
            self._loop.add_callback(self._shutdown)

    async def _shutdown(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping the dashboard server (pid %d)", os.getpid())
        app = self.tornado_app
        for context in list(app.applications.values()):
            for session in list(context.sessions):
                session_context = session.document.session_context
                if session_context is not None:
                    with contextlib.suppress(Exception):
                        await context.application.on_session_destroyed(session_context)
        self.server.shutdown()
        self.bokeh_server.stop(wait=False)
        self.http_server.stop()
        assert self._loop is not None
        self._loop.stop()

    def start_thread(self, timeout: float = 30.0, freeze_gc: bool = False) -> Serving:
        """Bind and serve on a thread of its own (tests, benchmarks); returns when serving."""
        self.bind()

        def run() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            self.run(handle_signals=False, freeze_gc=freeze_gc)
            IOLoop.current().close(all_fds=True)

        self._thread = threading.Thread(target=run, name="dashboard-server", daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout):
            raise TimeoutError("the dashboard server did not start")
        return self

    def join(self, timeout: float = 15.0) -> None:
        """:meth:`stop`, then wait for the thread of :meth:`start_thread`."""
        self.stop()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)

    def close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()


def serve_forever(
    server: DashboardServer,
    options: ServeOptions,
    announce: Callable[[str, int], None] = lambda url, port: None,
) -> int:
    """Bind, announce, fork if asked, serve until SIGINT/SIGTERM. Returns the exit code."""
    serving = Serving(server, options)
    url = serving.bind()
    announce(url, serving.port)
    if options.num_procs != 1:
        parent = os.getpid()
        if not _supervise(options.num_procs):
            serving.close_sockets()
            return 0
        _die_with_parent(parent)
    serving.run(handle_signals=True)
    return 0


def _supervise(num_procs: int) -> bool:
    """Fork ``num_procs`` workers (tornado restarts crashed ones). True in a worker.

    In the parent, returns False once every worker has exited; SIGINT/SIGTERM
    to the parent are passed on to the workers.
    """
    import psutil
    from tornado.process import fork_processes

    def raise_stop(_signum: int, _frame: Any) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        fork_processes(num_procs, max_restarts=10)
    except _Stop:
        pass
    except SystemExit:  # every worker exited by itself
        return False
    else:
        for sig, handler in previous.items():  # a worker: its own handlers come later
            signal.signal(sig, handler)
        return True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    workers = psutil.Process().children()
    for worker in workers:
        with contextlib.suppress(psutil.Error):
            worker.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(workers, timeout=15)
    for worker in alive:
        with contextlib.suppress(psutil.Error):
            worker.kill()
    return False


def print_urls(server: DashboardServer, out: Any = sys.stdout) -> Callable[[str, int], None]:
    def announce(url: str, _port: int) -> None:
        print(f"Dashboards at {url}/", file=out)
        for d in server.dashboards:
            print(f"  {url}/{d.name}  ({d.title})", file=out)
        print(f"Metrics at {url}/metrics, health at {url}/healthz", file=out, flush=True)

    return announce
