"""bokeh applications whose Documents are :class:`~tango_bokeh.session.Session` objects.

Also a bokeh server running on a thread of its own, for scripts, tests and
benchmarks that are not already on a tornado loop (dashboards run the server
on the main loop; notebooks on the kernel's).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers import FunctionHandler
from bokeh.document import Document
from bokeh.server.server import Server
from tornado.ioloop import IOLoop

from .cleanup import SessionLifecycle, coalesce_collections
from .logs import lower_routine_warnings
from .session import Session

log = logging.getLogger(__name__)


#: permessage-deflate level of the dashboard server's websockets (0: off; notebooks: off). Level 1,
#: the fastest: a page's live deltas shrink to about 0.15 and its history to about 0.57
#: for about 3 % more CPU a tick; higher levels cost 2-3 times the CPU for a few %
#: (docs/performance.md, bench_history.py --part deflate).
WEBSOCKET_COMPRESSION = 1
#: zlib's memLevel: 5 holds 154 kB per open websocket (the default 8: 269 kB) and
#: compresses as well here; the page's side (its acknowledgements) adds about 40 kB.
WEBSOCKET_MEM_LEVEL = 5


def websocket_compression(level: int = WEBSOCKET_COMPRESSION) -> dict[str, int]:
    """bokeh ``Server``/``BokehTornado`` keyword arguments for permessage-deflate at
    ``level`` (1-9; 0: off, none given). Browsers offer it on every websocket and
    tornado keeps one zlib context per connection (context takeover), so a tick's small
    deltas compress against the previous ones."""
    if level <= 0:
        return {}
    return {
        "websocket_compression_level": level,
        "websocket_compression_mem_level": WEBSOCKET_MEM_LEVEL,
    }


def session_application(
    factory: Callable[[Document], Session],
    identify: Callable[[Any], dict[str, Any]] | None = None,
) -> Application:
    """An application making one session per browser Document.

    ``factory(doc)`` builds the session; it is then attached to ``doc``. A
    factory that raises shows its error in the page instead of a blank one.
    ``identify(request)`` (bokeh's ``process_request`` hook) runs on the page
    request and returns JSON-able data stored in the session's token, which
    the server signs; the factory reads it from ``doc.session_context.token``.
    """

    def make_document(doc: Document) -> None:
        session = factory(doc)
        try:
            session.attach(doc)
        except Exception:
            session.close()
            raise

    coalesce_collections()
    lower_routine_warnings()
    handler = FunctionHandler(make_document)
    if identify is not None:
        handler.process_request = identify  # type: ignore[method-assign]
    return Application(handler, SessionLifecycle())


class ThreadedServer:
    """A bokeh server on its own loop thread, bound to loopback unless told otherwise."""

    def __init__(
        self,
        applications: Mapping[str, Application],
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        **server_kwargs: Any,
    ) -> None:
        self._applications = dict(applications)
        self._kwargs = {"address": address, "port": port, **server_kwargs}
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.server: Server | None = None
        self.loop: IOLoop | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://{self._kwargs['address']}:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(target=self._run, name="bokeh-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            self.loop = IOLoop.current()
            self.server = Server(self._applications, io_loop=self.loop, **self._kwargs)
            self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.start()
        self.loop.close(all_fds=True)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the server's loop and return its result."""
        assert self.loop is not None
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        self.loop.add_callback(run)
        if not done.wait(timeout):
            raise TimeoutError("the bokeh server loop did not answer")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def stop(self) -> None:
        """Stop the server (its sessions are destroyed) and join the thread."""
        if self.server is None or self.loop is None:
            return
        server, loop = self.server, self.loop

        async def shutdown() -> None:
            # Run every session's on_session_destroyed hooks (and so Session.close),
            # which bokeh's own stop() does not do.
            for context in server._tornado._applications.values():
                for session in list(context.sessions):
                    session_context = session.document.session_context
                    if session_context is not None:
                        await context.application.on_session_destroyed(session_context)
            server.stop(wait=False)
            server.unlisten()
            loop.stop()

        loop.add_callback(shutdown)
        if self._thread is not None:
            self._thread.join(10)
        self.server = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
