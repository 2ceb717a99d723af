"""Notebook integration on a real IPython kernel, its one bokeh server and real bokeh clients.

Each test talks to a real kernel (jupyter_client) the way JupyterLab does: an
execute request with the cell id in its metadata, the cell output read from
iopub, and ``bokeh.io.notebook.destroy_server(server_id)`` sent when an output
goes away. What JupyterLab's BokehJS would do with an output (ask the kernel's
server for the document bound to that output) is done by a real bokeh client
(:class:`Viewer`); the real browser is in tests/test_jupyterlab.py.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from urllib.request import urlopen

import psutil
import pytest
from bokeh.client import pull_session
from bokeh.util.token import get_session_id
from jupyter_client.manager import KernelManager

from tango_bokeh import notebook
from tango_bokeh.notebook import EXEC_MIME_TYPE
from tango_bokeh.session import Session
from tango_bokeh.sim import ControlSystem

from .conftest import wait_for

ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- a kernel driven like JupyterLab drives it ---------------------------------------


@dataclass
class CellResult:
    text: str = ""  # stream output
    errors: list[str] = field(default_factory=list)
    displays: list[dict[str, Any]] = field(default_factory=list)  # display_data contents

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The bokeh server-app outputs of the cell."""
        return [d for d in self.displays if EXEC_MIME_TYPE in d.get("metadata", {})]

    def json(self) -> Any:
        """The last line of stream output, as JSON (cells print their findings that way)."""
        return json.loads(self.text.strip().splitlines()[-1])


def kernel_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The test's environment (TANGO_HOST included) with Jupyter and IPython state in ``tmp``."""
    env = dict(os.environ)
    for name in (
        "TANGO_BOKEH_EXTERNAL_URL",
        "JUPYTER_BOKEH_EXTERNAL_URL",
        "JUPYTERHUB_PUBLIC_URL",
        "JPY_PARENT_PID",
    ):
        env.pop(name, None)
    for name, sub in (
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("IPYTHONDIR", "ipython"),
    ):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(tmp / sub)
    env.update(extra)
    return env


class Kernel:
    """A real IPython kernel; :meth:`run` executes a cell as JupyterLab does (with its cell id)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.pid = self.manager.provisioner.process.pid
        self._messages: dict[str | None, list[dict[str, Any]]] = {}  # iopub, per cell

    def send(self, code: str, cell_id: str | None = None) -> str:
        """Start a cell as JupyterLab does (with its cell id), without waiting; its msg_id."""
        content = {
            "code": textwrap.dedent(code),
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        metadata = {"cellId": cell_id} if cell_id else {}
        message = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(message)
        return message["header"]["msg_id"]

    def _pump(self, timeout: float) -> bool:
        """Read one iopub message into the per-cell record; False when none came in time."""
        try:
            reply = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return False
        self._messages.setdefault(reply["parent_header"].get("msg_id"), []).append(reply)
        return True

    def _received(self, msg_id: str) -> list[dict[str, Any]]:
        return self._messages.get(msg_id, [])

    def finished(self, msg_id: str) -> bool:
        """Whether the cell started as ``msg_id`` has ended (never waits)."""
        while self._pump(0.01):
            pass
        return any(
            m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            for m in self._received(msg_id)
        )

    def first_output(self, msg_id: str, timeout: float = 30) -> dict[str, Any]:
        """The first bokeh output of a cell, as soon as it is displayed (the cell may run on)."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self._received(msg_id):
                if m["msg_type"] == "display_data" and EXEC_MIME_TYPE in m["content"]["metadata"]:
                    return m["content"]
            assert time.monotonic() < deadline, "no bokeh output displayed"
            self._pump(0.1)

    def collect(self, msg_id: str, timeout: float = 60) -> CellResult:
        """What the cell started as ``msg_id`` output, once it has ended."""
        deadline = time.monotonic() + timeout
        while not self.finished(msg_id):
            assert time.monotonic() < deadline, "the cell did not end in time"
            self._pump(0.1)
        result = CellResult()
        for reply in self._messages.pop(msg_id):
            kind, body = reply["msg_type"], reply["content"]
            if kind == "stream":
                result.text += body["text"]
            elif kind == "error":
                result.errors.append(ANSI.sub("", "\n".join(body["traceback"])))
            elif kind in ("display_data", "execute_result"):
                result.displays.append(body)
        return result

    def run(self, code: str, cell_id: str | None = None, timeout: float = 60) -> CellResult:
        return self.collect(self.send(code, cell_id), timeout)

    def ok(self, code: str, cell_id: str | None = None) -> CellResult:
        """Run a cell that must not fail."""
        result = self.run(code, cell_id)
        assert not result.errors, result.errors[0]
        return result

    def destroy_output(self, output: dict[str, Any]) -> None:
        """What jupyter_bokeh sends when an output is cleared, replaced or closed."""
        server_id = output["metadata"][EXEC_MIME_TYPE]["server_id"]
        self.ok(f"import bokeh.io.notebook as ion; ion.destroy_server({server_id!r})")

    def shutdown(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.manager.shutdown_kernel(now=False)


def output_target(output: dict[str, Any]) -> tuple[str, str]:
    """(server URL, token) that an output's page claims its session with."""
    script = output["data"]["text/html"]
    match = re.search(r'claim = "([^"]+)"', script)
    assert match, script
    url = urlparse(match.group(1))
    assert url.path.endswith("/tango-bokeh/claim")
    token = parse_qs(url.query)["output"][0]
    return f"{url.scheme}://{url.netloc}{url.path.removesuffix('tango-bokeh/claim')}", token


def claim(url: str, token: str | None) -> dict[str, Any]:
    """What the output's page does first: trade its token for a bokeh session (or a refusal)."""
    with urlopen(f"{url}tango-bokeh/claim?output={token or ''}", timeout=10) as reply:
        return json.loads(reply.read())


class Viewer:
    """What the page's BokehJS does with an output: a bokeh client on a thread of its own."""

    def __init__(self, url: str, token: str | None, *, wait: bool = True) -> None:
        self.url, self.token = url, token
        self.client: Any = None
        self.error: BaseException | None = None
        self.refusal: str | None = None  # what the claim said instead of a session
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="viewer", daemon=True)
        self._thread.start()
        if wait:
            self.wait_connected()

    @classmethod
    def of(cls, output: dict[str, Any], *, wait: bool = True) -> Viewer:
        return cls(*output_target(output), wait=wait)

    def wait_connected(self) -> None:
        assert self._ready.wait(30), "the viewer did not connect"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            reply = claim(self.url, self.token)
            if "token" not in reply:
                self.refusal = reply.get("error") or reply.get("refused") or str(reply)
                self._ready.set()
                return
            session_id = get_session_id(reply["token"])
            self.client = pull_session(session_id=session_id, url=self.url)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        self.client._connection.loop_until_closed()  # process updates until closed

    @property
    def close_code(self) -> int | None:
        """How the server closed the connection (None while open)."""
        socket = getattr(getattr(self.client, "_connection", None), "_socket", None)
        return getattr(getattr(socket, "_socket", None), "close_code", None)

    def read(self, fn: Callable[[Any], Any], timeout: float = 10) -> Any:
        """``fn(document)`` evaluated on the viewer's loop (where its document changes)."""
        done, box = threading.Event(), {}

        def call() -> None:
            try:
                box["value"] = fn(self.client.document)
            except BaseException as exc:
                box["error"] = exc
            done.set()

        self.client._connection.io_loop.add_callback(call)
        assert done.wait(timeout), "the viewer's loop did not answer"
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def texts(self) -> str:
        """What the page shows as text: a refusal, the closed notice, or every Div's text."""
        if self.refusal is not None:
            return self.refusal
        if not self._thread.is_alive():  # the server closed the connection: the page says why
            return {
                notebook.CLOSED: notebook.TEXTS["closed"],
                notebook.REFUSED: notebook.TEXTS["refused"],
            }.get(self.close_code or 0, "")
        return self.read(
            lambda doc: " ".join(
                getattr(m, "text", "") for m in doc.models if type(m).__name__ == "Div"
            )
        )

    def close(self) -> None:
        self._ready.wait(30)
        if self.client is not None and self._thread.is_alive():
            self.client._connection.io_loop.add_callback(self.client.close)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the viewer did not stop"


@pytest.fixture
def viewers() -> Iterator[Callable[[dict[str, Any]], Viewer]]:
    made: list[Viewer] = []

    def view(output: dict[str, Any]) -> Viewer:
        viewer = Viewer.of(output)
        made.append(viewer)
        return viewer

    yield view
    for viewer in made:
        viewer.close()


# A session like the study's MySession, fed by a Tango attribute through the hub.
SESSIONS = """
import json
from bokeh.io.state import curstate
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Slider
from bokeh.plotting import figure
import tango_bokeh.notebook as nb
from tango_bokeh import Hub, Session

class Counts(Session):
    attributes = ("sim/counter/1/Counts",)

    def setup_document(self):
        self.source = ColumnDataSource(data={"t": [], "counts": []})
        plot = figure(height=200, x_axis_type="datetime")
        plot.line("t", "counts", source=self.source)
        self.period = Slider(title="period", start=0.1, end=2, step=0.1,
                             value=self.callback_period)
        self.period.on_change("value", lambda a, o, n: self.update_callback_period(n))
        self.document.add_root(column(self.period, plot))

    def on_samples(self, batch):
        samples = batch.get("sim/counter/1/Counts", [])
        good = [s for s in samples if s.error is None]
        if good:
            self.source.stream({"t": [1000 * s.time for s in good],
                                "counts": [s.value for s in good]}, rollover=500)

class Broken(Counts):
    def setup_document(self):
        raise ValueError("no such plot: Counts is not a spectrum")

def facts(*sessions):
    stats = Hub.default().stats()
    server = nb.NotebookServer.current()
    return json.dumps({
        "sessions": sorted(s.name for s in Session.sessions()),
        "subscriptions": stats.subscriptions,
        "channels": stats.channels,
        "consumers": stats.consumers,
        "ticks": [s.ticks for s in sessions],
        "points": [len(s.source.data["t"]) if s.document is not None and not s.closed
                   and hasattr(s, "source") else -1 for s in sessions],
        "closed": [s.closed for s in sessions],
        "port": server.port if server else None,
        "outputs": len(server.outputs()) if server else 0,
        "pending": server.pending() if server else 0,
        "refused": server.refused if server else 0,
        "server_sessions": sorted(x.id for x in server.server.get_sessions()) if server else [],
        "handles": sorted(k for k, h in curstate().uuid_to_server.items()
                          if isinstance(h, nb.Output)),
    })
"""


@pytest.fixture(scope="module")
def kernel(
    control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kernel]:
    kernel = Kernel(kernel_env(tmp_path_factory.mktemp("kernel")))
    try:
        kernel.ok(SESSIONS)
        yield kernel
    finally:
        kernel.shutdown()


@pytest.fixture
def k(kernel: Kernel) -> Iterator[Kernel]:
    """The module's kernel, with no session left open by the previous test."""
    yield kernel
    kernel.ok("nb.close_all(); nb.configure(token_lifetime=300)")


def cell() -> str:
    return uuid.uuid4().hex[:8]


# -- outputs -------------------------------------------------------------------------


def test_output_is_a_server_app_output_served_offline_from_loopback(k: Kernel):
    result = k.ok("s = Counts(); s.open()", cell())
    [output] = result.outputs
    assert output["metadata"][EXEC_MIME_TYPE]["server_id"]
    assert output["data"][EXEC_MIME_TYPE] == ""
    assert "Counts:" in output["data"]["text/plain"]
    url, token = output_target(output)
    assert url.startswith("http://127.0.0.1:") and len(token) >= 40
    assert "cdn" not in output["data"]["text/html"]
    # BokehJS comes from the kernel's own server (loaded once per page), never from a CDN
    port = urlparse(url).port
    script = output["data"]["text/html"]
    bokehjs = re.findall(r'"(http://127\.0\.0\.1:\d+/static/js/[^"]+)"', script)
    assert [u.split("?")[0].rsplit("/", 1)[1] for u in bokehjs][:1] == ["bokeh.min.js"]
    assert all(u.startswith(f"http://127.0.0.1:{port}/") for u in bokehjs)
    assert len(urlopen(bokehjs[0], timeout=10).read()) > 100_000
    reply = claim(url, token)  # what the page then asks for: a session token, no script
    assert set(reply) == {"token"}
    assert claim(url, token) == {"refused": notebook.TEXTS["refused"]}  # single use
    # the server listens on loopback only, in the kernel's process
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(k.pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert ("127.0.0.1", port) in listening
    assert not any(p == port and ip != "127.0.0.1" for ip, p in listening)


def test_one_server_for_every_cell(k: Kernel):
    first = k.ok("a = Counts(); a.open()", cell()).outputs[0]
    second = k.ok("b = Counts(); b.open()", cell()).outputs[0]
    assert urlparse(output_target(first)[0]).port == urlparse(output_target(second)[0]).port
    assert k.ok("print(facts(a, b))").json()["outputs"] == 2


def test_the_token_binds_one_viewer_once(k: Kernel, viewers):
    output = k.ok("s = Counts(callback_period=0.2); s.open()", cell()).outputs[0]
    before = k.ok("print(facts(s))").json()
    assert before["pending"] == 1
    viewer = viewers(output)
    assert viewer.read(lambda doc: len(doc.roots)) == 1 and "no longer live" not in viewer.texts()
    wait_for(lambda: k.ok("print(facts(s))").json()["points"][0] > 2, what="live data")
    # the same link again, a forged one, none at all: a notice, never a session
    url, token = output_target(output)
    again, forged, bare = Viewer(url, token), Viewer(url, "x" * 43), Viewer(url, None)
    try:
        for other in (again, forged, bare):
            assert "no longer live" in other.texts()
    finally:
        for other in (again, forged, bare):
            other.close()
    after = k.ok("print(facts(s))").json()
    assert after["sessions"] == before["sessions"] and after["refused"] == before["refused"] + 3
    assert after["pending"] == 0


def test_an_output_nobody_displays_expires(k: Kernel):
    k.ok("nb.configure(token_lifetime=1.0)")
    output = k.ok("s = Counts(); s.open()", cell()).outputs[0]
    wait_for(lambda: k.ok("print(facts(s))").json()["closed"] == [True], what="expiry")
    assert k.ok("print(facts(s))").json()["subscriptions"] == 0
    late = Viewer(*output_target(output))
    try:
        assert "no longer live" in late.texts()
    finally:
        late.close()


# -- lifecycle -----------------------------------------------------------------------


def test_rerunning_a_cell_replaces_its_session_and_keeps_the_hub_flat(k: Kernel, viewers):
    cell_id = cell()
    code = "s = Counts(callback_period=0.2); s.open()"
    previous = k.ok(code, cell_id).outputs[0]
    views = [viewers(previous)]
    baseline = wait_for(
        lambda: (f := k.ok("print(facts(s))").json())["points"][0] > 1 and f, what="live data"
    )
    assert baseline["subscriptions"] == 1 and len(baseline["sessions"]) == 1
    for _ in range(5):
        output = k.ok(code, cell_id).outputs[0]
        k.destroy_output(previous)  # what JupyterLab sends for the replaced output
        views.append(viewers(output))
        facts = k.ok("print(facts(s))").json()
        assert len(facts["sessions"]) == 1 and facts["closed"] == [False]
        assert facts["subscriptions"] == baseline["subscriptions"] == 1
        assert facts["channels"] == 1 and facts["consumers"] == 1
        previous = output
    wait_for(lambda: k.ok("print(facts(s))").json()["points"][0] > 1, what="the last one ticks")
    # the replaced outputs' server sessions are discarded, not kept for the tab's lifetime
    retired = {v.client.id for v in views[:-1]}
    wait_for(
        lambda: not retired & set(k.ok("print(facts(s))").json()["server_sessions"]),
        timeout=30,
        what="replaced outputs' server sessions discarded",
    )
    assert views[-1].client.id in k.ok("print(facts(s))").json()["server_sessions"]


def test_clearing_an_output_closes_its_session_only(k: Kernel, viewers):
    kept_output = k.ok("kept = Counts(callback_period=0.2); kept.open()", cell()).outputs[0]
    gone_output = k.ok("gone = Counts(callback_period=0.2); gone.open()", cell()).outputs[0]
    viewers(kept_output)
    gone_view = viewers(gone_output)
    wait_for(lambda: min(k.ok("print(facts(kept, gone))").json()["points"]) > 1, what="data")
    gone_id = gone_output["metadata"][EXEC_MIME_TYPE]["server_id"]
    assert gone_id in k.ok("print(facts())").json()["handles"]
    k.destroy_output(gone_output)
    facts = k.ok("print(facts(kept, gone))").json()
    assert gone_id not in facts["handles"]  # bokeh's registry holds no stale handle
    assert facts["closed"] == [False, True] and facts["sessions"] == [
        k.ok("print(json.dumps(kept.name))").json()
    ]
    assert facts["subscriptions"] == 1  # shared attribute: the kept session still reads it
    ticks = facts["ticks"][0]
    wait_for(lambda: k.ok("print(facts(kept))").json()["ticks"][0] > ticks + 3, what="kept ticks")
    # the cleared output's server session is retired too, not left for the tab's lifetime
    gone_view._thread.join(15)
    assert not gone_view._thread.is_alive(), "the server closed the cleared output's connection"
    wait_for(
        lambda: gone_view.client.id not in k.ok("print(facts(kept))").json()["server_sessions"],
        timeout=30,
        what="the retired server session discarded",
    )


def test_named_sessions_replace_each_other_across_cells(k: Kernel):
    k.ok("a = Counts('beam'); a.open()", cell())
    k.ok("b = Counts('beam'); b.open()", cell())
    facts = k.ok("print(facts(a, b))").json()
    assert facts["sessions"] == ["beam"] and facts["closed"] == [True, False]


def test_sessions_of_one_run_coexist_and_a_rerun_replaces_them_all(k: Kernel):
    cell_id = cell()
    code = "x = Counts(); x.open(); y = Counts(); y.open()"
    k.ok(code, cell_id)
    assert len(k.ok("print(facts(x, y))").json()["sessions"]) == 2
    k.ok(code, cell_id)
    k.ok(code, cell_id)
    facts = k.ok("print(facts(x, y))").json()
    assert len(facts["sessions"]) == 2 and facts["closed"] == [False, False]
    assert facts["consumers"] == 2


def test_close_all_and_status_from_any_cell(k: Kernel, viewers):
    viewer = viewers(k.ok("s = Counts(callback_period=0.2); s.open()", cell()).outputs[0])
    status = k.ok("nb.status()").text
    assert "1 open session(s)" in status and "Counts:" in status and "1 live output(s)" in status
    k.ok("nb.close_all()", cell())
    facts = k.ok("print(facts(s))").json()
    assert facts["sessions"] == [] and facts["subscriptions"] == 0 and facts["outputs"] == 0
    wait_for(lambda: "was closed" in viewer.texts(), what="the output to say so")
    assert "no open session" in k.ok("nb.status()").text


def test_a_session_shown_twice_is_refused(k: Kernel, viewers):
    viewers(k.ok("s = Counts(); s.open()", cell()).outputs[0])
    wait_for(lambda: k.ok("print(s.document is not None)").text.strip() == "True", what="attach")
    result = k.run("s.open()", cell())
    assert result.errors and "already shown" in result.errors[0]


# -- monitor() -----------------------------------------------------------------------


def source_sizes(doc: Any) -> dict[str, int]:
    """Rows of every non-empty ColumnDataSource of a viewer's document."""
    sizes = {}
    for model in doc.models:
        if type(model).__name__ == "ColumnDataSource" and model.data:
            sizes[model.id] = max(len(v) for v in model.data.values())
    return sizes


def test_monitor_shows_a_live_panel_and_returns_its_session(k: Kernel, viewers):
    cell_id = cell()
    code = (
        'm = nb.monitor("sim/motor/1/Position", "sim/counter/1/Counts", period=0.3); print(repr(m))'
    )
    result = k.ok(code, cell_id)
    assert result.text.startswith(f"MonitorSession:cell:{cell_id}:")
    viewer = viewers(result.outputs[0])
    before = viewer.read(source_sizes)
    wait_for(
        lambda: sum(viewer.read(source_sizes).values()) > sum(before.values()) + 3,
        what="trend data growing in the viewer",
    )
    again = viewers(k.ok(code, cell_id).outputs[0])  # re-run: the same name, replaced
    facts = k.ok("print(facts())").json()
    assert facts["sessions"] == [f"cell:{cell_id}"] and facts["channels"] == 2
    wait_for(lambda: sum(again.read(source_sizes).values()) > 3, what="the new panel's data")
    wait_for(lambda: "was closed" in viewer.texts(), what="the old panel to say it is closed")


def test_tango_monitor_magic(k: Kernel, viewers):
    k.ok("%load_ext tango_bokeh")
    result = k.ok("m = %tango_monitor sim/counter/1/Counts mot1/Position -p 0.3 --name magic")
    viewer = viewers(result.outputs[0])
    wait_for(lambda: sum(viewer.read(source_sizes).values()) > 2, what="live data")
    assert k.ok("print(facts(m))").json()["sessions"] == ["magic"]
    bad = k.run("%tango_monitor --period fast sim/counter/1/Counts")
    assert bad.errors and "usage: %tango_monitor" in bad.errors[0]
    assert k.ok("print(facts())").json()["sessions"] == ["magic"]


# -- live while a cell is busy -------------------------------------------------------

#: Synchronous Python that never yields to the kernel's loop: pure Python, numpy, sleeps.
BUSY = """
import time, numpy
_end = time.monotonic() + {seconds}
while time.monotonic() < _end:
    sum(i * i for i in range(100_000))
    numpy.linalg.eigvals(numpy.random.rand(60, 60))
    time.sleep(0.02)
"""


def test_panels_update_while_another_cell_is_busy(k: Kernel, viewers):
    viewer = viewers(k.ok("s = Counts(callback_period=0.2); s.open()", cell()).outputs[0])
    wait_for(lambda: sum(viewer.read(source_sizes).values()) > 2, what="live data")
    busy = k.send(BUSY.format(seconds=12), cell())
    try:
        time.sleep(3)
        first = sum(viewer.read(source_sizes).values())
        time.sleep(4)
        second = sum(viewer.read(source_sizes).values())
        assert not k.finished(busy), "the busy cell ended too early"
        assert second >= first + 5, (first, second)  # ~20 ticks of new counts meanwhile
    finally:
        k.collect(busy, timeout=60)


def test_monitor_from_a_cell_that_then_stays_busy(k: Kernel, viewers):
    busy = k.send(
        'm = nb.monitor("sim/counter/1/Counts", period=0.2)\n' + BUSY.format(seconds=10), cell()
    )
    try:
        output = k.first_output(busy)  # displayed while the cell runs on
        viewer = viewers(output)
        start = sum(viewer.read(source_sizes).values())
        wait_for(
            lambda: sum(viewer.read(source_sizes).values()) > start + 5,
            timeout=8,
            what="the new panel updating while its cell is still busy",
        )
        assert not k.finished(busy)
    finally:
        k.collect(busy, timeout=60)


def test_cells_change_shown_models_safely(k: Kernel, viewers):
    """Properties set, data streamed and session methods called from a cell reach the page
    from the server's thread; the models' Python callbacks run there too."""
    viewer = viewers(k.ok("s = Counts(callback_period=0.2); s.open()", cell()).outputs[0])
    wait_for(lambda: k.ok("print(s.ticks > 2)").text.strip() == "True", what="ticks")
    result = k.ok(
        """
        import threading
        seen = []
        s.period.on_change("value", lambda a, o, n: seen.append(threading.current_thread().name))
        s.period.value = 0.7          # a property, with a Python callback
        s.source.stream({"t": [1.0], "counts": [-1.0]}, rollover=500)   # data
        s.document.title = "from a cell"
        s.pause(); s.resume()         # session methods
        print(json.dumps({"cell": threading.current_thread().name}))
        """
    ).json()
    wait_for(
        lambda: viewer.read(lambda doc: doc.title) == "from a cell",
        what="the title set from the cell in the page",
    )
    sliders = viewer.read(lambda doc: [m.value for m in doc.models if type(m).__name__ == "Slider"])
    assert sliders == [0.7]
    wait_for(lambda: k.ok("print(s.callback_period)").text.strip() == "0.7", what="callback")
    callback_threads = k.ok("print(json.dumps(seen))").json()
    assert callback_threads and result["cell"] not in callback_threads, callback_threads
    assert k.ok("print(not s.suspended)").text.strip() == "True"
    assert -1.0 in viewer.read(
        lambda doc: [
            v
            for m in doc.models
            if type(m).__name__ == "ColumnDataSource"
            for v in m.data.get("counts", [])
        ]
    )


# -- bad input -----------------------------------------------------------------------


def test_a_session_that_fails_to_build_shows_its_error_in_place(k: Kernel, viewers):
    good = viewers(k.ok("good = Counts(callback_period=0.2); good.open()", cell()).outputs[0])
    bad_cell = cell()
    bad = viewers(k.ok("bad = Broken(); bad.open()", bad_cell).outputs[0])
    wait_for(lambda: "no such plot" in bad.texts(), timeout=10, what="the error in place")
    assert "ValueError" in bad.texts()
    facts = k.ok("print(facts(good, bad))").json()
    assert facts["closed"] == [False, True] and facts["consumers"] == 1
    ticks = facts["ticks"][0]
    wait_for(lambda: k.ok("print(facts(good))").json()["ticks"][0] > ticks + 2, what="good ticks")
    # re-running the failed cell with a fix works and still leaves one session per cell
    viewers(k.ok("bad = Counts(callback_period=0.2); bad.open()", bad_cell).outputs[0])
    assert len(k.ok("print(facts(good, bad))").json()["sessions"]) == 2
    assert good.read(lambda doc: len(doc.roots)) == 1


def _server_of(control_system: ControlSystem, device: str):
    return next(s for s in control_system.servers if any(d.name == device for d in s.devices))


def test_bad_input_shows_in_place_while_the_rest_keeps_updating(
    k: Kernel, viewers, control_system: ControlSystem
):
    cell_id = cell()
    code = """
    from tango_bokeh.views import Image
    m = nb.monitor(
        "sim/counter/1/Counts",          # fine
        "sim/nothing/1/Value",           # no such device
        "sim/counter/1/Nope",            # no such attribute
        "not a name!",                   # malformed
        Image("sim/spectro/1/Spectrum"), # a spectrum cannot be an image
        "sim/faulty/1/Value",            # its server dies below
        period=0.3,
    )
    """
    viewer = viewers(k.ok(code, cell_id).outputs[0])
    for text in ("DB_DeviceNotDefined", "Nope", "not a name!", "use Spectrum"):
        wait_for(lambda t=text: t in viewer.texts(), what=f"{text!r} shown in place")
    baseline = k.ok("print(facts())").json()

    def counts_grow(by: int = 3) -> None:
        start = sum(viewer.read(source_sizes).values())
        wait_for(
            lambda: sum(viewer.read(source_sizes).values()) > start + by,
            what="the good attribute to keep updating",
        )

    counts_grow()
    server = _server_of(control_system, "sim/faulty/1")
    control_system.stop_server(server, signal.SIGKILL)
    try:
        wait_for(
            lambda: (
                "API_EventTimeout" in viewer.texts() or "stale" in k.ok("print(m.status_text)").text
            ),
            timeout=40,
            what="the dead device shown as stale / disconnected",
        )
        counts_grow()
        k.ok("m.update_callback_period(0.5); m.pause(); m.resume()")  # still usable
        counts_grow()
    finally:
        control_system.start_server(server)
        control_system.wait_ready([d.name for d in server.devices])
    # re-running the cell cleans up: one session, the same load on the hub
    again = viewers(k.ok(code, cell_id).outputs[0])
    facts = k.ok("print(facts())").json()
    assert facts["sessions"] == [f"cell:{cell_id}"]
    assert facts["channels"] == baseline["channels"] and facts["consumers"] == baseline["consumers"]
    assert facts["subscriptions"] <= baseline["subscriptions"]
    wait_for(lambda: "DB_DeviceNotDefined" in again.texts(), what="errors in the new panel")
    k.ok("nb.close_all()")
    wait_for(
        lambda: (f := k.ok("print(facts())").json())["channels"] == 0 and f["subscriptions"] == 0,
        what="everything released",
    )


# -- origins and URLs ----------------------------------------------------------------


def _websocket_status(url: str, origin: str) -> int:
    """HTTP status of a websocket handshake to the kernel's server from a page at ``origin``."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    async def attempt() -> int:
        request = HTTPRequest(
            url.replace("http://", "ws://") + "ws",
            headers={"Origin": origin, "Sec-WebSocket-Protocol": "bokeh, nothing"},
        )
        try:
            connection = await websocket_connect(request)
        except HTTPClientError as exc:
            return exc.code
        connection.close()
        return 101

    loop = IOLoop(make_current=False)
    try:
        return loop.run_sync(attempt, timeout=10)
    finally:
        loop.close()


def test_only_the_notebook_origin_may_open_the_websocket(k: Kernel):
    output = k.ok("s = Counts(); s.open()", cell()).outputs[0]
    url, _ = output_target(output)
    # no Jupyter server started this kernel: bokeh's default notebook URL is the origin
    assert _websocket_status(url, "http://localhost:8888") == 101
    assert _websocket_status(url, "http://127.0.0.1:8888") == 101
    assert _websocket_status(url, "http://evil.example.org") == 403
    assert _websocket_status(url, "http://localhost:9999") == 403
    k.ok("nb.configure(allow_websocket_origin=['myhost.example.org:8443'])")
    try:
        assert _websocket_status(url, "https://myhost.example.org:8443") == 101
    finally:
        k.ok("nb.configure(allow_websocket_origin=[])")


def test_external_url_for_a_proxied_jupyter(control_system: ControlSystem, tmp_path: Path):
    """JupyterHub + jupyter-server-proxy: the page reaches the server through the hub's URL."""
    env = kernel_env(
        tmp_path,
        TANGO_BOKEH_EXTERNAL_URL="https://hub.example.org/",
        JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
    )
    kernel = Kernel(env)
    try:
        kernel.ok(SESSIONS)
        output = kernel.ok("s = Counts(); s.open()", cell()).outputs[0]
        port = kernel.ok("print(nb.NotebookServer.current().port)").json()
        url, token = output_target(output)
        assert url == f"https://hub.example.org/user/alice/proxy/{port}/"
        # BokehJS through the proxy too (bokeh's autoload would drop the path)
        assert f'"{url}static/js/bokeh.min.js?v=' in output["data"]["text/html"]
        # the proxy forwards to the loopback server: the page's origin is the hub's
        local = f"http://127.0.0.1:{port}/"
        assert _websocket_status(local, "https://hub.example.org") == 101
        assert _websocket_status(local, "http://localhost:8888") == 403
        # the proxied browser would read the document through the forwarded request
        viewer = Viewer(local, token)
        try:
            assert viewer.read(lambda doc: len(doc.roots)) == 1
        finally:
            viewer.close()
        # an explicit bokeh-style notebook_url wins over the environment
        other = kernel.ok(
            "t = Counts(); t.open(notebook_url=lambda p: 'lab.example.org' if p is None "
            "else f'https://lab.example.org/proxy/{p}/')",
            cell(),
        ).outputs[0]
        assert output_target(other)[0] == f"https://lab.example.org/proxy/{port}/"
        assert _websocket_status(local, "https://lab.example.org") == 101
    finally:
        kernel.shutdown()


def test_url_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Where the browser finds the server, for every documented configuration."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no Jupyter server here
    for name in (
        "TANGO_BOKEH_EXTERNAL_URL",
        "JUPYTER_BOKEH_EXTERNAL_URL",
        "JUPYTERHUB_SERVICE_PREFIX",
        "JUPYTERHUB_PUBLIC_URL",
        "JPY_PARENT_PID",
    ):
        monkeypatch.delenv(name, raising=False)
    saved = notebook.settings()
    try:
        url, origins = notebook.resolve_url()
        assert url(5000) == "http://127.0.0.1:5000/" and "localhost:8888" in origins
        url, origins = notebook.resolve_url("localhost:8889")
        assert url(5000) == "http://localhost:5000/" and {
            "localhost:8889",
            "127.0.0.1:8889",
        } <= set(origins)
        url, origins = notebook.resolve_url("https://lab.example.org:8443/lab")
        assert url(5000) == "https://lab.example.org:5000/" and origins == ["lab.example.org:8443"]

        # a hub that knows its public URL tells the user server: nothing to configure
        monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", "https://hub.example.org/user/dave/")
        url, origins = notebook.resolve_url()
        assert url(5000) == "https://hub.example.org/user/dave/proxy/5000/"
        assert origins == ["hub.example.org"]

        monkeypatch.setenv("JUPYTER_BOKEH_EXTERNAL_URL", "https://hub.example.org")
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/bob/")
        url, origins = notebook.resolve_url()
        assert url(5000) == "https://hub.example.org/user/bob/proxy/5000" and origins == [
            "hub.example.org"
        ]

        monkeypatch.setenv("TANGO_BOKEH_EXTERNAL_URL", "https://gw.example.org/tb/{port}/")
        url, origins = notebook.resolve_url()
        assert url(5000) == "https://gw.example.org/tb/5000/" and origins == ["gw.example.org"]

        notebook.configure(
            external_url="https://hub.example.org/user/carol/",
            allow_websocket_origin="other.example.org",
        )
        url, origins = notebook.resolve_url()
        assert url(5000) == "https://hub.example.org/user/carol/proxy/5000/"
        assert origins == ["hub.example.org", "other.example.org"]
        with pytest.raises(TypeError, match="unknown notebook setting"):
            notebook.configure(adress="0.0.0.0")
        with pytest.raises(ValueError):
            notebook.configure(token_lifetime=0)
    finally:
        notebook.configure(
            **{f: getattr(saved, f) for f in ("external_url", "allow_websocket_origin")}
        )


def test_open_outside_a_kernel_fails_clearly_and_leaves_nothing(hub):
    session = Session(hub=hub)
    session.subscribe("sim/counter/1/Counts")
    with pytest.raises(RuntimeError, match="Jupyter notebook"):
        session.open()
    assert session.closed and hub.stats().consumers == 0


# -- kernel shutdown -----------------------------------------------------------------


def test_kernel_shutdown_closes_sessions_and_the_server(
    control_system: ControlSystem, tmp_path: Path
):
    kernel = Kernel(kernel_env(tmp_path))
    try:
        kernel.ok(SESSIONS)
        output = kernel.ok("s = Counts(callback_period=0.2); s.open()", cell()).outputs[0]
        viewer = Viewer.of(output)
        port = kernel.ok("print(nb.NotebookServer.current().port)").json()
        pid = kernel.pid
    finally:
        kernel.shutdown()
    viewer._thread.join(20)  # the server went away: the viewer's connection ends
    assert not viewer._thread.is_alive()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
