"""Is a Tango database there? Asked in one place: the health check, the name check, the CLI."""

from __future__ import annotations

import tango

from .errors import describe


def connect(host: str | None = None) -> tango.Database:
    """The database at ``host`` (``name:port``), or the one ``TANGO_HOST`` names."""
    if host:
        name, port = host.rsplit(":", 1)
        return tango.Database(name, int(port))
    return tango.Database()


def ping(host: str | None = None) -> tuple[bool, str]:
    """``(True, "reachable")`` or ``(False, why)``; blocks up to Tango's client time-out."""
    try:
        connect(host).get_info()
    except tango.DevFailed as exc:
        return False, describe(exc)[1]
    return True, "reachable"
