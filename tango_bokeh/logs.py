"""Log records that say nothing wrong, lowered to DEBUG where bokeh writes them as warnings.

A page that goes away between two ticks (a notebook output replaced by a
re-run, a dashboard tab closed) makes bokeh log "Failed sending message as
connection was closed" for the patch already on its way; and a message the
page sent just before it went (a lagging page's acknowledgement) is handled
after bokeh has let go of the connection's session, which fails bokeh's own
``assert self._session is not None`` and was logged as an ERROR traceback
(twenty lagging pages closed together: over a thousand). Nothing is lost
(the session is being discarded) and nothing can be done; in a notebook the
warning even shows as red text under a cell. Thread contract: any thread.
"""

from __future__ import annotations

import logging
import os

#: (logger, start of the message) of the records that are routine, not warnings.
ROUTINE = (("bokeh.server.views.ws", "Failed sending message as connection was closed"),)
#: Loggers that report exceptions of a websocket's message handling or closing.
HANDLERS = ("bokeh.server.views.ws", "tornado.application", "asyncio")
#: Where bokeh asserts that a connection still has its session (bokeh 3.9.2).
DETACHED = (os.path.join("bokeh", "server", "connection.py"), "session")


def detached_session(record: logging.LogRecord) -> bool:
    """The record reports bokeh's ``ServerConnection.session`` assertion: the connection's
    session was already let go of (its page closed) when a late message was handled."""
    exc = record.exc_info[1] if record.exc_info else None
    if not isinstance(exc, AssertionError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    code = tb.tb_frame.f_code
    return code.co_filename.endswith(DETACHED[0]) and code.co_name == DETACHED[1]


class Routine(logging.Filter):
    """Lowers the :data:`ROUTINE` and :func:`detached_session` records to DEBUG (kept only
    where DEBUG is enabled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        routine = any(record.name == name and message.startswith(text) for name, text in ROUTINE)
        if routine or detached_session(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def lower_routine_warnings() -> None:
    """Install :class:`Routine` on the loggers of :data:`ROUTINE` and :data:`HANDLERS`
    (idempotent)."""
    for name in {name for name, _ in ROUTINE} | set(HANDLERS):
        logger = logging.getLogger(name)
        if not any(isinstance(f, Routine) for f in logger.filters):
            logger.addFilter(Routine())


__all__ = ["ROUTINE", "Routine", "detached_session", "lower_routine_warnings"]
