"""Recent history of one attribute, columnar: what a late reader gets at once.

Numbers (numeric, boolean, enum and state scalars) are rows of four preallocated
numpy arrays used as a circle, indexed by sequence number like :class:`~.ring.Ring`:
Tango time (float64), value (float64), quality (uint8, an index into
:data:`QUALITIES`) and flags (uint8: :data:`ERROR`, :data:`STALE`, :data:`NONE`,
:data:`OTHER`). That is 18 bytes a sample and no Python object per sample, so a
long history costs the garbage collector nothing. The arrays grow (doubling)
only while the oldest row is still inside the window; past it, the oldest rows
are overwritten. Anything else (spectra, images, strings, encoded values) keeps
only its last few samples, as they came (frames).

Memory is shared by every history of a hub under one :class:`Budget` (bytes).
What goes first (docs/performance.md, "Shared history"):

1. rows older than the window (the longest one any reader asked for): overwritten
   by new rows, the arrays stop growing;
2. over the budget, the biggest histories are cut first: each gets
   ``min(what it wants, level)``, the level chosen so that the shares fit the budget
   (water-filling), so a fast attribute with a long window loses its oldest rows
   before a slow one loses any; a history whose share shrank drops its oldest rows
   at its next write or read;
3. whatever the budget, a history keeps its newest :data:`MIN_ROWS` rows (or its
   newest frame).

Invariant: the rows held are the samples of sequence numbers ``[start, end)`` (the
channel ring's numbering), times never decreasing, at most ``capacity`` of them.

Thread contract: not thread-safe, the owner (a hub channel) serialises access under
its lock; :class:`Budget` has its own lock and never takes an owner's lock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .tango.sample import Quality, Sample

#: Quality codes of the ``q`` column: the index of the quality in this tuple.
QUALITIES: tuple[Quality, ...] = tuple(Quality)
_CODE = {quality: code for code, quality in enumerate(QUALITIES)}
#: Flags of a row: an error sample, a stale mark, no value (ATTR_INVALID), a value that is
#: not a number (the value column holds NaN for all four).
ERROR, STALE, NONE, OTHER = 1, 2, 4, 8
#: Bytes of one row: time, value, quality, flags.
ROW_BYTES = 8 + 8 + 1 + 1
#: Rows a history starts with, and keeps whatever the budget.
MIN_ROWS = 16
#: Bytes a frame is counted for when its value has no ``nbytes`` (a string...).
FRAME_OVERHEAD = 64


@dataclass(frozen=True)
class Recall:
    """What a history held before some point: copies, safe to keep and hand to a view."""

    t: np.ndarray  # Tango time, epoch seconds (float64), not decreasing
    v: np.ndarray  # value (float64; NaN where a flag is set)
    q: np.ndarray  # quality: index into QUALITIES (uint8)
    flags: np.ndarray  # ERROR | STALE | NONE | OTHER (uint8)
    frames: tuple[Sample, ...] = ()  # the last few samples of anything not numeric
    window: float = math.inf  # seconds of history the hub was keeping

    def __len__(self) -> int:
        return len(self.t) + len(self.frames)

    def since(self, when: float) -> Recall:
        """Only the rows at ``when`` (epoch s) or later."""
        first = int(np.searchsorted(self.t, when, side="left"))
        frames = tuple(s for s in self.frames if s.time >= when)
        return Recall(self.t[first:], self.v[first:], self.q[first:], self.flags[first:],
                      frames, self.window)  # fmt: skip


def _empty_recall(window: float, frames: tuple[Sample, ...] = ()) -> Recall:
    return Recall(np.empty(0), np.empty(0), np.empty(0, np.uint8), np.empty(0, np.uint8),
                  frames, window)  # fmt: skip


def _frame_bytes(sample: Sample) -> int:
    return int(getattr(sample.value, "nbytes", 0)) + FRAME_OVERHEAD


class History:
    """One attribute's recent samples: numbers as columns, anything else as a few frames."""

    def __init__(self, budget: Budget, window: float, *, numeric: bool = True, frames: int = 8):
        self._budget = budget
        self.window = float(window)
        self.quota: int | None = None  # bytes the budget allows (None: what it asks)
        self._numeric = numeric
        self._frames_max = max(1, frames)
        self._start = self._end = 0
        self._last_t = -math.inf
        self._alloc(MIN_ROWS if numeric else 0)
        self._frames: deque[tuple[int, Sample]] = deque()
        self._frame_bytes = 0
        self._wanted = self.nbytes
        self._closed = False
        budget.add(self)

    # -- shape ---------------------------------------------------------------------

    def _alloc(self, rows: int) -> None:
        self._cap = rows
        self._t = np.empty(rows, np.float64)
        self._v = np.empty(rows, np.float64)
        self._q = np.empty(rows, np.uint8)
        self._f = np.empty(rows, np.uint8)

    @property
    def numeric(self) -> bool:
        return self._numeric

    @property
    def capacity(self) -> int:
        """Rows the arrays hold (numbers) or frames kept at most (anything else)."""
        return self._cap if self._numeric else self._frames_max

    @property
    def start(self) -> int:
        return self._start if self._numeric else (self._frames[0][0] if self._frames else self._end)

    @property
    def end(self) -> int:
        return self._end

    def __len__(self) -> int:
        return self._end - self._start if self._numeric else len(self._frames)

    @property
    def nbytes(self) -> int:
        """Memory this history holds: its arrays, or its frames' values."""
        return self._cap * ROW_BYTES if self._numeric else self._frame_bytes

    @property
    def span(self) -> float:
        """Seconds between the oldest and the newest sample held (0 when fewer than two)."""
        if self._numeric:
            if self._end - self._start < 2:
                return 0.0
            return float(self._t[(self._end - 1) % self._cap] - self._t[self._start % self._cap])
        return self._frames[-1][1].time - self._frames[0][1].time if len(self._frames) > 1 else 0.0

    def configure(self, numeric: bool, frames: int) -> None:
        """Numbers or frames (the attribute's format and type became known or changed)."""
        if numeric == self._numeric and frames == self._frames_max:
            return
        self._numeric, self._frames_max = numeric, max(1, frames)
        self.cut()

    def cut(self) -> None:
        """Forget everything held (earlier samples are of another unit or type)."""
        if self._closed:
            return
        self._start = self._end
        self._frames.clear()
        self._frame_bytes = 0
        self._alloc(MIN_ROWS if self._numeric else 0)
        self._wanted = self.nbytes
        self._budget.resized(self, self._wanted)

    def close(self) -> None:
        """Give the memory back to the budget (the channel is gone); later samples are ignored."""
        self._closed = True
        self._start = self._end
        self._alloc(0)
        self._frames.clear()
        self._frame_bytes = 0
        self._budget.remove(self)

    # -- writing -------------------------------------------------------------------

    def extend(self, samples: Sequence[Sample], first: int) -> None:
        """Append ``samples``, the channel's sequence numbers ``first`` … ``first + n - 1``."""
        n = len(samples)
        if not n or self._closed:
            return
        if first != self._end:  # samples were not given to us (cannot happen; stay consistent)
            self.cut()
            self._start = self._end = first
        if not self._numeric:
            self._extend_frames(samples, first)
            return
        if n == 1:  # the common case (a poll, a drain of one event): no array made
            self._append(samples[0])
            return
        t, v, q, f = _columns(samples)
        np.maximum(t, self._last_t, out=t)
        np.maximum.accumulate(t, out=t)  # error samples carry our clock: keep the order
        self._last_t = float(t[-1])
        cutoff = self._last_t - self.window
        self._make_room(n, n - int(np.searchsorted(t, cutoff)), cutoff)
        if n > self._cap:
            t, v, q, f = t[-self._cap :], v[-self._cap :], q[-self._cap :], f[-self._cap :]
            self._start = self._end = first + n - self._cap
            n = self._cap
        index = np.arange(self._end, self._end + n) % self._cap
        self._t[index], self._v[index], self._q[index], self._f[index] = t, v, q, f
        self._end += n
        self._start = max(self._start, self._end - self._cap)

    def _append(self, sample: Sample) -> None:
        """:meth:`extend` for one sample, with Python scalars."""
        when, value, quality, error, stale = sample
        flags = (error is not None) | (stale << 1)
        if value is None:
            number, flags = math.nan, flags | NONE
        else:
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                number, flags = math.nan, flags | OTHER
        if when < self._last_t:
            when = self._last_t
        self._last_t = when
        self._make_room(1, 1, when - self.window)
        i = self._end % self._cap
        self._t[i], self._v[i], self._q[i], self._f[i] = when, number, _CODE.get(quality, 1), flags
        self._end += 1
        if self._end - self._start > self._cap:
            self._start = self._end - self._cap

    def _make_room(self, n: int, inside: int, cutoff: float) -> None:
        """Grow (budget allowing) if the rows inside the window (time ``cutoff`` on) would not
        fit with ``n`` new ones, ``inside`` of which are in the window."""
        if self.quota is not None:
            self.enforce()
        held = self._end - self._start
        if held + n <= self._cap:
            return
        over = held + n - self._cap  # the oldest rows that new ones would overwrite
        if over <= held and self._t[(self._start + over - 1) % self._cap] < cutoff:
            return  # they left the window
        needed = self._rows_after(cutoff) + inside
        if needed <= self._cap:
            return  # the oldest rows left the window: they are overwritten
        wanted = max(self._cap * 2, 1 << (needed - 1).bit_length()) * ROW_BYTES
        refused = self.quota is not None and self.quota < wanted
        if refused and wanted == self._wanted and self._budget.version == self._seen:
            return  # asked already, and nothing was freed since
        self._wanted = wanted
        self._seen = self._budget.version
        allowed = self._budget.grant(self, wanted)
        rows = max(MIN_ROWS, min(wanted, allowed) // ROW_BYTES)
        if rows > self._cap:
            self._resize(rows)

    _seen = -1

    def _rows_after(self, when: float) -> int:
        """Rows held whose time is ``when`` or later (binary search over the circle)."""
        lo, hi, cap, t = self._start, self._end, self._cap, self._t
        while lo < hi:
            mid = (lo + hi) // 2
            if t[mid % cap] < when:
                lo = mid + 1
            else:
                hi = mid
        return self._end - lo

    def _resize(self, rows: int) -> None:
        """Arrays of ``rows`` rows, keeping the newest ones (sequence numbers preserved)."""
        keep = min(rows, self._end - self._start)
        old = np.arange(self._end - keep, self._end)
        columns = None
        if self._cap:
            at = old % self._cap
            columns = (self._t[at], self._v[at], self._q[at], self._f[at])
        self._alloc(rows)
        if columns is not None and keep:
            index = old % rows
            self._t[index], self._v[index], self._q[index], self._f[index] = columns
        self._start = self._end - keep
        self._budget.resized(self, self.nbytes)

    def _extend_frames(self, samples: Sequence[Sample], first: int) -> None:
        for offset, sample in enumerate(samples):
            self._frames.append((first + offset, sample))
            self._frame_bytes += _frame_bytes(sample)
        self._end = first + len(samples)
        while len(self._frames) > self._frames_max:
            self._frame_bytes -= _frame_bytes(self._frames.popleft()[1])
        self._wanted = self._frame_bytes
        allowed = self._budget.grant(self, self._frame_bytes)
        while len(self._frames) > 1 and self._frame_bytes > allowed:
            self._frame_bytes -= _frame_bytes(self._frames.popleft()[1])
        self._budget.resized(self, self._frame_bytes)

    def enforce(self) -> None:
        """Drop the oldest rows or frames above the budget's share (cheap when within it)."""
        quota = self.quota
        if quota is None or self.nbytes <= quota:
            return
        if self._numeric:
            rows = max(MIN_ROWS, quota // ROW_BYTES)
            if rows < self._cap:
                self._resize(rows)
        else:
            while len(self._frames) > 1 and self._frame_bytes > quota:
                self._frame_bytes -= _frame_bytes(self._frames.popleft()[1])
            self._budget.resized(self, self._frame_bytes)

    def set_window(self, seconds: float) -> None:
        """Keep ``seconds`` of history; a shorter window gives memory back at once."""
        self.window = float(seconds)
        if not self._numeric or self._cap <= MIN_ROWS or self._end == self._start:
            return
        newest = self._t[(self._end - 1) % self._cap]
        inside = self._rows_after(newest - self.window)
        rows = max(MIN_ROWS, 1 << max(0, (inside + inside // 4) - 1).bit_length())
        if rows * 2 <= self._cap:
            self._wanted = rows * ROW_BYTES
            self._resize(rows)

    # -- reading -------------------------------------------------------------------

    def recall(self, upto: int, seconds: float | None = None) -> Recall:
        """Copies of the samples before sequence number ``upto`` within the last ``seconds``
        (default: the window) counted from the newest of them."""
        self.enforce()
        seconds = self.window if seconds is None else min(float(seconds), self.window)
        if not self._numeric:
            frames = [s for seq, s in self._frames if seq < upto]
            if frames:
                frames = [s for s in frames if s.time >= frames[-1].time - seconds]
            return _empty_recall(self.window, tuple(frames))
        end = min(upto, self._end)
        if end <= self._start:
            return _empty_recall(self.window)
        newest = float(self._t[(end - 1) % self._cap])
        saved, self._end = self._end, end
        try:
            first = end - self._rows_after(newest - seconds)
        finally:
            self._end = saved
        index = np.arange(first, end) % self._cap
        return Recall(self._t[index], self._v[index], self._q[index], self._f[index],
                      (), self.window)  # fmt: skip


def _columns(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Time, value, quality code and flags of ``samples`` as new arrays (one pass each)."""
    n = len(samples)
    t = np.fromiter([s[0] for s in samples], np.float64, n)
    q = np.fromiter([_CODE.get(s[2], 1) for s in samples], np.uint8, n)
    f = np.fromiter(
        [(s[3] is not None) | (s[4] << 1) | ((s[1] is None) << 2) for s in samples], np.uint8, n
    )
    try:
        v = np.array([s[1] for s in samples], dtype=np.float64)  # None -> NaN
        if v.shape != (n,):
            raise ValueError("not scalars")
    except (TypeError, ValueError, OverflowError):
        v = np.empty(n, np.float64)
        for i, s in enumerate(samples):
            try:
                v[i] = math.nan if s[1] is None else float(s[1])
            except (TypeError, ValueError, OverflowError):
                v[i] = math.nan
                f[i] |= OTHER
    return t, v, q, f


@dataclass(eq=False)
class Budget:
    """Bytes every history of a hub may hold together, shared out by water-filling.

    Thread-safe (its own lock, never held while taking another lock).
    """

    limit: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _sizes: dict[History, int] = field(default_factory=dict, repr=False)
    _wants: dict[History, int] = field(default_factory=dict, repr=False)
    used: int = 0  # bytes held now, by every history
    #: Changes each time memory is given back: a history refused more may ask again.
    version: int = 0

    def add(self, history: History) -> None:
        with self._lock:
            self._sizes[history] = history.nbytes
            self._wants[history] = history.nbytes
            self.used += history.nbytes

    def remove(self, history: History) -> None:
        with self._lock:
            self.used -= self._sizes.pop(history, 0)
            self._wants.pop(history, None)
            self.version += 1
            self._share()

    def resized(self, history: History, nbytes: int) -> None:
        with self._lock:
            if history not in self._sizes:
                return
            before = self._sizes[history]
            self._sizes[history] = nbytes
            self.used += nbytes - before
            if nbytes < before:
                self.version += 1

    def grant(self, history: History, wanted: int) -> int:
        """Bytes ``history`` may hold now, given that it wants ``wanted``."""
        with self._lock:
            if history not in self._sizes:
                return wanted
            self._wants[history] = wanted
            if self.used - self._sizes[history] + wanted <= self.limit:
                history.quota = None
                return wanted
            return self._share().get(history, wanted)

    def _share(self) -> dict[History, int]:
        """Set every history's quota: ``min(want, level)`` with the shares fitting the limit."""
        wants = self._wants
        if sum(wants.values()) <= self.limit:
            for history in wants:
                history.quota = None
            return dict(wants)
        level = _level(wants.values(), self.limit)
        shares = {}
        for history, want in wants.items():
            share = min(want, level)
            history.quota = share if share < want else None
            shares[history] = share
        return shares

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"limit": self.limit, "used": self.used, "histories": len(self._sizes)}


def _level(wants: Iterable[int], limit: int) -> int:
    """The largest share ``L`` with ``sum(min(w, L)) <= limit`` (water-filling)."""
    ordered = sorted(wants)
    left, count = limit, len(ordered)
    for index, want in enumerate(ordered):
        share = left // (count - index)
        if want > share:
            return share
        left -= want
    return ordered[-1] if ordered else limit
