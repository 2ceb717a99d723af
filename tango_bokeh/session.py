"""Sessions: one bokeh Document fed by Tango attributes, with a leak-proof lifecycle.

The semantics are those of the notebook study this project grew from
(``BokehSession``): named sessions in a locked class-level registry, a new
session closing an older one of the same name, ``open``/``close``,
``pause``/``resume``, ``start``/``stop``, a ``callback_period`` (>= 0.1 s)
driving ``periodic_callback``, ``setup_document``,
``safe_document_modifications``, ``timeout_callback``, ``close_all`` and a
printable registry status.

What is added: Tango attributes are declared (``attributes = (...)``) or
subscribed with :meth:`Session.subscribe`, through the process-wide
:class:`~tango_bokeh.hub.Hub`; :meth:`Session.close` is the one place where
they are released, and it is idempotent. Tango threads never touch the
Document: the periodic tick drains the hub cursors on the Document's loop.

:meth:`Session.on_samples` is the one place where samples reach views, for
every front end (notebook panels, dashboard pages): one policy for a view
that fails (its panel says so, logged once per change, the tick goes on).
Freeze, clear and export are the session's too. Which thread each method may
be called from is written on it (:mod:`tango_bokeh.threads`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from uuid import uuid4

from .hub import Cursor, Hub
from .tango.sample import Sample
from .tango.state import AttributeState
from .threads import ANY, LOOP, any_thread, contract, document_thread, loop_only
from .views.export import Download, Export, build, csv_files, snapshot
from .views.export_formats import PageRanges, Shown

if TYPE_CHECKING:
    from bokeh.document import Document

log = logging.getLogger(__name__)

#: The shortest period the periodic callback may have, in seconds.
MIN_CALLBACK_PERIOD = 0.1
MAX_CALLBACK_PERIOD = 3600.0
#: Seconds an export from another thread waits for the loop to copy what the views show.
EXPORT_WAIT = 30.0
#: The front end :meth:`Session.open` shows a session with, found by name when first used:
#: front ends sit above sessions (they import them), so a session never imports one.
FRONT_END = "tango_bokeh.notebook"


class View(Protocol):
    """What a session hands new samples to (see :class:`tango_bokeh.views.base.View`)."""

    attributes: tuple[str, ...]
    title: str | None

    def update(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None: ...

    def clear(self) -> None: ...

    def to_csv(self) -> str: ...


class Session:
    """Base class of everything that shows Tango data in one bokeh Document.

    Subclass it, declare ``attributes`` (or call :meth:`subscribe`), build the
    page in :meth:`setup_document` and react to data in :meth:`on_samples` or
    :meth:`periodic_callback`. Never unsubscribe by hand: :meth:`close` does it.
    """

    #: Attributes every instance subscribes to on creation.
    attributes: ClassVar[Sequence[str]] = ()
    #: Start the periodic activity as soon as the Document is set up.
    autostart: ClassVar[bool] = True

    _registry: ClassVar[dict[str, Session]] = {}
    _registry_lock: ClassVar[threading.RLock] = threading.RLock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's override keeps the thread contract of the method it overrides."""
        super().__init_subclass__(**kwargs)
        for name, method in list(vars(cls).items()):
            inherited = getattr(Session, name, None)
            if callable(method) and inherited is not None and contract(method) is None:
                if contract(inherited) == LOOP:
                    setattr(cls, name, loop_only(method))
                elif contract(inherited) == ANY:
                    setattr(cls, name, any_thread(method))

    def __init__(
        self,
        name: str | None = None,
        *,
        callback_period: float | None = 1.0,
        hub: Hub | None = None,
    ) -> None:
        self._name = name or str(uuid4())
        self._hub = hub or Hub.default()
        self._doc: Document | None = None
        self._callback_period: float | None = None
        self.callback_period = callback_period
        self._periodic: Any = None  # bokeh's handle of the periodic callback
        self._suspended = True
        self._paused = False  # pause() asked for it (not merely not started yet)
        self._closed = False
        self._state_lock = threading.Lock()
        self._cursors: dict[str, Cursor] = {}
        self._views: list[View] = []
        self._on_close: list[Callable[[], None]] = []
        self._loop_thread: int | None = None  # the thread of the Document's loop, once attached
        self._frozen = False
        self._failures: dict[int, str] = {}  # id(view) -> why its last update failed
        self.ticks = 0
        self.last_tick_duration = 0.0
        self._replace(self._name)
        try:
            for attribute in type(self).attributes:
                self.subscribe(attribute)
        except Exception:
            self.close()
            raise

    # -- registry ---------------------------------------------------------------

    def _replace(self, name: str) -> None:
        """Close the session already registered under ``name``, then take its place."""
        with Session._registry_lock:
            older = Session._registry.pop(name, None)
        if older is not None and older is not self:
            try:
                older.close()
            except Exception:
                log.exception("closing the previous session %r", name)
        with Session._registry_lock:
            Session._registry[name] = self

    @classmethod
    def sessions(cls) -> list[Session]:
        """Open sessions (of this class and its subclasses)."""
        with Session._registry_lock:
            return [s for s in Session._registry.values() if isinstance(s, cls)]

    @classmethod
    def get(cls, name: str) -> Session | None:
        with Session._registry_lock:
            return Session._registry.get(name)

    @classmethod
    def close_all(cls) -> None:
        """Close every open session (also run at interpreter exit)."""
        for session in cls.sessions():
            try:
                session.close()
            except Exception:
                log.exception("failed to close %r", session)

    @classmethod
    def status(cls) -> str:
        """A readable listing of the registry and of the hub's load."""
        sessions = cls.sessions()
        lines = [f"{len(sessions)} open session(s)" if sessions else "no open session"]
        lines += [f"- {s!r}" for s in sessions]
        hub = Hub._default
        if hub is not None:
            stats = hub.stats()
            lines.append(
                f"hub: {stats.channels} attribute(s), {stats.consumers} reader(s), "
                f"{stats.subscriptions} Tango subscription(s), {stats.polled} polled"
            )
        return "\n".join(lines)

    @classmethod
    def print_repository_status(cls) -> None:
        print(cls.status())

    # -- identity and state -----------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    uuid = name  # the study's name for it

    @property
    def hub(self) -> Hub:
        return self._hub

    @property
    def document(self) -> Document | None:
        return self._doc

    @property
    def ready(self) -> bool:
        """True once the session has a Document and is not closed."""
        return self._doc is not None and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def suspended(self) -> bool:
        return self._suspended

    @property
    def bokeh_session_id(self) -> str | None:
        context = self._doc.session_context if self._doc is not None else None
        return context.id if context is not None else None

    @property
    def callback_period(self) -> float | None:
        """Period of the periodic callback in seconds, or None when disabled."""
        return self._callback_period

    @callback_period.setter
    def callback_period(self, period: float | None) -> None:
        if period is not None and not 0 <= float(period) <= MAX_CALLBACK_PERIOD:
            raise ValueError(
                f"callback_period must be between {MIN_CALLBACK_PERIOD} s and "
                f"{MAX_CALLBACK_PERIOD:g} s (or None to disable), got {period!r}"
            )  # also refuses nan and inf: a tick that never comes is a frozen page
        self._callback_period = None if period is None else max(MIN_CALLBACK_PERIOD, float(period))

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("suspended" if self._suspended else "running")
        attrs = ", ".join(self._cursors) or "no attribute"
        return f"{type(self).__name__}:{self._name}:{state} [{attrs}]"

    def describe(self) -> str:
        """What a person needs to know of the session: name, attributes, state, how to close it.

        IPython shows it under a cell whose last expression is the session.
        """
        kind = type(self).__name__
        if self._closed:
            return f"{kind} {self._name!r}: closed (re-run the cell to show it again)"
        attributes = list(self._cursors)
        listed = ", ".join(attributes) if attributes else "no attribute"
        if self._callback_period is None:
            state = "not updating (no callback period)"
        elif self._paused:
            state = "paused: .resume() to update again"
        else:
            state = f"live, every {self._callback_period:g} s: .pause() to freeze"
        return (
            f"{kind} {self._name!r}: {len(attributes)} attribute(s) ({listed})\n"
            f"{state}; .close(), clearing the output or re-running the cell closes it"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.describe())

    # -- Tango attributes -------------------------------------------------------

    def subscribe(self, attribute: str, poll_period: float | None = None) -> Cursor:
        """Start receiving ``attribute``; returns at once. Malformed names raise ``InvalidName``."""
        if self._closed:
            raise RuntimeError(f"session {self._name!r} is closed")
        cursor = self._cursors.get(attribute)
        if cursor is None:
            cursor = self._cursors[attribute] = self._hub.subscribe(attribute, poll_period)
        return cursor

    def unsubscribe(self, attribute: str) -> None:
        cursor = self._cursors.pop(attribute, None)
        if cursor is not None:
            cursor.close()

    @property
    def cursors(self) -> Mapping[str, Cursor]:
        return dict(self._cursors)

    def add_view(self, view: View) -> View:
        """Subscribe to the view's attributes; it gets every tick's samples (:meth:`on_samples`)."""
        for attribute in view.attributes:
            self.subscribe(attribute)
        self._views.append(view)
        return view

    @property
    def views(self) -> list[View]:
        return list(self._views)

    def states(self) -> dict[str, AttributeState]:
        """Metadata, mode and error of every subscribed attribute, for the views."""
        return {
            name: AttributeState(
                name,
                c.info,
                c.mode,
                c.status,
                c.lost,
                c.channel.queue_full,
                c.channel.poll,
                c.channel.lost_estimate,
            )
            for name, c in self._cursors.items()
        }

    # -- lifecycle --------------------------------------------------------------

    def open(self, **kwargs: Any) -> None:
        """Show the session in the current notebook cell (:data:`FRONT_END`'s ``show_session``)."""
        importlib.import_module(FRONT_END).show_session(self, **kwargs)

    @loop_only
    def attach(self, doc: Document) -> None:
        """Give the session its Document (called by the front end, on the Document's loop)."""
        if self._closed:
            raise RuntimeError(f"session {self._name!r} is closed")
        self._doc = doc
        self._loop_thread = threading.get_ident() if doc.session_context is not None else None
        if doc.session_context is not None:
            doc.on_session_destroyed(self._on_session_destroyed)
        self.setup_document()
        if self.autostart and self._callback_period is not None and self._suspended:
            self.start()

    def _on_session_destroyed(self, _context: Any) -> None:
        self.close()

    @any_thread
    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the session closes (front ends release their resources)."""
        self._on_close.append(callback)

    @any_thread
    def close(self) -> None:
        """Release every Tango subscription, callback and Document; safe to call twice."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._suspended = True
        with Session._registry_lock:
            if Session._registry.get(self._name) is self:
                del Session._registry[self._name]
        cursors, self._cursors = list(self._cursors.values()), {}
        for cursor in cursors:
            cursor.close()
        # A closed session holds no Document, view or data: IPython's Out may keep it.
        doc, periodic = self._doc, self._periodic
        self._doc, self._periodic, self._views = None, None, []
        self._failures = {}
        if doc is not None:
            self._in_document(lambda: self._cleanup_document(doc, periodic), doc)
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("close hook of %r", self)

    def _cleanup_document(self, doc: Document, periodic: Any) -> None:
        if periodic is not None:
            with contextlib.suppress(ValueError, AttributeError, KeyError):
                doc.remove_periodic_callback(periodic)  # may be gone with the Document
        try:
            doc.clear()
        except Exception:  # the Document may be half destroyed already
            log.debug("clearing the document of %r", self, exc_info=True)

    @loop_only
    def setup_document(self) -> None:
        """Build the page: add roots to :attr:`document` (default: nothing)."""

    # -- periodic activity ------------------------------------------------------

    def periodic_callback_enabled(self) -> bool:
        return self._callback_period is not None

    @any_thread
    def start(self) -> None:
        """Start the periodic activity."""
        self.resume()

    @any_thread
    def stop(self) -> None:
        """Stop the periodic activity."""
        self.pause()

    @any_thread
    def pause(self) -> None:
        """Suspend the periodic callback (data keeps arriving in the hub, bounded)."""
        self._suspended = self._paused = True
        self._set_periodic(None)

    @any_thread
    def resume(self) -> None:
        """Resume the periodic callback at :attr:`callback_period`."""
        if self._closed:
            return
        self._suspended = self._paused = False
        self._set_periodic(self._callback_period)

    @any_thread
    def update_callback_period(self, period: float | None) -> None:
        """Change the period of a running periodic callback."""
        self.callback_period = period
        if not self._suspended:
            self._set_periodic(self._callback_period)

    @document_thread
    def _set_periodic(self, period: float | None) -> None:
        doc = self._doc
        if doc is None:
            return
        if self._periodic is not None:
            with contextlib.suppress(ValueError, AttributeError, KeyError):
                doc.remove_periodic_callback(self._periodic)  # may be gone with the Document
            self._periodic = None
        if period is not None and not self._closed and not self._suspended:
            self._periodic = doc.add_periodic_callback(self._tick, int(1000 * period))

    def _tick(self) -> None:
        if not self._suspended:
            self.tick()

    @loop_only
    def tick(self) -> None:
        """Drain the hub cursors and update the views once (on the Document's thread).

        While :attr:`frozen`, the cursors are left alone (new samples wait in
        the hub's bounded rings) and only :meth:`periodic_callback` runs.
        """
        if self._closed:
            return
        if self._frozen:
            self.periodic_callback()
            return
        started = time.perf_counter()
        batch: dict[str, list[Sample]] = {}
        for attribute, cursor in list(self._cursors.items()):
            samples = cursor.read()
            if samples:
                batch[attribute] = samples
        try:
            self.on_samples(batch)
            self.periodic_callback()
        finally:
            self.ticks += 1
            self.last_tick_duration = time.perf_counter() - started

    def clock(self) -> float:
        """The time views are drawn up to ("now"); a hook for simulations and benchmarks."""
        return time.time()

    @loop_only
    def on_samples(self, batch: Mapping[str, Sequence[Sample]]) -> None:
        """New samples since the previous tick, per attribute: the one place they reach views.

        Each view gets the batch, the time and every attribute's state. A view
        whose update raises says so in its own panel (``show_problem``), logged
        once per change of its error, and the other views and the tick go on;
        when it updates again, its panel is cleared. Then :meth:`after_update`.
        """
        views = self.views
        if not views:
            return
        now = self.clock()
        states = self.states()
        for view in views:
            self._update_view(view, batch, now, states)
        self.after_update(batch, states)

    def _update_view(
        self,
        view: View,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        key = id(view)
        try:
            view.update(batch, now, states)
        except Exception as exc:
            text = f"this panel failed to update: {type(exc).__name__}: {exc}"
            if self._failures.get(key) != text:
                log.exception("%s: %r failed to update", self.log_name(), view)
                self._failures[key] = text
                _show_problem(view, text)
        else:
            if self._failures.pop(key, None) is not None:
                log.info("%s: %r updates again", self.log_name(), view)
                _show_problem(view, None)

    def after_update(
        self, batch: Mapping[str, Sequence[Sample]], states: Mapping[str, AttributeState]
    ) -> None:
        """After the views had this tick's samples (a status line...); default: nothing."""

    def log_name(self) -> str:
        """How log lines name this session."""
        return f"{type(self).__name__} {self._name}"

    def periodic_callback(self) -> None:
        """Periodic activity of a subclass, after :meth:`on_samples` (default: nothing)."""

    # -- freeze, clear, export (what every front end offers) ------------------------

    @property
    def frozen(self) -> bool:
        """The views hold what they show (see :meth:`freeze`)."""
        return self._frozen

    @any_thread
    def freeze(self, frozen: bool = True) -> None:
        """Hold what the views show; new data waits in the hub (bounded) until unfrozen.

        Unlike :meth:`pause`, the tick goes on for the session's own periodic
        work (a dashboard page still checks its login every tick).
        """
        self._frozen = bool(frozen)

    @document_thread
    def clear(self) -> None:
        """Forget what every view displays (new data keeps coming)."""
        for view in self.views:
            try:
                view.clear()
            except Exception:
                log.exception("%s: clearing %r", self.log_name(), view)

    def export_title(self) -> str:
        """The name of an export holding several views (a zip)."""
        return self._name

    def csv_files(self) -> dict[str, str]:
        """What is displayed, as one CSV text per view (file name -> text)."""
        return csv_files(self.views)

    @any_thread
    def export(self, format: str = "csv") -> Export:
        """What every view shows (visible range and series), as one file: ``format`` is
        "csv" (long format) or "hdf5" (NeXus-style). The copies are taken on the loop (this
        thread waits for it), the file is written on the calling thread."""
        if self.on_document_thread() or not self.ready:
            return build(snapshot(self.views), format, self.export_title())
        taken: list[list[Shown]] = []
        done = threading.Event()

        def take() -> None:  # on the loop: copies of what the views show, nothing more
            try:
                taken.append(snapshot(self.views))
            finally:
                done.set()

        self.safe_document_modifications(take)
        if not done.wait(EXPORT_WAIT) or not taken:
            raise TimeoutError(f"{self.log_name()}: its loop did not answer the export")
        return build(taken[0], format, self.export_title())

    @property
    def download(self) -> Download:
        """The page's hidden download source and its export in flight (made on first use;
        dropped when the session closes)."""
        download: Download | None = getattr(self, "_download_channel", None)
        if download is None:
            download = Download(
                self.safe_document_modifications, self.export_status, self.start_export
            )
            self._download_channel = download
            self.on_close(self._drop_download)
        return download

    def _drop_download(self) -> None:
        download, self._download_channel = self._download_channel, None
        if download is not None:
            download.close()

    @document_thread
    def start_export(self, format: str = "csv", page: PageRanges | None = None) -> None:
        """Download what the views show to the page (within ``page``, the ranges the page
        sent with its request): copies taken here, the file written off the loop, then
        streamed in chunks (one export at a time: see :class:`Download`)."""
        self.download.start(snapshot(self.views, page), format, self.export_title())

    def export_status(self, text: str) -> None:
        """Progress of the page's export ("" when done); front ends show it (default: log)."""
        if text:
            log.info("%s: %s", self.log_name(), text)

    # -- Document access from anywhere ------------------------------------------

    def on_document_thread(self) -> bool:
        """True on the Document's loop, or when there is no loop (no Document, a bare one)."""
        doc = self._doc
        if doc is None or doc.session_context is None or self._loop_thread is None:
            return True
        return threading.get_ident() == self._loop_thread

    def _in_document(self, callback: Callable[[], None], doc: Document | None = None) -> None:
        doc = doc if doc is not None else self._doc
        if doc is None:
            return
        if doc.session_context is None:  # a bare Document (tests, export): no loop to defer to
            callback()
            return
        try:
            doc.add_next_tick_callback(callback)
        except (AttributeError, RuntimeError, ValueError):
            log.debug("document of %r is gone", self)

    @any_thread
    def safe_document_modifications(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the Document's loop, with the Document locked (from any thread)."""
        if self.ready:
            self._in_document(callback)

    @any_thread
    def timeout_callback(self, callback: Callable[[], None], timeout: float) -> None:
        """Run ``callback`` on the Document's loop after ``timeout`` seconds (from any thread)."""
        if self.ready:
            self._add_timeout(callback, timeout)

    @document_thread
    def _add_timeout(self, callback: Callable[[], None], timeout: float) -> None:
        # bokeh's timers (tornado's call_later) may only be set on the Document's own loop
        doc = self._doc
        if doc is None:
            return
        try:
            doc.add_timeout_callback(callback, int(1000 * timeout))
        except (AttributeError, RuntimeError, ValueError):
            log.debug("document of %r is gone", self)


def _show_problem(view: Any, text: str | None) -> None:
    show = getattr(view, "show_problem", None)
    if show is None:
        return
    try:
        show(text)
    except Exception:
        log.exception("view %r cannot show its problem", view)


atexit.register(Session.close_all)
