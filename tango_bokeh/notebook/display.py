"""The notebook's public functions: show a session in the running cell, ``monitor()``,
``status()``, ``close_all()``, ``stop_server()``."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ..session import Session
from ..tango.archive import Archive, ArchiveConfig, open_archive
from ..views.archive_fill import ArchiveFill, SharedArchive, default_opener
from .cells import cell_session_name, cells
from .config import UrlFunction
from .outputs import Output
from .server import NotebookServer


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_session(session: Session, *, notebook_url: str | UrlFunction | None = None) -> Output:
    """Show ``session`` live in the running cell (what :meth:`Session.open` does).

    Returns at once. Sessions an earlier run of the same cell showed are closed;
    clearing the output closes this one. ``notebook_url`` follows bokeh's
    convention (see :func:`resolve_url`) and overrides the configured URL.
    """
    if session.closed:
        raise RuntimeError(f"session {session.name!r} is closed")
    if session.document is not None:
        raise RuntimeError(
            f"session {session.name!r} is already shown: a session has one document; "
            "make a new session to show it again"
        )
    try:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("open sessions from a notebook cell (the kernel's main thread)")
        if not _in_kernel():
            raise RuntimeError(
                "Session.open() shows a session in a Jupyter notebook cell; outside a kernel "
                "serve sessions with tango_bokeh.app (or `tango-bokeh serve`)"
            )
        cells.current(keep=session)  # a new run of this cell closes its earlier sessions first
        output = NotebookServer.instance().publish(session, notebook_url)
    except Exception:
        session.close()  # nobody can reach it: leave no subscription behind
        raise
    cells.shown(session)
    return output


def monitor(
    *items: Any,
    name: str | None = None,
    period: float = 1.0,
    notebook_url: str | UrlFunction | None = None,
    archive: Any = None,
    **options: Any,
) -> Session:
    """Show a live panel of Tango attributes (or views) in the cell; returns its session.

    ``monitor("sim/motor/1/Position", "sim/counter/1/Counts", period=0.5)``.
    Items are attribute names (any Tango name form) or view instances; other
    keyword arguments go to :class:`tango_bokeh.monitor.MonitorSession`
    (``title``, ``layout``, ``ncols``, ``hub``). Re-running the cell replaces the
    panel; ``name`` makes it replace the panel of that name wherever it is.

    Trends draw archived history before their live data (docs/archive.md): ``archive``
    is an :class:`~tango_bokeh.tango.archive.ArchiveConfig` (or a dict of its fields),
    an ``Archive``, or ``False`` for none; by default pyhdbpp's own default reader (the
    ``HDB++`` free properties of the Tango database), opened once per kernel at the first
    trend's first read, off the kernel's threads; silent when there is none.
    """
    from ..monitor import MonitorSession

    session = MonitorSession(
        *items, name=name or cell_session_name(), callback_period=period, **options
    )
    try:
        shared = _archive(archive)
        if shared is not None:
            for view in session.views:
                fill = ArchiveFill(shared, session.safe_document_modifications)
                if hasattr(view, "set_option"):  # an AutoView: its trend gets it, once chosen
                    view.set_option("archive", fill)
                elif hasattr(view, "use_archive"):  # a trend
                    view.use_archive(fill)
        show_session(session, notebook_url=notebook_url)
    except Exception:
        session.close()
        raise
    return session


_default_archive: SharedArchive | None = None


def _archive(archive: Any) -> SharedArchive | None:
    """What ``monitor(..., archive=...)`` names, as one archive shared by its trends."""
    global _default_archive
    if archive is False:
        return None
    if archive is None:  # pyhdbpp's default: one per kernel (NotConfigured is remembered)
        if _default_archive is None:
            _default_archive = SharedArchive(default_opener(open_archive))
        return _default_archive
    if isinstance(archive, SharedArchive):
        return archive
    if isinstance(archive, Mapping):
        archive = ArchiveConfig.from_mapping(archive)
    if isinstance(archive, ArchiveConfig):
        config = archive
        return SharedArchive(lambda: open_archive(config))
    if isinstance(archive, Archive):
        return SharedArchive(archive)
    raise TypeError(
        f"archive: expected an ArchiveConfig, a dict of its fields, an Archive or False, "
        f"not {type(archive).__name__}"
    )


def status() -> None:
    """Print the open sessions, the hub's load and the notebook server's outputs."""
    print(status_text())


def status_text() -> str:
    lines = [Session.status()]
    server = NotebookServer.current()
    if server is None:
        lines.append("notebook server: not started")
    else:
        lines.append(
            f"notebook server: {server.settings.address}:{server.port}, "
            f"{len(server.outputs())} live output(s), {server.pending()} waiting for a browser"
        )
    return "\n".join(lines)


def close_all() -> None:
    """Close every session of this kernel (their outputs say so); the server keeps running."""
    Session.close_all()


def stop_server() -> None:
    """Close the sessions shown in cells and stop the kernel's server (also run at exit)."""
    server = NotebookServer._instance
    if server is not None:
        server.stop()
    cells.clear()
