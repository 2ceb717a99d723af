"""Panels stay live while another cell runs a scan: JupyterLab and Notebook 7 in Chromium.

A real JupyterLab, a real kernel and headless Chromium. A cell shows a panel
of Tango attributes; another cell then runs synchronous Python for 60 s (pure
Python, numpy and short sleeps, never yielding to the kernel's loop), as a
scan or a long computation does. During that cell the page's data is read
twice, 5 s apart: the newest sample's Tango time must have advanced by at
least the time between the reads less two update periods. The Jupyter server
and its kernels are stopped by PID / process group.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from tango_bokeh.sim import ControlSystem

from .browser import HAVE_CHROMIUM
from .conftest import wait_for
from .test_notebook import kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.tango]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Debian's chromium (/usr/bin/chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

from .test_jupyterlab import (  # noqa: E402
    Jupyter,
    NotebookPage,
    launched_chromium,
    running_jupyterlab,
)

PERIOD = 0.5
SETUP = "from tango_bokeh.notebook import monitor"
PANEL = f'panel = monitor("sim/counter/1/Counts", "sim/beam/current/Current", period={PERIOD})'
BUSY_SECONDS = 60
#: A scan as a cell runs it: pure Python, numpy and short sleeps; never awaits.
BUSY = f"""\
import time, numpy
end = time.monotonic() + {BUSY_SECONDS}
while time.monotonic() < end:
    sum(i * i for i in range(200_000))
    numpy.linalg.eigvals(numpy.random.rand(120, 120))
    time.sleep(0.05)
print("scan done")"""

#: The newest Tango time (ms) in the trends of the newest Bokeh document of the page.
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


@pytest.fixture(scope="module")
def jupyter(
    control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Jupyter]:
    tmp = tmp_path_factory.mktemp("busy")
    root = tmp / "notebooks"
    root.mkdir()
    for name in ("busy-lab", "busy-nb7"):
        book = nbformat.v4.new_notebook()
        book.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP, PANEL, BUSY)]
        book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbformat.write(book, root / f"{name}.ipynb")
    env = kernel_env(tmp / "state", TANGO_HOST=control_system.tango_host)
    with running_jupyterlab(root, env, tmp / "jupyter.log") as server:
        yield server


@pytest.fixture(scope="module")
def chromium(jupyter: Jupyter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with launched_chromium(tmp_path_factory.mktemp("chromium-home")) as browser:
        yield browser


def live_during_a_busy_cell(notebook: NotebookPage) -> tuple[float, float]:
    """Show the panel, start the busy cell, read the newest Tango time twice 5 s apart.

    Returns (seconds between the reads, seconds the newest sample advanced).
    """
    page = notebook.page
    notebook.wait_kernel_idle()
    notebook.run(SETUP)
    panel = notebook.run(PANEL)
    panel.locator("canvas").first.wait_for(timeout=60_000)
    wait_for(lambda: page.evaluate(NEWEST_TIME), timeout=60, what="data in the panel")
    busy = notebook.cell("numpy.linalg.eigvals")
    busy.scroll_into_view_if_needed()
    busy.locator(".jp-InputArea-editor").first.click()
    started = time.monotonic()
    page.keyboard.press("Control+Enter")
    wait_for(lambda: "*" in notebook.prompt(busy), timeout=10, what="the busy cell running")
    page.wait_for_timeout(10_000)  # well into the scan
    first, first_at = page.evaluate(NEWEST_TIME), time.monotonic()
    page.wait_for_timeout(5_000)
    second, second_at = page.evaluate(NEWEST_TIME), time.monotonic()
    assert "*" in notebook.prompt(busy), "the busy cell ended before the second read"
    assert second_at - started < BUSY_SECONDS
    # the kernel is still busy with the scan; the panel must have kept up with Tango
    wait_for(
        lambda: "scan done" in notebook.output_text(busy),
        timeout=BUSY_SECONDS + 60,
        interval=1,
        what="the busy cell to finish",
    )
    return second_at - first_at, (second - first) / 1000.0


def check(elapsed: float, advanced: float) -> None:
    print(f"between the reads {elapsed:.2f} s; newest sample advanced {advanced:.2f} s")
    assert advanced >= elapsed - 2 * PERIOD, (elapsed, advanced)


def test_live_during_a_busy_cell_in_jupyterlab(jupyter: Jupyter, chromium: Any):
    context = chromium.new_context(viewport={"width": 1400, "height": 1100})
    try:
        page = context.new_page()
        workspace = f"busy-{uuid.uuid4().hex[:8]}"
        page.goto(
            f"{jupyter.url}lab/workspaces/{workspace}/tree/busy-lab.ipynb"
            f"?reset&token={jupyter.token}"
        )
        check(*live_during_a_busy_cell(NotebookPage(page)))
    finally:
        context.close()


def test_live_during_a_busy_cell_in_notebook_7(jupyter: Jupyter, chromium: Any):
    context = chromium.new_context(viewport={"width": 1400, "height": 1100})
    try:
        page = context.new_page()
        page.goto(f"{jupyter.url}notebooks/busy-nb7.ipynb?token={jupyter.token}")
        check(*live_during_a_busy_cell(NotebookPage(page)))
    finally:
        context.close()
