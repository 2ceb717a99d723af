"""The dashboard server's front door: which requests reach bokeh, and who may join a session.

bokeh serves documents to whoever names them. :class:`GuardedTornado` is
bokeh's own ``BokehTornado`` with these rules added, each closing a hole
that bokeh leaves open by default:

* **Server-chosen sessions only.** bokeh joins an existing session when a
  client names it (``?bokeh-session-id=``, the ``Bokeh-Session-Id`` header,
  ``?bokeh-token=``). Pages here never need that, so such requests are
  refused; session ids and tokens are signed with the server's secret
  (bokeh's ``sign_sessions``), so forged ones are refused by bokeh itself.
* **A session belongs to one login.** Each session records the login of
  the page request that made it (in its signed token, through bokeh's
  ``process_request`` hook); a websocket may attach to it only if its own
  cookie names the same live login (:meth:`new_connection`). A link or a
  copied token therefore never lends anyone else's rights.
* **No cookie inside a token.** bokeh copies cookies and headers into the
  token it embeds in pages (readable by scripts); the server passes
  ``include_cookies=[]`` and ``include_headers=[]`` so nothing is copied.
* **No cross-origin reads.** ``autoload.js`` answers any ``Origin`` with
  credentialed CORS headers; every ``Access-Control-*`` header is dropped
  (:class:`SecurityHeaders`), and ``autoload.js`` is refused to other sites.
* **Known hosts only.** A request whose ``Host`` is not one the server
  serves is refused (DNS rebinding would otherwise reach it from a page).
* **Bounded load.** Sessions per client address and in total, and new
  pages per address per second, are capped; connections per session too.
* **Quiet refusals.** bokeh and tornado log every refused websocket or junk
  frame at ERROR; :class:`RateLimitedLog` keeps a few per minute and counts
  the rest.

Client addresses come from ``X-Forwarded-For`` only when the peer is a
trusted proxy (``--trusted-proxy``); otherwise the peer address is used.
Thread contract: everything here runs on the server's loop.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bokeh.document import Document
from bokeh.protocol import Protocol
from bokeh.protocol.exceptions import ProtocolError
from bokeh.server.connection import ServerConnection
from bokeh.server.contexts import ApplicationContext
from bokeh.server.session import ServerSession
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import check_allowlist
from tornado.httputil import HTTPServerRequest
from tornado.log import access_log
from tornado.web import OutputTransform, RequestHandler

from .auth import USER_COOKIE, Access
from .internals import AutoloadJsHandler, SessionHandler, WSHandler, handler_class

log = logging.getLogger(__name__)

#: URL arguments and headers by which a bokeh client names the session it wants.
CLIENT_SESSION_ARGUMENTS = ("bokeh-session-id", "bokeh-token")
CLIENT_SESSION_HEADER = "Bokeh-Session-Id"


@dataclass(frozen=True)
class Limits:
    """Caps on what clients can make the server hold (documented in docs/security.md)."""

    max_sessions: int = 500
    max_sessions_per_address: int = 60
    #: New pages an address may open per second, and in one burst.
    pages_per_second: float = 0.5
    page_burst: int = 8
    max_connections_per_session: int = 2
    #: New pages the whole server builds per second, and in one burst: building a page runs
    #: on the loop every open page is served from (0.15-0.5 s of CPU for a dashboard), so
    #: whoever asks, from however many addresses, the viewers already there go first.
    server_pages_per_second: float = 2.0
    server_page_burst: int = 20


#: No caps (benchmarks that open hundreds of pages from one address on purpose).
UNLIMITED = Limits(10**9, 10**9, 1e9, 10**9, 10**9, 1e9, 10**9)


@dataclass
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; a page costs one."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), time.monotonic()

    def ready(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens >= 1.0

    def take(self) -> None:
        self.tokens -= 1.0


@dataclass
class GuardStats:
    """What the guard refused, by reason (exported on /metrics)."""

    refused: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


class Refusal(RequestHandler):
    """Answers any request with a status and one line saying why.

    ``retry`` (seconds): a busy server; a browser asking for a page gets a small page
    that says so and asks again by itself, so that opening many dashboards at once works.
    """

    def initialize(self, status: int, message: str, retry: int | None = None) -> None:
        self.status = status
        self.message = message
        self.retry = retry

    def prepare(self) -> None:
        self.set_status(self.status)
        self.set_header("Cache-Control", "no-store")
        if self.retry is not None:
            self.set_header("Retry-After", str(self.retry))
        if self.retry is not None and "text/html" in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            text = html.escape(self.message)
            self.finish(
                "<!DOCTYPE html><html><head><meta charset='utf-8'>"
                f"<meta http-equiv='refresh' content='{self.retry}'><title>Busy</title></head>"
                "<body style='font-family:system-ui,sans-serif;padding:24px'>"
                f"<p>{text}</p><p>This page asks again by itself in {self.retry} s.</p>"
                "</body></html>"
            )
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.message + "\n")


class SecurityHeaders(OutputTransform):
    """No CORS headers, ever; no framing by other sites; no sniffing; no referrer leaks."""

    def transform_first_chunk(
        self, status_code: int, headers: Any, chunk: bytes, finishing: bool
    ) -> tuple[int, Any, bytes]:
        for name in list(headers):
            if name.lower().startswith("access-control-"):
                del headers[name]
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        headers.setdefault("Content-Security-Policy", "frame-ancestors 'self'")
        return status_code, headers, chunk


def trusted_networks(proxies: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(p, strict=False) for p in proxies]


class GuardedTornado(BokehTornado):
    """``BokehTornado`` with the rules of this module; see its docstring."""

    def __init__(
        self,
        applications: Any,
        *,
        access: Access,
        hosts: Sequence[str],
        owner_of: Callable[[Document], str | None],
        sessions_of: Callable[[str | None], int],
        limits: Limits | None = None,
        trusted_proxies: Sequence[str] = (),
        stats: GuardStats | None = None,
        **kwargs: Any,
    ) -> None:
        self.access = access
        self.hosts = list(hosts)
        self.limits = limits or Limits()
        self.guard_stats = stats or GuardStats()
        self._owner_of = owner_of
        self._sessions_of = sessions_of
        self._trusted = trusted_networks(trusted_proxies)
        self._buckets: dict[str, TokenBucket] = {}
        self._server_bucket = TokenBucket(
            self.limits.server_pages_per_second, self.limits.server_page_burst
        )
        super().__init__(applications, **kwargs)
        self.add_transform(SecurityHeaders)

    # -- HTTP ---------------------------------------------------------------------------------

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> Any:
        self._identify_client(request)
        if not check_allowlist(request.host.lower(), self.hosts):
            served = f"this server does not serve {request.host!r}"
            return self._refuse(request, "host", 421, served)
        delegate = super().find_handler(request, **kwargs)
        handler = handler_class(delegate)
        if handler is not None and issubclass(handler, SessionHandler):
            refusal = self._check_page(request, handler)
            if refusal is not None:
                return refusal
        return delegate

    def _identify_client(self, request: HTTPServerRequest) -> None:
        """``request.client_address`` (and the scheme) as seen through a trusted proxy."""
        peer = request.remote_ip
        address = peer
        if self._trusted and _in(peer, self._trusted):
            forwarded = request.headers.get("X-Forwarded-For", "")
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            while hops and _in(hops[-1], self._trusted):
                hops.pop()
            if hops:
                address = hops[-1]
            proto = request.headers.get("X-Forwarded-Proto", "").lower()
            if proto in ("http", "https"):
                request.protocol = proto
        request.client_address = address  # type: ignore[attr-defined]

    def _check_page(self, request: HTTPServerRequest, handler: type) -> Any:
        arguments = request.query_arguments
        if any(a in arguments for a in CLIENT_SESSION_ARGUMENTS) or (
            CLIENT_SESSION_HEADER in request.headers
        ):
            return self._refuse(
                request, "client session id", 400,
                "this server chooses session ids itself: open the dashboard's plain URL",
            )  # fmt: skip
        if issubclass(handler, AutoloadJsHandler) and request.headers.get("Sec-Fetch-Site") in (
            "same-site",
            "cross-site",
        ):
            return self._refuse(request, "embedding", 403, "embedding from other sites is off")
        address = request.client_address  # type: ignore[attr-defined]
        limits = self.limits
        if self._sessions_of(None) >= limits.max_sessions:
            return self._refuse(
                request, "server full", 503, "too many open pages on this server: try later",
                retry=10,
            )  # fmt: skip
        if self._sessions_of(address) >= limits.max_sessions_per_address:
            return self._refuse(
                request, "address full", 429,
                f"too many open pages from {address}: close some first", retry=10,
            )  # fmt: skip
        now = time.monotonic()
        mine = self._bucket(address, now)
        if not mine.ready(now):
            return self._refuse(
                request, "page rate", 429, "pages opened too fast from one address", retry=5
            )
        if not self._server_bucket.ready(now):
            return self._refuse(
                request, "server busy", 503, "the server is busy opening other pages", retry=3
            )
        mine.take()
        self._server_bucket.take()
        return None

    def _bucket(self, address: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) > 10_000:  # forget addresses whose allowance is full again
                self._buckets = {a: b for a, b in self._buckets.items() if not _full(b, now)}
            limits = self.limits
            bucket = self._buckets[address] = TokenBucket(
                limits.pages_per_second, limits.page_burst
            )
        return bucket

    def _refuse(
        self,
        request: HTTPServerRequest,
        reason: str,
        status: int,
        message: str,
        retry: int | None = None,
    ) -> Any:
        self.guard_stats.count(reason)
        log.warning(
            "refused %s %s from %s: %s",
            request.method,
            request.path[:200],
            getattr(request, "client_address", request.remote_ip),
            message,
        )
        return self.get_handler_delegate(
            request, Refusal, {"status": status, "message": f"Refused: {message}.", "retry": retry}
        )

    def log_request(self, handler: RequestHandler) -> None:
        """tornado's access log, except that a failing probe is news, not a server error."""
        if handler.request.path == "/healthz" and handler.get_status() == 503:
            access_log.warning(
                "%d %s %s (%s) (%.0f ms): the health check fails",
                handler.get_status(),
                handler.request.method,
                handler.request.uri,
                handler.request.remote_ip,
                1000.0 * handler.request.request_time(),
            )
            return
        super().log_request(handler)

    # -- websockets ---------------------------------------------------------------------------

    def new_connection(
        self,
        protocol: Protocol,
        socket: WSHandler,
        application_context: ApplicationContext,
        session: ServerSession,
    ) -> ServerConnection:
        """Attach a websocket to a session only with the session's own (live) login."""
        viewer = self.access.viewer_from_cookie(socket.get_cookie(USER_COOKIE))
        owner = self.access.viewer_from_login(self._owner_of(session.document))
        address = getattr(socket.request, "client_address", socket.request.remote_ip)
        if viewer.login != owner.login:
            self.guard_stats.count("other login")
            log.warning(
                "refused a websocket from %s to session %s: the page was opened by %s, the "
                "connection is %s",
                address,
                session.id[:12],
                "a logged-in user" if owner.authenticated else "an anonymous viewer",
                "logged in" if viewer.authenticated else "anonymous",
            )
            raise ProtocolError("this session belongs to another login: reload the page")
        if session.connection_count >= self.limits.max_connections_per_session:
            self.guard_stats.count("connections per session")
            raise ProtocolError("too many connections to one session")
        return super().new_connection(protocol, socket, application_context, session)


def _full(bucket: TokenBucket, now: float) -> bool:
    return bucket.tokens + (now - bucket.stamp) * bucket.rate >= bucket.burst


def _in(address: str, networks: Sequence[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


# -- logs ------------------------------------------------------------------------------------


class RateLimitedLog(logging.Filter):
    """At most ``burst`` records per message template per ``period``; the rest are counted.

    The first record let through after a quiet spell says how many were dropped.
    """

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self._seen: dict[tuple[str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        start, shown, dropped = self._seen.get(key, (now, 0, 0))
        if now - start > self.period:
            if dropped:
                record.msg = f"{record.msg} ({dropped} similar message(s) suppressed)"
            start, shown, dropped = now, 0, 0
        if shown >= self.burst:
            self._seen[key] = (start, shown, dropped + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (start, shown + 1, dropped)
        return True


#: Loggers that write a line per refused connection or junk frame.
NOISY_LOGGERS = (
    "bokeh.server.views.ws",
    "bokeh.server.views.session_handler",
    "bokeh.server.protocol_handler",
    "bokeh.server.session",
    "bokeh.server.connection",
    "bokeh.server.tornado",
    "tornado.application",
    "tornado.general",
    "tornado.access",
    __name__,
)


def quiet_refusals(burst: int = 5, period: float = 60.0) -> RateLimitedLog:
    """Install one :class:`RateLimitedLog` on every noisy logger (idempotent)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        existing = [f for f in logger.filters if isinstance(f, RateLimitedLog)]
        if existing:
            return existing[0]
    limiter = RateLimitedLog(burst, period)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    return limiter
