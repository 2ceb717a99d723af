"""One garbage collection per burst of closed pages, instead of two per page.

bokeh runs a full ``gc.collect()`` when it destroys a session's Document, and
another after the Document's ``on_session_destroyed`` callbacks. A full
collection walks the whole heap: in a dashboard server with twenty pages open
each one took 0.4 s, on the server's loop, so twenty pages closed together
froze every other page for 17 s (``bench/bench_release.py``). As Panel does
for the same reason (holoviz/panel#3259, #6518), both collections are
coalesced into one, run on the loop ``DELAY`` seconds after the first
request of a burst; the Documents are unreachable by then and are freed by
that one collection.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from typing import Any

from bokeh.application.handlers.document_lifecycle import DocumentLifecycleHandler
from tornado.ioloop import IOLoop

from .internals import route_document_collections, session_document

log = logging.getLogger(__name__)

#: Seconds between the first collection asked for and the one that runs.
DELAY = 1.0


class CoalescedCollector:
    """Stands in for the ``gc`` module in bokeh's Document module.

    ``collect()`` asked on an IOLoop schedules one collection on that loop if
    none is pending; asked anywhere else it collects at once, as bokeh would.
    """

    def __init__(self, delay: float = DELAY) -> None:
        self.delay = delay
        self.requested = 0  # collections bokeh asked for
        self.collections = 0  # collections run
        # Weak: a loop stopped with a collection pending never runs it; do not keep it alive.
        self._pending: weakref.WeakSet[IOLoop] = weakref.WeakSet()
        self._lock = threading.Lock()

    def collect(self, generation: int = 2) -> int:
        loop = IOLoop.current(instance=False)
        with self._lock:
            self.requested += 1
            if loop is None:
                self.collections += 1
            elif loop in self._pending:
                return 0
            else:
                self._pending.add(loop)
        if loop is None:
            return gc.collect(generation)
        loop.call_later(self.delay, self._run, loop)
        return 0

    def _run(self, loop: IOLoop) -> None:
        with self._lock:
            self._pending.discard(loop)
            self.collections += 1
        gc.collect()

    def __getattr__(self, name: str) -> Any:
        return getattr(gc, name)


COLLECTOR = CoalescedCollector()


def _run_session_destroyed_callbacks(session_context: Any) -> None:
    """bokeh's own handler of a Document's ``on_session_destroyed`` callbacks, minus its
    collection, which goes to :data:`COLLECTOR` instead."""
    document = session_document(session_context)
    callbacks, document.session_destroyed_callbacks = document.session_destroyed_callbacks, set()
    for callback in callbacks:
        try:
            callback(session_context)
        except Exception as exc:  # bokeh logs these and carries on too
            log.warning("on_session_destroyed callback %s failed: %s", callback, exc)
    if callbacks:
        del callback, callbacks
        COLLECTOR.collect()


class SessionLifecycle(DocumentLifecycleHandler):
    """The Document lifecycle handler our applications use: bokeh's, with the
    collection coalesced. bokeh adds its own only to applications without one.

    It overrides the public ``Handler.on_session_destroyed`` hook (bokeh's own
    sets a private ``_on_session_destroyed`` that this hook calls)."""

    async def on_session_destroyed(self, session_context: Any) -> None:
        _run_session_destroyed_callbacks(session_context)


def coalesce_collections() -> CoalescedCollector:
    """Route ``Document.destroy``'s collection through :data:`COLLECTOR` (idempotent)."""
    route_document_collections(COLLECTOR)
    return COLLECTOR
