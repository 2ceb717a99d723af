"""Export what is displayed: one file (CSV or HDF5) for all the views of a session,
written off the loop and streamed to the page in chunks, which saves it itself.

On the loop only copies of what the views show are taken (:meth:`View.shown`: numpy
arrays, cheap); a small shared worker pool writes the file
(:mod:`.export_formats`); the bytes then reach the page through a hidden data source,
one :data:`CHUNK` of binary ``uint8`` per loop callback, and the page's script joins the
parts into a Blob and downloads it when the last one arrives. So no loop step and no
message is big, other viewers keep their pace, and there is no extra HTTP route: it
works offline, in notebooks and behind JupyterHub's proxy alike.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from bokeh.models import ColumnDataSource, CustomJS, Dropdown

from ..threads import LazyPool
from .base import View
from .export_formats import FORMATS, PageRanges, Shown, write

log = logging.getLogger(__name__)

#: Bytes per message of a streamed download.
CHUNK = 256 * 1024
#: Worker threads writing export files, shared by every session of the process.
WORKERS = 1

#: Browser side: collect the parts the server puts in the hidden source; save the last.
_DOWNLOAD = """
const data = source.data
if (!data.meta || data.meta.length == 0) return
const meta = JSON.parse(data.meta[0])
const store = source.__tango_bokeh_parts ?? (source.__tango_bokeh_parts = {})
if (meta.part == 0) store[meta.id] = []
const parts = store[meta.id]
if (!parts || parts.length != meta.part) { delete store[meta.id]; return }
parts.push(new Uint8Array(data.chunk[0]))
if (parts.length < meta.parts) return
delete store[meta.id]
const blob = new Blob(parts, {type: meta.mime})
const url = URL.createObjectURL(blob)
const link = document.createElement("a")
link.href = url
link.download = meta.filename
document.body.appendChild(link)
link.click()
setTimeout(() => { URL.revokeObjectURL(url); link.remove() }, 1000)
"""

#: Browser side, on a click of the Export menu: ask for the file with the ranges every
#: figure of the page shows (bokeh does not sync auto-ranged bounds to the server). The
#: request travels as a property change of the hidden source, so it reaches the server
#: with the ranges in one message.
_REQUEST = """
const ranges = {}
for (const m of source.document.all_models) {
    if (m.x_range !== undefined && m.y_range !== undefined && m.renderers !== undefined)
        ranges[m.id] = [m.x_range.start, m.x_range.end, m.y_range.start, m.y_range.end]
}
const serial = (source.__tango_bokeh_asked ?? 0) + 1
source.__tango_bokeh_asked = serial
source.tags = [JSON.stringify({format: cb_obj.item, ranges: ranges, serial: serial})]
"""

#: The worker threads that write export files (made at the first export).
export_pool = LazyPool(WORKERS, "tango-bokeh-export")


@dataclass(frozen=True)
class Export:
    """A file of what was displayed: its name, MIME type and bytes."""

    filename: str
    mime: str
    payload: bytes


def slug(text: str) -> str:
    """``text`` as a file name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "view"


def csv_files(views: Sequence[View]) -> dict[str, str]:
    """Each view's own CSV text (file name -> text), for views that have data."""
    files: dict[str, str] = {}
    for index, view in enumerate(views):
        text = view.to_csv()
        if not text:
            continue
        name = slug(view.title or "_".join(view.attributes) or f"view{index}")
        while f"{name}.csv" in files:
            name += f"_{index}"
        files[f"{name}.csv"] = text
    return files


def snapshot(views: Sequence[View], page: PageRanges | None = None) -> list[Shown]:
    """What every view shows now (copies; on the Document's loop), within ``page``'s
    ranges when the page sent them. A view that fails to say is left out and logged: the
    others are still exported."""
    shown: list[Shown] = []
    for view in views:
        try:
            shown.extend(view.shown(page))
        except Exception:
            log.exception("export: what %r shows", view)
    return shown


def build(shown: Sequence[Shown], file_format: str, title: str) -> Export:
    """The file of ``shown`` (slow for big exports: run it off the loop)."""
    if file_format not in FORMATS:
        raise ValueError(f"unknown export format {file_format!r}: use one of {sorted(FORMATS)}")
    extension, mime = FORMATS[file_format]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Export(f"{slug(title)}-{stamp}.{extension}", mime, write(shown, file_format, title))


def export_views(views: Sequence[View], title: str, file_format: str = "csv") -> Export:
    """One file of what ``views`` show, built now on the calling thread."""
    return build(snapshot(views), file_format, title)


class Download:
    """The hidden source a page downloads from, and the one export in flight for it.

    ``post`` runs a callable on the Document's loop from any thread (the session's
    ``safe_document_modifications``); ``status`` hears progress texts for the page
    ("" when done); ``request(format, ranges)`` hears the page's Export menu (see
    :func:`export_button`). Keep :attr:`source` in the Document (a widget's ``tags``).
    """

    def __init__(
        self,
        post: Callable[[Callable[[], None]], None],
        status: Callable[[str], None] | None = None,
        request: Callable[[str, PageRanges], None] | None = None,
    ) -> None:
        self.source = ColumnDataSource(data={"meta": [], "chunk": []})
        self.source.js_on_change("data", CustomJS(args={"source": self.source}, code=_DOWNLOAD))
        self.source.on_change("tags", self._on_request)
        self.post = post
        self.status = status
        self.request = request
        self.sent = 0  # files handed to the page, a counter
        self.chunks = 0  # messages sent, a counter
        self.chunk = CHUNK  # bytes per message
        self._serial = 0
        self._export: Export | None = None
        self._part = 0
        self._busy = False
        self._closed = False

    @property
    def busy(self) -> bool:
        """An export is being written or sent."""
        return self._busy

    def _on_request(self, _attr: str, _old: object, new: list) -> None:
        """The page's Export menu was clicked (its format and the ranges it shows)."""
        if self.request is None or not new:
            return
        try:
            asked = json.loads(str(new[0]))
            file_format, ranges = str(asked["format"]), asked.get("ranges") or {}
        except (ValueError, KeyError, TypeError):
            log.warning("export: a request the page could not have sent: %.200r", new)
            return
        if file_format not in FORMATS:
            self._say(f"unknown format {file_format[:20]}")
            return
        self.request(file_format, ranges if isinstance(ranges, dict) else {})

    def start(self, shown: Sequence[Shown], file_format: str, title: str) -> bool:
        """Write ``shown`` off the loop, then send it (on the loop). False, and a status
        text, when an export is in flight already: one at a time per page."""
        if self._closed:
            return False
        if self._busy:
            self._say("busy: one at a time")
            return False
        self._busy = True
        self._serial += 1
        self._say(f"writing {file_format.upper()}…")
        future = export_pool().submit(build, list(shown), file_format, title)
        future.add_done_callback(lambda done, n=self._serial: self._written(done, n))
        return True

    def _written(self, future: Future[Export], serial: int) -> None:
        """Worker thread: the file is ready (or failed); the loop takes it from here."""
        try:
            self.post(lambda: self._begin(future, serial))
        except Exception:  # the session is gone
            log.debug("export for a closed page dropped", exc_info=True)

    def _begin(self, future: Future[Export], serial: int) -> None:
        if self._closed or serial != self._serial:
            return
        try:
            export = future.result()
        except Exception as exc:
            log.exception("export failed")
            self._busy = False
            self._say(f"failed: {exc}")
            return
        self.send(export)

    def send(self, export: Export) -> None:
        """Stream ``export`` to the page, one chunk per loop callback (on the loop)."""
        if self._closed:
            return
        self._busy = True
        self._serial += 1
        self._export, self._part = export, 0
        self._next(self._serial)

    def _next(self, serial: int) -> None:
        export = self._export
        if self._closed or export is None or serial != self._serial:
            return
        size = max(1, self.chunk)
        parts = max(1, -(-len(export.payload) // size))
        chunk = export.payload[self._part * size : (self._part + 1) * size]
        meta = {"id": serial, "part": self._part, "parts": parts,
                "filename": export.filename, "mime": export.mime}  # fmt: skip
        self.source.data = {"meta": [json.dumps(meta)], "chunk": [np.frombuffer(chunk, np.uint8)]}
        self.chunks += 1
        self._part += 1
        if self._part < parts:
            self._say(f"sending {self._part}/{parts}")
            self.post(lambda: self._next(serial))
            return
        self._export, self._busy = None, False
        self.sent += 1
        self._say("")
        self.post(self._empty)

    def _empty(self) -> None:
        """Free the last chunk on both sides once it was sent."""
        if not self._busy and not self._closed and self.source.data["meta"]:
            self.source.data = {"meta": [], "chunk": []}

    def close(self) -> None:
        """The page is gone: stop, and drop what was being sent (any thread)."""
        self._closed = True
        self._export, self._busy = None, False

    def _say(self, text: str) -> None:
        if self.status is not None:
            try:
                self.status(text)
            except Exception:
                log.debug("export status not shown", exc_info=True)


#: The export button's label when no export is in flight.
EXPORT_LABEL = "⬇ Export"
#: What the export button offers (label, format).
EXPORT_MENU = [("CSV (long format)", "csv"), ("HDF5 (NeXus)", "hdf5")]


def export_button(download: Download, **props: object) -> Dropdown:
    """The "⬇ Export" button of a page: pick CSV or HDF5; the page sends the request with
    the ranges it shows to ``download`` (its ``request`` does the rest).

    It keeps the hidden download source in the Document (its ``tags``); :func:`show_status`
    puts the export's progress on its label.
    """
    button = Dropdown(label=EXPORT_LABEL, menu=EXPORT_MENU, button_type="primary",
                      tags=[download.source], **props)  # fmt: skip
    button.js_on_event("menu_item_click", CustomJS(args={"source": download.source},
                                                   code=_REQUEST))  # fmt: skip
    return button


def show_status(button: Dropdown | None, text: str) -> None:
    """The export's progress on its button ("" puts the label back)."""
    if button is not None:
        button.label = f"⬇ {text}" if text else EXPORT_LABEL


__all__ = [
    "CHUNK",
    "EXPORT_LABEL",
    "Download",
    "Export",
    "build",
    "csv_files",
    "export_button",
    "export_pool",
    "export_views",
    "show_status",
    "slug",
    "snapshot",
]
