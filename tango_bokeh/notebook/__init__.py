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
browser event run on a loop thread of their own (:mod:`.server_thread`);
document changes made from cells are dispatched there, with the document
locked. Opening a session subscribes through the hub, whose acquisition runs on
worker threads. BokehJS comes from the kernel's server (no CDN).

The package, by job (``docs/architecture.md``):

* :mod:`.config` — settings (:func:`configure`, :func:`settings`);
* :mod:`.urls` — where the browser finds the server, which origins may connect;
* :mod:`.cells` — which cell runs; a re-run replaces what the cell showed;
* :mod:`.outputs` — output handles, close codes and their clean-up (``destroy_server``);
* :mod:`.claims` — tokens: the claim route and the websocket gate;
* :mod:`.page` — the output's page script and notices;
* :mod:`.server`, :mod:`.server_thread` — the kernel's server and its loop thread;
* :mod:`.display` — the public functions (:func:`show_session`, :func:`monitor`, …);
* :mod:`.internals` — every private bokeh/tornado/Jupyter API used, one function each.

The ``%tango_monitor`` magic is :mod:`tango_bokeh.magic`.
"""

from __future__ import annotations

import atexit

from .cells import cell_session_name
from .claims import SESSION_TOKEN_SECONDS, Claim, ClaimHandler, Gate, OutputSocket
from .config import NotebookSettings, UrlFunction, configure, settings
from .display import close_all, monitor, show_session, status, status_text, stop_server
from .outputs import CLOSED, GONE, REFUSED, STOPPED, TEXTS, Output
from .page import output_script
from .server import EXEC_MIME_TYPE, HTML_MIME_TYPE, NotebookServer
from .urls import resolve_url

__all__ = [
    "CLOSED",
    "EXEC_MIME_TYPE",
    "GONE",
    "HTML_MIME_TYPE",
    "REFUSED",
    "SESSION_TOKEN_SECONDS",
    "STOPPED",
    "TEXTS",
    "Claim",
    "ClaimHandler",
    "Gate",
    "NotebookServer",
    "NotebookSettings",
    "Output",
    "OutputSocket",
    "UrlFunction",
    "cell_session_name",
    "close_all",
    "configure",
    "monitor",
    "output_script",
    "resolve_url",
    "settings",
    "show_session",
    "status",
    "status_text",
    "stop_server",
]

atexit.register(stop_server)
