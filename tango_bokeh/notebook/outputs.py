"""Output handles and their clean-up: what a cell's output is, and how it goes away.

Each output registers a small :class:`Output` handle in bokeh's ``destroy_server``
registry (:func:`~tango_bokeh.notebook.internals.register_output`). JupyterLab
and Notebook 7 (``jupyter_bokeh``) call ``bokeh.io.notebook.destroy_server(server_id)``
when the output is cleared or replaced by a re-run: the handle closes our session
(and so its Tango subscriptions) and retires its bokeh server sessions, while the
kernel's one server keeps serving every other cell.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from uuid import uuid4

from . import internals
from .config import settings

if TYPE_CHECKING:
    from bokeh.server.session import ServerSession

    from ..session import Session
    from .server import NotebookServer

log = logging.getLogger(__name__)

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
        self.lifetime = settings().token_lifetime  # seconds the token may be claimed
        self.stopping = False  # destroy_server is running: it unregisters the handle itself
        self.error: str | None = None  # why the session could not set up its document
        self._session_ids: dict[str, None] = {}  # bokeh server sessions made for it, in order

    def __repr__(self) -> str:
        shown = repr(self.session) if self.session is not None else f"{self.name} (closed)"
        return f"<Output {self.server_id} {shown} views={len(self.server_sessions())}>"

    @property
    def session_ids(self) -> list[str]:
        """Ids of the bokeh server sessions claimed for this output and not retired."""
        return list(self._session_ids)

    def add_session_id(self, session_id: str) -> None:
        self._session_ids[session_id] = None

    def take_session_id(self, session_id: str) -> bool:
        """Forget a server session of this output; whether it was one."""
        return self._session_ids.pop(session_id, False) is None

    def server_sessions(self) -> list[ServerSession]:
        """The live bokeh server sessions showing this output."""
        live = []
        for session_id in self.session_ids:
            session = self.server.server_session(session_id)  # None until it exists
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


def registered_outputs(server: NotebookServer) -> list[Output]:
    """The handles of ``server`` that bokeh's registry still holds."""
    try:
        handles = internals.registered_outputs()
    except Exception:
        return []
    return [h for h in handles if isinstance(h, Output) and h.server is server]


def register_output(output: Output) -> None:
    internals.register_output(output.server_id, output)


def unregister_output(server_id: str) -> None:
    try:
        internals.unregister_output(server_id)
    except Exception:
        log.debug("unregistering output %s", server_id, exc_info=True)
