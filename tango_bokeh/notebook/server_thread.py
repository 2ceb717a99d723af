"""A loop of its own for a bokeh server whose thread is busy elsewhere, and the routing that
makes its Documents safe to change from that other thread.

A notebook kernel runs cells on its main thread, on the same loop it would
serve bokeh from: while a cell computes, a server on that loop serves nothing
and every panel freezes. :class:`ServerThread` runs the server on a tornado
loop on a daemon thread instead. bokeh Documents are not thread-safe, though
(only ``add_next_tick_callback`` may be called from another thread), and cells
keep changing models of shown documents: :class:`ForeignChanges` sends the
change events made on other threads to the Document's loop, where bokeh
dispatches them with the Document locked (patches to the browsers, Python
``on_change`` callbacks).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bokeh.document.events import (
    ModelChangedEvent,
    SessionCallbackAdded,
    SessionCallbackRemoved,
)
from tornado.ioloop import IOLoop

from .internals import intercept_change_events

if TYPE_CHECKING:
    from bokeh.document import Document
    from bokeh.document.events import DocumentChangedEvent

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServerThread:
    """A tornado loop running on a daemon thread of its own until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: IOLoop | None = None
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, setup: Callable[[IOLoop], T], timeout: float = 30.0) -> T:
        """Start the loop and run ``setup(loop)`` on it first; returns what it returns.

        Thread contract: call from any thread but the loop's; blocks until ``setup`` ran.
        """
        ready = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            loop = IOLoop.current()
            try:
                box["value"] = setup(loop)
            except BaseException as exc:
                box["error"] = exc
                ready.set()
                loop.close(all_fds=True)
                return
            self.loop = loop
            ready.set()
            try:
                loop.start()
            finally:
                loop.close(all_fds=True)

        self.thread = threading.Thread(target=run, name=self.name, daemon=True)
        self.thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{self.name}: the loop did not start within {timeout} s")
        if "error" in box:
            self.thread.join(timeout)
            raise box["error"]
        return box["value"]

    def add_callback(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop soon. Thread contract: any thread."""
        loop = self.loop
        if loop is not None:
            loop.add_callback(callback, *args)

    def on_loop(self) -> bool:
        return self.thread is threading.current_thread()

    def stop(self, teardown: Callable[[], Any] | None = None, timeout: float = 10.0) -> None:
        """Run ``teardown()`` on the loop, stop the loop and join its thread.

        Thread contract: any thread; from the loop's own thread the join is skipped.
        """
        loop, thread = self.loop, self.thread
        if loop is None or thread is None:
            return

        def finish() -> None:
            try:
                if teardown is not None:
                    teardown()
            except Exception:
                log.exception("%s: stopping", self.name)
            finally:
                loop.stop()

        loop.add_callback(finish)
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: the loop thread did not stop within %s s", self.name, timeout)
        self.loop = None


class ForeignChanges:
    """Dispatches a Document's change events made off its loop thread on that thread.

    Installed on a Document served from ``thread``. A model changed from another
    thread (a notebook cell) keeps its new value at once; the change's event
    (what is sent to the browsers, the model's Python ``on_change`` callbacks) is
    queued and dispatched in order on the Document's next tick, with the
    Document locked (a property change then carries the value the model has by
    then, so that browsers end with what the server has). Session-callback
    bookkeeping events, which bokeh makes thread-safe for
    ``add_next_tick_callback``, pass through.

    Thread contract: changes from any thread; dispatch on ``thread`` only.
    """

    _PASS_THROUGH = (SessionCallbackAdded, SessionCallbackRemoved)

    def __init__(self, doc: Document, thread: threading.Thread) -> None:
        self._doc = weakref.ref(doc)
        self._thread = thread
        self._lock = threading.Lock()
        self._pending: list[DocumentChangedEvent] = []
        self.routed = 0  # events that came from other threads
        self._dispatch = intercept_change_events(doc, self._route)

    def _route(self, event: DocumentChangedEvent) -> None:
        if threading.current_thread() is self._thread or isinstance(event, self._PASS_THROUGH):
            self._dispatch(event)
            return
        doc = self._doc()
        if doc is None:
            return
        with self._lock:
            self._pending.append(event)
            self.routed += 1
            first = len(self._pending) == 1
        if first:
            try:
                doc.add_next_tick_callback(self._flush)
            except Exception:  # the Document is gone: nobody is left to tell
                log.debug("routing a change to a destroyed document", exc_info=True)

    def _flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        for event in events:
            if isinstance(event, ModelChangedEvent):
                # the loop may have changed it meanwhile: browsers get the value it has now
                model, attr = event.model, event.attr
                event.new = model.lookup(attr).get_value(model)
            self._dispatch(event)
