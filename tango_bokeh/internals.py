"""Private bokeh API of the server plumbing both front ends share (:mod:`tango_bokeh.cleanup`).

One function per use, each saying why it is needed and which bokeh version it
was checked against (bokeh 3.9.2, ``constraints.txt``); ``tests/test_internals.py``
checks each against the installed bokeh and names the internal that changed.

Each front end keeps its own in its package: :mod:`tango_bokeh.notebook.internals`
and :mod:`tango_bokeh.dashboard.internals`. These live here, below both, because
:mod:`tango_bokeh.cleanup` (used by :mod:`tango_bokeh.app`, hence by both) may not
import a front end (``docs/architecture.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bokeh.document.document as bokeh_document

if TYPE_CHECKING:
    from bokeh.document import Document

#: The bokeh version every function here was checked against.
CHECKED_BOKEH = "3.9.2"


def route_document_collections(collector: Any) -> None:
    """Make ``Document.destroy`` collect garbage through ``collector`` (a ``gc`` stand-in).

    Why: bokeh runs a full ``gc.collect()`` per destroyed session Document, on the
    server's loop; twenty pages closed together froze every page for seconds
    (``bench/bench_release.py``). bokeh has no setting for it. bokeh 3.9.2:
    ``bokeh.document.document`` does ``import gc`` and ``Document.destroy`` calls
    the module global ``gc.collect()``.
    """
    bokeh_document.gc = collector  # type: ignore[attr-defined]


def document_collector() -> Any:
    """What ``Document.destroy`` collects garbage through now (``gc`` unless routed)."""
    return bokeh_document.gc  # type: ignore[attr-defined]


def session_document(session_context: Any) -> Document:
    """The Document of a destroyed bokeh server session's context.

    Why: ``on_session_destroyed`` handlers run after the session let its Document
    go; bokeh's own handler (``document_lifecycle._on_session_destroyed``) reads it
    from the context, and ours replaces that handler. bokeh 3.9.2:
    ``BokehSessionContext._document`` (no public accessor outside the lock).
    """
    return session_context._document
