"""Starting, keeping alive and stopping Tango acquisition, off the caller's thread.

Every Tango call (proxy creation, configuration read, ``subscribe_event``,
``unsubscribe_event``, ``read_attributes``) runs on a small worker pool, so the
bokeh loop never blocks on a slow or dead device. A single scheduler thread
times retries and client polling. Polling is a guest of the device
(:mod:`.polling`): one ``read_attributes`` per device and period for the
attributes that answer quickly, slow ones read alone at a pace of their own,
a batch that fails as a whole split, at most one read in flight per device
and the device's total read time within ``poll_budget`` of wall time.

Events are subscribed in Tango's pull mode: Tango's event thread only queues
them (in C++, without the GIL), and one drain thread empties every queue each
``drain_period``, converting whole batches. A callback subscription would run
Python on Tango's event thread for every event, through PyTango's callback
wrappers; under an event storm that costs a quarter of the events a process
can take in (``bench/bench_ingest.py``). The queues are bounded (by bytes per
attribute); a drain that finds one full is counted, as events may have been
lost before the hub saw them. Nothing Tango holds refers to a feed.

The chain is chosen again at run time (the rules are in :mod:`.modes`): an error
event saying the events stopped (``API_PollObjNotFound`` when the device's
polling of the attribute is stopped, after which nothing comes for as long as
the device lives), or periodic events overdue by half an interval, make the
drain hand the attribute to a worker that drops the subscription and runs the
chain again (client polling when no event type works any more, at once). Each
client-polled device is asked every ``events_recheck`` seconds which
attributes it polls itself (one ``polling_status`` call); those go back to
events. An event subscription whose device stops answering
(``API_EventTimeout``) is kept, since Tango subscribes again by itself, but its
mode is ``pending`` until events flow again.

Each attribute's configuration is followed too: once its values flow (events
or polling), its attribute-configuration events are subscribed the same way,
and the drain hands the newest configuration (unit, format, limits, labels)
to the feed, which dates it; views have it on their next tick.

Tango's client event system is not safe for concurrent ``subscribe_event`` /
``unsubscribe_event`` calls from several threads (PyTango issue 307; here:
heap corruption within a few hundred fast cycles), so those two calls are
serialised process-wide by one lock that no event callback ever takes. The
configuration read that precedes a subscription is outside the lock, so an
unreachable device fails there without holding up the others.

No attribute can stop the others. Each attribute's work (converting a read,
draining its queue, storing into its feed, connecting) is guarded on its own:
an exception becomes an error sample of that attribute (shown on the page as
an error, not as a frozen value) and a log line at most once a minute per
attribute. The two long-lived threads (scheduler, drain) are supervised: one
that dies anyway is restarted after a short back-off, logged at ERROR with
the reason and counted (``stats()["worker_restarts"]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import tango

from .convert import (
    error_text,
    info_from_config,
    sample_from_attribute,
    sample_from_exception,
    samples_from_events,
)
from .losses import (
    MISSED_EVENTS,
    RATES_KEPT,
    Tail,
    batch_rate,
    consecutive,
    estimate_lost,
    missed_events,
    typical_rate,
)
from .modes import (
    MAX_POLL_PERIOD,
    Mode,
    Reaction,
    Step,
    checked_poll_period,
    event_error,
    following,
    looks_again,
    may_have_events,
    missing_text,
    next_step,
    overdue,
    periodic_interval,
    polled_attributes,
    unreachable_text,
)
from .names import AttributeName
from .polling import (
    DEFAULT_BUDGET,
    Failure,
    PollRate,
    batch_cost,
    classify,
    effective_periods,
    is_slow,
    may_rejoin,
    next_cost,
)
from .proxies import ProxyCache
from .sample import AttributeInfo, Quality, Sample

log = logging.getLogger(__name__)

_EVENT_TYPES = {
    Mode.CHANGE: tango.EventType.CHANGE_EVENT,
    Mode.PERIODIC: tango.EventType.PERIODIC_EVENT,
    Mode.ARCHIVE: tango.EventType.ARCHIVE_EVENT,
}


#: Configuration events kept per attribute between two drains (only the newest is used).
CONFIG_QUEUE = 8

#: Serialises subscribe_event/unsubscribe_event of the whole process (see module doc).
_EVENT_CALLS = threading.Lock()


class Feed(Protocol):
    """Where acquisition delivers what it learns about one attribute (the hub's channel)."""

    def push(self, sample: Sample) -> None: ...

    def extend(self, samples: list[Sample]) -> None: ...

    def note_queue_full(self) -> None: ...

    def note_lost(self, count: int) -> None:
        """An estimate of events lost before the feed saw them (see :mod:`.losses`)."""

    def set_mode(self, mode: Mode, error: str | None = None) -> None: ...

    def set_info(self, info: AttributeInfo) -> None: ...

    def set_poll(self, rate: PollRate) -> None:
        """How the attribute is polled now (its period is longer when slow or over budget)."""

    def resolve(self, name: AttributeName) -> None:
        """The device alias in the feed's name stands for the device of ``name``."""


@dataclasses.dataclass(frozen=True)
class AcquisitionConfig:
    """Tunables; the defaults suit a beamline control room."""

    poll_period: float = 1.0  # seconds between client polls of an attribute without events
    timeout_ms: int = 3000  # Tango client time-out of each device's proxy (every call we make)
    #: Per-device time-outs (ms) instead of ``timeout_ms``, by device name or alias.
    device_timeouts_ms: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Time-out of the reads of an attribute found too slow for its device's batch (it is
    #: read alone, through a proxy of its own): long enough for it to answer at all.
    slow_timeout_ms: int = 10_000
    #: Share of each device's wall time that our polling reads may take (see tango/polling.py).
    poll_budget: float = DEFAULT_BUDGET
    retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)  # while a device is unreachable
    #: Seconds between two looks for an attribute its device does not have (yet): dynamic
    #: attributes appear late, a device restarted with another configuration may add it.
    missing_retry: float = 10.0
    #: Seconds between two looks, per client-polled device, for attributes the device now
    #: polls itself (their events are then used instead of client polling).
    events_recheck: float = 10.0
    workers: int = 8
    drain_period: float = 0.025  # seconds between two drains of Tango's event queues
    queue_bytes: int = 32 << 20  # bound of one attribute's event queue (declared sizes)
    max_queue: int = 10_000  # events; enough for a scalar storm between two drains

    def __post_init__(self) -> None:
        checked_poll_period(self.poll_period)
        _check_seconds("drain_period", self.drain_period, 1.0)
        _check_seconds("missing_retry", self.missing_retry, 3600.0)
        _check_seconds("events_recheck", self.events_recheck, 3600.0)
        if not self.retry_delays:
            raise ValueError("retry_delays needs at least one delay")
        for delay in self.retry_delays:
            _check_seconds("retry_delays", delay, 3600.0)
        if not (isinstance(self.poll_budget, int | float) and 0 < self.poll_budget <= 1):
            raise ValueError(f"poll_budget must be a fraction above 0 and at most 1: "
                             f"{self.poll_budget!r}")  # fmt: skip
        counts = {"timeout_ms": self.timeout_ms, "workers": self.workers,
                  "queue_bytes": self.queue_bytes, "max_queue": self.max_queue,
                  "slow_timeout_ms": self.slow_timeout_ms}  # fmt: skip
        counts.update({f"device_timeouts_ms[{k!r}]": v for k, v in self.device_timeouts_ms.items()})
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")


def _check_seconds(name: str, value: float, high: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= high):
        raise ValueError(f"{name} must be finite seconds, above 0 and at most {high:g}: {value!r}")


#: Names of the long-lived acquisition threads (``tango-acq-<name>``), as stats label them.
WORKERS = ("scheduler", "drain")
#: Longest the scheduler sleeps at once, whatever its next timer (a timer far away, or a
#: clock that jumped, can never make ``wait`` overflow).
MAX_WAIT = 60.0


def restart_delay(failures: int) -> float:
    """Seconds before restarting a worker that died ``failures`` times in a row: 0.5 s, doubling
    to 30 s (a worker that dies at once must not spin)."""
    return min(30.0, 0.5 * 2.0 ** min(max(failures - 1, 0), 16))


class LogLimit:
    """At most one log line per key and ``interval`` seconds. Thread-safe."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged, held back since)

    def check(self, key: str, now: float | None = None) -> int | None:
        """``None``: stay quiet; else log now, and this many lines were held back before it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval:
                self._seen[key] = (entry[0], entry[1] + 1)
                return None
            if len(self._seen) >= 4096:  # forget keys that have been quiet a whole interval
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
            self._seen[key] = (now, 0)
            return entry[1] if entry is not None else 0


def queue_size(info: AttributeInfo, config: AcquisitionConfig) -> int:
    """Length of an attribute's Tango event queue: bounded in bytes, at least 2 events."""
    try:
        itemsize = np.dtype(info.dtype).itemsize if info.dtype != "object" else 64
    except TypeError:
        itemsize = 64
    values = max(info.max_dim_x, 1) * max(info.max_dim_y, 1)
    return max(2, min(config.max_queue, config.queue_bytes // (values * itemsize + 256)))


def _event_period(config: Any) -> Any:
    """``per_event.period`` of an ``AttributeInfoEx`` (ms, as text), ``None`` if it has none."""
    events = getattr(config, "events", None)
    return getattr(getattr(events, "per_event", None), "period", None)


class Handle:
    """The acquisition of one attribute for one feed; ``stop()`` ends it (asynchronously)."""

    def __init__(self, owner: Acquisition, name: AttributeName, feed: Feed, period: float) -> None:
        self.name = name
        self.period = period
        self._owner = owner
        self._feed = weakref.ref(feed)
        self._lock = threading.Lock()
        self.mode = Mode.PENDING
        self.event_id: int | None = None
        self.queue_size = 0  # of the Tango event queue, while subscribed
        self.config_id: int | None = None  # attribute-configuration event subscription
        self.proxy: Any = None
        self.stopped = False
        self.attempts = 0
        self.missing = False  # the device has no such attribute (yet): looked for again
        self.unreachable = False  # the newest event said the device does not answer
        self.size = 2  # length of its Tango event queue (from its configuration)
        self.event_period: Any = None  # per_event.period of its configuration (ms, text)
        self.interval: float | None = None  # seconds between periodic events, when known
        self.last_event = 0.0  # monotonic time events were last drained
        self.late = 0  # times its events were found overdue but alive, in a row
        self.reevaluating = False  # the chain is being run again
        self.tail: Tail | None = None  # the newest event taken in (for loss estimates)
        self.quiet_at: float | None = None  # when the last drain found its queue empty
        self.counter = False  # its value counts its events (one step each): exact losses
        self.rates: deque[float] = deque(maxlen=RATES_KEPT)  # of its last batches (events/s)

    @property
    def feed(self) -> Feed | None:
        return self._feed()

    def stop(self) -> None:
        """Stop acquiring; idempotent, returns at once."""
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
        self._owner._submit(self._owner._disconnect, self)

    def __repr__(self) -> str:
        return f"<Handle {self.name} {self.mode}{' stopped' if self.stopped else ''}>"


class Acquisition:
    """Runs the subscription chain and client polling for any number of attributes."""

    def __init__(self, config: AcquisitionConfig | None = None) -> None:
        self.config = config or AcquisitionConfig()
        self._device_timeouts = {k.lower(): v for k, v in self.config.device_timeouts_ms.items()}
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="tango-acq")
        self._lock = threading.Lock()
        self._event_calls = _EVENT_CALLS
        self._proxies = ProxyCache(self.config.timeout_ms)
        self._polls: dict[str, _DevicePoll] = {}
        self._live: set[Handle] = set()  # handles holding a Tango event subscription
        self._configs: set[Handle] = set()  # handles following configuration events
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._stopping = threading.Event()  # set by close(): ends the drain and any back-off
        self._log_limit = LogLimit()
        self._restarts = dict.fromkeys(WORKERS, 0)
        self._down: set[str] = set()  # workers waiting to be restarted
        self._reevaluations = 0  # event subscriptions whose chain was run again
        self._scheduler = self._worker("scheduler", self._run_scheduler)
        self._drainer = self._worker("drain", self._run_drain)

    # -- public -----------------------------------------------------------------

    def start(self, name: AttributeName, feed: Feed, poll_period: float | None = None) -> Handle:
        """Begin acquiring ``name`` into ``feed``; returns at once.

        ``ValueError`` at once if ``poll_period`` is not a finite number of seconds
        within :data:`~.modes.MIN_POLL_PERIOD` … :data:`~.modes.MAX_POLL_PERIOD`.
        """
        period = checked_poll_period(
            self.config.poll_period if poll_period is None else poll_period
        )
        handle = Handle(self, name, feed, period)
        self._submit(self._connect, handle)
        return handle

    @property
    def running(self) -> bool:
        """Open, and every worker thread alive and working (not waiting to be restarted)."""
        with self._lock:
            down = bool(self._down)
        return (
            not self._closed
            and not down
            and self._scheduler.is_alive()
            and self._drainer.is_alive()
        )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "subscriptions": len(self._live),
                "config_subscriptions": len(self._configs),
                "polled": sum(
                    len(a.handles) for p in self._polls.values() for a in p.attrs.values()
                ),
                "polled_devices": len(self._polls),
                "device_reads": sum(p.reads for p in self._polls.values()),
                "poll_duration": max((p.last_duration for p in self._polls.values()), default=0.0),
                "poll_load": {p.address: p.load for p in self._polls.values()},
                "poll_busy": {p.address: p.busy for p in self._polls.values()},
                "poll_splits": sum(p.splits for p in self._polls.values()),
                "reevaluations": self._reevaluations,
                "events_rechecks": sum(p.rechecks for p in self._polls.values()),
                "proxies": len(self._proxies),
                "worker_restarts": dict(self._restarts),
            }

    def close(self, wait: bool = True) -> None:
        """Unsubscribe everything and stop the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live = list(self._live | self._configs)
            self._wake.notify_all()
        self._stopping.set()
        self._drainer.join(timeout=5)
        for handle in live:
            with handle._lock:
                handle.stopped = True
            self._disconnect(handle)
        self._scheduler.join(timeout=5)
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # -- plumbing ---------------------------------------------------------------

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the pool may have shut down meanwhile
            self._pool.submit(self._pool_task, fn, *args)

    def _pool_task(self, fn: Callable[..., None], *args: Any) -> None:
        """A worker pool task: nothing it raises is lost in a future nobody reads."""
        try:
            self._guard(fn, *args)
        except BaseException as exc:
            log.error("acquisition task %s ended by %r", getattr(fn, "__name__", fn), exc)

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        """Run one task; an ``Exception`` ends that task only, and is logged (rate-limited)."""
        try:
            fn(*args)
        except Exception as exc:
            what = getattr(fn, "__name__", repr(fn))
            about = getattr(args[0], "name", args[0]) if args else ""
            self._log_limited(f"task {what} {about}", "acquisition task %s %s failed", what, about,
                              exc=exc)  # fmt: skip

    def _log_limited(self, key: str, message: str, *args: Any, exc: BaseException) -> None:
        """``log.error`` with the traceback, at most once a minute per ``key``."""
        held = self._log_limit.check(key)
        if held is not None:
            more = f" ({held} more since the last report)" if held else ""
            log.error(message + "%s", *args, more, exc_info=exc)

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        if not math.isfinite(delay):  # refused here, on the caller's thread, not the scheduler's
            raise ValueError(f"a timer delay must be a finite number of seconds, got {delay}")
        with self._lock:
            if self._closed:
                return
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), fn))
            self._wake.notify()

    # -- the long-lived threads, supervised -------------------------------------

    def _worker(self, name: str, run: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(
            target=self._supervise, args=(name, run), name=f"tango-acq-{name}", daemon=True
        )
        thread.start()
        return thread

    def _supervise(self, name: str, run: Callable[[], None]) -> None:
        """Thread body: ``run()`` until it returns (at close); if it dies, say why, count it,
        back off, and run it again.

        The watchdog is this loop, not another thread polling ``is_alive()``: a
        Python thread ends only by its function returning or raising, and the
        raising is caught here, so nothing else needs watching (and nothing
        watches a watcher). ``run`` guards each attribute's work itself; what
        reaches this loop is a bug outside that guard or a ``BaseException``.
        While it backs off, :attr:`running` is false (``/healthz`` fails); it
        is true again as soon as the worker runs.
        """
        failures = 0
        while True:
            started = time.monotonic()
            try:
                run()
                return
            except BaseException as exc:
                if self._closed:
                    return
                # A worker that ran a while before dying starts its back-off afresh.
                failures = 1 if time.monotonic() - started > 60.0 else failures + 1
                delay = restart_delay(failures)
                with self._lock:
                    self._restarts[name] += 1
                    self._down.add(name)
                    count = self._restarts[name]
                log.error(
                    "acquisition worker %r died (%s: %s); restarting it in %g s (restart %d)",
                    name, type(exc).__name__, exc, delay, count, exc_info=exc,
                )  # fmt: skip
            if self._stopping.wait(delay):
                return
            with self._lock:
                self._down.discard(name)

    def _run_scheduler(self) -> None:
        """Thread contract: runs each timer when it is due; a timer raising ends only itself."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn = heapq.heappop(self._timers)
                    self._lock.release()
                    try:
                        self._guard(fn)
                    finally:
                        self._lock.acquire()
                timeout = min(self._timers[0][0] - now, MAX_WAIT) if self._timers else None
                self._wake.wait(timeout)

    def timeout_ms(self, name: AttributeName) -> int:
        """The client time-out of ``name``'s device: its entry in ``device_timeouts_ms`` (by
        device name, alias or address, any case), else ``timeout_ms``."""
        timeouts = self._device_timeouts
        for key in (name.device_address.lower(), name.device.lower()):
            if key in timeouts:
                return timeouts[key]
        return self.config.timeout_ms

    def _proxy(self, name: AttributeName) -> Any:
        return self._proxies.get(name.device_address, self.timeout_ms(name))

    # -- the subscription chain -------------------------------------------------

    def _connect(self, handle: Handle) -> None:
        """Run the subscription chain; an unexpected error fails this attribute only."""
        try:
            self._subscribe(handle)
        except Exception as exc:
            text = self._attribute_failed(handle, "connect", exc)
            feed = handle.feed
            if feed is not None:
                with contextlib.suppress(Exception):
                    feed.set_mode(Mode.FAILED, text)

    def _subscribe(self, handle: Handle) -> None:
        feed = handle.feed
        if handle.stopped or feed is None:
            return
        handle.attempts += 1
        name = handle.name
        try:
            handle.proxy = proxy = self._proxy(name)
            config = proxy.get_attribute_config(name.attribute)
            info = info_from_config(config)
        except tango.DevFailed as exc:
            self._failed(handle, feed, Mode.PENDING, exc)
            return
        if name.is_alias:  # Tango resolved the alias when it made the proxy
            feed.resolve(dataclasses.replace(name, device=proxy.dev_name()))
        feed.set_info(info)
        handle.size = queue_size(info, self.config)
        handle.event_period = _event_period(config)
        outcome = self._event_chain(handle)
        if outcome is None:
            return  # stopped meanwhile
        mode, event_id, exc = outcome
        if exc is not None:
            self._failed(handle, feed, mode, exc)
            return
        if event_id is not None:
            if not self._go_live(handle, feed, mode, event_id):
                return
            handle.attempts = 0
        else:
            self._start_polling(handle, feed)
        self._follow_config(handle)

    def _event_chain(self, handle: Handle) -> tuple[Mode, int | None, Any] | None:
        """Subscribe to the first event type of the chain that works: ``(mode, event id,
        None)``; ``(POLL, None, None)`` when none does; ``(mode, None, DevFailed)`` when the
        device cannot be reached or the name is wrong; ``None`` if stopped meanwhile."""
        proxy, attribute = handle.proxy, handle.name.attribute
        mode = Mode.CHANGE
        while mode is not Mode.POLL:
            if handle.stopped:
                return None
            try:
                with self._event_calls:
                    event_id = proxy.subscribe_event(
                        attribute, _EVENT_TYPES[mode], handle.size,
                        sub_mode=tango.EventSubMode.SyncRead,
                    )  # fmt: skip
            except tango.DevFailed as exc:
                step = next_step(mode, error_text(exc.args)[0])
                if step is Step.NEXT:
                    mode = following(mode)
                elif step is Step.POLL:
                    mode = Mode.POLL
                else:
                    return mode, None, exc
            else:
                return mode, event_id, None
        return Mode.POLL, None, None

    def _go_live(self, handle: Handle, feed: Feed, mode: Mode, event_id: int) -> bool:
        """Make a new event subscription the attribute's acquisition; False if the handle
        was stopped meanwhile (the subscription is then dropped)."""
        interval = None
        if mode is Mode.PERIODIC:  # when the next event is due (the device's polling period)
            try:
                poll_ms = handle.proxy.get_attribute_poll_period(handle.name.attribute)
            except tango.DevFailed:
                poll_ms = 0
            interval = periodic_interval(handle.event_period, poll_ms)
        with handle._lock:
            stopped = handle.stopped
            if not stopped:
                handle.event_id, handle.mode = event_id, mode
                handle.queue_size, handle.interval = handle.size, interval
                handle.last_event, handle.unreachable = time.monotonic(), False
        if stopped:  # stop() raced with us: its disconnect did not see this subscription
            self._unsubscribe(handle, event_id)
            return False
        try:  # the first event (SyncRead) is in the feed before the mode says so; the drain
            self._drain(handle)  # thread takes over once the handle is live
        except Exception as exc:  # as on the drain thread: this attribute's error
            self._attribute_failed(handle, "take in events", exc)
        with self._lock:
            self._live.add(handle)
        with handle._lock:
            taken = handle.event_id != event_id  # a disconnect took it meanwhile
        if taken:
            with self._lock:
                self._live.discard(handle)
            return False
        feed.set_mode(mode)
        return True

    def _unsubscribe(self, handle: Handle, event_id: int) -> None:
        try:
            with self._event_calls:
                handle.proxy.unsubscribe_event(event_id)
        except tango.DevFailed as exc:
            log.warning("unsubscribing %s: %s", handle.name, error_text(exc.args)[1])

    # -- the chain again, at run time: events stopped → polling; events back → events -------

    def _choose_again(self, handle: Handle, why: str, silent: bool = False) -> None:
        """Run :meth:`_reevaluate` on a worker (from the drain thread), once at a time."""
        with handle._lock:
            if handle.reevaluating or handle.stopped or handle.event_id is None:
                return
            handle.reevaluating = True
        self._submit(self._reevaluate, handle, why, silent)

    def _reevaluate(self, handle: Handle, why: str, silent: bool) -> None:
        """The events stopped (an error said so, or periodic ones are overdue): drop the
        subscription and run the chain again; client polling if no event type works now."""
        try:
            with handle._lock:
                event_id, handle.event_id = handle.event_id, None
                if event_id is None or handle.stopped:
                    return
                before, handle.mode = handle.mode, Mode.PENDING
            with self._lock:
                self._live.discard(handle)
                self._reevaluations += 1
            held = self._log_limit.check(f"{handle.name} events stopped")
            if held is not None:
                log.warning("%s: %s; choosing how to acquire it again", handle.name, why)
            self._unsubscribe(handle, event_id)
            self._subscribe(handle)
            # Overdue but alive (the same events again): wait longer before the next look.
            handle.late = handle.late + 1 if silent and handle.mode is before else 0
        finally:
            with handle._lock:
                handle.reevaluating = False

    def _recheck_events(self, poll: _DevicePoll) -> None:
        """Client-polled attributes that the device now polls itself (device polling turned
        on at run time) go back to events. One ``polling_status`` per device and
        ``events_recheck``; a subscription attempt only for the attributes it lists."""
        with self._lock:
            poll.rechecks += 1
        try:
            polled = polled_attributes(poll.proxy.polling_status())
        except tango.DevFailed:
            return  # asked again next time
        with self._lock:
            handles = [
                h for p in poll.attrs.values() if may_have_events(p.attr, polled) for h in p.handles
            ]
        for handle in handles:
            feed = handle.feed
            if feed is None or handle.stopped or handle.mode is not Mode.POLL:
                continue
            outcome = self._event_chain(handle)
            if outcome is None or outcome[1] is None:
                continue  # still no event type that works
            mode, event_id, _ = outcome
            self._stop_polling(handle)
            if self._go_live(handle, feed, mode, event_id):
                log.info("%s: %s events again, client polling stopped", handle.name, mode)

    def _follow_config(self, handle: Handle) -> None:
        """Subscribe to the attribute's configuration events (unit, format, limits, labels
        changed on the device): the drain hands each new configuration to the feed."""
        if handle.stopped or handle.config_id is not None:  # already followed (chain again)
            return
        try:
            with self._event_calls:
                config_id = handle.proxy.subscribe_event(
                    handle.name.attribute,
                    tango.EventType.ATTR_CONF_EVENT,
                    CONFIG_QUEUE,
                    sub_mode=tango.EventSubMode.SyncRead,
                )
        except tango.DevFailed as exc:  # values still flow; the configuration stays as read
            key = f"{handle.name} configuration events"
            if self._log_limit.check(key) is not None:
                log.warning("%s: no configuration events: %s", handle.name, error_text(exc.args)[1])
            return
        with handle._lock:
            handle.config_id = config_id
            stopped = handle.stopped
        with self._lock:
            self._configs.add(handle)
        if stopped:  # stop() raced with us
            self._unfollow_config(handle)

    def _unfollow_config(self, handle: Handle) -> None:
        with handle._lock:
            config_id, handle.config_id = handle.config_id, None
        if config_id is None:
            return
        with self._lock:
            self._configs.discard(handle)
        try:
            with self._event_calls:
                handle.proxy.unsubscribe_event(config_id)
        except tango.DevFailed as exc:
            log.warning("unsubscribing %s configuration: %s", handle.name, error_text(exc.args)[1])

    def _failed(self, handle: Handle, feed: Feed, mode: Mode, exc: tango.DevFailed) -> None:
        reason, text = error_text(exc.args)
        step = next_step(mode, reason)
        sample = sample_from_exception(exc)
        if step is Step.FAIL:
            handle.mode = Mode.FAILED
            again = self.config.missing_retry
            if looks_again(reason):  # the device answers without it: it may come (dynamic)
                text = missing_text(handle.name.device, handle.name.attribute, again, text)
            feed.set_mode(Mode.FAILED, text)
            if not handle.missing:  # one error sample, not one per look
                feed.push(sample._replace(error=text))
            if looks_again(reason):
                handle.missing = True
                self._later(again, lambda: self._submit(self._connect, handle))
            return
        handle.mode = Mode.PENDING
        feed.set_mode(Mode.PENDING, text)
        feed.push(Sample(sample.time, None, Quality.INVALID, text, stale=True))
        delays = self.config.retry_delays
        delay = delays[min(handle.attempts, len(delays)) - 1]
        self._later(delay, lambda: self._submit(self._connect, handle))

    def _disconnect(self, handle: Handle) -> None:
        with handle._lock:
            event_id, handle.event_id = handle.event_id, None
            mode = handle.mode
            handle.mode = Mode.STOPPED
        if event_id is not None:
            with self._lock:
                self._live.discard(handle)
            self._unsubscribe(handle, event_id)
        if mode is Mode.POLL:
            self._stop_polling(handle)
        self._unfollow_config(handle)

    # -- draining the event queues ----------------------------------------------

    def _run_drain(self) -> None:
        """Thread contract: every ``drain_period``, each live subscription's queue into its
        feed; one attribute failing is that attribute's error, not the thread's."""
        period = self.config.drain_period
        stop = self._stopping
        while True:
            started = time.monotonic()
            with self._lock:
                live = list(self._live)
                configs = list(self._configs)
            for handle in live:
                try:
                    self._drain(handle)
                    interval = handle.interval
                    if interval is not None:  # periodic events: they must keep coming
                        silent = time.monotonic() - handle.last_event
                        if overdue(interval, silent, handle.late):
                            why = (f"no periodic event for {silent:.1f} s (expected every "
                                   f"{interval:g} s)")  # fmt: skip
                            self._choose_again(handle, why, silent=True)
                except Exception as exc:
                    self._attribute_failed(handle, "take in events", exc)
            for handle in configs:
                try:
                    self._drain_config(handle)
                except Exception as exc:
                    self._attribute_failed(handle, "take in a configuration", exc)
            if stop.wait(max(0.0, period - (time.monotonic() - started))):
                return

    def _drain(self, handle: Handle) -> None:
        """Move what Tango queued for ``handle`` into its feed; an error event as the newest
        one may change what the feed is told of the subscription (:func:`.modes.event_error`)."""
        event_id, proxy, feed = handle.event_id, handle.proxy, handle.feed
        if event_id is None or feed is None:
            return
        try:
            if proxy.is_event_queue_empty(event_id):
                handle.quiet_at = time.time()
                return
            events = proxy.get_events(event_id)
        except (tango.DevFailed, ValueError):
            return  # unsubscribed meanwhile
        quiet, handle.quiet_at = handle.quiet_at, None
        handle.last_event = time.monotonic()
        full = len(events) >= handle.queue_size
        if full:
            feed.note_queue_full()
        samples = samples_from_events(events)
        errors = [s.error for s in samples if s.error is not None]
        missed = missed_events(errors)
        if missed:  # ZMQ dropped events: a count, not an error of the attribute's value
            samples = [s for s in samples if not (s.error or "").startswith(MISSED_EVENTS)]
        feed.extend(samples)
        lossy = full or missed > 0
        self._count_lost(handle, feed, samples, len(errors) > missed, lossy, quiet)
        if not samples:
            return
        newest = events[-1]
        if newest.err:
            reaction = event_error(error_text(newest.errors)[0])
        elif newest.attr_value is None:
            return  # a subscription notice: says nothing of the device
        else:
            reaction = Reaction.VALUE
        if reaction is Reaction.EVENTS_STOPPED:
            self._choose_again(handle, f"its events stopped ({samples[-1].error})")
        elif reaction is Reaction.UNREACHABLE:
            if not handle.unreachable:  # not live until Tango's own re-subscription works
                handle.unreachable = True
                feed.set_mode(Mode.PENDING, unreachable_text(samples[-1].error or ""))
        elif handle.unreachable:  # the device answers again, and its events flow
            handle.unreachable = False
            feed.set_mode(handle.mode)

    @staticmethod
    def _count_lost(
        handle: Handle,
        feed: Feed,
        samples: list[Sample],
        errors: bool,
        lossy: bool,
        quiet: float | None,
    ) -> None:
        """Estimate the events lost before this batch when something says some were (a full
        queue, a missed-events notice); learn whether the attribute counts its events.
        ``errors``: some samples are errors (they are not events of the value); ``quiet``:
        when the previous drain found the queue empty (epoch s), if it did: the device was
        quiet then, what was lost is younger."""
        values = [s for s in samples if s.error is None] if errors else samples
        if not values:
            return
        first, last, count = values[0], values[-1], len(values)
        head, tail = Tail(first.time, first.value), Tail(last.time, last.value)
        if consecutive(first.value, last.value, count):
            handle.counter = True
        elif not lossy and count >= 3:
            handle.counter = False  # nothing lost, and not one step per event: no counter
        rate = batch_rate(head, tail, count)
        if rate is not None:
            handle.rates.append(rate)
        if lossy:
            rate = typical_rate(handle.rates)
            lost = estimate_lost(handle.tail, head, tail, count, handle.counter, quiet, rate)
            if lost:
                feed.note_lost(lost)
        handle.tail = tail

    @staticmethod
    def _drain_config(handle: Handle) -> None:
        """Give the feed the newest configuration Tango queued for ``handle``, if any."""
        config_id, proxy, feed = handle.config_id, handle.proxy, handle.feed
        if config_id is None or feed is None:
            return
        try:
            if proxy.is_event_queue_empty(config_id):
                return
            events = proxy.get_events(config_id)
        except (tango.DevFailed, ValueError):
            return  # unsubscribed meanwhile
        for event in reversed(events):
            if not event.err and event.attr_conf is not None:
                feed.set_info(info_from_config(event.attr_conf))
                return

    def _attribute_failed(self, handle: Handle, what: str, exc: Exception) -> str:
        """``handle``'s work raised: its feed gets an error sample, the log a line (rate-limited).

        Returns the error text.
        """
        text = f"tango_bokeh could not {what}: {type(exc).__name__}: {exc}"
        self._log_limited(f"{handle.name} {what}", "%s: %s", handle.name, text, exc=exc)
        feed = handle.feed
        if feed is not None:
            with contextlib.suppress(Exception):  # a feed that cannot take even this
                feed.push(Sample(time.time(), None, Quality.INVALID, text))
        return text

    # -- client polling: batched per device, slow attributes alone, within a budget ----------

    def _start_polling(self, handle: Handle, feed: Feed) -> None:
        key = handle.name.device_address.lower()
        attr = handle.name.attribute.lower()
        with self._lock:
            poll = self._polls.get(key)
            if poll is None:
                poll = self._polls[key] = _DevicePoll(key, handle.name.device_address, handle.proxy)
                poll.recheck_at = time.monotonic() + self.config.events_recheck
            polled = poll.attrs.get(attr)
            if polled is None:
                polled = poll.attrs[attr] = _Polled(attr)
            polled.handles.append(handle)
            told = polled.told
        with handle._lock:
            handle.mode = Mode.POLL
            stopped = handle.stopped
        if stopped:
            self._stop_polling(handle)
            return
        feed.set_mode(Mode.POLL)
        if told is not None:  # a second reader of an attribute already polled
            feed.set_poll(told)
        self._wake_poller(key, 0.0, only_if_idle=True)

    def _stop_polling(self, handle: Handle) -> None:
        key = handle.name.device_address.lower()
        attr = handle.name.attribute.lower()
        with self._lock:
            poll = self._polls.get(key)
            if poll is None:
                return
            polled = poll.attrs.get(attr)
            if polled is not None and handle in polled.handles:
                polled.handles.remove(handle)
            if polled is not None and not polled.handles:
                del poll.attrs[attr]
            if not poll.attrs:
                del self._polls[key]

    def _wake_poller(self, key: str, delay: float, only_if_idle: bool = False) -> None:
        """Run the device's poller in ``delay`` s; any earlier timer of it is void."""
        with self._lock:
            poll = self._polls.get(key)
            if poll is None or (only_if_idle and poll.in_flight):
                return  # a poller in flight plans its next round when it ends
            poll.wake += 1
            token = poll.wake
        self._later(delay, lambda: self._submit(self._poll_device, key, token))

    def _poll_device(self, key: str, token: int) -> None:
        """Thread contract: one round of reads of one device (never two rounds at once)."""
        with self._lock:
            poll = self._polls.get(key)
            if poll is None or poll.in_flight or token != poll.wake:
                return  # gone, busy, or an outdated timer
            poll.in_flight = True
        try:
            self._poll_round(poll)
        finally:
            with self._lock:
                poll.in_flight = False
                alive = self._polls.get(key) is poll
                delay, tell = self._plan(poll, time.monotonic()) if alive else (0.0, [])
            for handles, rate in tell:
                for handle in handles:
                    feed = handle.feed
                    if feed is not None and not handle.stopped:
                        with contextlib.suppress(Exception):
                            feed.set_poll(rate)
            if alive:
                self._wake_poller(key, delay)

    def _poll_round(self, poll: _DevicePoll) -> None:
        """Read what is due: new attributes alone (to learn their read time), the batch, then
        the slow attributes alone. A device that does not answer ends the round."""
        now = time.monotonic()
        with self._lock:
            if now < poll.resume_at:
                return
            down = poll.downs > 0
        if down:  # it did not answer last time: a ping says whether it is back
            answers = self._answers(poll)
            with self._lock:
                if not answers:
                    poll.resume_at = time.monotonic() + self._retry_delay(poll.downs)
                    poll.downs += 1
                    return
                poll.downs = 0
        with self._lock:
            new = [p for p in poll.attrs.values() if not p.probed]
            batch = [p for p in poll.attrs.values() if p.probed and not p.alone]
            alone = [p for p in poll.attrs.values() if p.alone and p.due <= now]
            batch_due = bool(batch) and poll.batch_due <= now
        if new and not self._read_alone(poll, new, probe=True):
            return
        if batch_due and not self._read_batch(poll, batch):
            return
        if not self._read_alone(poll, alone, probe=False):
            return
        with self._lock:
            recheck = now >= poll.recheck_at
            if recheck:
                poll.recheck_at = now + self.config.events_recheck
        if recheck:  # the device answers: does it poll some of them itself now?
            self._recheck_events(poll)

    def _read_batch(self, poll: _DevicePoll, batch: list[_Polled]) -> bool:
        """One ``read_attributes`` of the batch; split it if it fails as a whole. False if the
        round must end."""
        started = time.monotonic()
        names = [p.attr for p in batch]
        replies, elapsed, clean = self._read(poll, poll.proxy, names)
        with self._lock:
            poll.batch_last = started
        if not isinstance(replies, BaseException):
            if clean:  # else it waited for a read we gave up on: not its own time
                with self._lock:
                    poll.batch_cost = batch_cost(poll.batch_cost, elapsed)
            for polled, reply in zip(batch, replies, strict=False):
                self._deliver(polled, self._convert(poll.key, polled.attr, reply))
            return True
        failure = self._failure(replies)
        if failure is Failure.UNREACHABLE or (
            failure is Failure.TIMEOUT and not self._answers(poll)
        ):
            self._device_failed(poll, batch, replies, elapsed)
            return False
        if failure is Failure.TIMEOUT and not clean:
            self._busy_still(poll, elapsed)  # not the batch's fault: try again later
            return False
        # Failed as a whole while the device answers: one of them is slow or poisonous.
        with self._lock:
            for polled in batch:
                polled.probed = False  # each is read alone next, to find which
            poll.splits += 1
        if failure is Failure.TIMEOUT:
            self._busy_still(poll, elapsed)
            return False
        return self._read_alone(poll, batch, probe=True)

    def _read_alone(self, poll: _DevicePoll, polled_list: list[_Polled], probe: bool) -> bool:
        """Read each attribute on its own; classify it as batch member or slow. False if the
        round must end (the device does not answer, or is still busy with a timed-out read).

        Only a read that followed an answered one (``clean``) says something of the
        attribute: after a time-out the device may still be working on what we gave up
        on, and the next read waits for it.
        """
        budget = self.config.poll_budget
        for index, polled in enumerate(polled_list):
            proxy = poll.proxy if probe or not polled.alone else self._slow_proxy(poll)
            started = time.monotonic()
            replies, elapsed, clean = self._read(poll, proxy, [polled.attr])
            requested = polled.requested
            if isinstance(replies, BaseException):
                failure = self._failure(replies)
                if failure is Failure.UNREACHABLE or (
                    failure is Failure.TIMEOUT and not self._answers(poll)
                ):
                    self._device_failed(poll, polled_list[index:], replies, elapsed)
                    return False
                if failure is Failure.TIMEOUT and not clean:
                    with self._lock:  # not attributable: asked again later, after the others
                        if not polled.alone:
                            polled.probed = False
                            poll.attrs[polled.attr] = poll.attrs.pop(polled.attr)
                    self._busy_still(poll, elapsed)
                    return False
                sample = sample_from_exception(replies)
                if failure is Failure.TIMEOUT:
                    timeout = proxy.get_timeout_millis() / 1000.0
                    text = (
                        f"slow to read: no answer within {timeout:g} s (the device answers "
                        f"otherwise); read alone, within the device's polling budget"
                    )
                    sample = Sample(time.time(), None, Quality.INVALID, text, stale=True)
                with self._lock:  # slow or poisonous: alone, so that it harms only itself
                    polled.probed, polled.alone, polled.last = True, True, started
                    polled.cost = next_cost(polled.cost, elapsed)
                self._deliver(polled, sample)
                if failure is Failure.TIMEOUT:
                    self._busy_still(poll, elapsed)
                    return False
                continue
            with self._lock:
                polled.last = started
                if clean:  # this read decides where it belongs; the estimate only paces it
                    polled.probed = True
                    polled.cost = next_cost(None if probe else polled.cost, elapsed)
                    if is_slow(elapsed, requested, budget):
                        polled.alone = True
                    elif probe or may_rejoin(elapsed, requested, budget):
                        polled.alone = False  # fast: (back) in the batch
            self._deliver(polled, self._convert(poll.key, polled.attr, replies[0]))
        return True

    def _busy_still(self, poll: _DevicePoll, elapsed: float) -> None:
        """A read timed out: the device goes on with it, and any read now would wait for it.

        The next read goes through the slow proxy (its long time-out lets it wait for
        the device, and it answers as soon as the device is done); it says nothing of its
        attribute's read time. Time-outs in a row pause the device's reads, twice as long
        each time.
        """
        with self._lock:
            poll.timeouts += 1
            if poll.timeouts > 1:
                pause = min(MAX_WAIT, elapsed * 2 ** min(poll.timeouts - 2, 6))
                poll.resume_at = max(poll.resume_at, time.monotonic() + pause)

    def _read(self, poll: _DevicePoll, proxy: Any, names: list[str]) -> tuple[Any, float, bool]:
        """``read_attributes(names)``: the replies or the exception, the seconds it took, and
        whether the device had answered our previous read (else this one may have waited for
        the device to finish a read we gave up on)."""
        with self._lock:
            clean = poll.timeouts == 0
        if not clean:  # a barrier: answers as soon as the device is done with the last one
            proxy = self._slow_proxy(poll)
        started = time.monotonic()
        try:
            result: Any = proxy.read_attributes(names)
        except Exception as exc:
            result = exc
        elapsed = time.monotonic() - started
        answered = not isinstance(result, BaseException) or (self._failure(result) is Failure.OTHER)
        with self._lock:
            poll.reads += 1
            poll.busy += elapsed
            poll.last_duration = elapsed
            if answered:
                poll.timeouts = 0  # the device answered: nothing of ours is left in it
        return result, elapsed, clean

    def _retry_delay(self, downs: int) -> float:
        delays = self.config.retry_delays
        return delays[min(downs, len(delays) - 1)]

    def _answers(self, poll: _DevicePoll) -> bool:
        """Whether the device answers a ping: it does while a slow read holds it, not when its
        server hangs."""
        try:
            poll.proxy.ping()
        except Exception:
            return False
        return True

    @staticmethod
    def _failure(exc: BaseException) -> Failure:
        if not isinstance(exc, tango.DevFailed):
            return Failure.OTHER
        errors = exc.args
        return classify(
            [str(getattr(e, "reason", "")) for e in errors],
            [str(getattr(e, "desc", "")) for e in errors],
        )

    def _device_failed(
        self, poll: _DevicePoll, polled_list: list[_Polled], exc: BaseException, elapsed: float
    ) -> None:
        """The device did not answer: every attribute of the round says so; no read of the
        device until its budget allows (a time-out counts as a read of that length)."""
        if isinstance(exc, tango.DevFailed):
            sample = sample_from_exception(exc)
        else:  # not a Tango error: every attribute of the read shows it
            text = f"tango_bokeh could not read {poll.key}: {type(exc).__name__}: {exc}"
            self._log_limited(f"read {poll.key}", "%s", text, exc=exc)
            sample = Sample(time.time(), None, Quality.INVALID, text)
        with self._lock:
            # Nothing is read from it until it answers a ping again (tried at the retry
            # delays, see _poll_round): a device that is down is not harmed by our reads
            # but must be seen again within seconds of coming back.
            poll.resume_at = time.monotonic() + self._retry_delay(poll.downs)
            poll.downs += 1
            if self._failure(exc) is Failure.TIMEOUT:
                poll.timeouts += 1  # a hung server may run it when it wakes
        for polled in polled_list:
            self._deliver(polled, sample)

    def _deliver(self, polled: _Polled, sample: Sample) -> None:
        with self._lock:
            handles = list(polled.handles)
        for handle in handles:
            feed = handle.feed
            if feed is not None and not handle.stopped:
                try:
                    feed.push(sample)
                except Exception as exc:
                    self._attribute_failed(handle, "store a polled value", exc)

    def _convert(self, key: str, attr: str, reply: Any) -> Sample:
        """One reply as a sample; a reply that cannot be converted is that attribute's error."""
        try:
            return sample_from_attribute(reply)
        except Exception as exc:
            text = f"tango_bokeh could not convert the value: {type(exc).__name__}: {exc}"
            self._log_limited(f"convert {key}/{attr}", "%s/%s: %s", key, attr, text, exc=exc)
            return Sample(time.time(), None, Quality.INVALID, text)

    def _slow_proxy(self, poll: _DevicePoll) -> Any:
        """A proxy of the device for slow attributes alone, with the longer ``slow_timeout_ms``
        (a proxy's time-out applies to every call made through it)."""
        if poll.slow_proxy is None:
            proxy = tango.DeviceProxy(poll.address)
            proxy.set_timeout_millis(self.config.slow_timeout_ms)
            poll.slow_proxy = proxy
        return poll.slow_proxy

    def _plan(
        self, poll: _DevicePoll, now: float
    ) -> tuple[float, list[tuple[list[Handle], PollRate]]]:
        """Under the lock: each unit's period within the budget, the next due times, the
        delay until the next round and what to tell the feeds whose rate changed."""
        budget = self.config.poll_budget
        batch = [p for p in poll.attrs.values() if p.probed and not p.alone]
        alone = [p for p in poll.attrs.values() if p.probed and p.alone]
        units: list[tuple[float, float]] = []
        if batch:
            units.append((min(p.requested for p in batch), poll.batch_cost or 0.0))
        units += [(p.requested, p.cost or 0.0) for p in alone]
        periods = effective_periods(units, budget)
        tell: list[tuple[list[Handle], PollRate]] = []
        load = 0.0
        if batch:
            period = periods.pop(0)
            poll.batch_due = poll.batch_last + period
            load += (poll.batch_cost or 0.0) / period
            cost = poll.batch_cost or 0.0
            for p in batch:
                rate = PollRate(p.requested, max(p.requested, period), cost, False, budget)
                if rate.differs(p.told):
                    p.told = rate
                    tell.append((list(p.handles), rate))
        for p, period in zip(alone, periods, strict=True):
            p.due = p.last + period
            load += (p.cost or 0.0) / period
            rate = PollRate(p.requested, period, p.cost or 0.0, True, budget)
            if rate.differs(p.told):
                p.told = rate
                tell.append((list(p.handles), rate))
        poll.load = load
        dues = [poll.batch_due] if batch else []
        dues += [p.due for p in alone]
        if any(not p.probed for p in poll.attrs.values()):
            dues.append(now)
        wake = max(min(dues, default=now + MAX_WAIT), poll.resume_at)
        return max(0.0, wake - now), tell


@dataclasses.dataclass(eq=False)
class _Polled:
    """One attribute under client polling, as its device's poller sees it."""

    attr: str
    handles: list[Handle] = dataclasses.field(default_factory=list)
    probed: bool = False  # read alone once, so its read time is known
    alone: bool = False  # too slow (or failing as a whole) for the batch: read on its own
    cost: float | None = None  # seconds a read of it alone takes (estimate)
    last: float = 0.0  # monotonic time its last read alone started
    due: float = 0.0  # when it is next read alone
    told: PollRate | None = None  # what its feeds were last told

    @property
    def requested(self) -> float:
        return min((h.period for h in self.handles), default=MAX_POLL_PERIOD)


class _DevicePoll:
    """Client polling of one device: its attributes, its batch, its budget. Guarded by the
    acquisition's lock, read by one round at a time."""

    def __init__(self, key: str, address: str, proxy: Any) -> None:
        self.key = key
        self.address = address
        self.proxy = proxy
        self.slow_proxy: Any = None  # made on first need, on a polling thread
        self.attrs: dict[str, _Polled] = {}
        self.in_flight = False
        self.wake = 0  # token of the one timer that may start the next round
        self.reads = 0
        self.splits = 0  # batch reads that failed as a whole and were split
        self.busy = 0.0  # seconds spent reading, in total
        self.last_duration = 0.0
        self.batch_cost: float | None = None
        self.batch_last = 0.0
        self.batch_due = 0.0
        self.resume_at = 0.0  # no read before this (the device did not answer, or is busy)
        self.timeouts = 0  # our reads in a row that timed out (the device may still run them)
        self.downs = 0  # rounds in a row the device did not answer (retried by ping)
        self.load = 0.0  # planned share of the device's time taken by our reads
        self.recheck_at = 0.0  # when to look for attributes the device now polls (events)
        self.rechecks = 0
