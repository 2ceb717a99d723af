"""The hub: one acquisition per attribute per process, fanned out to any number of readers.

Sessions never talk to Tango. They ask the hub for a :class:`Cursor` on an
attribute; the first cursor starts the acquisition, the last one to close
stops it. Samples go into one bounded :class:`~tango_bokeh.ring.Ring` per
attribute and each cursor reads what is new for it, without copies.

Each channel also keeps a time-bounded, columnar :class:`~tango_bokeh.history.History`
of its samples, shared by every reader, under one memory budget per hub: a
reader's first read comes as a :class:`Backlog`, the new samples plus what the
hub remembers from before them (``recall``), so that a trend opened late is
drawn with the last minutes at once.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .history import Budget, History, Recall
from .ring import Ring
from .tango.acquisition import Acquisition, AcquisitionConfig, Handle
from .tango.modes import Mode, checked_poll_period
from .tango.names import AttributeName, parse_name
from .tango.polling import PollRate, describe
from .tango.sample import AttributeInfo, Format, Kind, Quality, Sample

#: Ring capacity by data format: enough history for a trend, bounded memory for images.
DEFAULT_CAPACITY = {Format.SCALAR: 10_000, Format.SPECTRUM: 64, Format.IMAGE: 4}
#: Held samples above which a read releases those every reader has seen.
RELEASE_THRESHOLD = 64
#: Memory every channel's history may hold together, by default (bytes): about an hour of
#: 3,600 attributes at 1 Hz (20.5 bytes a sample, bench_history). ``Hub(history_budget=...)``, and
#: ``tango-bokeh serve/demo --history-budget`` for the process's default hub.
DEFAULT_HISTORY_BUDGET = 256 * 2**20
#: Seconds of history a channel keeps for a reader that asked for no window (a trend's
#: default window): the window is the longest one its readers asked for.
DEFAULT_HISTORY_WINDOW = 600.0
#: Samples kept as they came, by format, for attributes that are not numeric scalars
#: (spectra and images: the last few frames only).
HISTORY_FRAMES = {Format.SCALAR: 16, Format.SPECTRUM: 8, Format.IMAGE: 2}
#: Scalar kinds stored as numbers (float64) in the history.
NUMERIC_KINDS = frozenset({Kind.NUMBER, Kind.BOOL, Kind.ENUM, Kind.STATE})


@dataclass
class ChannelStats:
    """Counters of one attribute, as :meth:`Hub.stats` reports them."""

    name: str
    mode: str
    consumers: int
    received: int
    dropped: int  # lost by readers that fell a whole ring behind
    queue_full: int  # drains that found Tango's event queue full (events may be lost before)
    out_of_order: int
    errors: int
    last_error: str | None
    last_update: float | None  # time of the newest sample (Tango's, or when an error was seen)
    #: Under client polling: seconds between reads as read (longer than asked when slow or
    #: over its device's budget), as asked, and what a read of it takes; else None.
    poll_period: float | None = None
    poll_requested: float | None = None
    read_seconds: float | None = None
    read_alone: bool = False  # too slow for its device's batch: read on its own
    config_changes: int = 0  # new configurations from the device (unit, format, limits...)
    #: Tango time of the newest good value (no error, not INVALID): what "how old is what
    #: the operator sees" is measured from; error samples and time-outs do not move it.
    last_good: float | None = None
    #: The attribute delivers values: acquired (events or polling) and its newest sample is
    #: not an error (an INVALID quality is the device's answer, not an outage).
    up: bool = False
    #: Times acquisition changed between events and client polling at run time (events
    #: stopped, or became possible again).
    mode_switches: int = 0
    #: Events lost before the hub (Tango's queue full, ZMQ's missed events), estimated from
    #: the attribute's own counter or from Tango timestamps (tango/losses.py); next to
    #: ``queue_full``, which says only that some were.
    lost_estimate: int = 0
    #: Shared history (hub.py, history.py): samples held, the seconds they span, the bytes
    #: they take and the window kept (the longest any reader asked for).
    history_rows: int = 0
    history_seconds: float = 0.0
    history_bytes: int = 0
    history_window: float = 0.0


@dataclass
class HubStats:
    """Everything the hub knows about its load; what tests, benchmarks and metrics read."""

    channels: int
    consumers: int
    subscriptions: int  # live Tango event subscriptions
    polled: int  # attributes under client polling
    polled_devices: int
    device_reads: int
    attributes: dict[str, ChannelStats] = field(default_factory=dict)
    #: Share of each polled device's time our reads take (planned), by device address.
    poll_load: dict[str, float] = field(default_factory=dict)
    #: Batch reads that failed as a whole and were split into reads of one attribute.
    poll_splits: int = 0
    #: Attributes whose configuration events are followed (unit, format, limits, labels).
    config_subscriptions: int = 0
    #: Times each acquisition thread died and was restarted (``scheduler``, ``drain``).
    worker_restarts: dict[str, int] = field(default_factory=dict)
    #: Bytes every channel's shared history holds, and the budget they share (0: none kept).
    history_bytes: int = 0
    history_budget: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Channel:
    """All that is known of one attribute in this process. Written by acquisition threads."""

    def __init__(
        self,
        name: AttributeName,
        capacity: dict[Format, int],
        history: History | None = None,
        default_window: float = DEFAULT_HISTORY_WINDOW,
    ) -> None:
        self.name = name
        self._capacity = capacity
        self._lock = threading.Lock()
        self._ring: Ring[Sample] = Ring(capacity[Format.SCALAR])
        self._history = history  # same sequence numbers as the ring; None: no history kept
        self._default_window = default_window
        self._last_time = float("-inf")
        self.info: AttributeInfo | None = None
        self.mode = Mode.PENDING
        self.status: str | None = None  # why the mode is what it is (last subscription error)
        self.poll: PollRate | None = None  # how it is polled, under client polling
        self.config_changes = 0  # configurations that replaced another (configuration events)
        self.received = 0
        self.dropped = 0
        self.queue_full = 0
        self.lost_estimate = 0
        self.out_of_order = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_update: float | None = None
        self.last_good: float | None = None
        self._answered = False  # the newest sample is not an error
        self._acquired: Mode | None = None  # the last acquiring mode (events or polling)
        self.mode_switches = 0
        self.handle: Handle | None = None
        self.cursors: set[Cursor] = set()
        self.keys = {name.key}  # every name the hub knows this channel by (alias and device)
        self.on_resolve: Callable[[Channel, AttributeName], None] | None = None

    # -- Feed protocol (called from acquisition threads) -------------------------

    def push(self, sample: Sample) -> None:
        # Runs for each polled value and error; event batches go through extend().
        with self._lock:
            self.received += 1
            if sample.error is not None:
                self.errors += 1
                self.last_error = sample.error
            else:
                when = sample.time
                last = self._last_time
                if when < last or (when == last and self.mode is Mode.POLL):
                    self.out_of_order += 1  # older than what we have: never show it
                    return
                self._last_time = when
                if sample.value is not None and sample.quality is not Quality.INVALID:
                    self.last_good = when
            if self._history is not None:
                self._history.extend((sample,), self._ring.end)
            self._ring.append(sample)
            self.last_update = sample.time
            self._answered = sample.error is None

    def extend(self, samples: list[Sample]) -> None:
        """:meth:`push` for a batch (a drain of Tango's event queue), under one lock."""
        if not samples:
            return
        with self._lock:
            append = self._ring.append
            first = self._ring.end
            last, polled = self._last_time, self.mode is Mode.POLL
            kept = good = None
            invalid = Quality.INVALID
            self.received += len(samples)
            skipped = self.out_of_order
            for sample in samples:
                if sample.error is not None:
                    self.errors += 1
                    self.last_error = sample.error
                else:
                    when = sample.time
                    if when < last or (when == last and polled):
                        self.out_of_order += 1
                        continue
                    last = when
                    if sample[1] is not None and sample[2] is not invalid:  # value, quality
                        good = when
                append(sample)
                kept = sample
            self._last_time = last
            if self._history is not None and kept is not None:
                if skipped != self.out_of_order:  # some were older: what the ring took
                    samples, lost = self._ring.since(first)
                    first += lost
                self._history.extend(samples, first)
            if good is not None:
                self.last_good = good
            if kept is not None:
                self.last_update = kept.time
                self._answered = kept.error is None

    def note_queue_full(self) -> None:
        with self._lock:
            self.queue_full += 1

    def note_lost(self, count: int) -> None:
        with self._lock:
            self.lost_estimate += count

    def set_mode(self, mode: Mode, error: str | None = None) -> None:
        with self._lock:
            if mode.is_event or mode is Mode.POLL:
                if self._acquired is not None and mode is not self._acquired:
                    self.mode_switches += 1  # events stopped, or came back
                self._acquired = mode
            self.mode = mode
            self.status = error
            if mode is not Mode.POLL:
                self.poll = None

    def set_poll(self, rate: PollRate) -> None:
        """How polling reads it now; a slowed rate becomes the status (shown with the mode)."""
        with self._lock:
            if self.mode is Mode.POLL:
                self.poll = rate
                self.status = describe(rate)

    def resolve(self, name: AttributeName) -> None:
        if self.on_resolve is not None:
            self.on_resolve(self, name)

    def set_info(self, info: AttributeInfo) -> None:
        """A configuration, first or new; one equal to the current one changes nothing."""
        with self._lock:
            if self.info is not None:
                if info == self.info:
                    return
                info = dataclasses.replace(info, since=time.time())
                self.config_changes += 1
            old, self.info = self.info, info
            capacity = self._capacity[info.format]
            if capacity != self._ring.capacity:
                self._ring.resize(capacity)
            if self._history is not None:
                numeric = info.format is Format.SCALAR and info.kind in NUMERIC_KINDS
                self._history.configure(numeric, HISTORY_FRAMES[info.format])
                if old is not None and old.unit != info.unit:
                    self._history.cut()  # earlier values are in another unit

    # -- readers -----------------------------------------------------------------

    def read_for(self, cursor: Cursor) -> tuple[list[Sample], int]:
        """New samples for ``cursor`` (advancing it) and how many it lost to overflow.

        Once many items are held, items every reader is past are released.
        """
        with self._lock:
            if cursor.channel is not self:  # moved to another channel meanwhile
                return [], 0
            ring = self._ring
            first = max(cursor._seq, ring.start)
            items, lost = ring.since(cursor._seq)
            cursor._seq = ring.end
            self.dropped += lost
            if len(ring) > RELEASE_THRESHOLD:
                ring.release(min(c._seq for c in self.cursors))
            history = self._history
            if history is not None:
                history.enforce()
                if cursor._recall and items:
                    cursor._recall = False
                    backlog = Backlog(items)
                    backlog.recall = history.recall(first)
                    backlog.keep = cursor._keeper()
                    return backlog, lost
            return items, lost

    def recall_for(self, cursor: Cursor, seconds: float | None = None) -> Recall | None:
        """What the history holds from before ``cursor``'s position (None: no history kept)."""
        with self._lock:
            if self._history is None or cursor.channel is not self:
                return None
            return self._history.recall(max(cursor._seq, self._ring.start), seconds)

    def keep_for(self, cursor: Cursor, seconds: float | None) -> None:
        """``cursor`` wants ``seconds`` of history kept (None: the hub's default window)."""
        with self._lock:
            cursor._window = seconds
            self._set_window()

    def _set_window(self) -> None:
        """The history's window: the longest any reader asked for (under the lock)."""
        if self._history is None:
            return
        wants = [c._window or self._default_window for c in self.cursors]
        window = max(wants, default=self._default_window)
        if window != self._history.window:
            self._history.set_window(window)

    def close_history(self) -> None:
        """The channel is gone: its history gives its memory back."""
        with self._lock:
            if self._history is not None:
                self._history.close()

    def first_seq(self) -> int:
        """Where a new reader starts: at the newest sample, so it sees the current value."""
        with self._lock:
            return max(self._ring.start, self._ring.end - 1)

    def add_cursor(self, cursor: Cursor) -> None:
        with self._lock:
            cursor._seq = max(self._ring.start, self._ring.end - 1)
            self.cursors.add(cursor)
            self._set_window()

    def hand_over(self, target: Channel) -> None:
        """Move every reader to ``target`` (the same attribute under another name).

        Each starts at ``target``'s newest sample, as a new reader would.
        """
        with self._lock, target._lock:
            for cursor in self.cursors:
                cursor._seq = max(target._ring.start, target._ring.end - 1)
                cursor.channel = target
            target.cursors |= self.cursors
            self.cursors = set()
            target._set_window()

    def remove_cursor(self, cursor: Cursor) -> int:
        """Forget ``cursor``; returns how many readers are left."""
        with self._lock:
            self.cursors.discard(cursor)
            if self.cursors:
                self._set_window()
            return len(self.cursors)

    @property
    def held(self) -> int:
        """Samples held in the ring now (unread by some reader, or the newest)."""
        with self._lock:
            return len(self._ring)

    def latest(self) -> Sample | None:
        with self._lock:
            return self._ring.latest()

    def stats(self) -> ChannelStats:
        with self._lock:
            history = self._history
            return ChannelStats(
                name=str(self.name),
                mode=str(self.mode),
                consumers=len(self.cursors),
                received=self.received,
                dropped=self.dropped,
                queue_full=self.queue_full,
                out_of_order=self.out_of_order,
                errors=self.errors,
                last_error=self.status if self.mode is Mode.FAILED else self.last_error,
                last_update=self.last_update,
                poll_period=self.poll.period if self.poll else None,
                poll_requested=self.poll.requested if self.poll else None,
                read_seconds=self.poll.read_seconds if self.poll else None,
                read_alone=self.poll.alone if self.poll else False,
                config_changes=self.config_changes,
                last_good=self.last_good,
                up=self._answered and (self.mode.is_event or self.mode is Mode.POLL),
                mode_switches=self.mode_switches,
                lost_estimate=self.lost_estimate,
                history_rows=len(history) if history is not None else 0,
                history_seconds=history.span if history is not None else 0.0,
                history_bytes=history.nbytes if history is not None else 0,
                history_window=history.window if history is not None else 0.0,
            )


class Cursor:
    """One reader's position in one attribute's stream. Not thread-safe: one reader each."""

    def __init__(self, hub: Hub, channel: Channel) -> None:
        self._hub = hub
        self.channel = channel
        self._seq = 0  # set by Channel.add_cursor
        self._recall = True  # the first read that finds samples comes as a Backlog
        self._window: float | None = None  # seconds of history this reader asked for
        self.lost = 0
        self.closed = False

    @property
    def name(self) -> AttributeName:
        return self.channel.name

    @property
    def info(self) -> AttributeInfo | None:
        return self.channel.info

    @property
    def mode(self) -> Mode:
        return self.channel.mode

    @property
    def status(self) -> str | None:
        """The reason acquisition is pending or failed, if it is."""
        return self.channel.status

    def read(self) -> list[Sample]:
        """Samples that arrived since the previous call (oldest first)."""
        if self.closed:
            return []
        channel = self.channel
        items, lost = channel.read_for(self)
        if channel is not self.channel:  # handed over to the device name's channel
            items, lost = self.channel.read_for(self)
        self.lost += lost
        return items

    def latest(self) -> Sample | None:
        return self.channel.latest()

    def keep(self, seconds: float | None) -> None:
        """Ask the hub to keep ``seconds`` of this attribute's history (None: its default).

        The channel keeps the longest window any of its readers asked for, within
        the hub's memory budget.
        """
        if not self.closed:
            self.channel.keep_for(self, None if seconds is None else max(1.0, float(seconds)))

    def recall(self, seconds: float | None = None) -> Recall | None:
        """The shared history from before this cursor's position, the last ``seconds`` of it
        (default: all that is kept), columnar; None when the hub keeps none."""
        return None if self.closed else self.channel.recall_for(self, seconds)

    def _keeper(self) -> Callable[[float | None], None]:
        """:meth:`keep`, for a view to hold without holding the cursor."""
        ref = weakref.ref(self)

        def keep(seconds: float | None) -> None:
            cursor = ref()
            if cursor is not None:
                cursor.keep(seconds)

        return keep

    def close(self) -> None:
        """Leave the channel; the last reader leaving stops the acquisition."""
        if not self.closed:
            self.closed = True
            self._hub._release(self)

    def __repr__(self) -> str:
        return f"<Cursor {self.channel.name} {self.channel.mode}>"


class Backlog(list):  # list[Sample]
    """A reader's first read that finds samples: those samples, as every read, plus

    * ``recall``: the shared history from before them (a :class:`~tango_bokeh.history.Recall`,
      columnar numpy arrays), so that a late reader gets the last minutes at once;
    * ``keep(seconds)``: how much history this reader wants kept from now on (a trend
      calls it with its window); it holds no reference to the cursor.

    Readers that know nothing of it use it as the list of samples it is.
    """

    __slots__ = ("keep", "recall")
    recall: Recall
    keep: Callable[[float | None], None]


class Hub:
    """Process-wide fan-out of Tango attributes. Thread-safe; never blocks on Tango."""

    _default: ClassVar[Hub | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    #: The default hub's history budget (bytes; set by ``--history-budget`` before it exists).
    default_history_budget: ClassVar[int] = DEFAULT_HISTORY_BUDGET

    def __init__(
        self,
        acquisition: Acquisition | None = None,
        capacity: dict[Format, int] | None = None,
        *,
        history_budget: int | None = None,
        history_window: float = DEFAULT_HISTORY_WINDOW,
    ) -> None:
        """``history_budget``: bytes all shared histories may hold together (default
        :attr:`default_history_budget`; 0 keeps none); ``history_window``: seconds kept for
        readers that ask for no window."""
        self.acquisition = acquisition or Acquisition()
        self._capacity = {**DEFAULT_CAPACITY, **(capacity or {})}
        budget = self.default_history_budget if history_budget is None else int(history_budget)
        if budget < 0:
            raise ValueError(f"history_budget must be 0 or more bytes, got {budget}")
        if not (math.isfinite(history_window) and history_window > 0):
            raise ValueError(
                f"history_window must be a positive number of seconds, got {history_window}"
            )
        self.history_budget = Budget(budget) if budget else None
        self.history_window = float(history_window)
        self._lock = threading.Lock()
        self._channels: dict[str, Channel] = {}
        self._closed = False

    @classmethod
    def default(cls) -> Hub:
        """The hub shared by every session of this process."""
        with cls._default_lock:
            if cls._default is None or cls._default._closed:
                cls._default = cls(Acquisition(AcquisitionConfig()))
            return cls._default

    def subscribe(self, name: str | AttributeName, poll_period: float | None = None) -> Cursor:
        """A new cursor on ``name``; raises :class:`~tango_bokeh.tango.InvalidName` if malformed,
        ``ValueError`` if ``poll_period`` (seconds) is not finite or outside 0.1 s … 1 h.

        Returns at once: acquisition (or the error explaining why there is none)
        shows up in the cursor's samples, ``mode`` and ``status``.
        """
        if poll_period is not None:  # refused here, not on an acquisition thread
            poll_period = checked_poll_period(poll_period)
        parsed = name if isinstance(name, AttributeName) else parse_name(name)
        with self._lock:
            if self._closed:
                raise RuntimeError("the hub is closed")
            channel = self._channels.get(parsed.key)
            new = channel is None
            if new:
                history = None
                if self.history_budget is not None:
                    history = History(self.history_budget, self.history_window)
                channel = Channel(parsed, self._capacity, history, self.history_window)
                self._channels[parsed.key] = channel
                channel.on_resolve = self._resolved
            cursor = Cursor(self, channel)
            channel.add_cursor(cursor)
        if new:
            handle = self.acquisition.start(parsed, channel, poll_period)
            with self._lock:
                channel.handle = handle
                # Released, or handed over to its device name's channel, before it had a handle.
                dropped = self._channels.get(parsed.key) is not channel or not channel.cursors
            if dropped:
                handle.stop()
        return cursor

    def _resolved(self, channel: Channel, name: AttributeName) -> None:
        """``channel``'s alias names the device of ``name``: one channel for both names.

        Called by acquisition once Tango has resolved the alias. If the device
        name already has a channel, this one hands its readers over and stops.
        """
        with self._lock:
            if self._closed or self._channels.get(channel.name.key) is not channel:
                return
            target = self._channels.get(name.key)
            if target is None or target is channel:
                self._channels[name.key] = channel
                channel.keys.add(name.key)
                return
            channel.hand_over(target)
            for key in channel.keys:
                self._channels[key] = target
            target.keys |= channel.keys
        channel.close_history()
        if channel.handle is not None:
            channel.handle.stop()

    def _release(self, cursor: Cursor) -> None:
        with self._lock:
            channel = cursor.channel  # read under the lock: a hand-over may move it
            left = channel.remove_cursor(cursor)
            if left or self._channels.get(channel.name.key) is not channel:
                return
            for key in channel.keys:
                if self._channels.get(key) is channel:
                    del self._channels[key]
        channel.close_history()
        if channel.handle is not None:
            channel.handle.stop()

    def channel(self, name: str) -> Channel | None:
        with self._lock:
            return self._channels.get(parse_name(name).key)

    @property
    def running(self) -> bool:
        """Open and acquiring (its acquisition threads alive); what health checks report."""
        return not self._closed and self.acquisition.running

    def stats(self) -> HubStats:
        """Counters per attribute and totals, including live Tango subscriptions."""
        with self._lock:
            channels = list({id(c): c for c in self._channels.values()}.values())
        acq = self.acquisition.stats()
        per = {c.name.key: c.stats() for c in channels}
        return HubStats(
            channels=len(per),
            consumers=sum(s.consumers for s in per.values()),
            subscriptions=acq["subscriptions"],
            polled=acq["polled"],
            polled_devices=acq["polled_devices"],
            device_reads=acq["device_reads"],
            attributes=per,
            worker_restarts=dict(acq.get("worker_restarts", {})),
            poll_load=dict(acq.get("poll_load", {})),
            poll_splits=acq.get("poll_splits", 0),
            config_subscriptions=acq.get("config_subscriptions", 0),
            history_bytes=self.history_budget.used if self.history_budget else 0,
            history_budget=self.history_budget.limit if self.history_budget else 0,
        )

    def close(self) -> None:
        """Stop every acquisition; cursors still open read nothing more."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channels = list({id(c): c for c in self._channels.values()}.values())
            self._channels.clear()
        for channel in channels:
            if channel.handle is not None:
                channel.handle.stop()
        self.acquisition.close()


@atexit.register
def _close_default_hub() -> None:
    hub = Hub._default
    if hub is not None:
        hub.close()
