"""Export from a notebook panel in a real JupyterLab (headless Chromium, real kernel).

The quickstart's panel (tests/test_jupyterlab.py's fixtures) exports through its own
"⬇ Export" menu: the file reaches the page through the kernel's bokeh server and
JupyterLab's page downloads it (no extra route). Its CSV holds the panel's attributes;
``panel.save()`` in the kernel writes the same kind of file.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import wait_for
from .notebook_pages import export_csv
from .test_jupyterlab import (
    Jupyter,
    NotebookPage,
    browser,  # noqa: F401 - the module's Chromium, shared
    jupyter,  # noqa: F401 - the module's JupyterLab, shared
    live_rows,
)

pytestmark = [pytest.mark.browser, pytest.mark.tango]


def test_a_notebook_panel_exports_what_it_shows(jupyter: Jupyter, browser: Any, tmp_path):  # noqa: F811
    context = browser.new_context(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
    page = context.new_page()
    try:
        page.goto(f"{jupyter.url}lab/tree/quickstart.ipynb?token={jupyter.token}")
        notebook = NotebookPage(page)
        notebook.wait_kernel_idle()
        notebook.run("import os")
        cell = notebook.run("panel = monitor(")
        cell.locator("canvas").first.wait_for(timeout=60_000)
        wait_for(lambda: live_rows(notebook) > 10, timeout=60, what="data in the page")
        page.wait_for_timeout(2000)  # a few ticks: every view chosen and drawn
        rows = export_csv(page, cell, tmp_path)
        attributes = {r["attribute"] for r in rows}
        assert {"mot1/Position", "sim/beam/current/Current", "sim/spectro/1/Spectrum"} <= attributes
        assert all(r["time_utc"].endswith("Z") and r["origin"] for r in rows)
        # The same from Python: panel.save() writes the file in the kernel.
        kernel = jupyter.kernel_client(page)
        try:
            target = tmp_path / "panel.h5"
            out = kernel.run(
                f"import h5py; p = panel.save({str(target)!r}); "
                "f = h5py.File(p); print(sorted(f['entry'])); f.close()"
            )
        finally:
            kernel.close()
        assert "sim_beam_current_Current" in out and "sim_spectro_1_Spectrum" in out, out
    finally:
        context.close()
