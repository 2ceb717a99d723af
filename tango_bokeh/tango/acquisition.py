"""Starting, keeping alive and stopping Tango acquisition, off the caller's thread.

Every Tango call (proxy creation, configuration read, ``subscribe_event``,
``unsubscribe_event``, ``read_attributes``) runs on a small worker pool, so the
bokeh loop never blocks on a slow or dead device. A single scheduler thread
times retries and client polling. Polling is batched per device: one
``read_attributes`` call per device and period, never two in flight.

Events are subscribed in Tango's pull mode: Tango's event thread only queues
them (in C++, without the GIL), and one drain thread empties every queue each
``drain_period``, converting whole batches. A callback subscription would run
Python on Tango's event thread for every event, through PyTango's callback
wrappers; under an event storm that costs a quarter of the events a process
can take in (``bench/bench_ingest.py``). The queues are bounded (by bytes per
attribute); a drain that finds one full is counted, as events may have been
lost before the hub saw them. Nothing Tango holds refers to a feed.

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
from collections.abc import Callable
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
from .modes import Mode, Step, checked_poll_period, following, next_step
from .names import AttributeName
from .sample import AttributeInfo, Quality, Sample

log = logging.getLogger(__name__)

_EVENT_TYPES = {
    Mode.CHANGE: tango.EventType.CHANGE_EVENT,
    Mode.PERIODIC: tango.EventType.PERIODIC_EVENT,
    Mode.ARCHIVE: tango.EventType.ARCHIVE_EVENT,
}


#: Serialises subscribe_event/unsubscribe_event of the whole process (see module doc).
_EVENT_CALLS = threading.Lock()


class Feed(Protocol):
    """Where acquisition delivers what it learns about one attribute (the hub's channel)."""

    def push(self, sample: Sample) -> None: ...

    def extend(self, samples: list[Sample]) -> None: ...

    def note_queue_full(self) -> None: ...

    def set_mode(self, mode: Mode, error: str | None = None) -> None: ...

    def set_info(self, info: AttributeInfo) -> None: ...

    def resolve(self, name: AttributeName) -> None:
        """The device alias in the feed's name stands for the device of ``name``."""


@dataclasses.dataclass(frozen=True)
class AcquisitionConfig:
    """Tunables; the defaults suit a beamline control room."""

    poll_period: float = 1.0  # seconds between client polls of an attribute without events
    timeout_ms: int = 3000  # Tango client time-out for every call we make
    retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)  # while a device is unreachable
    workers: int = 8
    drain_period: float = 0.025  # seconds between two drains of Tango's event queues
    queue_bytes: int = 32 << 20  # bound of one attribute's event queue (declared sizes)
    max_queue: int = 10_000  # events; enough for a scalar storm between two drains

    def __post_init__(self) -> None:
        checked_poll_period(self.poll_period)
        _check_seconds("drain_period", self.drain_period, 1.0)
        if not self.retry_delays:
            raise ValueError("retry_delays needs at least one delay")
        for delay in self.retry_delays:
            _check_seconds("retry_delays", delay, 3600.0)
        counts = {"timeout_ms": self.timeout_ms, "workers": self.workers,
                  "queue_bytes": self.queue_bytes, "max_queue": self.max_queue}  # fmt: skip
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
        self.proxy: Any = None
        self.stopped = False
        self.attempts = 0

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


class _DevicePoll:
    """Client polling of all polled attributes of one device."""

    def __init__(self, proxy: Any, period: float) -> None:
        self.proxy = proxy
        self.period = period
        self.handles: dict[str, list[Handle]] = {}
        self.in_flight = False
        self.reads = 0
        self.last_duration = 0.0


class Acquisition:
    """Runs the subscription chain and client polling for any number of attributes."""

    def __init__(self, config: AcquisitionConfig | None = None) -> None:
        self.config = config or AcquisitionConfig()
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="tango-acq")
        self._lock = threading.Lock()
        self._event_calls = _EVENT_CALLS
        self._proxies: dict[str, Any] = {}
        self._polls: dict[str, _DevicePoll] = {}
        self._live: set[Handle] = set()  # handles holding a Tango event subscription
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._stopping = threading.Event()  # set by close(): ends the drain and any back-off
        self._log_limit = LogLimit()
        self._restarts = dict.fromkeys(WORKERS, 0)
        self._down: set[str] = set()  # workers waiting to be restarted
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
                "polled": sum(len(hs) for p in self._polls.values() for hs in p.handles.values()),
                "polled_devices": len(self._polls),
                "device_reads": sum(p.reads for p in self._polls.values()),
                "poll_duration": max((p.last_duration for p in self._polls.values()), default=0.0),
                "proxies": len(self._proxies),
                "worker_restarts": dict(self._restarts),
            }

    def close(self, wait: bool = True) -> None:
        """Unsubscribe everything and stop the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live = list(self._live)
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

    def _proxy(self, name: AttributeName) -> Any:
        key = name.device_address.lower()
        with self._lock:
            proxy = self._proxies.get(key)
        if proxy is None:
            proxy = tango.DeviceProxy(name.device_address)
            proxy.set_timeout_millis(self.config.timeout_ms)
            with self._lock:
                proxy = self._proxies.setdefault(key, proxy)
        return proxy

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
            info = info_from_config(proxy.get_attribute_config(name.attribute))
        except tango.DevFailed as exc:
            self._failed(handle, feed, Mode.PENDING, exc)
            return
        if name.is_alias:  # Tango resolved the alias when it made the proxy
            feed.resolve(dataclasses.replace(name, device=proxy.dev_name()))
        feed.set_info(info)
        size = queue_size(info, self.config)
        mode = Mode.CHANGE
        while mode is not Mode.POLL:
            if handle.stopped:
                return
            try:
                with self._event_calls:
                    event_id = proxy.subscribe_event(
                        name.attribute,
                        _EVENT_TYPES[mode],
                        size,
                        sub_mode=tango.EventSubMode.SyncRead,
                    )
            except tango.DevFailed as exc:
                reason, _ = error_text(exc.args)
                step = next_step(mode, reason)
                if step is Step.NEXT:
                    mode = following(mode)
                elif step is Step.POLL:
                    mode = Mode.POLL
                else:
                    self._failed(handle, feed, mode, exc)
                    return
            else:
                with handle._lock:
                    handle.event_id, handle.mode = event_id, mode
                    handle.queue_size = size
                    stopped = handle.stopped
                with self._lock:
                    self._live.add(handle)
                if stopped:  # stop() raced with us: its disconnect may have missed the id
                    self._disconnect(handle)
                else:
                    feed.set_mode(mode)
                    handle.attempts = 0
                return
        self._start_polling(handle, feed)

    def _failed(self, handle: Handle, feed: Feed, mode: Mode, exc: tango.DevFailed) -> None:
        reason, text = error_text(exc.args)
        step = next_step(mode, reason)
        sample = sample_from_exception(exc)
        if step is Step.FAIL:
            handle.mode = Mode.FAILED
            feed.set_mode(Mode.FAILED, text)
            feed.push(sample)
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
            try:
                with self._event_calls:
                    handle.proxy.unsubscribe_event(event_id)
            except tango.DevFailed as exc:
                log.warning("unsubscribing %s: %s", handle.name, error_text(exc.args)[1])
        if mode is Mode.POLL:
            self._stop_polling(handle)

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
            for handle in live:
                try:
                    self._drain(handle)
                except Exception as exc:
                    self._attribute_failed(handle, "take in events", exc)
            if stop.wait(max(0.0, period - (time.monotonic() - started))):
                return

    @staticmethod
    def _drain(handle: Handle) -> None:
        """Move what Tango queued for ``handle`` into its feed."""
        event_id, proxy, feed = handle.event_id, handle.proxy, handle.feed
        if event_id is None or feed is None:
            return
        try:
            if proxy.is_event_queue_empty(event_id):
                return
            events = proxy.get_events(event_id)
        except (tango.DevFailed, ValueError):
            return  # unsubscribed meanwhile
        if len(events) >= handle.queue_size:
            feed.note_queue_full()
        feed.extend(samples_from_events(events))

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

    # -- client polling, batched per device -------------------------------------

    def _start_polling(self, handle: Handle, feed: Feed) -> None:
        key = handle.name.device_address.lower()
        attr = handle.name.attribute.lower()
        with self._lock:
            poll = self._polls.get(key)
            new = poll is None
            if new:
                poll = self._polls[key] = _DevicePoll(handle.proxy, handle.period)
            poll.period = min(poll.period, handle.period)
            poll.handles.setdefault(attr, []).append(handle)
        with handle._lock:
            handle.mode = Mode.POLL
            stopped = handle.stopped
        if stopped:
            self._stop_polling(handle)
            return
        feed.set_mode(Mode.POLL)
        if new:
            self._submit(self._poll_device, key)

    def _stop_polling(self, handle: Handle) -> None:
        key = handle.name.device_address.lower()
        attr = handle.name.attribute.lower()
        with self._lock:
            poll = self._polls.get(key)
            if poll is None:
                return
            handles = poll.handles.get(attr, [])
            if handle in handles:
                handles.remove(handle)
            if not handles:
                poll.handles.pop(attr, None)
            if not poll.handles:
                del self._polls[key]

    def _poll_device(self, key: str) -> None:
        with self._lock:
            poll = self._polls.get(key)
            if poll is None or poll.in_flight:
                return
            poll.in_flight = True
            names = list(poll.handles)
        started = time.monotonic()
        try:
            results = self._read_device(key, poll.proxy, names)
            with self._lock:
                poll.reads += 1
                poll.last_duration = time.monotonic() - started
                targets = [(list(poll.handles.get(attr, ())), s) for attr, s in results]
            for handles, sample in targets:
                for handle in handles:
                    feed = handle.feed
                    if feed is not None and not handle.stopped:
                        try:
                            feed.push(sample)
                        except Exception as exc:
                            self._attribute_failed(handle, "store a polled value", exc)
        finally:
            with self._lock:
                poll.in_flight = False
                alive = self._polls.get(key) is poll
        if alive:
            delay = max(0.0, poll.period - (time.monotonic() - started))
            self._later(delay, lambda: self._submit(self._poll_device, key))

    def _read_device(self, key: str, proxy: Any, names: list[str]) -> list[tuple[str, Sample]]:
        """One ``read_attributes`` of the device's polled ``names``, each reply converted on its
        own: a reply that cannot be converted is that attribute's error, not the device's."""
        try:
            replies = proxy.read_attributes(names)
        except tango.DevFailed as exc:
            error = sample_from_exception(exc)
            return [(attr, error) for attr in names]
        except Exception as exc:  # not a Tango error: every attribute of the read shows it
            text = f"tango_bokeh could not read {key}: {type(exc).__name__}: {exc}"
            self._log_limited(f"read {key}", "%s", text, exc=exc)
            error = Sample(time.time(), None, Quality.INVALID, text)
            return [(attr, error) for attr in names]
        results = []
        for attr, reply in zip(names, replies, strict=False):  # replies come in request order
            try:
                sample = sample_from_attribute(reply)
            except Exception as exc:
                text = f"tango_bokeh could not convert the value: {type(exc).__name__}: {exc}"
                self._log_limited(f"convert {key}/{attr}", "%s/%s: %s", key, attr, text, exc=exc)
                sample = Sample(time.time(), None, Quality.INVALID, text)
            results.append((attr, sample))
        return results
