"""Every private bokeh and tornado API the dashboard server uses, in one place.

bokeh offers no public way to do these things; each entry says why it is needed
and which version it was checked against (bokeh 3.9.2, tornado 6.6.1,
``constraints.txt``). ``tests/test_internals.py`` checks each against the
installed versions and names the internal that changed. The Document lifecycle
internals the dashboard shares with the notebook are in :mod:`tango_bokeh.internals`.

Hooks of bokeh's ``BokehTornado`` that :class:`~tango_bokeh.dashboard.guard.GuardedTornado`
overrides (public methods, undocumented as extension points; the test checks their
signatures): ``new_connection(protocol, socket, application_context, session)``,
tornado's ``find_handler(request, **kwargs)`` and ``log_request(handler)``.
"""

from __future__ import annotations

from typing import Any

# Why: the guard tells bokeh's page requests (``/<app>``, ``autoload.js``) from the rest to
# apply its per-page rules, and types the websocket ``new_connection`` receives. bokeh
# exposes its handler classes only from these modules (``bokeh.server.views``, not in the
# reference documentation). bokeh 3.9.2: ``DocHandler`` and ``AutoloadJsHandler`` derive
# from ``SessionHandler``.
from bokeh.server.views.autoload_js_handler import AutoloadJsHandler
from bokeh.server.views.session_handler import SessionHandler
from bokeh.server.views.ws import WSHandler

#: The bokeh version every entry here was checked against.
CHECKED_BOKEH = "3.9.2"

__all__ = ["AutoloadJsHandler", "SessionHandler", "WSHandler", "handler_class"]


def handler_class(delegate: Any) -> type | None:
    """The ``RequestHandler`` class a delegate from ``Application.find_handler`` will run.

    Why: the guard decides before bokeh runs anything (a page costs a session).
    tornado 6.6.1: ``Application.find_handler`` returns a ``_HandlerDelegate`` (private
    class) whose ``handler_class`` attribute is the handler to run; ``None`` for others.
    """
    found = getattr(delegate, "handler_class", None)
    return found if isinstance(found, type) else None
