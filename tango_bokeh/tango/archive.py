"""Archived history of an attribute (HDB++), behind a small typed protocol.

:class:`Archive` is what trends use to fill what the hub no longer remembers:
``read(attribute, start, end, max_points)`` returns :class:`ArchiveColumns` (numpy
``t``, ``value``, ``quality``), at most about ``2 * max_points`` points: the raw rows
when they fit, else the minimum and the maximum of each of ``max_points`` equal time
columns (one per pixel of the plot), so that a spike is never lost by decimation.

Two implementations: :class:`tango_bokeh.tango.hdbpp.HdbppArchive` (a real HDB++
database read with pyhdbpp, the Tango community's reader) and :class:`FakeArchive`
(in memory, for tests of the views and sessions that use an archive). Both are
thread-safe and blocking: call them off the bokeh loop. Neither imports bokeh nor
PyTango. Errors are :class:`ArchiveError`; :class:`NotArchived` says the archive
answered and does not have the attribute, :class:`ArchiveUnavailable` that it did not
answer (down, unreachable, too slow: within the configured timeout, never a hang).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .sample import Quality

#: Tango's AttrQuality numbers, as HDB++ stores them in its ``quality`` column.
QUALITY_CODES: dict[Quality, int] = {
    Quality.VALID: 0,
    Quality.INVALID: 1,
    Quality.ALARM: 2,
    Quality.CHANGING: 3,
    Quality.WARNING: 4,
}
QUALITY_OF_CODE: dict[int, Quality] = {code: q for q, code in QUALITY_CODES.items()}


class ArchiveError(Exception):
    """Reading the archive failed; the message says why, for an operator."""


class NotArchived(ArchiveError):
    """The archive answered: it has no history of this attribute."""

    def __init__(self, attribute: str, archive: str = "the archive") -> None:
        super().__init__(f"{attribute} is not archived in {archive}")
        self.attribute = attribute


class ArchiveUnavailable(ArchiveError):
    """The archive did not answer (down, unreachable, or slower than its timeout)."""


class NotConfigured(ArchiveError):
    """No archive is configured (nothing given, and pyhdbpp has no default reader)."""


class NotPlottable(ArchiveError):
    """The attribute is archived, but not as numbers a trend can draw (strings, arrays)."""


@dataclass(frozen=True)
class ArchiveColumns:
    """Archived points of one attribute, in time order.

    ``t``: Tango timestamps (epoch seconds, float64); ``value``: float64, NaN where
    the archive has no value (an error or an INVALID reading); ``quality``: int8
    Tango AttrQuality numbers (:data:`QUALITY_CODES`). ``decimated`` is true when the
    points are per-column minima and maxima rather than every row; ``rows`` is how
    many archived rows the range held.
    """

    attribute: str
    start: float
    end: float
    t: np.ndarray
    value: np.ndarray
    quality: np.ndarray
    decimated: bool = False
    rows: int = 0

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls, attribute: str, start: float, end: float) -> ArchiveColumns:
        return cls(attribute, start, end, np.empty(0), np.empty(0), np.empty(0, np.int8), False, 0)

    def qualities(self) -> list[Quality]:
        """The quality column as :class:`Quality` names (unknown codes read INVALID)."""
        return [QUALITY_OF_CODE.get(int(q), Quality.INVALID) for q in self.quality]


@runtime_checkable
class Archive(Protocol):
    """Where archived history comes from (blocking, thread-safe; never on the loop)."""

    name: str

    def read(self, attribute: str, start: float, end: float, max_points: int) -> ArchiveColumns: ...

    def is_archived(self, attribute: str) -> bool: ...

    def close(self) -> None: ...


def decimate_minmax(
    t: np.ndarray, value: np.ndarray, quality: np.ndarray, start: float, end: float, columns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows holding the minimum and the maximum of each of ``columns`` time columns.

    ``t`` must be sorted. A column's first row without a value (NaN) is kept too, so
    that a gap stays a gap. Rows come back in time order, each once (a column of one
    row gives one point); at most ``2 * columns`` points plus one per column with a gap.
    """
    n = len(t)
    if n == 0:
        return t, value, quality
    columns = max(1, int(columns))
    width = (end - start) / columns if end > start else 1.0
    column = np.clip(((t - start) / width).astype(np.int64), 0, columns - 1)
    finite = ~np.isnan(value)
    keep = np.zeros(n, dtype=bool)
    # Column boundaries in the sorted rows.
    starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
    if finite.any():
        # Sorted by column first, each column keeps its place: its first row in the
        # order by (column, -value, time) is its maximum, by (column, value, time) its minimum.
        big = np.where(finite, value, -np.inf)
        small = np.where(finite, value, np.inf)
        rank = np.arange(n)
        imax = np.lexsort((rank, -big, column))[starts]
        imin = np.lexsort((rank, small, column))[starts]
        has = np.add.reduceat(finite.astype(np.int64), starts) > 0
        keep[imax[has]] = True
        keep[imin[has]] = True
    if not finite.all():
        gaps = np.flatnonzero(~finite)
        first_gap = np.unique(column[gaps], return_index=True)[1]
        keep[gaps[first_gap]] = True
    return t[keep], value[keep], quality[keep]


def columns_for(
    attribute: str,
    start: float,
    end: float,
    t: np.ndarray,
    value: np.ndarray,
    quality: np.ndarray,
    max_points: int,
) -> ArchiveColumns:
    """Rows of ``[start, end]`` as :class:`ArchiveColumns`: raw when they fit in
    ``2 * max_points``, else decimated by :func:`decimate_minmax` over ``max_points`` columns."""
    inside = (t >= start) & (t <= end)
    t, value, quality = t[inside], value[inside], quality[inside]
    rows = len(t)
    if rows <= 2 * max_points:
        return ArchiveColumns(attribute, start, end, t, value, quality, False, rows)
    t, value, quality = decimate_minmax(t, value, quality, start, end, max_points)
    return ArchiveColumns(attribute, start, end, t, value, quality, True, rows)


def normalise_name(attribute: str) -> str:
    """The key an archive knows an attribute by: lower case, no ``tango://`` host part
    when none is given (``dom/fam/mem/attr``), else ``tango://host:port/dom/fam/mem/attr``."""
    name = attribute.strip().lower()
    if name.startswith("tango://"):
        return name
    return name.lstrip("/")


@dataclass
class FakeArchive:
    """An in-memory :class:`Archive` with the real one's behaviour: decimation, the
    not-archived and unavailable errors. For tests of the code that uses an archive.

    ``add(attribute, t, value, quality)`` stores history; ``down = True`` makes every
    read raise :class:`ArchiveUnavailable`; ``reads`` records each call's arguments.
    """

    name: str = "fake archive"
    down: bool = False
    reads: list[tuple[str, float, float, int]] = field(default_factory=list)
    _data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        attribute: str,
        t: Iterable[float],
        value: Iterable[float],
        quality: Iterable[int] | None = None,
    ) -> None:
        t_arr = np.asarray(list(t), dtype=np.float64)
        v_arr = np.asarray(list(value), dtype=np.float64)
        q_arr = (
            np.zeros(len(t_arr), np.int8)
            if quality is None
            else np.asarray(list(quality), dtype=np.int8)
        )
        with self._lock:
            key = self._key(attribute)
            if key in self._data:
                old = self._data[key]
                t_arr, v_arr, q_arr = (
                    np.r_[a, b] for a, b in zip(old, (t_arr, v_arr, q_arr), strict=True)
                )
            order = np.argsort(t_arr, kind="stable")
            self._data[key] = (t_arr[order], v_arr[order], q_arr[order])

    @staticmethod
    def _key(attribute: str) -> str:
        name = normalise_name(attribute)
        if name.startswith("tango://"):
            name = name.split("/", 3)[3]  # tango://host:port/dom/fam/mem/attr
        return name

    def is_archived(self, attribute: str) -> bool:
        if self.down:
            raise ArchiveUnavailable(f"{self.name} is down")
        with self._lock:
            return self._key(attribute) in self._data

    def read(self, attribute: str, start: float, end: float, max_points: int) -> ArchiveColumns:
        with self._lock:
            self.reads.append((attribute, start, end, max_points))
            if self.down:
                raise ArchiveUnavailable(f"{self.name} is down")
            data = self._data.get(self._key(attribute))
        if data is None:
            raise NotArchived(attribute, self.name)
        return columns_for(attribute, start, end, *data, max_points)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ArchiveConfig:
    """Where an HDB++ archive is: reader, connection, and where its password comes from.

    The password is never part of the configuration itself: ``password_env`` names an
    environment variable, ``password_file`` a file holding it (first line). ``reader``
    ``"default"`` asks pyhdbpp for its own default (the ``HDB++`` free properties of the
    Tango database, or ``PYHDBPP_READER``).
    """

    reader: str = "default"  # "mariadb", "timescaledb", or "default"
    host: str = "localhost"
    port: int | None = None
    database: str = "hdbpp"
    user: str = ""
    password_env: str | None = None
    password_file: str | None = None
    timeout: float = 10.0

    def password(self) -> str:
        import os
        from pathlib import Path

        if self.password_env:
            try:
                return os.environ[self.password_env]
            except KeyError:
                raise ArchiveError(
                    f"the archive's password variable {self.password_env} is not set"
                ) from None
        if self.password_file:
            try:
                lines = Path(self.password_file).expanduser().read_text().splitlines()
            except OSError as exc:
                raise ArchiveError(
                    f"the archive's password file {self.password_file}: {exc.strerror}"
                ) from None
            return lines[0].strip() if lines else ""
        return ""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ArchiveConfig:
        return cls(**{k: v for k, v in data.items() if v is not None})


def open_archive(config: ArchiveConfig | None = None) -> Archive:
    """The archive ``config`` describes (pyhdbpp's own default when ``None``)."""
    from .hdbpp import HdbppArchive

    return HdbppArchive.open(config or ArchiveConfig())
