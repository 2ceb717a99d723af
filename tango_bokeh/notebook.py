"""Sessions in notebook cells: one kernel-wide bokeh server, one session document per output.

This is the study's private ``BokehServer`` singleton, made complete:

* :class:`NotebookServer` is one bokeh server per kernel, started lazily on a
  loop thread of its own and bound to loopback. It serves one application whose
  documents are :class:`~tango_bokeh.session.Session` objects.
* :func:`show_session` (what :meth:`Session.open` calls) publishes a cell output
  the way :func:`bokeh.io.notebook.show_app` does (``application/vnd.bokehjs_exec.v0+json``
  with ``{"server_id": ...}`` metadata). The output's page trades a single-use,
  expiring token for a bokeh session bound to *that* session (an unknown, used
  or expired token gets a notice instead), embeds it with BokehJS's client and
  frees it when the server closes it or the output leaves the page.
* Each output registers a small :class:`Output` handle in bokeh's
  ``curstate().uuid_to_server``. JupyterLab and Notebook 7 (``jupyter_bokeh``)
  call ``bokeh.io.notebook.destroy_server(server_id)`` when the output is cleared
  or replaced by a re-run: the handle closes our session (and so its Tango
  subscriptions) and retires its bokeh server sessions, while the one server
  keeps serving every other cell. When that call never comes (a notebook closed
  inside JupyterLab), the page's closed connection lets the server discard the
  session, which closes it.
* Re-running a cell replaces its sessions: the same session name replaces the
  older session (the registry does that), and sessions shown by an earlier run
  of the same JupyterLab cell (``cellId``) are closed when the cell runs again.

Panels stay live while cells compute: the server, its sessions' ticks and every
browser event run on a loop thread of their own (:mod:`tango_bokeh.server_thread`);
document changes made from cells are dispatched there, with the document
locked. Opening a session subscribes through the hub, whose acquisition runs on
worker threads. BokehJS comes from the kernel's server (no CDN).
"""

from __future__ import annotations

import atexit
import html
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin, urlparse
from uuid import uuid4

from bokeh import __version__ as bokeh_version
from bokeh.application import Application
from bokeh.application.handlers import FunctionHandler
from bokeh.io.state import curstate
from bokeh.models import Div
from bokeh.resources import Resources
from bokeh.server.server import Server
from bokeh.server.util import check_allowlist, create_hosts_allowlist
from bokeh.server.views.ws import WSHandler
from bokeh.util.token import generate_jwt_token, generate_session_id, get_session_id
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from .cleanup import SessionLifecycle, coalesce_collections
from .server_thread import ForeignChanges, ServerThread
from .session import Session

if TYPE_CHECKING:
    from bokeh.document import Document
    from bokeh.server.session import ServerSession

log = logging.getLogger(__name__)

#: The MIME type and metadata of bokeh's server-app outputs (see ``bokeh.io.notebook``).
EXEC_MIME_TYPE = "application/vnd.bokehjs_exec.v0+json"
HTML_MIME_TYPE = "text/html"
#: ``notebook_url`` callables follow bokeh's convention: ``f(port)`` is the URL of
#: the server on that port as the browser reaches it, ``f(None)`` the page's origin.
UrlFunction = Callable[[int | None], str]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1")


# -- settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookSettings:
    """How the kernel's server listens and how browsers reach it."""

    #: Interface the server binds to; loopback unless a proxy on another host needs more.
    address: str = "127.0.0.1"
    #: Port of the server; 0 picks a free one.
    port: int = 0
    #: How the browser reaches the server when it is not on this machine's loopback:
    #: a URL with ``{port}`` (``https://hub.example.org/user/me/proxy/{port}/``), the
    #: base URL of the Jupyter server behind ``jupyter-server-proxy``
    #: (``https://hub.example.org/user/me/``; ``proxy/{port}/`` is appended), or a
    #: bokeh-style ``notebook_url`` callable. ``TANGO_BOKEH_EXTERNAL_URL`` sets the same.
    external_url: str | UrlFunction | None = None
    #: Extra origins (``host[:port]``) allowed to open the websocket, besides the notebook's.
    allow_websocket_origin: tuple[str, ...] = ()
    #: Seconds an output's token stays valid; a session nobody displayed by then is closed.
    token_lifetime: float = 300.0
    #: Further keyword arguments for :class:`bokeh.server.server.Server`.
    server_kwargs: dict[str, Any] = field(default_factory=dict)


_settings = NotebookSettings()
_SETTING_NAMES = {f.name for f in fields(NotebookSettings)}


def configure(**changes: Any) -> NotebookSettings:
    """Change how the notebook server listens and is reached; returns the new settings.

    ``configure(external_url="https://hub.example.org/user/me/")`` for JupyterHub
    with ``jupyter-server-proxy``; ``configure(address="0.0.0.0", port=5006,
    allow_websocket_origin=["myhost:8888"])`` for a browser on another machine.
    Address, port and server options apply to a server started afterwards (see
    :func:`stop_server`); URLs and origins apply to the next output.
    """
    global _settings
    unknown = set(changes) - _SETTING_NAMES
    if unknown:
        raise TypeError(f"unknown notebook setting(s): {', '.join(sorted(unknown))}")
    if "allow_websocket_origin" in changes:
        origins = changes["allow_websocket_origin"]
        changes["allow_websocket_origin"] = (
            (origins,) if isinstance(origins, str) else tuple(origins or ())
        )
    if "token_lifetime" in changes and not float(changes["token_lifetime"]) > 0:
        raise ValueError("token_lifetime must be positive")
    _settings = replace(_settings, **changes)
    server = NotebookServer._instance
    if server is not None and server.running:
        server.allow_origins(_settings.allow_websocket_origin)
        if any(k in changes for k in ("address", "port", "server_kwargs")):
            log.warning(
                "the notebook server is running: address, port and server options "
                "apply after stop_server()"
            )
    return _settings


def settings() -> NotebookSettings:
    return _settings


# -- where the browser finds the server ---------------------------------------------


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]", "*")


def _external_url_function(external: str) -> UrlFunction:
    """The URL function of a proxied server: a ``{port}`` template or a Jupyter base URL."""

    def url(port: int | None) -> str:
        if port is None:
            return urlparse(external.replace("{port}", "0")).netloc
        if "{port}" in external:
            return external.format(port=port)
        base = external
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        if prefix and urlparse(base).path in ("", "/"):
            base = urljoin(base, prefix)
        return urljoin(base.rstrip("/") + "/", f"proxy/{port}/")

    return url


def _jupyter_bokeh_url(port: int | None) -> str:
    """bokeh's ``JUPYTER_BOKEH_EXTERNAL_URL`` convention (JupyterHub + jupyter-server-proxy)."""
    base = os.environ["JUPYTER_BOKEH_EXTERNAL_URL"]
    if port is None:
        return urlparse(base).netloc
    user = urljoin(base, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"))
    return urljoin(user, f"proxy/{port}")


def _notebook_url_function(notebook_url: str) -> UrlFunction:
    """bokeh's string ``notebook_url``: the page's ``host:port``; the server is on the same host."""
    netloc = urlparse(notebook_url).netloc if "//" in notebook_url else notebook_url
    host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 or netloc.startswith("[") else netloc
    scheme = "https" if notebook_url.startswith("https:") else "http"

    def url(port: int | None) -> str:
        return netloc if port is None else f"{scheme}://{host}:{port}/"

    return url


def _local_jupyter_servers() -> list[dict[str, Any]]:
    """The Jupyter server that started this kernel, else every one of this user's."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    try:
        servers = list(list_running_servers())
    except Exception:  # a broken runtime dir must not break plotting
        log.debug("listing Jupyter servers", exc_info=True)
        return []
    parent = os.environ.get("JPY_PARENT_PID")
    mine = [s for s in servers if parent and str(s.get("pid")) == parent]
    return mine or servers


def _local_url_function() -> tuple[UrlFunction, list[str]]:
    """URL function and page origins when browser, Jupyter and kernel share this machine."""
    servers = _local_jupyter_servers()
    origins: list[str] = []
    for server in servers:
        host, port = str(server.get("hostname") or "localhost"), server.get("port")
        names = _LOOPBACK_NAMES if _is_loopback(host) or _is_wildcard(host) else (host,)
        origins += [f"{name}:{port}" for name in names]
    if not origins:  # bokeh's default notebook URL
        origins = [f"{name}:8888" for name in _LOOPBACK_NAMES]
    jupyter_host = str(servers[0].get("hostname") or "localhost") if servers else "localhost"

    def url(port: int | None) -> str:
        if port is None:
            return origins[0]
        address = _settings.address
        if _is_loopback(address):
            host = address if ":" not in address else f"[{address.strip('[]')}]"
        elif _is_wildcard(address):
            host = jupyter_host if not _is_wildcard(jupyter_host) else "localhost"
        else:
            host = address
        return f"http://{host}:{port}/"

    return url, origins


def resolve_url(notebook_url: str | UrlFunction | None = None) -> tuple[UrlFunction, list[str]]:
    """How the browser reaches the server, and which page origins may open its websocket.

    In order: an explicit ``notebook_url`` (bokeh's convention), the configured
    ``external_url``, ``TANGO_BOKEH_EXTERNAL_URL``, ``JUPYTER_BOKEH_EXTERNAL_URL``
    (with ``JUPYTERHUB_SERVICE_PREFIX``), the user server's public URL that
    JupyterHub gives when it knows its own (``JUPYTERHUB_PUBLIC_URL``), then the
    local Jupyter server that started this kernel.
    """
    chosen: str | UrlFunction | None = notebook_url
    function: UrlFunction
    if chosen is None:
        chosen = _settings.external_url or os.environ.get("TANGO_BOKEH_EXTERNAL_URL") or None
        if isinstance(chosen, str):
            function = _external_url_function(chosen)
            return function, [function(None), *_settings.allow_websocket_origin]
    if chosen is None and os.environ.get("JUPYTER_BOKEH_EXTERNAL_URL"):
        chosen = _jupyter_bokeh_url
    if chosen is None and os.environ.get("JUPYTERHUB_PUBLIC_URL", "").startswith("http"):
        function = _external_url_function(os.environ["JUPYTERHUB_PUBLIC_URL"])
        return function, [function(None), *_settings.allow_websocket_origin]
    if chosen is None:
        function, origins = _local_url_function()
        return function, [*origins, *_settings.allow_websocket_origin]
    function = chosen if callable(chosen) else _notebook_url_function(chosen)
    origin = function(None)
    origins = [origin]
    host, _, port = origin.rpartition(":")
    if host and _is_loopback(host):
        origins += [f"{name}:{port}" for name in _LOOPBACK_NAMES]
    return function, [*origins, *_settings.allow_websocket_origin]


# -- which cell is running ----------------------------------------------------------


def _current_execution() -> tuple[str | None, str | None]:
    """(JupyterLab cell id, execution request id) of the running cell, when known."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None, None
    shell = get_ipython()
    get_parent = getattr(shell, "get_parent", None)
    if get_parent is None:
        return None, None
    try:
        parent = get_parent() or {}
    except Exception:
        return None, None
    cell_id = (parent.get("metadata") or {}).get("cellId")
    msg_id = (parent.get("header") or {}).get("msg_id")
    return (str(cell_id) if cell_id else None), (str(msg_id) if msg_id else None)


@dataclass
class _CellRun:
    """The sessions one execution of one cell has shown."""

    msg_id: str | None
    sessions: list[weakref.ref[Session]] = field(default_factory=list)
    names_given: int = 0


class _Cells:
    """Per-cell bookkeeping: a new run of a cell closes what its previous run showed."""

    def __init__(self) -> None:
        self._runs: dict[str, _CellRun] = {}
        self._lock = threading.Lock()

    def current(self, keep: Session | None = None) -> _CellRun | None:
        """The record of the running cell; starting a new run closes the previous run's sessions."""
        cell_id, msg_id = _current_execution()
        if cell_id is None:
            return None
        with self._lock:
            run = self._runs.get(cell_id)
            if run is not None and run.msg_id == msg_id:
                return run
            self._runs[cell_id] = new = _CellRun(msg_id)
        if run is not None:
            for ref in run.sessions:
                older = ref()
                if older is not None and older is not keep and not older.closed:
                    older.close()
        return new

    def session_name(self) -> str | None:
        """A registry name for a session about to be made by the running cell."""
        cell_id, _ = _current_execution()
        run = self.current()
        if cell_id is None or run is None:
            return None
        run.names_given += 1
        return f"cell:{cell_id}" if run.names_given == 1 else f"cell:{cell_id}:{run.names_given}"

    def shown(self, session: Session) -> None:
        run = self.current()
        if run is not None:
            run.sessions.append(weakref.ref(session))

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


_cells = _Cells()


def cell_session_name() -> str | None:
    """The name a session made in this cell should have so that re-running the cell replaces it.

    ``cell:<cellId>`` (``cell:<cellId>:2`` for a second session of the same run),
    or ``None`` (a uuid) when the front end sends no cell id.
    """
    return _cells.session_name()


# -- one output ----------------------------------------------------------------------

#: Websocket close codes the output's page understands (RFC 6455 leaves 4000-4999 to us).
CLOSED = 4000  # the session was closed (re-run, close(), close_all()): the page says so
GONE = 4001  # the output went away (cleared, replaced): the page frees it, says nothing
REFUSED = 4002  # not a live output's connection: the page says the output is not live
STOPPED = 4003  # the kernel's server stops (kernel shut down or restarted)

#: What an output's page says when it is not live any more (the page shows it in place).
TEXTS = {
    "closed": "Not live: this session was closed. Re-run the cell to show it again.",
    "refused": "This output is no longer live: its session was closed, or the link was "
    "already used or has expired. Re-run the cell to show it again.",
    "lost": "This output is no longer live: the connection to its kernel was lost "
    "(kernel restarted or stopped). Re-run the cell to show it again.",
    "stopped": "This output is no longer live: its kernel was shut down or restarted. "
    "Re-run the cell to show it again.",
    "reconnecting": "Not live: the connection to the kernel was lost; reconnecting…",
    "unreachable": "This output is not live: the kernel's bokeh server cannot be reached.",
}

#: Seconds a bokeh session token stays valid for (re)connecting. Reconnection is gated by
#: the output being live, not by this; bokeh's default (300 s) would stop a page from
#: ever reconnecting after five minutes.
SESSION_TOKEN_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Claim:
    """An output claimed by its page: the bokeh session made for it and its token."""

    output: Output
    session_id: str
    token: str


class _ServerSessionRef:
    """What ``destroy_server`` gets from :meth:`Output.get_sessions`: one bokeh server session.

    Its :meth:`destroy` retires the server session without breaking the
    server's own bookkeeping (bokeh's ``ServerSession.destroy()`` called from
    outside would leave a half-destroyed session in the application context).
    """

    def __init__(self, output: Output, session_id: str) -> None:
        self._output = output
        self.id = session_id

    def destroy(self) -> None:
        self._output.server.retire(self._output, self.id, GONE)


class Output:
    """One cell output: the session it shows and the bokeh server sessions showing it.

    Registered in ``bokeh.io.state.curstate().uuid_to_server[server_id]``, where
    ``destroy_server(server_id)`` (sent by the front end when the output goes
    away) finds it: ``get_sessions()`` are this output's server sessions and
    ``stop()`` closes our session, hence its Tango subscriptions. Once its
    session is closed by other means (re-run, ``close_all``, its page gone) the
    handle leaves bokeh's registry and holds no reference to the session.
    """

    def __init__(self, server: NotebookServer, session: Session, token: str) -> None:
        self.server = server
        self.session: Session | None = session  # None once closed
        self.name = session.name
        self.server_id = uuid4().hex
        self.token = token  # single use: the page trades it for a bokeh session
        self.created = time.time()
        self.lifetime = _settings.token_lifetime  # seconds the token may be claimed
        self.stopping = False  # destroy_server is running: it unregisters the handle itself
        self.error: str | None = None  # why the session could not set up its document
        self._contexts: dict[str, Any] = {}  # bokeh session id -> BokehSessionContext

    def __repr__(self) -> str:
        shown = repr(self.session) if self.session is not None else f"{self.name} (closed)"
        return f"<Output {self.server_id} {shown} views={len(self.server_sessions())}>"

    @property
    def session_ids(self) -> list[str]:
        """Ids of the bokeh server sessions claimed for this output and not retired."""
        return list(self._contexts)

    def add_context(self, context: Any) -> None:
        self._contexts[context.id] = context

    def take_context(self, session_id: str) -> Any:
        return self._contexts.pop(session_id, None)

    def server_sessions(self) -> list[ServerSession]:
        live = []
        for context in list(self._contexts.values()):
            session = getattr(context, "_session", None)  # set once the session exists
            if session is not None and not session.destroyed:
                live.append(session)
        return live

    # bokeh's destroy_server protocol
    def get_sessions(self) -> list[_ServerSessionRef]:
        return [_ServerSessionRef(self, sid) for sid in self.session_ids]

    def stop(self) -> None:
        self.stopping = True
        session = self.session
        if session is not None:
            session.close()
        self.server.forget(self)  # destroy_server then removes this handle from bokeh's registry


# -- the page side -------------------------------------------------------------------


class _OutputSocket(WSHandler):
    """bokeh's websocket handler, refusing quietly what is not a live output's connection.

    bokeh's own refusal path (an auth provider returning no user) makes tornado
    ``redirect`` a websocket, which raises: a traceback per reconnection attempt
    in the kernel's log and cells. Here a refused connection is closed with a
    code and reason the output's page understands, and logged at DEBUG only.
    """

    def __init__(self, tornado_app: Any, *args: Any, gate: Gate, **kwargs: Any) -> None:
        self._gate = gate
        super().__init__(tornado_app, *args, **kwargs)

    def open(self) -> None:  # type: ignore[override]
        refusal = self._gate(self._token)
        if refusal is not None:
            code, reason = refusal
            log.debug("refusing a websocket: %s", reason)
            self.close(code, reason)
            return
        super().open()


#: ``gate(token)`` is None to let a websocket through, else (close code, reason).
Gate = Callable[[str | None], tuple[int, str] | None]


class _ClaimHandler(RequestHandler):
    """``GET claim?output=TOKEN``: an output's page trades its single-use token for a session.

    The reply is ``{"token": <bokeh session token>}`` (the session exists by
    then, bound to the output's session) or ``{"refused": <text>}``. The bokeh
    session id lives in the page's memory only: a token read from a saved
    notebook claims nothing.
    """

    def initialize(self, server: NotebookServer) -> None:
        self._server = server

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    async def get(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None:
            if not check_allowlist(urlparse(origin).netloc.lower(), self._server.websocket_origins):
                log.debug("refusing a claim from origin %s", origin)
                self.set_status(403)
                self.finish({"refused": TEXTS["refused"]})
                return
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
        claim = self._server.claim(self.get_argument("output", ""))
        if claim is None:
            self.finish({"refused": TEXTS["refused"]})
            return
        await self._server.create_server_session(claim.session_id, self.request, claim.token)
        if claim.output.error is not None:  # its setup_document raised: say so in place
            self.finish({"error": claim.output.error})
            return
        self.finish({"token": claim.token})


def output_script(url: str, token: str, name: str) -> str:
    """The ``<script>`` of an output: load BokehJS from our server once per page, then embed.

    bokeh's autoload reloads BokehJS for every output (replacing ``window.Bokeh``
    under other bokeh outputs of the page), builds resource URLs from the host
    only (breaking path-prefixed proxies) and keeps every document it embedded
    for the page's lifetime. Here the page trades the output's token for a
    session, embeds it with BokehJS's own client, and frees it (connection,
    views, document) when the server closes it or the output leaves the page.
    """
    root = url if url.endswith("/") else url + "/"
    urls = [f"{u}?v={bokeh_version}" for u in Resources(mode="server", root_url=root).js_files]
    scheme, rest = root.split("://", 1)
    values = {
        "$VERSION": bokeh_version,
        "$URLS": urls,
        "$CLAIM": f"{root}tango-bokeh/claim?output={token}",
        "$WS": f"{'wss' if scheme == 'https' else 'ws'}://{rest}ws",
        "$TEXTS": TEXTS,
        "$CODES": {"closed": CLOSED, "gone": GONE, "refused": REFUSED, "stopped": STOPPED},
        "$NAME": name,
    }
    element_id = f"tango-bokeh-{uuid4().hex}"
    script = _PAGE.replace("$ID", json.dumps(element_id))
    for key, value in values.items():
        # JSON inside a <script>: "</" must not end the element
        script = script.replace(key, json.dumps(value).replace("</", "<\\/"))
    return f'<script id="{element_id}">{script}</script>'


_PAGE = """
(function () {
  const version = $VERSION, urls = $URLS, claim = $CLAIM, wsUrl = $WS, texts = $TEXTS;
  const codes = $CODES, name = $NAME, root = window;
  const script = document.currentScript || document.getElementById($ID);
  const key = "_tango_bokeh_loading_" + version;

  function notice(output, text, error) {
    const div = document.createElement("div");
    div.className = "tango-bokeh-notice";
    div.style.cssText = "font-family:sans-serif;padding:4px 0";
    div.style.color = error ? "#b00020" : "#555";
    div.textContent = text;
    output.body.replaceChildren(div);
  }

  function banner(output, text) {
    output.banner.textContent = text || "";
    output.banner.style.display = text ? "block" : "none";
  }

  // Free what BokehJS holds for this output: connection, views, document.
  function release(output) {
    const conn = output.conn;
    if (conn != null) {
      try {
        if (!conn.closed_permanently && conn.session != null) conn.close();
        else {
          conn.closed_permanently = true;
          if (conn.session != null) conn.session._connection_closed();
          if (conn.socket != null) conn.socket.close(1000, "output removed");
        }
      } catch (error) { console.debug("tango_bokeh: closing", error); }
    }
    if (output.views != null) {
      try { output.views.clear(); } catch (error) { console.debug("tango_bokeh: views", error); }
      output.views = null;
    }
    const doc = conn != null && conn.session != null ? conn.session.document : null;
    if (doc != null) {
      try { doc.clear({sync: false}); } catch (error) { console.debug("tango_bokeh: doc", error); }
      const docs = root.Bokeh.documents, i = docs.indexOf(doc);
      if (i >= 0) docs.splice(i, 1);
    }
  }

  function teardown(output, text, error) {
    if (!output.closed) {
      output.closed = true;
      clearInterval(output.timer);
      release(output);
      output.body.replaceChildren();
      banner(output, null);
    }
    if (text) notice(output, text, error);
  }

  // The output left the page (cleared, replaced, its notebook closed): free it. A cell
  // that JupyterLab's windowing detached while its notebook stays open is kept.
  function watch(output) {
    const el = output.el;
    const windowed = !el.isConnected && output.cell != null && output.cell.contains(el)
      && output.panel != null && output.panel.isConnected;
    if (el.isConnected || windowed) { output.goneSince = null; return; }
    const now = Date.now();
    if (output.goneSince == null) output.goneSince = now;
    else if (now - output.goneSince >= 2000) teardown(output, null);
  }

  function connect(output, token) {
    if (output.closed) return;
    const {ClientConnection} = root.Bokeh.require("client/connection");
    const {add_document_standalone} = root.Bokeh.require("embed/standalone");
    const conn = output.conn = new ClientConnection(wsUrl, token, null);
    const onOpen = conn._on_open.bind(conn), onClose = conn._on_close.bind(conn);
    conn._on_open = (resolve, reject) => { banner(output, null); onOpen(resolve, reject); };
    conn._on_close = (event, reject) => {
      const ours = event.code >= 4000 && event.code < 4100;
      if (ours) conn.closed_permanently = true;  // the server said why: no reconnection
      onClose(event, reject);
      if (output.closed) return;
      if (ours) {
        const text = event.code == codes.gone ? null : event.code == codes.closed ? texts.closed
          : event.code == codes.stopped ? texts.stopped : texts.refused;
        teardown(output, text);
        return;
      }
      const session = conn.session;
      const retrying = !conn.closed_permanently && session != null
        && conn._reconnection_attempts_left > 0 && session.document.config.reconnect_session;
      if (retrying) banner(output, texts.reconnecting);
      else teardown(output, texts.lost);
    };
    conn.connect()
      .then((session) => add_document_standalone(session.document, output.body, [], false))
      .then((views) => {
        output.views = views;
        if (output.closed) release(output);  // it went away while it was being built
      })
      .catch((error) => {
        if (!output.closed) teardown(output, texts.lost);
        console.debug("tango_bokeh: " + name, error);
      });
  }

  // BokehJS 3.9's PlotView adds a visualViewport "resize" listener that nothing removes,
  // so every plot a page ever showed stays in memory: remove it with its view.
  function patchPlots() {
    const viewport = root.visualViewport;
    let PlotView = null;
    try { PlotView = root.Bokeh.require("models/plots/plot_canvas").PlotView; } catch (e) {}
    if (viewport == null || PlotView == null || PlotView.prototype._tango_bokeh_patched) return;
    const proto = PlotView.prototype, connect = proto.connect_signals, remove = proto.remove;
    proto._tango_bokeh_patched = true;
    proto.connect_signals = function () {
      const added = this._tango_bokeh_viewport = this._tango_bokeh_viewport || [];
      const add = viewport.addEventListener;
      viewport.addEventListener = function (type, listener, options) {
        added.push([type, listener, options]);
        return add.call(viewport, type, listener, options);
      };
      try { return connect.call(this); } finally { delete viewport.addEventListener; }
    };
    proto.remove = function () {
      for (const [type, listener, options] of this._tango_bokeh_viewport || [])
        viewport.removeEventListener(type, listener, options);
      this._tango_bokeh_viewport = [];
      return remove.call(this);
    };
  }

  function start() {
    if (script == null || script.parentNode == null) return;
    patchPlots();
    const el = document.createElement("div");
    el.className = "tango-bokeh-output";
    const banner = document.createElement("div");
    banner.className = "tango-bokeh-banner";
    banner.style.cssText = "display:none;color:#555;background:#eceff3;font-family:sans-serif;"
      + "padding:2px 8px;margin-bottom:4px;border-radius:4px";
    const body = document.createElement("div");
    el.append(banner, body);
    script.parentNode.insertBefore(el, script);
    const output = {el, banner, body, cell: el.closest(".jp-Cell"),
      panel: el.closest(".jp-NotebookPanel"), conn: null, views: null, closed: false,
      goneSince: null, timer: null};
    output.timer = setInterval(() => watch(output), 1000);
    fetch(claim, {cache: "no-store"})
      .then((reply) => reply.json())
      .then((reply) => {
        if (reply.token) connect(output, reply.token);
        else if (reply.error) teardown(output, reply.error, true);
        else teardown(output, reply.refused || texts.refused);
      })
      .catch((error) => {
        teardown(output, texts.unreachable);
        console.debug("tango_bokeh: " + name, error);
      });
  }

  const ready = root.Bokeh !== undefined && root.Bokeh.version === version
    && root.Bokeh.Widgets !== undefined && root.Bokeh.Tables !== undefined;
  if (ready && root[key] === undefined) { start(); return; }
  if (root[key] === undefined) {
    root[key] = urls.reduce((chain, url) => chain.then(() => new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = url;
      tag.onload = resolve;
      tag.onerror = () => reject(new Error("tango_bokeh: cannot load " + url));
      document.head.appendChild(tag);
    })), Promise.resolve());
    root[key].catch(() => { delete root[key]; });
  }
  root[key].then(start, (error) => console.error(error));
})();
"""


def _notice(text: str, *, error: bool = False) -> Any:
    colour = "#b00020" if error else "#555"
    return Div(
        text=f'<div style="color:{colour};font-family:sans-serif">{html.escape(text)}</div>',
        name="tango-bokeh-notice",
    )


# -- the kernel's server -------------------------------------------------------------


class NotebookServer:
    """The kernel's one bokeh server (the study's "private singleton"); outputs are its sessions."""

    _instance: ClassVar[NotebookServer | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: NotebookSettings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.loop: IOLoop | None = None
        self._thread: ServerThread | None = None
        self._stopping = False  # stop() runs: pages are told the kernel's server stops
        self._pending: dict[str, Output] = {}  # output token -> output waiting for its page
        self._outputs: dict[str, Output] = {}  # server_id -> output with an open session
        self._claimed: dict[str, Output] = {}  # bokeh session id -> output it shows
        self._lock = threading.Lock()
        self.refused = 0  # claims with a missing, used or expired token
        self.refused_sockets = 0  # websockets that were not a live output's

    # -- singleton ---------------------------------------------------------------

    @classmethod
    def instance(cls) -> NotebookServer:
        """The running server, started on the current (kernel) loop if there is none."""
        with cls._instance_lock:
            server = cls._instance
            if server is None or not server.running:
                server = cls._instance = cls(_settings)
                server.start()
            return server

    @classmethod
    def current(cls) -> NotebookServer | None:
        """The running server, if any (never starts one)."""
        server = cls._instance
        return server if server is not None and server.running else None

    @property
    def running(self) -> bool:
        return self.server is not None and self._thread is not None and self._thread.running

    @property
    def port(self) -> int:
        assert self.server is not None, "the notebook server is not running"
        return self.server.port

    def start(self) -> None:
        """Start the server on a loop thread of its own: it serves while cells compute.

        Thread contract: any thread but the server's; returns once it listens.
        """
        _, origins = resolve_url()
        self._thread = ServerThread("tango-bokeh-notebook")
        self.server = self._thread.start(lambda loop: self._make_server(loop, origins))
        self.loop = self._thread.loop
        log.info("notebook server on %s:%s", self.settings.address, self.server.port)

    def _make_server(self, loop: IOLoop, origins: list[str]) -> Server:
        """The bokeh server, made and started on its own loop (thread contract: that loop)."""
        coalesce_collections()
        options: dict[str, Any] = {
            "check_unused_sessions_milliseconds": 2_000,
            "unused_session_lifetime_milliseconds": 15_000,
            **self.settings.server_kwargs,
        }
        server = Server(
            {"/": Application(FunctionHandler(self._make_document), SessionLifecycle())},
            io_loop=loop,
            address=self.settings.address,
            port=self.settings.port,
            allow_websocket_origin=origins,
            sign_sessions=False,  # sessions are bound to outputs by the claim, not by signatures
            extra_patterns=[(r"/tango-bokeh/claim", _ClaimHandler, {"server": self})],
            **options,
        )
        self._gate_websockets(server)
        server.start()
        return server

    def _gate_websockets(self, server: Server) -> None:
        """Serve the application's websocket with :class:`_OutputSocket` (bokeh has no hook)."""
        for rule in server._tornado.wildcard_router.rules:
            if rule.target is WSHandler:
                rule.target = _OutputSocket
                rule.target_kwargs = {**rule.target_kwargs, "gate": self._gate}

    def stop(self) -> None:
        """Close every session shown through this server, then stop listening and its thread.

        Thread contract: any thread (kernel shutdown runs it at exit).
        """
        self._stopping = True
        with self._lock:
            outputs = list(self._outputs.values())
            self._outputs.clear()
            self._pending.clear()
        for output in {*outputs, *_registered_outputs(self)}:
            try:
                output.stop()
            except Exception:
                log.exception("closing %r", output)
            _unregister_output(output.server_id)
        server, self.server = self.server, None
        thread = self._thread
        if server is not None and thread is not None:

            def teardown() -> None:
                server.stop(wait=False)
                server.unlisten()

            thread.stop(teardown)  # after the pages were told (queued before it)
        with NotebookServer._instance_lock:
            if NotebookServer._instance is self:
                NotebookServer._instance = None

    # -- origins -----------------------------------------------------------------

    def allow_origins(self, origins: Iterable[str]) -> None:
        """Let pages at these origins (``host[:port]``) open the websocket."""
        origins = [o for o in origins if o]
        if self.server is None or not origins:
            return
        allowed = self.server._tornado.websocket_origins  # the live set bokeh checks
        allowed.update(create_hosts_allowlist(origins, self.server.port))

    @property
    def websocket_origins(self) -> set[str]:
        return set(self.server._tornado.websocket_origins) if self.server is not None else set()

    # -- outputs -----------------------------------------------------------------

    def publish(self, session: Session, notebook_url: str | UrlFunction | None = None) -> Output:
        """Display ``session`` in the running cell; returns the output's handle at once."""
        url_of, origins = resolve_url(notebook_url)
        self.allow_origins(origins)
        output = Output(self, session, secrets.token_urlsafe(32))
        with self._lock:
            for older in [o for o in self._outputs.values() if o.session is session]:
                # shown again before any browser took the first output: that one is void
                self._outputs.pop(older.server_id, None)
                self._pending.pop(older.token, None)
                _unregister_output(older.server_id)
            self._pending[output.token] = output
            self._outputs[output.server_id] = output
        curstate().uuid_to_server[output.server_id] = output
        session.on_close(lambda: self._session_closed(output))
        self._on_loop(lambda: self._call_later(output.lifetime, self._expire, output.token))
        script = output_script(url_of(self.port), output.token, session.name)
        _publish_display_data(
            {
                HTML_MIME_TYPE: script,
                EXEC_MIME_TYPE: "",
                "text/plain": f"{session!r} (live bokeh output: JupyterLab or Notebook 7 "
                "with jupyter_bokeh)",
            },
            metadata={EXEC_MIME_TYPE: {"server_id": output.server_id}},
        )
        return output

    def outputs(self) -> list[Output]:
        with self._lock:
            return list(self._outputs.values())

    def pending(self) -> int:
        """Outputs whose browser has not asked for their document yet."""
        with self._lock:
            return len(self._pending)

    def forget(self, output: Output) -> None:
        """The output's session is closed: it is no longer live."""
        with self._lock:
            self._outputs.pop(output.server_id, None)
            self._pending.pop(output.token, None)

    def _on_loop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the server's loop (from any thread)."""
        if self.loop is not None:
            self.loop.add_callback(callback)

    def _call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        assert self.loop is not None
        self.loop.call_later(delay, callback, *args)

    def claim(self, token: str) -> Claim | None:
        """A bokeh session for an output's page: once per token, in time, while it is open."""
        with self._lock:
            output = self._pending.pop(token, None) if token else None
        session = output.session if output is not None else None
        if session is not None and time.time() - output.created > output.lifetime:
            session.close()
        if output is None or session is None or session.closed:
            self.refused += 1
            return None
        session_id = generate_session_id(signed=False)
        with self._lock:
            self._claimed[session_id] = output
        token = generate_jwt_token(session_id, signed=False, expiration=SESSION_TOKEN_SECONDS)
        return Claim(output, session_id, token)

    async def create_server_session(self, session_id: str, request: Any, token: str) -> None:
        """Make the bokeh server session of a claimed output (runs :meth:`_make_document`)."""
        assert self.server is not None
        context = self.server._tornado._applications["/"]
        await context.create_session_if_needed(session_id, request, token)

    def _gate(self, token: str | None) -> tuple[int, str] | None:
        """Let through the websockets of claimed outputs whose session is open."""
        try:
            session_id = get_session_id(token) if token else None
        except Exception:
            session_id = None
        with self._lock:
            output = self._claimed.get(session_id) if session_id else None
        if output is not None and output.session is not None and not output.session.closed:
            return None
        self.refused_sockets += 1
        return REFUSED, "not a live output"

    def _expire(self, token: str) -> None:
        """Nobody displayed the output in time: close its session, which nobody can reach."""
        with self._lock:
            output = self._pending.pop(token, None)
        if output is not None and output.session is not None:
            log.info(
                "closing %r: its output was not displayed within %s s",
                output.session,
                output.lifetime,
            )
            output.session.close()

    def _session_closed(self, output: Output) -> None:
        """Our session closed (re-run, close_all, page gone): tell its pages, drop the handle."""
        self.forget(output)
        output.session = None
        for session_id in output.session_ids:
            self.retire(output, session_id, STOPPED if self._stopping else CLOSED)
        with self._lock:  # claimed, but closed before its document was made
            for session_id in [k for k, o in self._claimed.items() if o is output]:
                del self._claimed[session_id]
        if not output.stopping:  # destroy_server unregisters it itself
            _unregister_output(output.server_id)

    def retire(self, output: Output, session_id: str, code: int) -> None:
        """Close the pages' connections to one of the output's server sessions; the server
        then discards it (the gate refuses it from now on)."""
        with self._lock:
            self._claimed.pop(session_id, None)
        context = output.take_context(session_id)
        server_session = getattr(context, "_session", None)
        if server_session is None:
            return

        def close() -> None:
            if server_session.destroyed:
                return
            reason = {CLOSED: "closed", STOPPED: "server stopped"}.get(code, "output removed")
            for connection in list(server_session._subscribed_connections):
                connection._socket.close(code, reason)
            server_session.request_expiration()  # discarded at the next unused-session check

        self._on_loop(close)

    # -- the application ---------------------------------------------------------

    def _make_document(self, doc: Document) -> None:
        """A claimed output's page asks for its document: bind it to that output's session."""
        context = doc.session_context
        ForeignChanges(doc, threading.current_thread())  # cells change models from their thread
        # Connection changes are the page's business: no bokeh toasts over JupyterLab.
        doc.config.notify_connection_status = False
        with self._lock:
            output = self._claimed.get(context.id)
        session = output.session if output is not None else None
        if output is None or session is None or session.closed:
            # bokeh's own page and autoload routes make sessions nobody claimed
            doc.config.reconnect_session = False
            doc.add_root(_notice(TEXTS["refused"]))
            return
        output.add_context(context)
        try:
            session.attach(doc)
        except Exception as exc:
            log.exception("setting up %r", session)
            output.error = f"{session.name}: {type(exc).__name__}: {exc}"  # the claim says it
            doc.add_root(_notice(output.error, error=True))
            session.close()


def _registered_outputs(server: NotebookServer) -> list[Output]:
    """The handles of ``server`` that bokeh's registry still holds."""
    try:
        handles = list(curstate().uuid_to_server.values())
    except Exception:
        return []
    return [h for h in handles if isinstance(h, Output) and h.server is server]


def _unregister_output(server_id: str) -> None:
    try:
        curstate().uuid_to_server.pop(server_id, None)
    except Exception:
        log.debug("unregistering output %s", server_id, exc_info=True)


def _publish_display_data(data: dict[str, Any], metadata: dict[str, Any]) -> None:
    from IPython.display import publish_display_data

    publish_display_data(data, metadata)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


# -- public functions ---------------------------------------------------------------


def show_session(session: Session, *, notebook_url: str | UrlFunction | None = None) -> Output:
    """Show ``session`` live in the running cell (what :meth:`Session.open` does).

    Returns at once. Sessions an earlier run of the same cell showed are closed;
    clearing the output closes this one. ``notebook_url`` follows bokeh's
    convention (see :func:`resolve_url`) and overrides the configured URL.
    """
    if session.closed:
        raise RuntimeError(f"session {session.name!r} is closed")
    if session.document is not None:
        raise RuntimeError(
            f"session {session.name!r} is already shown: a session has one document; "
            "make a new session to show it again"
        )
    try:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("open sessions from a notebook cell (the kernel's main thread)")
        if not _in_kernel():
            raise RuntimeError(
                "Session.open() shows a session in a Jupyter notebook cell; outside a kernel "
                "serve sessions with tango_bokeh.app (or `tango-bokeh serve`)"
            )
        _cells.current(keep=session)  # a new run of this cell closes its earlier sessions first
        output = NotebookServer.instance().publish(session, notebook_url)
    except Exception:
        session.close()  # nobody can reach it: leave no subscription behind
        raise
    _cells.shown(session)
    return output


def monitor(
    *items: Any,
    name: str | None = None,
    period: float = 1.0,
    notebook_url: str | UrlFunction | None = None,
    **options: Any,
) -> Session:
    """Show a live panel of Tango attributes (or views) in the cell; returns its session.

    ``monitor("sim/motor/1/Position", "sim/counter/1/Counts", period=0.5)``.
    Items are attribute names (any Tango name form) or view instances; other
    keyword arguments go to :class:`tango_bokeh.monitor.MonitorSession`
    (``title``, ``layout``, ``ncols``, ``hub``). Re-running the cell replaces the
    panel; ``name`` makes it replace the panel of that name wherever it is.
    """
    from .monitor import MonitorSession

    session = MonitorSession(
        *items, name=name or cell_session_name(), callback_period=period, **options
    )
    try:
        show_session(session, notebook_url=notebook_url)
    except Exception:
        session.close()
        raise
    return session


def status() -> None:
    """Print the open sessions, the hub's load and the notebook server's outputs."""
    print(status_text())


def status_text() -> str:
    lines = [Session.status()]
    server = NotebookServer.current()
    if server is None:
        lines.append("notebook server: not started")
    else:
        lines.append(
            f"notebook server: {server.settings.address}:{server.port}, "
            f"{len(server.outputs())} live output(s), {server.pending()} waiting for a browser"
        )
    return "\n".join(lines)


def close_all() -> None:
    """Close every session of this kernel (their outputs say so); the server keeps running."""
    Session.close_all()


def stop_server() -> None:
    """Close the sessions shown in cells and stop the kernel's server (also run at exit)."""
    server = NotebookServer._instance
    if server is not None:
        server.stop()
    _cells.clear()


atexit.register(stop_server)
