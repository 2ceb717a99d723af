"""Sessions in notebook cells: one kernel-wide bokeh server, one session document per output.

This is the study's private ``BokehServer`` singleton, made complete:

* :class:`NotebookServer` is one bokeh server per kernel, started lazily on the
  kernel's own loop and bound to loopback. It serves one application whose
  documents are :class:`~tango_bokeh.session.Session` objects.
* :func:`show_session` (what :meth:`Session.open` calls) publishes a cell output
  the way :func:`bokeh.io.notebook.show_app` does (``application/vnd.bokehjs_exec.v0+json``
  with ``{"server_id": ...}`` metadata). The output's page asks the server for a
  document bound to *that* session with a single-use, expiring token; an unknown,
  used or expired token gets a notice instead of a session.
* Each output registers a small :class:`Output` handle in bokeh's
  ``curstate().uuid_to_server``. JupyterLab and Notebook 7 (``jupyter_bokeh``)
  call ``bokeh.io.notebook.destroy_server(server_id)`` when the output is cleared,
  replaced by a re-run or closed with its notebook: the handle closes our session
  (and so its Tango subscriptions) and retires its bokeh server sessions, while
  the one server keeps serving every other cell.
* Re-running a cell replaces its sessions: the same session name replaces the
  older session (the registry does that), and sessions shown by an earlier run
  of the same JupyterLab cell (``cellId``) are closed when the cell runs again.

Nothing blocks the kernel: opening a session subscribes through the hub, whose
acquisition runs on worker threads, and the periodic ticks run on the kernel's
loop between cells. BokehJS comes from the kernel's server (no CDN).
"""

from __future__ import annotations

import atexit
import html
import ipaddress
import json
import logging
import os
import re
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
from bokeh.embed import server_document
from bokeh.io.state import curstate
from bokeh.models import Div
from bokeh.resources import Resources
from bokeh.server.auth_provider import AuthProvider
from bokeh.server.server import Server
from bokeh.server.util import create_hosts_allowlist
from bokeh.util.token import get_session_id
from tornado.ioloop import IOLoop

from .cleanup import SessionLifecycle, coalesce_collections
from .session import Session

if TYPE_CHECKING:
    from bokeh.document import Document
    from bokeh.server.session import ServerSession

log = logging.getLogger(__name__)

#: The MIME type and metadata of bokeh's server-app outputs (see ``bokeh.io.notebook``).
EXEC_MIME_TYPE = "application/vnd.bokehjs_exec.v0+json"
HTML_MIME_TYPE = "text/html"
#: The URL argument carrying an output's token to the application.
TOKEN_ARGUMENT = "tango-bokeh-output"
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


class _ServerSessionRef:
    """What ``destroy_server`` gets from :meth:`Output.get_sessions`: one bokeh server session.

    Its :meth:`destroy` retires the server session without breaking the
    server's own bookkeeping (bokeh's ``ServerSession.destroy()`` called from
    outside would leave a half-destroyed session in the application context).
    """

    def __init__(self, output: Output, server_session: ServerSession) -> None:
        self._output = output
        self.server_session = server_session

    @property
    def id(self) -> str:
        return self.server_session.id

    def destroy(self) -> None:
        self._output.retire(self.server_session)


class Output:
    """One cell output: the session it shows and the bokeh server sessions showing it.

    Registered in ``bokeh.io.state.curstate().uuid_to_server[server_id]``, where
    ``destroy_server(server_id)`` (sent by the front end when the output goes
    away) finds it: ``get_sessions()`` are this output's server sessions and
    ``stop()`` closes our session, hence its Tango subscriptions. It stays
    registered after its session closed by other means (re-run, ``close_all``)
    so that the front end's clean-up still retires its server sessions; it then
    holds no reference to the session.
    """

    def __init__(self, server: NotebookServer, session: Session, token: str) -> None:
        self.server = server
        self.session: Session | None = session  # None once closed
        self.name = session.name
        self.server_id = uuid4().hex
        self.token = token
        self.created = time.time()
        self.lifetime = _settings.token_lifetime  # seconds the token may be claimed
        self._server_sessions: dict[str, Any] = {}  # bokeh session id -> BokehSessionContext

    def __repr__(self) -> str:
        shown = repr(self.session) if self.session is not None else f"{self.name} (closed)"
        return f"<Output {self.server_id} {shown} views={len(self.server_sessions())}>"

    def add_context(self, context: Any) -> None:
        self._server_sessions[context.id] = context

    def server_sessions(self) -> list[ServerSession]:
        live = []
        for key, context in list(self._server_sessions.items()):
            session = getattr(context, "_session", None)  # set once the session exists
            if session is not None and session.destroyed:
                del self._server_sessions[key]  # discarded by the server
            elif session is not None:
                live.append(session)
        return live

    # bokeh's destroy_server protocol
    def get_sessions(self) -> list[_ServerSessionRef]:
        return [_ServerSessionRef(self, s) for s in self.server_sessions()]

    def stop(self) -> None:
        session = self.session
        if session is not None:
            session.close()
        self.server.forget(self)  # destroy_server then removes this handle from bokeh's registry

    def retire(self, server_session: ServerSession) -> None:
        """Close the browser's connection to a server session and let the server discard it."""
        self.server.retire(server_session)


# -- the kernel's server -------------------------------------------------------------


class NotebookServer:
    """The kernel's one bokeh server (the study's "private singleton"); outputs are its sessions."""

    _instance: ClassVar[NotebookServer | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: NotebookSettings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.loop: IOLoop | None = None
        self._pending: dict[str, Output] = {}  # token -> output waiting for its browser
        self._outputs: dict[str, Output] = {}  # server_id -> output
        self._lock = threading.Lock()
        self._retired: set[str] = set()  # bokeh session ids of outputs that went away
        self.refused = 0  # documents asked for with a missing, used or expired token

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
        return self.server is not None

    @property
    def port(self) -> int:
        assert self.server is not None, "the notebook server is not running"
        return self.server.port

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the notebook server starts on the kernel's loop: call from a cell")
        self.loop = IOLoop.current()
        coalesce_collections()
        _, origins = resolve_url()
        options: dict[str, Any] = {
            "check_unused_sessions_milliseconds": 2_000,
            "unused_session_lifetime_milliseconds": 15_000,
            **self.settings.server_kwargs,
        }
        self.server = Server(
            {"/": Application(FunctionHandler(self._make_document), SessionLifecycle())},
            io_loop=self.loop,
            address=self.settings.address,
            port=self.settings.port,
            allow_websocket_origin=origins,
            auth_provider=_RetiredGate(self._retired),
            **options,
        )
        self.server.start()
        log.info("notebook server on %s:%s", self.settings.address, self.server.port)

    def stop(self) -> None:
        """Close every session shown through this server, then stop listening."""
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
        if server is not None:
            try:
                server.stop(wait=False)
                server.unlisten()
            except Exception:
                log.debug("stopping the notebook server", exc_info=True)
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
        assert self.loop is not None
        self.loop.call_later(output.lifetime, self._expire, output.token)
        script = output_script(url_of(self.port), output.token)
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
        """The output's session is closed: it is no longer live (its handle stays registered)."""
        with self._lock:
            self._outputs.pop(output.server_id, None)
            self._pending.pop(output.token, None)

    def _claim(self, token: str | None) -> Output | None:
        """The output a token was made for: once, before it expires, while its session is open."""
        if not token:
            return None
        with self._lock:
            output = self._pending.pop(token, None)
        if output is None:
            return None
        session = output.session
        if session is not None and time.time() - output.created > output.lifetime:
            session.close()
        return None if session is None or session.closed else output

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
        """Our session closed (re-run, close_all, output cleared): say so where it was shown."""
        self.forget(output)
        output.session = None
        if self.loop is None:
            return
        for server_session in output.server_sessions():
            self.loop.add_callback(self._show_closed, server_session, output.name)

    @staticmethod
    def _show_closed(server_session: ServerSession, name: str) -> None:
        if server_session.destroyed:
            return

        def notice() -> None:
            doc = server_session.document
            doc.clear()
            doc.add_root(_notice(f"Session {name!r} is closed. Re-run the cell to show it again."))

        try:
            server_session.document.add_next_tick_callback(notice)
        except Exception:  # the document went away meanwhile
            log.debug("notice for %s", name, exc_info=True)

    def retire(self, server_session: ServerSession) -> None:
        """Close the browser's connection to a server session and have the server discard it.

        The page's BokehJS tries to reconnect; the gate refuses retired sessions
        (quietly: our documents do not notify connection changes), so the
        session stays unused and is discarded at the next check.
        """
        if self.loop is None or server_session.destroyed:
            return
        session_id = server_session.id
        self._retired.add(session_id)
        self.loop.call_later(RETIRED_MEMORY, self._retired.discard, session_id)

        def close() -> None:
            for connection in list(getattr(server_session, "_subscribed_connections", ())):
                socket = getattr(connection, "_socket", None)  # bokeh's WSHandler
                if socket is not None:
                    socket.close(1000, "output closed")
            server_session.request_expiration()  # discarded at the next unused-session check

        self.loop.add_callback(close)

    # -- the application ---------------------------------------------------------

    def _make_document(self, doc: Document) -> None:
        """A browser asks for an output's document: bind it to that output's session."""
        context = doc.session_context
        request = getattr(context, "request", None)
        arguments = getattr(request, "arguments", None) or {}
        values = arguments.get(TOKEN_ARGUMENT) or [b""]
        raw = values[0]
        token = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        output = self._claim(token)
        # Connection changes are the kernel's business: no bokeh toasts over JupyterLab
        # (a cleared output's page-side document would report its retirement).
        doc.config.notify_connection_status = False
        if output is None:
            self.refused += 1
            doc.config.reconnect_session = False
            doc.add_root(
                _notice(
                    "This output is no longer live: its session was closed, or the link "
                    "was already used or has expired. Re-run the cell to show it again."
                )
            )
            return
        session = output.session
        assert session is not None  # claimed outputs have an open session
        output.add_context(context)
        try:
            session.attach(doc)
        except Exception as exc:
            log.exception("setting up %r", session)
            session.close()
            notice = _notice(f"{session.name}: {type(exc).__name__}: {exc}", error=True)

            def show_error() -> None:
                doc.clear()
                doc.add_root(notice)

            # The session's own clean-up clears the document on a next tick, and next
            # ticks added before the server session exists run in no set order: show
            # the error now, and again one tick after every clean-up has run.
            show_error()
            doc.add_next_tick_callback(lambda: doc.add_next_tick_callback(show_error))


#: Seconds a retired session id is refused (BokehJS gives up reconnecting after ~30 s).
RETIRED_MEMORY = 120.0


class _RetiredGate(AuthProvider):
    """bokeh auth hook: refuse websocket reconnections to retired output sessions, allow the rest.

    A cleared output's page-side BokehJS keeps trying to reconnect its closed
    websocket; reattaching would revive a session nobody sees.
    """

    def __init__(self, retired: set[str]) -> None:
        self._retired = retired
        super().__init__()

    @property
    def get_user(self) -> Callable[[Any], str | None]:
        return self._user

    @property
    def get_login_url(self) -> Callable[[Any], str]:
        return lambda _handler: "/retired"

    def _user(self, handler: Any) -> str | None:
        protocols = handler.request.headers.get("Sec-WebSocket-Protocol", "")
        parts = [p.strip() for p in protocols.split(",")]
        if len(parts) == 2 and parts[0] == "bokeh":
            try:
                if get_session_id(parts[1]) in self._retired:
                    return None
            except Exception:
                return "viewer"  # bokeh itself rejects malformed tokens
        return "viewer"


def output_script(url: str, token: str) -> str:
    """The ``<script>`` of an output: load BokehJS from our server once per page, then embed.

    bokeh's own autoload reloads BokehJS for every output (replacing ``window.Bokeh``
    under other bokeh outputs of the page) and builds the resource URLs from the
    server's host only, which breaks behind a path-prefixed proxy. Here the
    resources come from ``url`` (the server as the browser reaches it), once.
    """
    tag = server_document(url, resources=None, arguments={TOKEN_ARGUMENT: token})
    match = re.fullmatch(r'\s*<script id="([^"]+)">(.*)</script>\s*', tag, re.DOTALL)
    if match is None:  # a bokeh whose tag we do not know: let it load everything itself
        return server_document(url, arguments={TOKEN_ARGUMENT: token})
    element_id, embed = match.groups()
    root = url if url.endswith("/") else url + "/"
    urls = [f"{u}?v={bokeh_version}" for u in Resources(mode="server", root_url=root).js_files]
    loader = _LOADER.replace("$VERSION", json.dumps(bokeh_version)).replace(
        "$URLS", json.dumps(urls)
    )
    return f'<script id="{element_id}">{loader.replace("$EMBED", embed.strip())}</script>'


_LOADER = """
(function () {
  const version = $VERSION, urls = $URLS, root = window;
  function embed() {
    $EMBED
  }
  const key = "_tango_bokeh_loading_" + version;
  const ready = root.Bokeh !== undefined && root.Bokeh.version === version
    && root.Bokeh.Widgets !== undefined && root.Bokeh.Tables !== undefined;
  if (ready && root[key] === undefined) { embed(); return; }
  if (root[key] === undefined) {
    root[key] = urls.reduce((chain, url) => chain.then(() => new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.onload = resolve;
      script.onerror = () => reject(new Error("tango_bokeh: cannot load " + url));
      document.head.appendChild(script);
    })), Promise.resolve());
    root[key].catch(() => { delete root[key]; });
  }
  root[key].then(embed, (error) => console.error(error));
})();
"""


def _notice(text: str, *, error: bool = False) -> Any:
    colour = "#b00020" if error else "#555"
    return Div(
        text=f'<div style="color:{colour};font-family:sans-serif">{html.escape(text)}</div>',
        name="tango-bokeh-notice",
    )


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
