"""Every private bokeh, tornado and Jupyter API the notebook front end uses, one function each.

bokeh offers no public way to do these things; each function says why we need
it and which version it was checked against. Checked against bokeh 3.9.2,
tornado 6.6.1 and ipykernel 7.4 (``constraints.txt``). ``tests/test_internals.py``
checks each one against the installed versions and names the internal that
changed, so that upgrading bokeh fails there first, not in a browser test.

The page script's use of BokehJS internals is listed in :data:`BOKEHJS_INTERNALS`
(checked against BokehJS's own type declarations, shipped with bokeh).

Nothing else in :mod:`tango_bokeh.notebook` reaches into bokeh, tornado or
Jupyter behind their public API: add a function here, with its test, instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from bokeh.io.state import curstate
from bokeh.server.util import create_hosts_allowlist
from bokeh.server.views.ws import WSHandler

if TYPE_CHECKING:
    from bokeh.document import Document
    from bokeh.document.events import DocumentChangedEvent
    from bokeh.server.server import Server
    from bokeh.server.session import ServerSession
    from bokeh.server.tornado import BokehTornado

#: The bokeh version every function here was checked against.
CHECKED_BOKEH = "3.9.2"


# -- the kernel's bokeh server -------------------------------------------------------


def tornado_app(server: Server) -> BokehTornado:
    """The ``BokehTornado`` application of a started ``bokeh.server.server.Server``.

    Why: ``Server`` builds its ``BokehTornado`` itself and exposes it only as
    ``Server._tornado``; we need it for the websocket route, the live origin set
    and to make server sessions. bokeh 3.9.2: ``BaseServer.__init__`` sets ``self._tornado``.
    """
    return server._tornado


def serve_websockets_with(app: BokehTornado, handler: type[WSHandler], **kwargs: Any) -> int:
    """Serve the applications' websocket route (``/ws``) with ``handler``, a ``WSHandler``
    subclass given ``kwargs`` on top of bokeh's own; returns how many routes were changed.

    Why: bokeh has no hook for the websocket handler class (it builds its routes from
    ``bokeh.server.urls.per_app_patterns`` in ``BokehTornado.__init__``); the
    notebook refuses connections of outputs that are not live with a close code its
    page understands. bokeh 3.9.2 / tornado 6.6.1: routes are ``tornado.routing.Rule``
    objects in ``Application.wildcard_router.rules`` whose ``target`` is the handler class.
    """
    changed = 0
    for rule in app.wildcard_router.rules:
        if rule.target is WSHandler:
            rule.target = handler
            rule.target_kwargs = {**rule.target_kwargs, **kwargs}
            changed += 1
    return changed


def websocket_token(handler: WSHandler) -> str | None:
    """The session token a websocket presented (``None`` before it sent one).

    Why: ``WSHandler.open`` checks the token itself and has no hook to refuse a
    connection quietly; the notebook's gate looks at it first. bokeh 3.9.2:
    ``WSHandler.select_subprotocol`` stores it in ``self._token``.
    """
    return handler._token


def allow_websocket_origins(app: BokehTornado, origins: Iterable[str], port: int | None) -> None:
    """Let pages at ``origins`` (``host[:port]``) open the websockets of a running server.

    Why: bokeh fixes the allowed origins when the server is made, but a notebook
    learns a new page origin (``configure``, ``notebook_url=``) after its server
    started. ``BokehTornado.websocket_origins`` is public; that it returns the
    *live* set ``WSHandler.check_origin`` reads is not promised. bokeh 3.9.2:
    it returns ``self._websocket_origins``, read on every connection.
    """
    app.websocket_origins.update(create_hosts_allowlist(list(origins), port))


async def create_server_session(
    app: BokehTornado, path: str, session_id: str, request: Any, token: str
) -> None:
    """Make the bokeh server session ``session_id`` of the application at ``path`` now.

    Why: the output's claim makes the session before the page connects, so that
    the page learns at once whether it is live (and why not). ``BokehTornado.applications``
    is public; ``ApplicationContext.create_session_if_needed(session_id, request, token)``
    is what bokeh's own page handlers call, undocumented. bokeh 3.9.2.
    """
    await app.applications[path].create_session_if_needed(session_id, request, token)


def close_connections(session: ServerSession, code: int, reason: str) -> None:
    """Close the websockets of a server session with a close code and reason.

    Why: bokeh closes connections only without a reason its page could show; the
    notebook's page reads the code (session closed, output removed, server stopped)
    and does not reconnect. bokeh 3.9.2: ``ServerSession._subscribed_connections``
    (set of ``ServerConnection``), ``ServerConnection._socket`` (the ``WSHandler``).
    """
    for connection in list(session._subscribed_connections):
        connection._socket.close(code, reason)


# -- Jupyter's destroy_server protocol -----------------------------------------------


def register_output(server_id: str, handle: Any) -> None:
    """Register an output's handle where ``bokeh.io.notebook.destroy_server(server_id)`` finds it.

    Why: JupyterLab and Notebook 7 (``jupyter_bokeh``) clean up a server-app output
    by running ``destroy_server(server_id)`` in the kernel, which looks the id up in
    ``curstate().uuid_to_server`` and calls ``handle.get_sessions()`` (each result's
    ``destroy()``), then ``handle.stop()``, then deletes the entry. A handle of our
    own there closes one cell's session while the kernel's one server keeps serving.
    bokeh 3.9.2: ``bokeh.io.notebook.destroy_server``, ``State.uuid_to_server``.
    """
    curstate().uuid_to_server[server_id] = handle


def unregister_output(server_id: str) -> None:
    """Remove an output's handle from bokeh's registry (if it is still there)."""
    curstate().uuid_to_server.pop(server_id, None)


def registered_outputs() -> list[Any]:
    """Every handle in bokeh's ``destroy_server`` registry (ours and bokeh's own servers)."""
    return list(curstate().uuid_to_server.values())


# -- Jupyter: which cell is running --------------------------------------------------


def current_execution() -> tuple[str | None, str | None]:
    """(JupyterLab cell id, execution request id) of the running cell, when known.

    Why: a re-run of a cell must replace what its previous run showed; only the
    execute request knows the cell. ipykernel 7: ``InteractiveShell.get_parent()``
    (set by ipykernel's ``set_parent``) returns the request; JupyterLab and
    Notebook 7 put ``cellId`` in its ``metadata``, ``msg_id`` is in its ``header``.
    """
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


def jupyter_parent_pid() -> str | None:
    """The process id of the Jupyter server that started this kernel, when known.

    Why: the notebook page's origin is that server's; the runtime directory lists
    every Jupyter server of the user. jupyter_client 8.10 (``launcher.launch_kernel``)
    sets ``JPY_PARENT_PID`` in the kernel's environment, an undocumented convention.
    """
    return os.environ.get("JPY_PARENT_PID") or None


# -- documents changed from other threads ----------------------------------------------


def intercept_change_events(
    doc: Document, route: Callable[[DocumentChangedEvent], None]
) -> Callable[[DocumentChangedEvent], None]:
    """Send every change event of ``doc`` to ``route``; returns bokeh's own dispatcher.

    Why: bokeh Documents are not thread-safe and cells change shown models from
    the kernel's thread; :class:`~tango_bokeh.notebook.server_thread.ForeignChanges`
    moves those events to the server's loop. bokeh has no hook between a change and
    its dispatch. bokeh 3.9.2: every change goes through
    ``doc.callbacks.trigger_on_change(event)`` (``DocumentCallbackManager``),
    looked up on the instance at each call.
    """
    callbacks = doc.callbacks
    dispatch = callbacks.trigger_on_change
    callbacks.trigger_on_change = route  # type: ignore[method-assign]
    return dispatch


# -- BokehJS, from the output's page script ----------------------------------------------

#: What the output's page script (``page.py``) uses of BokehJS besides ``Bokeh.require``'s
#: public modules: (module, declaration found in BokehJS's ``lib/<module>.d.ts``, why).
#: BokehJS 3.9.2. ``tests/test_internals.py`` looks each declaration up.
BOKEHJS_INTERNALS: tuple[tuple[str, str, str], ...] = (
    (
        "client/connection",
        "export declare class ClientConnection",
        "the page connects BokehJS's own client to the claimed session itself "
        "(autoload would keep every document for the page's lifetime)",
    ),
    (
        "client/connection",
        "protected _on_open(resolve: SessionResolver, reject: Rejecter): void;",
        "wrapped to hide the 'reconnecting' banner once the socket is open again",
    ),
    (
        "client/connection",
        "protected _on_close(event: CloseEvent, reject: Rejecter): void;",
        "wrapped to read our close codes (4000-4003) and stop reconnecting",
    ),
    (
        "client/connection",
        "protected _reconnection_attempts_left: number;",
        "whether BokehJS will try again (the public reconnection_attempts counts the "
        "other way, against a maximum it does not export)",
    ),
    (
        "client/connection",
        "closed_permanently: boolean;",
        "set to stop BokehJS reconnecting after our close codes",
    ),
    (
        "client/session",
        "_connection_closed(): void;",
        "releases the session of a connection closed before it was open",
    ),
    (
        "embed/standalone",
        "export declare function add_document_standalone(document: Document, "
        "element: EmbedTarget, roots?: (EmbedTarget | null)[], use_for_title?: boolean): "
        "Promise<ViewManager>;",
        "embeds the session's document in the output's element",
    ),
    (
        "document/document",
        "export declare const documents: Document[];",
        "the page removes a freed output's document from Bokeh.documents",
    ),
    (
        "models/plots/plot_canvas",
        "connect_signals(): void;",
        "PlotView.connect_signals adds a visualViewport listener nothing removes; "
        "the page records it to remove it in PlotView.remove",
    ),
    (
        "models/plots/plot_canvas",
        "remove(): void;",
        "PlotView.remove, where the page removes that listener",
    ),
)
