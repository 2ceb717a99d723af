"""Open a served dashboard from Python the way a browser does: the page first, then its websocket.

The dashboard server names every session itself and signs its token
(see :mod:`.guard`), so bokeh's ``pull_session(url=...)``, which makes up a
session id on the client, is refused. :func:`open_page` loads the page,
takes the token the server put in it and connects with that, as BokehJS
does. Used by tests, benchmarks and scripts that watch a dashboard.
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bokeh.client import ClientSession
from bokeh.client.util import websocket_url_for_server_url
from bokeh.util.token import get_session_id

from . import pace  # noqa: F401 - defines the pages' PageClock model for the client's document

_TOKEN = re.compile(r'"token":\s*"([A-Za-z0-9_.\-]+)"')


def page_token(url: str, timeout: float = 20.0, headers: dict[str, str] | None = None) -> str:
    """The session token the server embedded in the page at ``url``."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    match = _TOKEN.search(text)
    if match is None:
        raise ValueError(f"{url}: the page carries no bokeh session token")
    return match.group(1)


class PageSession(ClientSession):
    """A bokeh client session that connects with a token the server issued."""

    def __init__(self, token: str, websocket_url: str, **kwargs: Any) -> None:
        self._page_token = token
        super().__init__(get_session_id(token), websocket_url, **kwargs)

    @property
    def token(self) -> str:
        return self._page_token


def open_page(url: str, timeout: float = 20.0) -> PageSession:
    """Load ``url`` (a dashboard page) and pull its session's document, like a browser."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    session = PageSession(page_token(url, timeout), websocket_url_for_server_url(base))
    session.pull()
    return session
