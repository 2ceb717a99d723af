"""Log records that say nothing wrong, lowered to DEBUG where bokeh writes them as warnings.

A page that goes away between two ticks (a notebook output replaced by a
re-run, a dashboard tab closed) makes bokeh log "Failed sending message as
connection was closed" for the patch already on its way. Nothing is lost
(the session is being discarded) and nothing can be done; in a notebook the
warning even shows as red text under a cell. Thread contract: any thread.
"""

from __future__ import annotations

import logging

#: (logger, start of the message) of the records that are routine, not warnings.
ROUTINE = (("bokeh.server.views.ws", "Failed sending message as connection was closed"),)


class Routine(logging.Filter):
    """Lowers the :data:`ROUTINE` records to DEBUG (kept only where DEBUG is enabled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if any(record.name == name and message.startswith(text) for name, text in ROUTINE):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def lower_routine_warnings() -> None:
    """Install :class:`Routine` on the loggers of :data:`ROUTINE` (idempotent)."""
    for name in {name for name, _ in ROUTINE}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Routine) for f in logger.filters):
            logger.addFilter(Routine())


__all__ = ["ROUTINE", "Routine", "lower_routine_warnings"]
