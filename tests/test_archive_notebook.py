"""``monitor(..., archive=...)`` in a real JupyterLab kernel, seen in Chromium.

A cell of a real notebook calls ``monitor`` with the connection of a real HDB++ archive
(MariaDB with HDB++'s schema, 30 min of the ring current's past written in it); the
panel's trend must open with the archive's numbers, drawn apart and marked "archive",
before its live points, and a re-run of the cell must leave one session (and one server
session) in the kernel. The Jupyter server, its kernel, Chromium and MariaDB are
stopped by PID / process group.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tango_bokeh.sim import ControlSystem
from tango_bokeh.views import archive_fill

from .archives import NEEDS_MARIADB, archive_config
from .browser import HAVE_CHROMIUM
from .conftest import wait_for
from .notebook_pages import (
    BOKEH_DOCUMENTS,
    KERNEL_FACTS,
    SETUP,
    kernel_facts,
    show_panel,
    write_notebook,
)
from .test_archive_trends import CURRENT_TANGO, _epoch, _past
from .test_notebook import kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.tango, NEEDS_MARIADB]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Debian's chromium (/usr/bin/chromium)", allow_module_level=True)

pytest.importorskip("playwright.sync_api")

from .test_jupyterlab import Jupyter, NotebookPage, launched_chromium, running_jupyterlab  # noqa: E402

#: The newest Bokeh document's trend with archived points: those (renderers named
#: "... (archive)"), its live rows and its legend's labels.
ARCHIVED_TREND = """() => {
  const docs = ((window.Bokeh && window.Bokeh.documents) || []).filter(d => d.roots().length);
  if (!docs.length) return null;
  const plot = [...docs[docs.length - 1].all_models].find(m => m.type === 'Figure'
    && m.renderers.some(r => (r.name || '').endsWith('(archive)')));
  if (!plot) return null;
  const archived = plot.renderers.filter(r => (r.name || '').endsWith('(archive)'));
  const source = archived[0].data_source;
  const live = new Set(plot.renderers.map(r => r.data_source).filter(
    s => s && s !== source && s.data.q !== undefined));
  const plain = (v) => v && (v.value ?? v);
  return {
    names: archived.map(r => r.name),
    t: Array.from(source.data.t),
    y: Array.from(source.data.y),
    live_t: [...live].flatMap(s => Array.from(s.data.t)),
    legend: [...plot.above, ...plot.right, ...plot.center].filter(m => m.type === 'Legend')
      .flatMap(l => l.items.map(i => plain(i.label))),
  };
}"""


@pytest.fixture(scope="module")
def archived(control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory):
    """An HDB++ archive holding the last 30 min of CURRENT_TANGO (``_past``); its config."""
    from tango_bokeh_devices.archiver import Connection, HdbppWriter, backfill, start_archive

    tmp = tmp_path_factory.mktemp("hdbpp-notebook")
    db = start_archive(tmp / "hdbpp")
    try:
        now = time.time()
        writer = HdbppWriter(Connection.of(db))
        try:
            name = f"tango://{control_system.tango_host}/{CURRENT_TANGO.lower()}"
            backfill(writer, name, "scalar_devdouble_ro", now - 1800, now, 1.0, _past)
        finally:
            writer.close()
        yield now, archive_config(db, tmp)
    finally:
        db.stop()


@pytest.fixture(scope="module")
def jupyter(
    control_system: ControlSystem, archived, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Jupyter, str]]:
    _, config = archived
    keys = ("reader", "host", "port", "database", "user", "password_file")
    fields = {k: getattr(config, k) for k in keys}  # the password stays in its file
    cell = f"monitor({CURRENT_TANGO!r}, period=0.5, archive={fields!r})"
    tmp = tmp_path_factory.mktemp("archive-notebook")
    root = tmp / "notebooks"
    root.mkdir()
    write_notebook(root / "archived.ipynb", (SETUP, cell))
    env = kernel_env(tmp / "state", TANGO_HOST=control_system.tango_host)
    with running_jupyterlab(root, env, tmp / "jupyter.log") as server:
        yield server, cell


def _archived_panel(page: Any, jupyter: Jupyter) -> dict[str, Any]:
    def filled():
        state = page.evaluate(ARCHIVED_TREND)
        return state if state and len(state["t"]) > 100 and state["live_t"] else None

    try:
        return wait_for(filled, timeout=180, what="archived and live points in the panel")
    except AssertionError as exc:
        log = jupyter.log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}\npanel: {page.evaluate(ARCHIVED_TREND)}\n{log}") from None


@pytest.mark.timeout(600)
def test_monitor_with_archive_opens_filled_and_a_rerun_leaves_one_session(
    jupyter: tuple[Jupyter, str], archived, tmp_path: Path
):
    server, cell = jupyter
    now, _ = archived
    with launched_chromium(tmp_path / "chromium-home") as chromium:
        context = chromium.new_context(viewport={"width": 1400, "height": 1100})
        try:
            page = context.new_page()
            workspace = f"archived-{uuid.uuid4().hex[:8]}"
            page.goto(
                f"{server.url}lab/workspaces/{workspace}/tree/archived.ipynb?reset"
                f"&token={server.token}"
            )
            notebook = NotebookPage(page)
            notebook.wait_kernel_idle()
            notebook.run(SETUP)
            kernel = server.kernel_client(page)
            try:
                kernel.run(KERNEL_FACTS)
                for _ in range(2):  # the first run, then a re-run in place
                    show_panel(notebook, cell[:40])
                    trend = _archived_panel(page, server)
                    # Marked as archive: its own renderers, "(archive)", a legend entry.
                    assert all(n.endswith("(archive)") for n in trend["names"]), trend["names"]
                    assert "archive" in trend["legend"], trend["legend"]
                    # Before the live points, with the archive's numbers (never the device's).
                    assert max(trend["t"]) < min(trend["live_t"])
                    t = np.asarray([_epoch(x, now) for x in trend["t"]])
                    assert t.min() >= now - 600 - 5  # the trend's window: 10 min
                    assert len(trend["t"]) <= 2 * archive_fill.DEFAULT_WIDTH + 1
                    np.testing.assert_allclose(trend["y"], _past(t), rtol=0, atol=1e-3)
                wait_for(
                    lambda: page.evaluate(BOKEH_DOCUMENTS) == 1,
                    timeout=60,
                    what="the replaced output's document freed",
                )
                facts = wait_for(
                    lambda: (f := kernel_facts(kernel))["server_sessions"] == 1 and f,
                    timeout=60,
                    what="one server session: the re-run cell's",
                )
                assert facts["sessions"] == 1, facts
            finally:
                kernel.close()
        finally:
            context.close()
