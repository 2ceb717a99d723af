"""Panels stay live while another cell runs a scan: JupyterLab and Notebook 7 in Chromium.

A real JupyterLab, a real kernel and headless Chromium. A cell shows a panel
of Tango attributes; another cell then runs synchronous Python for 60 s (pure
Python, numpy and short sleeps, never yielding to the kernel's loop), as a
scan or a long computation does. During that cell the page's data is read
twice, 5 s apart: the newest sample's Tango time must have advanced by at
least the time between the reads less two update periods. The Jupyter server
and its kernels are stopped by PID / process group. (The same behind
JupyterHub: tests/test_jupyterhub.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tango_bokeh.sim import ControlSystem

from .browser import HAVE_CHROMIUM
from .notebook_pages import (
    PANEL,
    SETUP,
    busy_cell,
    read_during_busy_cell,
    show_panel,
    write_notebook,
)
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

BUSY_SECONDS = 60


@pytest.fixture(scope="module")
def jupyter(
    control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Jupyter]:
    tmp = tmp_path_factory.mktemp("busy")
    root = tmp / "notebooks"
    root.mkdir()
    for name in ("busy-lab", "busy-nb7"):
        write_notebook(root / f"{name}.ipynb", (SETUP, PANEL, busy_cell("scan", BUSY_SECONDS)))
    env = kernel_env(tmp / "state", TANGO_HOST=control_system.tango_host)
    with running_jupyterlab(root, env, tmp / "jupyter.log") as server:
        yield server


@pytest.fixture(scope="module")
def chromium(jupyter: Jupyter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with launched_chromium(tmp_path_factory.mktemp("chromium-home")) as browser:
        yield browser


def live_during_a_busy_cell(notebook: NotebookPage) -> None:
    """Show the panel, run the busy cell, read the panel twice 5 s apart well into it."""
    notebook.wait_kernel_idle()
    notebook.run(SETUP)
    show_panel(notebook, PANEL)
    reads = read_during_busy_cell(notebook, "scan", seconds=BUSY_SECONDS, settle=10)
    reads.assert_kept_up()


def test_live_during_a_busy_cell_in_jupyterlab(jupyter: Jupyter, chromium: Any):
    context = chromium.new_context(viewport={"width": 1400, "height": 1100})
    try:
        page = context.new_page()
        workspace = f"busy-{uuid.uuid4().hex[:8]}"
        page.goto(
            f"{jupyter.url}lab/workspaces/{workspace}/tree/busy-lab.ipynb"
            f"?reset&token={jupyter.token}"
        )
        live_during_a_busy_cell(NotebookPage(page))
    finally:
        context.close()


def test_live_during_a_busy_cell_in_notebook_7(jupyter: Jupyter, chromium: Any):
    context = chromium.new_context(viewport={"width": 1400, "height": 1100})
    try:
        page = context.new_page()
        page.goto(f"{jupyter.url}notebooks/busy-nb7.ipynb?token={jupyter.token}")
        live_during_a_busy_cell(NotebookPage(page))
    finally:
        context.close()
