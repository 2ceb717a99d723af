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


def message_frames(event: DocumentPatchedEvent) -> list[bytes]:
    """The websocket messages a server sends for ``event``, in order (header, metadata,
    content, then a header and the bytes of each buffer): what permessage-deflate
    compresses one at a time."""
    message = _protocol.create("PATCH-DOC", [event])
    frames = [m.encode() for m in (message.header_json, message.metadata_json)]
    frames.append(message.content_json.encode())
    for buffer in message.buffers:
        frames += [json.dumps(buffer.ref).encode(), buffer.to_bytes()]
    return frames


def message_bytes(event: DocumentPatchedEvent) -> int:
    """Bytes of the ``PATCH-DOC`` message a server sends for ``event``, buffers included."""
    return sum(len(frame) for frame in message_frames(event))


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
