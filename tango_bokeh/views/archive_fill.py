"""Trends backed by an archive: what the hub does not remember comes from HDB++.

A :class:`~tango_bokeh.views.trend.Trend` given an :class:`ArchiveFill`
(``Trend.use_archive``) draws, per attribute, archived points before its first live row:

* when it opens (its first draws, once the hub's shared history is in): the time
  window before the oldest live row;
* when the user zooms out or pans into the past (bokeh's ``RangesUpdate``, sent by the
  page when a tool changed the ranges): the visible range before the oldest live row,
  unless what is drawn there already has the resolution the plot's width asks for
  (decimated reads are min/max per pixel column; zoomed in far enough, raw rows).
  Only that range of the archived points is replaced.

Reads run off the bokeh loop, on a small pool of worker threads shared by every trend,
debounced (:data:`DEBOUNCE`: a burst of wheel events makes one read); their outcome is
applied on the Document's loop through ``post`` (the session's
``safe_document_modifications``). The archive is never on the loop's path: a slow or
dead one shows in place (a warning in the panel's banner) while live data goes on.

Archived points have their own renderer per series, lighter than the live line (same
colour, :data:`ALPHA`), named ``"<label> (archive)"`` in the hover, with one legend
entry "archive". Errors: :class:`~tango_bokeh.tango.archive.NotArchived` and
``NotPlottable`` are said once per attribute (INFO in the banner, then live data only);
``NotConfigured`` is silent (there is no archive); ``ArchiveUnavailable`` (and any other
failure to read) is a WARNING until a read succeeds again.

Times: the archive's are Tango timestamps (epoch seconds); the trend's rows are display
milliseconds (:func:`~tango_bokeh.views.trend.to_display_ms`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from bokeh.core.properties import value as bokeh_value
from bokeh.events import RangesUpdate
from bokeh.models import ColumnDataSource, GlyphRenderer, LegendItem

from ..tango.archive import (
    QUALITY_OF_CODE,
    Archive,
    ArchiveColumns,
    ArchiveError,
    ArchiveUnavailable,
    NotArchived,
    NotConfigured,
    NotPlottable,
)
from ..tango.sample import Quality
from ..threads import LazyPool
from .banner import Level, Problem, attribute_problem
from .palette import QUALITY_CODES

if TYPE_CHECKING:  # pragma: no cover
    from .trend import Trend, _Series

log = logging.getLogger(__name__)

#: Seconds a read waits for more requests of the same trend (a burst of zooms: one read).
DEBOUNCE = 0.3
#: Pixel columns a read is decimated for when the plot's width is not known.
DEFAULT_WIDTH = 1000
#: Seconds a trend waits for the hub's history of all its attributes before its first fill.
OPEN_WAIT = 2.0
#: Archived points kept per series, in multiples of the plot's width.
KEEP_WIDTHS = 20
#: Opacity of archived points' line (live lines are opaque).
ALPHA = 0.4
#: Worker threads reading archives, shared by every trend of the process.
WORKERS = 2
#: What the legend calls archived points.
LEGEND_LABEL = "archive"

_INVALID = QUALITY_CODES[Quality.INVALID]
#: Palette code of each Tango AttrQuality number (as HDB++ stores them); unknown: INVALID.
_CODES = np.full(256, _INVALID, dtype=np.uint8)
for _number, _quality in QUALITY_OF_CODE.items():
    _CODES[_number & 0xFF] = QUALITY_CODES.get(_quality, _INVALID)

#: The worker threads that read archives, shared by every trend.
_executor = LazyPool(WORKERS, "tango-bokeh-archive")


class SharedArchive:
    """One archive for many trends, opened at its first use, off the loop (thread-safe).

    ``source`` is an :class:`Archive`, or a function that opens one (it may raise
    :class:`ArchiveError`; ``NotConfigured`` is remembered, other failures are tried
    again at the next read). A dashboard server keeps one per dashboard file.
    """

    def __init__(self, source: Archive | Callable[[], Archive]) -> None:
        self._archive: Archive | None = source if isinstance(source, Archive) else None
        self._open = None if self._archive is not None else source
        self._absent: NotConfigured | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._archive.name if self._archive is not None else "the archive"

    def get(self) -> Archive:
        """The archive (opened now if need be); blocking: call it off the loop."""
        with self._lock:
            if self._archive is not None:
                return self._archive
            if self._absent is not None:
                raise self._absent
            assert self._open is not None
            try:
                self._archive = self._open()  # type: ignore[call-arg]
            except NotConfigured as exc:
                self._absent = exc
                raise
            except ArchiveError:
                raise
            except Exception as exc:  # the driver's own (a connection refused at opening)
                text = str(exc.args[-1]) if exc.args else type(exc).__name__
                raise ArchiveUnavailable(f"the archive could not be opened: {text}") from None
            return self._archive

    def close(self) -> None:
        with self._lock:
            archive, self._archive = self._archive, None
            self._absent = NotConfigured("closed")
        if archive is not None:
            archive.close()


def default_opener(open_default: Callable[[], Archive]) -> Callable[[], Archive]:
    """``open_default`` (pyhdbpp's default reader), or :class:`NotConfigured` when pyhdbpp
    is not installed: nothing asked for an archive, so its absence is no error to show."""

    def opener() -> Archive:
        import importlib.util

        if importlib.util.find_spec("pyhdbpp") is None:
            raise NotConfigured("no archive configured, and pyhdbpp is not installed")
        return open_default()

    return opener


# -- what is drawn where: pure functions, tested on FakeArchive ------------------------


@dataclass(frozen=True)
class Segment:
    """A range read from the archive (epoch s) and its resolution: seconds per pixel
    column when the read was decimated, 0 when it gave every row."""

    start: float
    end: float
    step: float


def covered(segments: list[Segment], start: float, end: float, step: float) -> bool:
    """Whether ``[start, end]`` is drawn at ``step`` seconds per pixel column or finer.

    One segment must hold the whole range (``step`` of slack at each end), read raw or
    decimated at most twice as coarse as asked.
    """
    if end <= start:
        return True
    slack = max(step, 1e-3)
    return any(
        s.start <= start + slack and s.end >= end - slack and (s.step == 0 or s.step <= 2 * step)
        for s in segments
    )


def archived_rows(columns: ArchiveColumns, offset: float) -> dict[str, np.ndarray]:
    """Rows of a trend's source (``t`` display ms, ``y``, ``q`` palette codes) for
    archived points; ``offset``: seconds from epoch to the displayed local time."""
    return {
        "t": (np.asarray(columns.t, dtype=np.float64) + offset) * 1000.0,
        "y": np.asarray(columns.value, dtype=np.float64),
        "q": _CODES[np.asarray(columns.quality).astype(np.int64) & 0xFF],
    }


def merged(
    old: Mapping[str, Any],
    new: Mapping[str, np.ndarray],
    start_ms: float,
    end_ms: float,
    before_ms: float = math.inf,
    limit: int | None = None,
) -> dict[str, np.ndarray]:
    """``old`` rows with ``[start_ms, end_ms]`` replaced by ``new`` (all sorted by time),
    none at or after ``before_ms`` (live rows are drawn from there). Beyond ``limit``
    rows, those farthest from the new range go first."""
    t = np.asarray(old["t"], dtype=np.float64)
    lo, hi = int(np.searchsorted(t, start_ms, "left")), int(np.searchsorted(t, end_ms, "right"))
    out = {
        key: np.concatenate(
            (np.asarray(old[key])[:lo], np.asarray(new[key]), np.asarray(old[key])[hi:])
        )
        for key in ("t", "y", "q")
    }
    out["q"] = out["q"].astype(np.uint8)
    cut = int(np.searchsorted(out["t"], before_ms, "left"))
    if cut < len(out["t"]):
        out = {key: column[:cut] for key, column in out.items()}
    if limit is not None and len(out["t"]) > limit:
        middle = (start_ms + end_ms) / 2.0
        nearest = np.sort(np.argsort(np.abs(out["t"] - middle), kind="stable")[:limit])
        out = {key: column[nearest] for key, column in out.items()}
    return out


@dataclass
class _Archived:
    """One attribute's archived points: renderer, source, what was read, what went wrong."""

    source: ColumnDataSource | None = None
    renderers: list[GlyphRenderer] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    problem: Problem | None = None  # not archived, not plottable (said once, for good)
    failure: Problem | None = None  # the archive did not answer (until a read succeeds)
    reads: int = 0  # a counter, for tests and curiosity
    points: int = 0  # archived points drawn


class ArchiveFill:
    """Archived history for one trend (see the module doc).

    ``archive``: an :class:`Archive`, a :class:`SharedArchive` or a function that opens
    one; ``post``: runs a callable on the trend's Document loop from any thread (the
    session's ``safe_document_modifications``). Call :meth:`bind` (``Trend.use_archive``
    does) before the trend's first draw.
    """

    def __init__(
        self,
        archive: Archive | SharedArchive | Callable[[], Archive],
        post: Callable[[Callable[[], None]], None],
        *,
        width: int | None = None,
        debounce: float = DEBOUNCE,
    ) -> None:
        self.archive = archive if isinstance(archive, SharedArchive) else SharedArchive(archive)
        self.post = post
        self.width = width
        self.debounce = debounce
        self.disabled = False  # no archive is configured: nothing more is tried
        self._trend: Trend | None = None
        self._opened_at: float | None = None  # the first draw
        self._filled = False  # the opening fill was asked for
        self._state: dict[str, _Archived] = {}
        self._legend: LegendItem | None = None
        self._lock = threading.Lock()  # the pending requests, between loop and worker
        self._pending: dict[str, tuple[float, float, int]] = {}
        self._busy = False

    # -- on the loop: the trend's hooks ------------------------------------------------

    def bind(self, trend: Trend) -> None:
        """Attach to ``trend`` (its figure hears the page's range changes)."""
        self._trend = trend
        self._state = {a: _Archived() for a in trend.attributes}
        trend.model  # noqa: B018 - built now: its figure hears the page's range changes
        trend._figure.on_event(RangesUpdate, self._on_ranges)

    def drawn(self, now: float) -> None:
        """After each draw of the trend: the opening fill, once the hub's history is in."""
        trend = self._trend
        if trend is None or self._filled or self.disabled:
            return
        if self._opened_at is None:
            self._opened_at = now
        series = [s for s in trend._series if not s.retired]
        if now - self._opened_at < OPEN_WAIT and any(s.recalled is None for s in series):
            return
        self._filled = True
        start = now - trend.history_seconds
        try:
            self._ask({a: (start, now) for a in trend.attributes}, at_least_once=True)
        except Exception:  # the archive's part must never stop the live one
            log.exception("asking the archive for %s", ", ".join(trend.attributes))

    def problems(self) -> dict[str, Problem]:
        """What the banner says about the archive, for attributes with no worse news."""
        trend = self._trend
        found: dict[str, Problem] = {}
        if trend is None:
            return found
        for attribute, state in self._state.items():
            problem = state.failure or state.problem
            if problem is None:
                continue
            now_state, last = trend._states.get(attribute), trend._last.get(attribute)
            if attribute_problem(attribute, now_state, last) is None:
                found[attribute] = problem
        return found

    def clear(self) -> None:
        """Forget the archived points drawn (the trend's "clear" control)."""
        for state in self._state.values():
            state.segments.clear()
            state.points = 0
            if state.source is not None:
                state.source.data = _empty()

    @property
    def reads(self) -> int:
        """Reads of the archive made so far (all attributes)."""
        return sum(s.reads for s in self._state.values())

    def points(self, attribute: str) -> int:
        """Archived points of ``attribute`` drawn now."""
        state = self._state.get(attribute)
        return 0 if state is None or state.source is None else len(state.source.data["t"])

    def shown_rows(
        self, attribute: str, start_ms: float, end_ms: float
    ) -> tuple[np.ndarray, ...] | None:
        """Copies of the archived rows drawn for ``attribute`` within ``[start_ms, end_ms]``
        (display ms): Tango times (epoch s, as read: archived rows are shifted by one
        offset, :func:`_offset`), y, q and the export's origin code (1 raw, 2 min/max
        decimated); None when none are drawn or the user hid them (the legend's "archive")."""
        state = self._state.get(attribute)
        if state is None or state.source is None or not state.renderers:
            return None
        if not state.renderers[0].visible or state.renderers[0].muted:
            return None
        data = state.source.data
        n = min(len(data["t"]), len(data["y"]), len(data["q"]))
        t = np.asarray(data["t"], dtype=np.float64)[:n]
        lo, hi = int(np.searchsorted(t, start_ms, "left")), int(np.searchsorted(t, end_ms, "right"))
        t = t[lo:hi].copy()
        origin = np.ones(len(t), dtype=np.uint8)
        offset = _offset()
        for segment in state.segments:  # later reads replaced earlier ones in their range
            inside = (t >= (segment.start + offset) * 1000.0) & (
                t <= (segment.end + offset) * 1000.0
            )
            origin[inside] = 2 if segment.step > 0 else 1
        y = np.array(np.asarray(data["y"])[:n][lo:hi], dtype=np.float64)
        q = np.array(np.asarray(data["q"])[:n][lo:hi], dtype=np.uint8)
        return np.round(t / 1000.0 - offset, 6), y, q, origin

    def _on_ranges(self, event: RangesUpdate) -> None:
        """The page's x range changed by a tool: read what it shows of the past, if needed."""
        if self._trend is None or self.disabled or event.x0 is None or event.x1 is None:
            return
        offset = _offset()
        start, end = float(event.x0) / 1000.0 - offset, float(event.x1) / 1000.0 - offset
        if end > start:
            try:
                self._ask({a: (start, end) for a in self._trend.attributes})
            except Exception:
                log.exception("asking the archive for %s", ", ".join(self._trend.attributes))

    def _ask(self, ranges: Mapping[str, tuple[float, float]], at_least_once: bool = False) -> None:
        """Queue reads of ``ranges`` (epoch s) before each attribute's first live row,
        where what is drawn is coarser than the plot's width asks for."""
        width = self._width()
        wanted: dict[str, tuple[float, float, int]] = {}
        for attribute, (start, end) in ranges.items():
            state = self._state.get(attribute)
            if state is None or state.problem is not None:
                continue
            end = min(end, self._live_start(attribute))
            if end <= start:
                if not at_least_once:
                    continue
                end = start  # nothing before live: still learn whether it is archived
            step = (end - start) / width
            if not at_least_once and covered(state.segments, start, end, step):
                continue
            wanted[attribute] = (start, end, width)
        if not wanted:
            return
        with self._lock:
            self._pending.update(wanted)
            if self._busy:
                return
            self._busy = True
        try:
            _executor().submit(self._work)
        except RuntimeError:  # the interpreter is shutting down
            with self._lock:
                self._busy = False

    def _width(self) -> int:
        if self.width:
            return int(self.width)
        try:  # what the page measured (bokeh syncs it back), when it did
            inner = self._trend._figure.inner_width  # type: ignore[union-attr]
        except Exception:  # bokeh's UnsetValueError until then
            inner = None
        return int(inner) if isinstance(inner, int) and inner > 50 else DEFAULT_WIDTH

    def _live_start(self, attribute: str) -> float:
        """Epoch seconds of the attribute's oldest live row (``inf``: none yet)."""
        trend = self._trend
        assert trend is not None
        firsts = [
            float(s.source.data["t"][0])
            for s in trend._series
            if s.attribute == attribute and len(s.source.data["t"])
        ]
        return min(firsts) / 1000.0 - _offset() if firsts else math.inf

    # -- off the loop -------------------------------------------------------------------

    def _work(self) -> None:
        """Worker thread: wait for the burst to end, read, hand the outcome to the loop."""
        while True:
            time.sleep(self.debounce)
            with self._lock:
                pending, self._pending = self._pending, {}
                if not pending:
                    self._busy = False
                    return
            outcome: dict[str, tuple[float, float, int, ArchiveColumns | Exception]] = {}
            down: ArchiveUnavailable | None = None
            for attribute, (start, end, width) in pending.items():
                if down is not None:  # one time-out per batch, not one per attribute
                    outcome[attribute] = (start, end, width, down)
                    continue
                began = time.perf_counter()
                try:
                    got: ArchiveColumns | Exception = self.archive.get().read(
                        attribute, start, end, width
                    )
                    log.info(
                        "archive: %s, %.0f s: %d points of %d rows in %.2f s",
                        attribute,
                        end - start,
                        len(got),
                        got.rows,
                        time.perf_counter() - began,
                    )
                except NotConfigured as exc:
                    outcome = {attribute: (start, end, width, exc)}
                    break
                except Exception as exc:  # ArchiveError, or a bug: shown in place either way
                    if not isinstance(exc, ArchiveError):
                        log.exception("reading %s from %s", attribute, self.archive.name)
                    if isinstance(exc, ArchiveUnavailable):
                        down = exc
                    got = exc
                outcome[attribute] = (start, end, width, got)
            try:
                self.post(lambda outcome=outcome: self._apply(outcome))
            except Exception:  # the session is gone
                log.debug("archive outcome for a closed trend dropped", exc_info=True)

    # -- on the loop: the outcome --------------------------------------------------------

    def _apply(self, outcome: Mapping[str, tuple[float, float, int, Any]]) -> None:
        trend = self._trend
        if trend is None:
            return
        offset = _offset()
        for attribute, (start, end, width, got) in outcome.items():
            state = self._state[attribute]
            state.reads += 1
            if isinstance(got, NotConfigured):
                self.disabled = True  # no archive at all: nothing to say
                return
            if isinstance(got, NotArchived | NotPlottable):
                text = str(got)
                if text.startswith(attribute):
                    text = text[len(attribute) :].lstrip()
                state.problem = Problem(attribute, Level.INFO, f"{text}: live data only")
                state.failure = None
                continue
            if isinstance(got, Exception):
                state.failure = Problem(
                    attribute, Level.WARNING, f"archive: {got} (live data goes on)"
                )
                continue
            state.failure = None
            series = next((s for s in trend._series if s.attribute == attribute), None)
            if series is None:
                continue
            if not len(got) and state.source is None:  # nothing archived there (yet)
                state.segments.append(Segment(start, end, 0.0))
                continue
            source = self._source(state, series)
            live_ms = self._live_start(attribute)
            before_ms = (live_ms + offset) * 1000.0 if math.isfinite(live_ms) else math.inf
            rows = archived_rows(got, offset)
            source.data = merged(
                source.data,
                rows,
                (start + offset) * 1000.0,
                (end + offset) * 1000.0,
                before_ms,
                KEEP_WIDTHS * width,
            )
            state.points = len(source.data["t"])
            step = (end - start) / width if got.decimated else 0.0
            segment = Segment(start, end, step)
            if state.points >= KEEP_WIDTHS * width:
                state.segments = [segment]  # older reads were cut: read them again if shown
            else:
                state.segments.append(segment)
        trend._refresh_banner()

    def _source(self, state: _Archived, series: _Series) -> ColumnDataSource:
        """The series' archive renderer and source, made at its first archived points."""
        if state.source is not None:
            return state.source
        trend = self._trend
        assert trend is not None
        fig = trend._figure
        source = ColumnDataSource(data=_empty())
        style = {"color": series.color, "line_width": 2, "line_alpha": ALPHA}
        if trend.step:
            line = fig.step("t", "y", source=source, mode="after", **style)
            hover = fig.line("t", "y", source=source, line_alpha=0.0, line_width=6)
        else:
            line = hover = fig.line("t", "y", source=source, **style)
        hover.name = line.name = f"{series.hover.name or series.label} (archive)"
        renderers = [line] + ([hover] if hover is not line else [])
        for renderer in renderers:
            renderer.y_range_name = series.y_range_name
        series.renderers.extend(renderers)  # moved with the series' axis, in its autoscale
        trend._hover_tool.renderers = [*trend._hover_tool.renderers, hover]
        if self._legend is None:
            self._legend = LegendItem(label=bokeh_value(LEGEND_LABEL), renderers=[line])
            trend._legend.items = [*trend._legend.items, self._legend]
            trend._legend.visible = True
        else:
            self._legend.renderers = [*self._legend.renderers, line]
        state.source, state.renderers = source, renderers
        return source


def _empty() -> dict[str, np.ndarray]:
    return {"t": np.empty(0), "y": np.empty(0), "q": np.empty(0, dtype=np.uint8)}


def _offset() -> float:
    """Seconds from epoch to the local wall clock now (as ``to_display_ms`` shifts)."""
    return float(time.localtime().tm_gmtoff)


__all__ = [
    "ArchiveFill",
    "Segment",
    "SharedArchive",
    "archived_rows",
    "covered",
    "default_opener",
    "merged",
]
