"""Export what is displayed: CSV per view, one file or a zip, downloaded by the page itself.

The browser builds the file from a hidden data source the server fills, so
there is no extra HTTP route: it works offline, in notebooks and behind
JupyterHub's proxy alike. Sessions (notebook panels and dashboard pages)
share this; views only say what they show (:meth:`View.to_csv`).
"""

from __future__ import annotations

import base64
import io
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from bokeh.models import ColumnDataSource, CustomJS

from .base import View

#: Browser side: turn the payload the server put in the hidden source into a download.
_DOWNLOAD = """
const data = source.data
if (!data.payload || data.payload.length == 0 || !data.payload[0]) return
const payload = data.payload[0]
let blob
if (data.encoding[0] == "base64") {
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))
    blob = new Blob([bytes], {type: data.mime[0]})
} else {
    blob = new Blob([payload], {type: data.mime[0]})
}
const url = URL.createObjectURL(blob)
const link = document.createElement("a")
link.href = url
link.download = data.filename[0]
document.body.appendChild(link)
link.click()
setTimeout(() => { URL.revokeObjectURL(url); link.remove() }, 1000)
"""


@dataclass(frozen=True)
class Export:
    """What the export button hands to the browser."""

    filename: str
    mime: str
    payload: bytes


def slug(text: str) -> str:
    """``text`` as a file name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "view"


def csv_files(views: Sequence[View]) -> dict[str, str]:
    """What ``views`` display, as one CSV text per view that has data (file name -> text)."""
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


def export_views(views: Sequence[View], title: str) -> Export:
    """One CSV when one view has data, else a zip holding one CSV per view."""
    files = csv_files(views)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if len(files) == 1:
        ((name, text),) = files.items()
        return Export(f"{name[:-4]}-{stamp}.csv", "text/csv", text.encode())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return Export(f"{slug(title)}-{stamp}.zip", "application/zip", buffer.getvalue())


class Download:
    """The hidden source a page downloads from; keep :attr:`source` in the Document."""

    def __init__(self) -> None:
        self.source = ColumnDataSource(
            data={"filename": [], "mime": [], "encoding": [], "payload": []}
        )
        self.source.js_on_change("data", CustomJS(args={"source": self.source}, code=_DOWNLOAD))
        self.sent = 0

    def send(self, export: Export) -> None:
        """Hand ``export`` to the page, which saves it as a file (on the Document's loop)."""
        text_like = export.mime == "text/csv"
        self.source.data = {
            "filename": [export.filename],
            "mime": [export.mime],
            "encoding": ["text" if text_like else "base64"],
            "payload": [
                export.payload.decode()
                if text_like
                else base64.b64encode(export.payload).decode("ascii")
            ],
        }
        self.sent += 1


__all__ = ["Download", "Export", "csv_files", "export_views", "slug"]
