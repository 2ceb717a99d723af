"""The kernel's server: one bokeh server per kernel, on a loop thread of its own.

:class:`NotebookServer` is started lazily at the first output, bound to loopback,
and serves one application whose documents are the sessions of claimed outputs
(:mod:`.claims`). The server, its sessions' ticks and every browser event run on
a loop thread of their own (:mod:`.server_thread`); document changes made from
cells are dispatched there, with the document locked.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from bokeh.application import Application
from bokeh.application.handlers import FunctionHandler
from bokeh.server.server import Server
from bokeh.util.token import generate_jwt_token, generate_session_id, get_session_id
from tornado.ioloop import IOLoop

from ..cleanup import SessionLifecycle, coalesce_collections
from ..logs import lower_routine_warnings
from ..session import Session
from . import internals
from .claims import SESSION_TOKEN_SECONDS, Claim, ClaimHandler, OutputSocket
from .config import NotebookSettings, UrlFunction, settings
from .outputs import (
    CLOSED,
    REFUSED,
    STOPPED,
    TEXTS,
    Output,
    register_output,
    registered_outputs,
    unregister_output,
)
from .page import notice, output_script
from .server_thread import ForeignChanges, ServerThread
from .urls import resolve_url

if TYPE_CHECKING:
    from bokeh.document import Document
    from bokeh.server.session import ServerSession

log = logging.getLogger(__name__)

#: The MIME type and metadata of bokeh's server-app outputs (see ``bokeh.io.notebook``).
EXEC_MIME_TYPE = "application/vnd.bokehjs_exec.v0+json"
HTML_MIME_TYPE = "text/html"
#: The path of the one application (the only one made by :meth:`NotebookServer._make_server`).
APP_PATH = "/"


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
                server = cls._instance = cls(settings())
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
        lower_routine_warnings()
        options: dict[str, Any] = {
            "check_unused_sessions_milliseconds": 2_000,
            "unused_session_lifetime_milliseconds": 15_000,
            **self.settings.server_kwargs,
        }
        server = Server(
            {APP_PATH: Application(FunctionHandler(self._make_document), SessionLifecycle())},
            io_loop=loop,
            address=self.settings.address,
            port=self.settings.port,
            allow_websocket_origin=origins,
            sign_sessions=False,  # sessions are bound to outputs by the claim, not by signatures
            extra_patterns=[(r"/tango-bokeh/claim", ClaimHandler, {"server": self})],
            **options,
        )
        self._gate_websockets(server)
        server.start()
        return server

    def _gate_websockets(self, server: Server) -> None:
        """Serve the application's websocket with :class:`OutputSocket` (bokeh has no hook)."""
        internals.serve_websockets_with(
            internals.tornado_app(server), OutputSocket, gate=self._gate
        )

    def stop(self) -> None:
        """Close every session shown through this server, then stop listening and its thread.

        Thread contract: any thread (kernel shutdown runs it at exit).
        """
        self._stopping = True
        with self._lock:
            outputs = list(self._outputs.values())
            self._outputs.clear()
            self._pending.clear()
        for output in {*outputs, *registered_outputs(self)}:
            try:
                output.stop()
            except Exception:
                log.exception("closing %r", output)
            unregister_output(output.server_id)
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
        internals.allow_websocket_origins(
            internals.tornado_app(self.server), origins, self.server.port
        )

    @property
    def websocket_origins(self) -> set[str]:
        if self.server is None:
            return set()
        return set(internals.tornado_app(self.server).websocket_origins)

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
                unregister_output(older.server_id)
            self._pending[output.token] = output
            self._outputs[output.server_id] = output
        register_output(output)
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
        app = internals.tornado_app(self.server)
        await internals.create_server_session(app, APP_PATH, session_id, request, token)

    def server_session(self, session_id: str) -> ServerSession | None:
        """The bokeh server session of that id, if it exists (from any thread)."""
        server = self.server
        if server is None:
            return None
        try:
            return server.get_session(APP_PATH, session_id)
        except Exception:  # not made yet, or discarded already
            return None

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
            unregister_output(output.server_id)

    def retire(self, output: Output, session_id: str, code: int) -> None:
        """Close the pages' connections to one of the output's server sessions; the server
        then discards it (the gate refuses it from now on)."""
        with self._lock:
            self._claimed.pop(session_id, None)
        if not output.take_session_id(session_id):
            return
        server_session = self.server_session(session_id)
        if server_session is None:
            return

        def close() -> None:
            if server_session.destroyed:
                return
            reason = {CLOSED: "closed", STOPPED: "server stopped"}.get(code, "output removed")
            internals.close_connections(server_session, code, reason)
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
            doc.add_root(notice(TEXTS["refused"]))
            return
        output.add_session_id(context.id)
        try:
            session.attach(doc)
        except Exception as exc:
            log.exception("setting up %r", session)
            output.error = f"{session.name}: {type(exc).__name__}: {exc}"  # the claim says it
            doc.add_root(notice(output.error, error=True))
            session.close()


def _publish_display_data(data: dict[str, Any], metadata: dict[str, Any]) -> None:
    from IPython.display import publish_display_data

    publish_display_data(data, metadata)
