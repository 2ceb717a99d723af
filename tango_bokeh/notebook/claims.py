"""Tokens: an output's page trades its single-use token for a bokeh session, and only the
websockets of claimed, live outputs get through.

The output's script asks ``tango-bokeh/claim?output=TOKEN`` (:class:`ClaimHandler`);
the server makes the bokeh session then, bound to the output's session, and
answers with that session's token. Websockets are served by :class:`OutputSocket`,
which closes what is not a live output's connection with a code the page understands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from bokeh.server.util import check_allowlist
from bokeh.server.views.ws import WSHandler
from tornado.web import RequestHandler

from .internals import websocket_token
from .outputs import TEXTS, Output

if TYPE_CHECKING:
    from .server import NotebookServer

log = logging.getLogger(__name__)

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


class OutputSocket(WSHandler):
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
        refusal = self._gate(websocket_token(self))
        if refusal is not None:
            code, reason = refusal
            log.debug("refusing a websocket: %s", reason)
            self.close(code, reason)
            return
        super().open()


#: ``gate(token)`` is None to let a websocket through, else (close code, reason).
Gate = Callable[[str | None], tuple[int, str] | None]


class ClaimHandler(RequestHandler):
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
