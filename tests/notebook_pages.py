"""What the notebook browser tests share: panels, busy cells, what the page and the kernel hold.

Used by tests/test_notebook_busy.py, tests/test_notebook_rerun.py and
tests/test_jupyterhub.py (JupyterLab, Notebook 7 and JupyterHub alike): the
notebooks they open, the cells they run, how a panel's live data and a busy
cell are read from the page (``window.Bokeh.documents``), and what the kernel
holds (registry, bokeh's handles, server sessions, what ``Out`` keeps). Driving
the page itself is ``tests/test_jupyterlab.py``'s ``NotebookPage``.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from .conftest import wait_for

#: The panels' update period (s) in the busy-cell tests.
PERIOD = 0.5
SETUP = "from tango_bokeh.notebook import close_all, monitor, status"
#: A panel of attributes whose values change all the time (change events at ~10 Hz).
PANEL = f'panel = monitor("sim/counter/1/Counts", "sim/beam/current/Current", period={PERIOD})'

#: Steps of the busy cells: each runs until its time is up and never yields to the kernel's loop.
BUSY_STEPS = {
    # a scan or a long computation: pure Python, numpy and short sleeps
    "scan": """\
    sum(i * i for i in range(200_000))
    numpy.linalg.eigvals(numpy.random.rand(120, 120))
    time.sleep(0.05)""",
    # a beamline scan with blocking PyTango calls: move a motor a step, wait, count, sleep
    "motor": """\
    step += 1
    motor.write_attribute("Position", start + 0.25 * (step % 8))
    while motor.state() == tango.DevState.MOVING:
        time.sleep(0.05)
    counter.read_attribute("Counts")
    time.sleep(0.2)""",
    # pure Python only, no sleep: the GIL is given up only at the switch interval
    "python": """\
    sum(i * i for i in range(300_000))""",
}
_BUSY_BEFORE = {
    "motor": """\
import tango
motor, counter = tango.DeviceProxy("sim/motor/1"), tango.DeviceProxy("sim/counter/1")
start, step = motor.read_attribute("Position").value, 0
""",
}
_BUSY_AFTER = {
    "motor": """\
motor.write_attribute("Position", start)
while motor.state() == tango.DevState.MOVING:
    time.sleep(0.05)
""",
}


def busy_marker(kind: str) -> str:
    """The text that finds a busy cell of ``kind`` in the page (its first line)."""
    return f"# busy cell: {kind}"


def busy_done(kind: str) -> str:
    """What a busy cell of ``kind`` prints when it ends."""
    return f"busy cell over: {kind}"


def busy_cell(kind: str, seconds: float) -> str:
    """A cell running ``BUSY_STEPS[kind]`` in a loop for ``seconds``, then printing its end."""
    return (
        f"{busy_marker(kind)}\n"
        "import time, numpy\n"
        f"{_BUSY_BEFORE.get(kind, '')}"
        f"end = time.monotonic() + {seconds}\n"
        "while time.monotonic() < end:\n"
        f"{BUSY_STEPS[kind]}\n"
        f"{_BUSY_AFTER.get(kind, '')}"
        f"print({busy_done(kind)!r})"
    )


def write_notebook(path: Path, cells: Sequence[str]) -> None:
    """A notebook of code cells for the python3 kernel."""
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(book, path)


# -- the page --------------------------------------------------------------------------

#: The newest Tango time (ms) in the trends of the newest Bokeh document with roots.
NEWEST_TIME = """
() => {
  const docs = ((window.Bokeh && window.Bokeh.documents) || []).filter((d) => d.roots().length);
  if (docs.length == 0) return null;
  let newest = null;
  for (const model of docs[docs.length - 1].all_models) {
    if (model.constructor.__name__ !== "ColumnDataSource" || !("t" in model.data)) continue;
    const n = model.get_length() || 0;
    if (n > 0 && (newest === null || model.data.t[n - 1] > newest)) newest = model.data.t[n - 1];
  }
  return newest;
}
"""
BOKEH_DOCUMENTS = "() => ((window.Bokeh && window.Bokeh.documents) || []).length"


def show_panel(notebook: Any, text: str) -> Any:
    """Run the cell containing ``text`` (a ``monitor`` call); return it once its panel, the
    page's newest Bokeh document, shows Tango data."""
    cell = notebook.run(text)
    cell.locator("canvas").first.wait_for(timeout=60_000)
    wait_for(lambda: notebook.page.evaluate(NEWEST_TIME), timeout=60, what="data in the panel")
    return cell


def page_memory(context: Any, page: Any) -> dict[str, int]:
    """Bokeh documents, JS heap (bytes) and DOM nodes of the page, after a forced collection."""
    cdp = context.new_cdp_session(page)
    try:
        for _ in range(3):
            cdp.send("HeapProfiler.collectGarbage")
        heap = cdp.send("Runtime.getHeapUsage")
        dom = cdp.send("Memory.getDOMCounters")
    finally:
        cdp.detach()
    documents = page.evaluate(BOKEH_DOCUMENTS)
    return {"documents": documents, "heap": int(heap["usedSize"]), "nodes": int(dom["nodes"])}


@dataclass
class Read:
    """One read of the panel during a busy cell."""

    at: float  # time.monotonic() of the test process
    newest: float  # the newest sample's Tango time in the page (ms)
    probe: Any  # what the caller's ``probe()`` returned


@dataclass
class BusyReads:
    """The reads of the panel during a busy cell, in order."""

    reads: list[Read]

    @property
    def elapsed(self) -> float:
        """Wall seconds between the first read and the last."""
        return self.reads[-1].at - self.reads[0].at

    @property
    def advanced(self) -> float:
        """Seconds the newest sample's Tango time moved between the first read and the last."""
        return (self.reads[-1].newest - self.reads[0].newest) / 1000.0

    def __str__(self) -> str:
        return f"between the reads {self.elapsed:.2f} s; newest sample moved {self.advanced:.2f} s"

    def assert_kept_up(self, period: float = PERIOD) -> None:
        """The panel kept up with Tango: it lost at most two update periods (issue 11's
        criterion, for a page served straight from the kernel's server)."""
        print(self)
        assert self.advanced >= self.elapsed - 2 * period, self

    def assert_kept_receiving(self) -> None:
        """Every read found newer data than the one before, and the data moved by at least
        half the time between the first read and the last (a frozen panel moves by nothing;
        the half leaves room for the delays of a proxy chain on a loaded machine)."""
        print(self)
        newest = [r.newest for r in self.reads]
        assert all(b > a for a, b in itertools.pairwise(newest)), newest
        assert self.advanced >= self.elapsed / 2, self


def read_during_busy_cell(
    notebook: Any,
    kind: str,
    *,
    seconds: float,
    settle: float,
    reads: int = 2,
    gap: float = 5.0,
    probe: Callable[[], Any] = lambda: None,
) -> BusyReads:
    """Start the busy cell of ``kind`` (``seconds`` long) and read the newest Tango time of
    the panel ``reads`` times: ``settle`` s after the cell started running, then every
    ``gap`` s. Checks the cell was running all along and waits for its end. ``probe()``
    runs with each read."""
    page = notebook.page
    busy = notebook.cell(busy_marker(kind))
    # generous: on a loaded machine the page's frames come seconds apart
    busy.scroll_into_view_if_needed(timeout=120_000)
    busy.locator(".jp-InputArea-editor").first.click(timeout=120_000)
    page.keyboard.press("Control+Enter")
    wait_for(lambda: "*" in notebook.prompt(busy), timeout=30, what="the busy cell running")
    started = time.monotonic()
    page.wait_for_timeout(settle * 1000)
    taken: list[Read] = []
    for i in range(reads):
        if i:
            page.wait_for_timeout(gap * 1000)
        newest = page.evaluate(NEWEST_TIME)
        assert newest is not None, "no data in the panel"
        taken.append(Read(time.monotonic(), newest, probe()))
    # the kernel was busy with the cell all along (it may have begun before "*" showed)
    assert "*" in notebook.prompt(busy), "the busy cell ended before the last read"
    assert taken[-1].at - started < seconds, "the reads took longer than the busy cell"
    wait_for(
        lambda: busy_done(kind) in notebook.output_text(busy),
        timeout=seconds + 90,
        interval=1,
        what=f"the busy cell ({kind}) to finish",
    )
    return BusyReads(taken)


# -- the kernel ------------------------------------------------------------------------

#: Run in the kernel once: defines ``_facts()``, which prints what the registry, bokeh's
#: handles, the server and ``Out`` hold, as JSON.
KERNEL_FACTS = """
import json as _json
from bokeh.document import Document as _Document
from bokeh.io.state import curstate as _curstate
from bokeh.model import Model as _Model
import tango_bokeh.notebook as _nb
from tango_bokeh import Hub as _Hub, Session as _Session

def _held(obj, depth=0, seen=None):
    '''bokeh Models, Documents and numpy arrays reachable from ``obj``'s own state.'''
    import numpy, types
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return 0
    seen.add(id(obj))
    if isinstance(obj, (_Model, _Document, numpy.ndarray)):
        return 1
    if isinstance(obj, _Hub):  # the kernel's hub, shared by every session
        return 0
    if isinstance(obj, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                        str, bytes, int, float)):
        return 0
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    elif isinstance(obj, types.MethodType):
        items = [obj.__self__]
    else:
        items = list(getattr(obj, "__dict__", {}).values())
    return sum(_held(i, depth + 1, seen) for i in items)

def _facts():
    server = _nb.NotebookServer.current()
    replaced = [v for v in Out.values() if isinstance(v, _Session) and v.closed]
    stats = _Hub.default().stats()
    print(_json.dumps({
        "sessions": len(_Session.sessions()),
        "subscriptions": stats.subscriptions,
        "consumers": stats.consumers,
        "replaced_in_out": len(replaced),
        "held_by_replaced": sum(_held(s) for s in replaced),
        "handles": sum(isinstance(h, _nb.Output) for h in _curstate().uuid_to_server.values()),
        "server_sessions": len(server.server.get_sessions()) if server else 0,
    }))
"""


def kernel_facts(kernel: Any) -> dict[str, Any]:
    """``_facts()`` read through a second client of the kernel (``KERNEL_FACTS`` run first)."""
    return json.loads(kernel.run("_facts()").strip().splitlines()[-1])


def export_csv(page: Any, cell: Any, where: Path) -> list[dict[str, str]]:
    """Download what the panel in ``cell`` shows through its "⬇ Export" menu (CSV) into
    ``where``, as the page saves it; its rows."""
    cell.evaluate("(c) => c.scrollIntoView({block: 'start'})")
    with page.expect_download(timeout=120_000) as info:
        cell.get_by_role("button", name="Export").click()
        page.get_by_text("CSV (long format)").click()
    path = where / info.value.suggested_filename
    info.value.save_as(path)
    with path.open(newline="") as file:
        return list(csv.DictReader(file))
