"""Every private bokeh/tornado/Jupyter API we use still is what we rely on.

One test per internal of ``tango_bokeh/notebook/internals.py``,
``tango_bokeh/dashboard/internals.py`` and ``tango_bokeh/internals.py``; each
failure names the internal, so that a bokeh upgrade fails here first (with the
place to fix) instead of in a browser test. No Tango, no browser: a small bokeh
server on a loop thread, bokeh's own classes and BokehJS's type declarations.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bokeh
import pytest
from bokeh.application import Application
from bokeh.application.handlers import FunctionHandler
from bokeh.application.handlers.document_lifecycle import DocumentLifecycleHandler
from bokeh.document import Document
from bokeh.document.events import ModelChangedEvent
from bokeh.models import Div
from bokeh.server.connection import ServerConnection
from bokeh.server.contexts import ApplicationContext, BokehSessionContext
from bokeh.server.server import Server
from bokeh.server.tornado import BokehTornado
from bokeh.server.views.ws import WSHandler
from bokeh.util.token import generate_jwt_token, generate_session_id
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.web import Application as TornadoApplication
from tornado.web import RequestHandler
from tornado.websocket import websocket_connect

import tango_bokeh.internals as shared
from tango_bokeh.cleanup import SessionLifecycle
from tango_bokeh.dashboard import internals as dashboard
from tango_bokeh.notebook import internals as notebook
from tango_bokeh.notebook.server_thread import ServerThread

BOKEHJS_LIB = Path(bokeh.__file__).parent / "server" / "static" / "js" / "lib"
BOKEHJS = Path(bokeh.__file__).parent / "server" / "static" / "js" / "bokeh.min.js"


def get(path: str) -> HTTPServerRequest:
    return HTTPServerRequest(
        start_line=RequestStartLine("GET", path, "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "127.0.0.1"}),
    )


def broke(internal: str, detail: str) -> str:
    return f"bokeh/tornado changed {internal}: {detail} (see the function using it)"


@pytest.mark.parametrize("module", [notebook, dashboard, shared], ids=lambda m: m.__name__)
def test_each_internal_was_checked_against_the_installed_bokeh(module: Any):
    assert bokeh.__version__ == module.CHECKED_BOKEH, (
        f"bokeh is {bokeh.__version__}, {module.__name__} was checked against "
        f"{module.CHECKED_BOKEH}: re-check each internal there (this file's tests help), "
        "then update CHECKED_BOKEH and the versions in its comments"
    )


# -- a small bokeh server, as the notebook makes one ---------------------------------------

seen: list[Any] = []


class Recording(WSHandler):
    """A websocket handler that records the token it was given and closes."""

    def __init__(self, *args: Any, note: str, **kwargs: Any) -> None:
        self.note = note
        super().__init__(*args, **kwargs)

    def open(self) -> None:  # type: ignore[override]
        seen.append((self.note, notebook.websocket_token(self)))
        self.close(4000, "recorded")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Server, ServerThread]]:
    thread = ServerThread("test-internals")

    def make(loop: Any) -> Server:
        app = Application(FunctionHandler(lambda doc: doc.add_root(Div(text="x"))))
        made = Server({"/": app}, io_loop=loop, address="127.0.0.1", port=0)
        changed = notebook.serve_websockets_with(notebook.tornado_app(made), Recording, note="ours")
        assert changed == 1, broke("BokehTornado's routes", f"{changed} WSHandler routes")
        made.start()
        return made

    made = thread.start(make)
    yield made, thread
    thread.stop(lambda: (made.stop(wait=False), made.unlisten()))


def on_loop(thread: ServerThread, coroutine: Any) -> Any:
    assert thread.loop is not None
    return asyncio.run_coroutine_threadsafe(coroutine, thread.loop.asyncio_loop).result(30)


def test_tornado_app_is_the_server_s_bokeh_tornado(server):
    made, _ = server
    app = notebook.tornado_app(made)
    assert isinstance(app, BokehTornado), broke("Server._tornado", repr(app))
    assert set(app.applications) == {"/"}, broke("BokehTornado.applications", "no '/'")


def websocket(made: Server, token: str, origin: str | None = None) -> Any:
    headers = {"Origin": origin} if origin else {}
    request = HTTPRequest(f"ws://127.0.0.1:{made.port}/ws", headers=headers)

    async def connect() -> Any:
        conn = await websocket_connect(request, subprotocols=["bokeh", token])
        await conn.read_message()  # None once the server closed it
        return conn.close_code

    return asyncio.run(connect())


def test_our_websocket_handler_serves_the_route_and_reads_the_token(server):
    made, _ = server
    seen.clear()
    token = generate_jwt_token(generate_session_id(signed=False), signed=False)
    code = websocket(made, token)
    assert seen == [("ours", token)], broke(
        "WSHandler routes or WSHandler._token (set by select_subprotocol)", repr(seen)
    )
    assert code == 4000


def test_origins_allowed_later_are_checked_at_once(server):
    made, _ = server
    app = notebook.tornado_app(made)
    assert app.websocket_origins is app.websocket_origins, broke(
        "BokehTornado.websocket_origins", "not the live set any more"
    )
    token = generate_jwt_token(generate_session_id(signed=False), signed=False)
    with pytest.raises(HTTPClientError) as refused:
        websocket(made, token, origin="http://later.example.org:8888")
    assert refused.value.code == 403
    notebook.allow_websocket_origins(app, ["later.example.org:8888"], made.port)
    seen.clear()
    websocket(made, token, origin="http://later.example.org:8888")
    assert [note for note, _ in seen] == ["ours"], broke(
        "WSHandler.check_origin", "does not read BokehTornado.websocket_origins live"
    )


def test_a_claimed_session_is_made_before_its_page_connects(server):
    made, thread = server
    parameters = list(inspect.signature(ApplicationContext.create_session_if_needed).parameters)
    assert parameters == ["self", "session_id", "request", "token"], broke(
        "ApplicationContext.create_session_if_needed", str(parameters)
    )
    session_id = generate_session_id(signed=False)
    token = generate_jwt_token(session_id, signed=False)
    request = get("/")
    app = notebook.tornado_app(made)
    on_loop(thread, notebook.create_server_session(app, "/", session_id, request, token))
    session = made.get_session("/", session_id)
    assert session.id == session_id and not session.destroyed


class FakeSocket:
    def __init__(self) -> None:
        self.closed: list[tuple[int, str]] = []

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def test_a_server_session_s_connections_are_closed_with_our_code(server):
    made, thread = server
    session_id = generate_session_id(signed=False)
    request = get("/")
    app = notebook.tornado_app(made)
    token = generate_jwt_token(session_id, signed=False)
    on_loop(thread, notebook.create_server_session(app, "/", session_id, request, token))
    session = made.get_session("/", session_id)
    socket = FakeSocket()
    connection = ServerConnection(None, socket, app.applications["/"], session)  # type: ignore[arg-type]
    assert connection in session._subscribed_connections, broke(
        "ServerSession._subscribed_connections", "a new connection is not in it"
    )
    try:
        notebook.close_connections(session, 4001, "output removed")
    finally:
        connection.detach_session()
    assert socket.closed == [(4001, "output removed")], broke(
        "ServerConnection._socket", "is not the socket the connection was made with"
    )


# -- Jupyter -------------------------------------------------------------------------------


def test_destroy_server_finds_and_stops_an_output_handle():
    from bokeh.io.notebook import destroy_server

    calls: list[str] = []

    class Ref:
        def destroy(self) -> None:
            calls.append("destroy")

    class Handle:
        def get_sessions(self) -> list[Ref]:
            return [Ref()]

        def stop(self) -> None:
            calls.append("stop")

    handle = Handle()
    notebook.register_output("test-internals", handle)
    assert handle in notebook.registered_outputs()
    destroy_server("test-internals")
    assert calls == ["destroy", "stop"], broke("bokeh.io.notebook.destroy_server", repr(calls))
    assert handle not in notebook.registered_outputs(), broke(
        "destroy_server", "left the handle in curstate().uuid_to_server"
    )
    notebook.unregister_output("test-internals")  # gone already: no error


def test_the_running_cell_comes_from_the_kernel_s_parent_message(monkeypatch):
    from ipykernel.zmqshell import ZMQInteractiveShell

    for name, wanted in (("get_parent", ["self"]), ("set_parent", ["self", "parent"])):
        method = getattr(ZMQInteractiveShell, name, None)
        assert method is not None, broke(f"ZMQInteractiveShell.{name}", "gone")
        parameters = list(inspect.signature(method).parameters)
        assert parameters == wanted, broke(f"ZMQInteractiveShell.{name}", str(parameters))
    assert "parent_header" in inspect.getsource(ZMQInteractiveShell.get_parent), broke(
        "ZMQInteractiveShell.get_parent", "no longer returns the parent header"
    )

    class Shell:
        def get_parent(self) -> dict[str, Any]:  # what JupyterLab 4 sends
            return {"header": {"msg_id": "m1"}, "metadata": {"cellId": "c1"}}

    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert notebook.current_execution() == ("c1", "m1")
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert notebook.current_execution() == (None, None)


def test_the_kernel_learns_its_jupyter_server_s_pid(monkeypatch):
    from jupyter_client import launcher

    assert '"JPY_PARENT_PID"' in inspect.getsource(launcher), broke(
        "jupyter_client's launcher", "no longer sets JPY_PARENT_PID for the kernel"
    )
    monkeypatch.setenv("JPY_PARENT_PID", "1234")
    assert notebook.jupyter_parent_pid() == "1234"


# -- documents changed from other threads ------------------------------------------------


def test_every_change_event_goes_through_the_intercepted_dispatcher():
    doc = Document()
    div = Div(text="a")
    doc.add_root(div)
    routed: list[Any] = []
    dispatch = notebook.intercept_change_events(doc, routed.append)
    div.text = "b"
    assert [type(e) for e in routed] == [ModelChangedEvent], broke(
        "DocumentCallbackManager.trigger_on_change", f"saw {routed!r}"
    )
    dispatch(routed[0])  # bokeh's own dispatcher still takes the event


# -- BokehJS, from the output's page script ----------------------------------------------


@pytest.mark.parametrize(
    "module,declaration,why", notebook.BOKEHJS_INTERNALS, ids=lambda v: str(v)[:40]
)
def test_bokehjs_still_declares_what_the_page_script_uses(module: str, declaration: str, why: str):
    path = BOKEHJS_LIB / f"{module}.d.ts"
    assert path.exists(), broke(f"BokehJS module {module}", f"no {path.name}")
    flat = re.sub(r"\s+", " ", path.read_text())
    assert re.sub(r"\s+", " ", declaration) in flat, broke(
        f"BokehJS {module}", f"no '{declaration}' ({why})"
    )
    assert f'"{module}"' in BOKEHJS.read_text(), broke(
        f"BokehJS module {module}", "Bokeh.require cannot find it by that name"
    )


# -- shared by both front ends (tango_bokeh/internals.py) -----------------------------------


def test_document_destroy_collects_through_the_routed_collector():
    import gc

    collected: list[int] = []

    class Counting:
        def collect(self, generation: int = 2) -> int:
            collected.append(generation)
            return 0

        def __getattr__(self, name: str) -> Any:
            return getattr(gc, name)

    before = shared.document_collector()
    shared.route_document_collections(Counting())
    try:
        doc = Document()
        doc.add_root(Div())
        session = object()  # bokeh's ServerSession subscribes itself to its document
        doc.on_change_dispatch_to(session)
        doc.destroy(session)
    finally:
        shared.route_document_collections(before)
    assert collected, broke("bokeh.document.document.gc", "Document.destroy no longer uses it")


def test_the_session_context_holds_its_document():
    parameters = list(inspect.signature(BokehSessionContext.__init__).parameters)
    assert parameters[:4] == ["self", "session_id", "server_context", "document"], broke(
        "BokehSessionContext.__init__", str(parameters)
    )
    doc = Document()
    context = BokehSessionContext("id", None, doc)  # type: ignore[arg-type]
    assert shared.session_document(context) is doc, broke("BokehSessionContext._document", "")


def test_our_lifecycle_handler_replaces_bokeh_s_own():
    ours = SessionLifecycle()
    app = Application(FunctionHandler(lambda doc: None), ours)
    lifecycle = [h for h in app.handlers if isinstance(h, DocumentLifecycleHandler)]
    assert lifecycle == [ours], broke("Application.__init__", "adds its own lifecycle handler")
    assert inspect.iscoroutinefunction(DocumentLifecycleHandler.on_session_destroyed), broke(
        "Handler.on_session_destroyed", "is no longer a coroutine hook"
    )


# -- the dashboard (tango_bokeh/dashboard/internals.py) ---------------------------------------


def test_the_dashboard_s_handler_classes():
    from bokeh.server.views.doc_handler import DocHandler

    for page in (DocHandler, dashboard.AutoloadJsHandler):
        assert issubclass(page, dashboard.SessionHandler), broke(
            f"{page.__name__}", "is no longer a SessionHandler: the guard misses its pages"
        )
    assert dashboard.WSHandler is WSHandler


def test_find_handler_names_the_handler_class():
    class Page(RequestHandler):
        pass

    app = TornadoApplication([(r"/page", Page)])
    request = get("/page")
    assert dashboard.handler_class(app.find_handler(request)) is Page, broke(
        "tornado _HandlerDelegate.handler_class", "gone"
    )


@pytest.mark.parametrize(
    "owner,name,parameters",
    [
        (BokehTornado, "new_connection", ["self", "protocol", "socket", "application_context",
                                          "session"]),
        (BokehTornado, "find_handler", ["self", "request", "kwargs"]),
        (BokehTornado, "log_request", ["self", "handler"]),
    ],
)  # fmt: skip
def test_the_hooks_the_guard_overrides(owner: type, name: str, parameters: list[str]):
    method = getattr(owner, name, None)
    assert method is not None, broke(f"{owner.__name__}.{name}", "gone")
    found = list(inspect.signature(method).parameters)
    assert found == parameters, broke(f"{owner.__name__}.{name}", str(found))
