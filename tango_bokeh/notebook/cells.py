"""Which cell is running: re-running a cell replaces the sessions its previous run showed.

JupyterLab and Notebook 7 send the cell's id with each execution
(:func:`~tango_bokeh.notebook.internals.current_execution`); a new execution of a
known cell closes the sessions the previous one showed, and sessions a cell makes
get a name from its id (the registry then replaces a session of the same name).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

from ..session import Session
from .internals import current_execution


@dataclass
class _CellRun:
    """The sessions one execution of one cell has shown."""

    msg_id: str | None
    sessions: list[weakref.ref[Session]] = field(default_factory=list)
    names_given: int = 0


class _Cells:
    """Per-cell bookkeeping: a new run of a cell closes what its previous run showed."""

    def __init__(self) -> None:
        self._runs: dict[str, _CellRun] = {}
        self._lock = threading.Lock()

    def current(self, keep: Session | None = None) -> _CellRun | None:
        """The record of the running cell; starting a new run closes the previous run's sessions."""
        cell_id, msg_id = current_execution()
        if cell_id is None:
            return None
        with self._lock:
            run = self._runs.get(cell_id)
            if run is not None and run.msg_id == msg_id:
                return run
            self._runs[cell_id] = new = _CellRun(msg_id)
        if run is not None:
            for ref in run.sessions:
                older = ref()
                if older is not None and older is not keep and not older.closed:
                    older.close()
        return new

    def session_name(self) -> str | None:
        """A registry name for a session about to be made by the running cell."""
        cell_id, _ = current_execution()
        run = self.current()
        if cell_id is None or run is None:
            return None
        run.names_given += 1
        return f"cell:{cell_id}" if run.names_given == 1 else f"cell:{cell_id}:{run.names_given}"

    def shown(self, session: Session) -> None:
        run = self.current()
        if run is not None:
            run.sessions.append(weakref.ref(session))

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


cells = _Cells()


def cell_session_name() -> str | None:
    """The name a session made in this cell should have so that re-running the cell replaces it.

    ``cell:<cellId>`` (``cell:<cellId>:2`` for a second session of the same run),
    or ``None`` (a uuid) when the front end sends no cell id.
    """
    return cells.session_name()
