"""What a Document would send to browsers: its change events, as bokeh's protocol messages.

A bokeh server turns every change event of a session's Document into one
``PATCH-DOC`` message (header, metadata and content frames, then one header
and one binary frame per buffer). :class:`WireTap` listens to a Document the
same way and measures those messages with bokeh's own serialiser, so tests
and benchmarks count the bytes a browser would really receive.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from bokeh.document import Document
from bokeh.document.events import DocumentChangedEvent, DocumentPatchedEvent
from bokeh.protocol import Protocol

_protocol = Protocol()


def message_bytes(event: DocumentPatchedEvent) -> int:
    """Bytes of the ``PATCH-DOC`` message a server sends for ``event``, buffers included."""
    message = _protocol.create("PATCH-DOC", [event])
    size = len(message.header_json) + len(message.metadata_json) + len(message.content_json)
    for buffer in message.buffers:
        size += len(json.dumps(buffer.ref)) + len(buffer.to_bytes())
    return size


class WireTap:
    """Records the patch events of a Document and what they would weigh on the wire."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.events: list[DocumentPatchedEvent] = []
        doc.on_change(self._record)

    def _record(self, event: DocumentChangedEvent) -> None:
        if isinstance(event, DocumentPatchedEvent):
            self.events.append(event)

    def reset(self) -> list[DocumentPatchedEvent]:
        """Forget the events recorded so far; returns them."""
        events, self.events = self.events, []
        return events

    @property
    def messages(self) -> int:
        return len(self.events)

    @property
    def bytes(self) -> int:
        """Total bytes of the messages recorded since the last :meth:`reset`."""
        return sum(message_bytes(e) for e in self.events)

    def of(self, kind: type) -> list[DocumentPatchedEvent]:
        """Recorded events of one class (e.g. ``ColumnsStreamedEvent``)."""
        return [e for e in self.events if isinstance(e, kind)]

    @contextmanager
    def measure(self) -> Iterator[WireTap]:
        """``with tap.measure() as m: ...`` records only what happens inside."""
        self.reset()
        yield self

    def close(self) -> None:
        self.doc.remove_on_change(self._record)
