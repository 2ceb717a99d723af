"""The notebooks of notebooks/ run top to bottom against the embedded control system.

nbclient executes each notebook in a real kernel whose TANGO_HOST is the test
database's. What the page would do with each bokeh output (ask the kernel's
server for its document) is done by a real bokeh client as soon as the cell
has run, so sessions attach and tick as in JupyterLab; the real browser is in
tests/test_jupyterlab.py.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tango_bokeh.notebook import EXEC_MIME_TYPE
from tango_bokeh.sim import ControlSystem

from .test_notebook import Viewer, kernel_env

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


class BrowsingClient(NotebookClient):
    """nbclient that, like the page, opens each bokeh output as soon as it arrives."""

    viewers: list[Viewer]

    def output(
        self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int
    ) -> Any:
        out = super().output(outs, msg, display_id, cell_index)
        content = msg.get("content", {})
        if msg["msg_type"] == "display_data" and EXEC_MIME_TYPE in content.get("metadata", {}):
            self.viewers.append(Viewer.of(content, wait=False))
        return out


def run_notebook(name: str, tmp_path: Path, control_system: ControlSystem) -> list[str]:
    """Execute ``notebooks/<name>``; the text output of each code cell, in order."""
    source = NOTEBOOKS / name
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(source, work / name)
    book = nbformat.read(work / name, as_version=4)
    for cell in book.cells:
        assert not cell.get("outputs"), f"{name}: outputs committed in the notebook"
    env = kernel_env(tmp_path / "jupyter", TANGO_HOST=control_system.tango_host)
    client = BrowsingClient(
        book, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(work)}}
    )
    client.viewers = []
    try:
        client.execute(env=env)
    finally:
        for viewer in client.viewers:
            viewer.close()
    texts = []
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            assert output.output_type != "error", "\n".join(output.get("traceback", ()))
        texts.append("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"))
    return texts


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return int(match.group(1))


@pytest.mark.tango
def test_quickstart(tmp_path: Path, control_system: ControlSystem):
    texts = run_notebook("quickstart.ipynb", tmp_path, control_system)
    assert f"TANGO_HOST = {control_system.tango_host}" in texts[0]
    status, stats, closed = texts[2], texts[3], texts[4]
    assert "1 open session(s)" in status and "MonitorSession:" in status
    assert "1 live output(s), 0 waiting for a browser" in status
    # one hub channel per attribute; events for the pushed ones
    assert _number(r"(\d+) attributes", stats) == 11
    assert _number(r"(\d+) Tango subscriptions", stats) >= 6
    received = [int(n) for n in re.findall(r"received=(\d+)", stats)]
    assert len(received) == 11 and sum(n > 0 for n in received) >= 9
    assert "no open session" in closed and "hub: 0 attribute(s), 0 reader(s)" in closed


@pytest.mark.tango
def test_custom_session(tmp_path: Path, control_system: ControlSystem):
    texts = run_notebook("custom_session.ipynb", tmp_path, control_system)
    driven = texts[2]
    ticks = _number(r"ticks=(\d+)", driven)
    points = _number(r"points=(\d+)", driven)
    assert ticks >= 5 and points >= 3
    assert "period=0.2 suspended=False" in driven
    status = texts[4]
    assert "2 open session(s)" in status and "MySession:" in status and "Optics:" in status
    assert "hub: 4 attribute(s), 4 reader(s)" in status
    assert "no open session" in texts[5] and "hub: 0 attribute(s), 0 reader(s)" in texts[5]


@pytest.mark.tango
def test_lifecycle(tmp_path: Path, control_system: ControlSystem):
    texts = run_notebook("lifecycle.ipynb", tmp_path, control_system)
    assert "sessions=0 attributes=0 readers=0 subscriptions=0" in texts[0]
    runs = re.findall(r"run \d: (.*)", texts[1])
    assert len(runs) == 5 and len(set(runs)) == 1, runs  # flat, run after run
    assert runs[0].startswith("sessions=1 attributes=2 readers=2 ")
    assert "1 open session(s)" in texts[2] and "MonitorSession:lifecycle:running" in texts[2]
    errors = texts[3]
    assert "sim/nothing/1/Value · failed" in errors and "sim/counter/1/Nope · failed" in errors
    assert "not a name! · invalid name" in errors
    assert "sim/counter/1/Counts · change events" in errors
    assert "after close_all: sessions=0 attributes=0 readers=0 subscriptions=0" in texts[4]
    assert "no open session" in texts[4]
