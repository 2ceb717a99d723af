"""The notebook front end's settings: how the kernel's server listens and how browsers reach it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

log = logging.getLogger(__name__)

#: ``notebook_url`` callables follow bokeh's convention: ``f(port)`` is the URL of
#: the server on that port as the browser reaches it, ``f(None)`` the page's origin.
UrlFunction = Callable[[int | None], str]


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
    from .server import NotebookServer  # a running server takes new origins at once

    server = NotebookServer.current()
    if server is not None:
        server.allow_origins(_settings.allow_websocket_origin)
        if any(k in changes for k in ("address", "port", "server_kwargs")):
            log.warning(
                "the notebook server is running: address, port and server options "
                "apply after stop_server()"
            )
    return _settings


def settings() -> NotebookSettings:
    return _settings
