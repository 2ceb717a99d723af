"""Where the browser finds the kernel's server, and which page origins may open its websocket.

Direct on this machine, behind ``jupyter-server-proxy`` and JupyterHub, or through
any URL layout (``{port}`` templates, bokeh's ``notebook_url`` callables): see
:func:`resolve_url` and ``docs/notebooks.md``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any
from urllib.parse import urljoin, urlparse

from .config import UrlFunction, settings
from .internals import jupyter_parent_pid

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("localhost", "127.0.0.1")


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
    parent = jupyter_parent_pid()
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
        address = settings().address
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
    extra = settings().allow_websocket_origin
    if chosen is None:
        chosen = settings().external_url or os.environ.get("TANGO_BOKEH_EXTERNAL_URL") or None
        if isinstance(chosen, str):
            function = _external_url_function(chosen)
            return function, [function(None), *extra]
    if chosen is None and os.environ.get("JUPYTER_BOKEH_EXTERNAL_URL"):
        chosen = _jupyter_bokeh_url
    if chosen is None and os.environ.get("JUPYTERHUB_PUBLIC_URL", "").startswith("http"):
        function = _external_url_function(os.environ["JUPYTERHUB_PUBLIC_URL"])
        return function, [function(None), *extra]
    if chosen is None:
        function, origins = _local_url_function()
        return function, [*origins, *extra]
    function = chosen if callable(chosen) else _notebook_url_function(chosen)
    origin = function(None)
    origins = [origin]
    host, _, port = origin.rpartition(":")
    if host and _is_loopback(host):
        origins += [f"{name}:{port}" for name in _LOOPBACK_NAMES]
    return function, [*origins, *extra]
