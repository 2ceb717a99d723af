"""The files an export writes: what the views show, as long CSV or NeXus-style HDF5.

Views describe what they display as :class:`Shown` records (numpy copies taken on the
bokeh loop, :meth:`View.shown`); the writers here turn them into bytes in a worker
thread, so nothing here touches bokeh. Times are Tango's (epoch seconds, rounded to the
microsecond Tango stamps carry); qualities are the palette codes views stream
(:data:`QUALITY_NAMES`); each row says whether it was live or archived, and archived
rows that were min/max-decimated for the plot say so (``archive-minmax``): the file
holds what is drawn, like Grafana's "export what you see".
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .palette import QUALITY_BY_CODE

#: Name of each quality code (the index), as written in files.
QUALITY_NAMES: tuple[str, ...] = tuple(q.name for q in QUALITY_BY_CODE)
#: Where a row comes from (the index is the code in HDF5's ``origin``).
ORIGINS: tuple[str, ...] = ("live", "archive", "archive-minmax")
LIVE, ARCHIVE, ARCHIVE_MINMAX = range(len(ORIGINS))
#: Columns of the long CSV: ``x`` is a spectrum's channel (or x value) or an image's
#: column, ``y`` an image's row; both empty for scalars.
CSV_COLUMNS = ("attribute", "label", "unit", "time_utc", "time_epoch", "x", "y", "value",
               "quality", "origin")  # fmt: skip
FORMATS = {"csv": ("csv", "text/csv"), "hdf5": ("h5", "application/x-hdf5")}


@dataclass
class Shown:
    """What one view shows of one attribute (copies: the loop may change its sources).

    ``kind`` is "scalar" (rows: ``time``, ``value``, ``quality``, ``origin`` of equal
    length), "spectrum" (one frame: ``value`` 1-D over ``x``; ``time`` and ``quality`` of
    one element) or "image" (``value`` 2-D, rows ``y`` by columns ``x``, pixel indices of
    the full frame; ``step`` > 1 when the view shows it block-averaged).
    """

    attribute: str
    label: str
    kind: str
    time: np.ndarray
    value: np.ndarray
    quality: np.ndarray
    origin: np.ndarray | None = None
    unit: str = ""
    display_format: str = ""
    x: np.ndarray | None = None
    x_name: str = ""
    y: np.ndarray | None = None
    step: int = 1
    notes: list[str] = field(default_factory=list)


#: What a page shows, by figure id: [x start, x end, y start, y end] as the page has them
#: when its Export menu is clicked (bokeh does not sync auto-ranged ``DataRange1d`` bounds).
PageRanges = Mapping[str, Sequence[float | None]]


def _span(start: object, end: object) -> tuple[float, float] | None:
    if not (isinstance(start, int | float) and isinstance(end, int | float)):
        return None
    if not (math.isfinite(start) and math.isfinite(end)) or start == end:
        return None
    return float(min(start, end)), float(max(start, end))


def visible_span(
    figure: object, axis: str, page: PageRanges | None = None
) -> tuple[float, float] | None:
    """(low, high) of ``figure``'s ``axis`` ("x" or "y") as shown: from the page's own
    ranges when it sent them, else as the page synced the range model back (a tool's
    zoom), None while unknown (a ``DataRange1d`` is NaN on the server until then)."""
    shown = page.get(str(getattr(figure, "id", ""))) if page else None
    if shown is not None and len(shown) == 4:
        found = _span(*(shown[0:2] if axis == "x" else shown[2:4]))
        if found is not None:
            return found
    model = getattr(figure, f"{axis}_range", None)
    return _span(getattr(model, "start", None), getattr(model, "end", None))


def epoch_text(t: np.ndarray) -> np.ndarray:
    """ISO-8601 UTC with microseconds (``2026-11-30T16:21:32.123456Z``) of epoch seconds."""
    micros = np.round(np.asarray(t, dtype=np.float64) * 1e6)
    bad = ~np.isfinite(micros)
    stamps = np.datetime_as_string(np.where(bad, 0, micros).astype("datetime64[us]"), unit="us")
    stamps = np.char.add(stamps, "Z")
    stamps[bad] = ""
    return stamps


def group_names(shown: Sequence[Shown]) -> list[str]:
    """One HDF5 group name per record: the attribute name, sanitised, made unique."""
    names: list[str] = []
    for record in shown:
        base = re.sub(r"[^A-Za-z0-9_]+", "_", record.attribute).strip("_") or "attribute"
        if base[0].isdigit():
            base = "a_" + base
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def _number(v: float) -> str:
    return "" if v != v else repr(float(v))  # NaN: a gap, an empty cell


def to_csv(shown: Sequence[Shown]) -> bytes:
    """Long format, one row per drawn point (per channel of a spectrum, pixel of an image)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in shown:
        head = f"{_csv_cell(record.attribute)},{_csv_cell(record.label)},{_csv_cell(record.unit)}"
        iso, epoch = epoch_text(record.time), [f"{t:.6f}" for t in record.time]
        quality = [QUALITY_NAMES[int(q)] for q in record.quality]
        if record.kind == "scalar":
            origin = record.origin if record.origin is not None else np.zeros(len(record.time))
            lines = [
                f"{head},{s},{e},,,{_number(v)},{q},{ORIGINS[int(o)]}\n"
                for s, e, v, q, o in zip(
                    iso, epoch, record.value.tolist(), quality, origin.tolist(), strict=True
                )
            ]
            out.writelines(lines)
            continue
        if not len(record.time):
            continue
        stamp = f"{head},{iso[0]},{epoch[0]}"
        tail = f"{quality[0]},live\n"
        x = record.x if record.x is not None else np.arange(record.value.shape[-1])
        if record.kind == "spectrum":
            out.writelines(
                f"{stamp},{_number(c)},,{_number(v)},{tail}"
                for c, v in zip(x.tolist(), record.value.tolist(), strict=True)
            )
        else:
            y = record.y if record.y is not None else np.arange(record.value.shape[0])
            for r, values in zip(y.tolist(), record.value.tolist(), strict=True):
                out.writelines(
                    f"{stamp},{c},{r},{_number(v)},{tail}"
                    for c, v in zip(x.tolist(), values, strict=True)
                )
    return out.getvalue().encode()


def _csv_cell(text: str) -> str:
    """``text`` quoted as the csv module would, when it needs to be."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def to_hdf5(shown: Sequence[Shown], title: str) -> bytes:
    """One NeXus-style file: ``/entry`` (NXentry) holding one NXdata group per record."""
    import h5py  # imported here: only an HDF5 export needs it

    starts = [float(np.nanmin(r.time)) for r in shown if len(r.time) and np.isfinite(r.time).any()]
    ends = [float(np.nanmax(r.time)) for r in shown if len(r.time) and np.isfinite(r.time).any()]
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs["default"] = "entry"
        f.attrs["creator"] = "tango_bokeh"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("title", data=title)
        if starts:
            entry.create_dataset("start_time", data=str(epoch_text(np.array([min(starts)]))[0]))
            entry.create_dataset("end_time", data=str(epoch_text(np.array([max(ends)]))[0]))
        names = group_names(shown)
        if names:
            entry.attrs["default"] = names[0]
        for name, record in zip(names, shown, strict=True):
            _nxdata(entry.create_group(name), record)
    return buffer.getvalue()


def _nxdata(group, record: Shown) -> None:
    """One attribute's NXdata group (see docs/views.md for the listing)."""
    group.attrs["NX_class"] = "NXdata"
    group.attrs["signal"] = "value"
    group.attrs["tango_name"] = record.attribute
    group.attrs["kind"] = record.kind
    if record.notes:
        group.attrs["notes"] = "; ".join(record.notes)
    time = group.create_dataset("time", data=np.asarray(record.time, dtype=np.float64))
    time.attrs["units"] = "s"
    time.attrs["start"] = "1970-01-01T00:00:00Z"
    time.attrs["long_name"] = "Tango timestamp (epoch seconds, UTC)"
    value = group.create_dataset("value", data=record.value)
    value.attrs["units"] = record.unit
    value.attrs["long_name"] = record.label
    value.attrs["format"] = record.display_format
    value.attrs["tango_name"] = record.attribute
    quality = group.create_dataset("quality", data=np.asarray(record.quality, dtype=np.uint8))
    quality.attrs["names"] = list(QUALITY_NAMES)
    quality.attrs["mapping"] = ", ".join(f"{i}={n}" for i, n in enumerate(QUALITY_NAMES))
    if record.kind == "scalar":
        group.attrs["axes"] = ["time"]
        group.attrs["time_indices"] = 0
        origin = record.origin if record.origin is not None else np.zeros(len(record.time))
        dataset = group.create_dataset("origin", data=np.asarray(origin, dtype=np.uint8))
        dataset.attrs["names"] = list(ORIGINS)
        dataset.attrs["mapping"] = ", ".join(f"{i}={n}" for i, n in enumerate(ORIGINS))
        dataset.attrs["decimated"] = bool(np.any(dataset[()] == ARCHIVE_MINMAX))
        return
    x = record.x if record.x is not None else np.arange(record.value.shape[-1])
    if record.kind == "spectrum":
        group.attrs["axes"] = ["channel"]
        group.attrs["channel_indices"] = 0
        channel = group.create_dataset("channel", data=np.asarray(x, dtype=np.float64))
        channel.attrs["long_name"] = record.x_name or "index"
        return
    y = record.y if record.y is not None else np.arange(record.value.shape[0])
    group.attrs["axes"] = ["row", "column"]
    group.attrs["row_indices"] = 0
    group.attrs["column_indices"] = 1
    group.create_dataset("row", data=np.asarray(y, dtype=np.int64)).attrs["long_name"] = (
        "row (pixel of the full frame)"
    )
    group.create_dataset("column", data=np.asarray(x, dtype=np.int64)).attrs["long_name"] = (
        "column (pixel of the full frame)"
    )
    value.attrs["block_average"] = record.step


def write(shown: Sequence[Shown], file_format: str, title: str) -> bytes:
    """The file's bytes, ``file_format`` "csv" or "hdf5" (in a worker thread: it is slow)."""
    if file_format == "csv":
        return to_csv(shown)
    if file_format == "hdf5":
        return to_hdf5(shown, title)
    raise ValueError(f"unknown export format {file_format!r}: use one of {sorted(FORMATS)}")


__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "ORIGINS",
    "QUALITY_NAMES",
    "PageRanges",
    "Shown",
    "epoch_text",
    "group_names",
    "to_csv",
    "to_hdf5",
    "visible_span",
    "write",
]
