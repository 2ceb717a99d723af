"""A real JupyterLab, a real kernel and headless Chromium: the quickstart as a person runs it.

The test starts ``jupyter lab`` on a free loopback port with a random token,
a copy of notebooks/ as its root and every Jupyter/IPython directory in tmp,
opens quickstart.ipynb in Chromium, runs its cells with the keyboard and reads
the live plot's data back from the page (``window.Bokeh.documents``). It then
re-runs the monitoring cell five times and checks, in the kernel's own
``status()`` output, that exactly one session is left and the hub's load is
unchanged; clears the output and checks that the session is gone; and opens
a copy of the quickstart in Notebook 7. A screenshot is kept under
``artifacts/``. The Jupyter server and its kernels are stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import psutil
import pytest
from jupyter_client import BlockingKernelClient

from tango_bokeh.sim import ControlSystem

from .browser import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from .conftest import wait_for
from .test_notebook import kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.tango]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Debian's chromium (/usr/bin/chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


# -- the Jupyter server ---------------------------------------------------------------


@dataclass
class Jupyter:
    process: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT/
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str) -> Any:
        request = Request(
            f"{self.url}api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def kernel_client(self, page: Any) -> KernelClient:
        """A second client of the kernel behind the notebook open in ``page``."""
        kernel_id = page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id"
        )
        runtime = Path(self.log.parent / "state" / "runtime")
        return KernelClient(runtime / f"kernel-{kernel_id}.json")

    def kernel_pids(self) -> set[int]:
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return set()
        return {c.pid for c in children if "ipykernel" in " ".join(c.cmdline())}

    def stop(self) -> None:
        """Shut the kernels down through the API, then the server by its process group."""
        kernels = self.kernel_pids()
        try:
            for session in self.api("GET", "sessions"):
                self.api("DELETE", f"sessions/{session['id']}")
        except Exception as exc:  # the server may be dead already; kill what is left below
            print(f"could not shut kernels down through the API: {exc}")
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        for pid in kernels:  # kernels run in their own process groups
            try:
                kernel = psutil.Process(pid)
                kernel.terminate()
                kernel.wait(10)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                kernel.kill()


class KernelClient:
    """jupyter_client on the notebook's own kernel (outputs do not show in the page)."""

    def __init__(self, connection_file: Path) -> None:
        self.client = BlockingKernelClient(connection_file=str(connection_file))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=30)

    def run(self, code: str) -> str:
        texts: list[str] = []

        def output(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream":
                texts.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                texts.append("\n".join(message["content"]["traceback"]))

        self.client.execute_interactive(code, timeout=30, output_hook=output, store_history=False)
        return "".join(texts)

    def close(self) -> None:
        self.client.stop_channels()


@pytest.fixture(scope="module")
def jupyter(
    control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Jupyter]:
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    shutil.copy(root / "quickstart.ipynb", root / "quickstart-nb7.ipynb")
    env = kernel_env(tmp / "state", TANGO_HOST=control_system.tango_host)
    with running_jupyterlab(root, env, tmp / "jupyter.log") as server:
        yield server


@contextlib.contextmanager
def running_jupyterlab(
    root: Path,
    env: dict[str, str],
    log: Path,
    *,
    port: int = 0,
    base_url: str = "/",
    extra_args: Sequence[str] = (),
) -> Iterator[Jupyter]:
    """A JupyterLab server on loopback serving ``root``; stopped by process group on exit."""
    token = secrets.token_hex(24)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.base_url={base_url}",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.expose_app_in_browser=True",
                "--JupyterNotebookApp.expose_app_in_browser=True",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
                *(["--allow-root"] if os.geteuid() == 0 else []),
                *extra_args,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=root,
        )  # fmt: skip
    runtime = Path(env["JUPYTER_RUNTIME_DIR"])

    def server_info() -> dict[str, Any] | None:
        if process.poll() is not None:
            raise AssertionError(f"jupyter lab exited:\n{log.read_text()[-3000:]}")
        for path in runtime.glob("jpserver-*.json"):
            try:
                info = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
            if info.get("pid") == process.pid:
                return info
        return None

    server = None
    try:
        info = wait_for(server_info, timeout=90, interval=0.2, what="the Jupyter server")
        url = f"http://127.0.0.1:{info['port']}{base_url}"
        server = Jupyter(process, url, token, root, log)
        wait_for(lambda: server.api("GET", "status"), timeout=30, what="the API")
        yield server
    finally:
        if server is not None:
            server.stop()
        elif process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="module")
def browser(jupyter: Jupyter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with launched_chromium(tmp_path_factory.mktemp("chromium-home")) as chromium:
        yield chromium


@contextlib.contextmanager
def launched_chromium(home: Path) -> Iterator[Any]:
    """Headless Chromium keeping its crash database and caches in ``home``, not in ~."""
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=env
        )
        try:
            yield chromium
        finally:
            chromium.close()


# -- driving a notebook page -----------------------------------------------------------

#: Per live Bokeh document of the page: rows of each ColumnDataSource and their last values.
READ_BOKEH = """
() => {
  const docs = (window.Bokeh && window.Bokeh.documents) || [];
  return docs.map((doc) => {
    const sources = [];
    for (const model of doc.all_models) {
      if (model.constructor.__name__ !== "ColumnDataSource") continue;
      const length = model.get_length() || 0;
      const last = {};
      for (const [name, column] of Object.entries(model.data)) {
        const value = length > 0 ? column[length - 1] : null;
        if (typeof value === "number") last[name] = value;
      }
      sources.push({id: model.id, length, last});
    }
    return {roots: doc.roots().length, sources};
  });
}
"""


class NotebookPage:
    """A notebook opened in JupyterLab (or Notebook 7), driven with the keyboard."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def wait_kernel_idle(self, timeout: float = 90) -> None:
        self.page.wait_for_function(
            """() => {
              const app = window.jupyterapp;
              const panel = app && app.shell.currentWidget;
              const kernel = panel && panel.sessionContext && panel.sessionContext.session
                && panel.sessionContext.session.kernel;
              return kernel && kernel.status === "idle";
            }""",
            timeout=timeout * 1000,
        )

    def cell(self, text: str) -> Any:
        return self.page.locator(".jp-Notebook .jp-CodeCell").filter(has_text=text).first

    def prompt(self, cell: Any) -> str:
        return cell.locator(".jp-InputArea-prompt").first.inner_text()

    def run(self, text: str, timeout: float = 90) -> Any:
        """Run the code cell containing ``text`` in place and wait until it has finished."""
        cell = self.cell(text)
        cell.scroll_into_view_if_needed()
        before = self.prompt(cell)
        cell.locator(".jp-InputArea-editor").first.click()
        self.page.keyboard.press("Control+Enter")
        deadline = time.monotonic() + timeout
        while True:
            now = self.prompt(cell)
            if re.search(r"\[\d+\]", now) and now != before:
                return cell
            if time.monotonic() > deadline:
                raise AssertionError(f"cell {text!r} did not finish: prompt {now!r}")
            self.page.wait_for_timeout(100)

    def output_text(self, cell: Any) -> str:
        return cell.locator(".jp-OutputArea").first.inner_text()

    def bokeh(self) -> list[dict[str, Any]]:
        return self.page.evaluate(READ_BOKEH)

    def command(self, name: str) -> None:
        self.page.evaluate(f"() => window.jupyterapp.commands.execute({name!r})")


def live_rows(page: NotebookPage) -> int:
    """Rows in every data source of the newest Bokeh document with roots (the live output)."""
    docs = [d for d in page.bokeh() if d["roots"]]
    return sum(s["length"] for s in docs[-1]["sources"]) if docs else 0


def last_values(page: NotebookPage) -> list[float]:
    docs = [d for d in page.bokeh() if d["roots"]]
    return [v for s in docs[-1]["sources"] for v in s["last"].values()] if docs else []


class Traffic:
    """What a page loads: request URLs, websockets, frames received per websocket, console."""

    def __init__(self, page: Any) -> None:
        self.requests: list[str] = []
        self.websockets: list[str] = []
        self.frames: dict[str, int] = {}
        self.console: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("websocket", self._websocket)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def _websocket(self, ws: Any) -> None:
        self.websockets.append(ws.url)
        self.frames[ws.url] = 0
        ws.on("framereceived", lambda _: self.frames.__setitem__(ws.url, self.frames[ws.url] + 1))

    @property
    def urls(self) -> list[str]:
        """Every network URL (requests and websockets; no blob: or data:)."""
        return [u for u in self.requests + self.websockets if u.startswith(("http", "ws"))]


def run_monitoring_cell(notebook: NotebookPage, via: str, diagnostics: Callable[[], str]) -> Any:
    """Run the quickstart's monitoring cell; wait until live values keep arriving (``via``
    says how, for the message; ``diagnostics()`` is added to it on failure). The cell."""
    notebook.wait_kernel_idle()
    notebook.run("import os")
    cell = notebook.run("panel = monitor(")
    cell.locator("canvas").first.wait_for(timeout=60_000)
    try:
        wait_for(lambda: live_rows(notebook) > 10, timeout=60, what="data in the page")
        rows, values = live_rows(notebook), last_values(notebook)
        wait_for(
            lambda: live_rows(notebook) > rows + 5 and last_values(notebook) != values,
            timeout=60,
            what=f"live values arriving {via}",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnostics()}") from exc
    return cell


def hub_line(status: str) -> str:
    match = re.search(r"^hub: .*$", status, re.MULTILINE)
    assert match, status
    return match.group(0)


# -- the tests -------------------------------------------------------------------------


def test_quickstart_in_jupyterlab(jupyter: Jupyter, browser: Any):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    try:
        page.goto(f"{jupyter.url}lab/tree/quickstart.ipynb?token={jupyter.token}")
        notebook = NotebookPage(page)
        notebook.wait_kernel_idle()
        out = notebook.output_text(notebook.run("import os"))
        assert "TANGO_HOST = 127.0.0.1:" in out

        monitor_cell = notebook.run("panel = monitor(")
        # the panel renders: a canvas inside the output, and data that grows with live values
        monitor_cell.locator("canvas").first.wait_for(timeout=60_000)
        wait_for(lambda: live_rows(notebook) > 10, timeout=60, what="data in the page")
        rows, values = live_rows(notebook), last_values(notebook)
        wait_for(
            lambda: live_rows(notebook) > rows + 5 and last_values(notebook) != values,
            timeout=60,
            what="live values arriving in the page",
        )
        assert "cdn" not in " ".join(page.evaluate("() => [...document.scripts].map((s) => s.src)"))

        status_cell = notebook.run("status()")
        before = notebook.output_text(status_cell)
        assert "1 open session(s)" in before and "1 live output(s)" in before, before
        sessions_line = re.search(r"- (MonitorSession:cell:[^:]+:running)", before)
        assert sessions_line, before

        for _ in range(5):  # re-run the monitoring cell in place
            notebook.run("panel = monitor(")
            monitor_cell.locator("canvas").first.wait_for(timeout=60_000)

        def settled() -> str | None:
            text = notebook.output_text(notebook.run("status()"))
            return text if hub_line(text) == hub_line(before) else None

        after = wait_for(settled, timeout=60, interval=1, what="the hub's load back to before")
        # the replaced outputs' server sessions are retired: the page's one live output is left
        kernel = jupyter.kernel_client(page)
        try:
            wait_for(
                lambda: (
                    kernel.run(
                        "import tango_bokeh.notebook as nb; "
                        "print(len(nb.NotebookServer.current().server.get_sessions()))"
                    ).strip()
                    == "1"
                ),
                timeout=30,
                interval=1,
                what="one bokeh server session left",
            )
        finally:
            kernel.close()
        assert not [c for c in console if "Reconnected websocket" in c], console
        assert "1 open session(s)" in after and sessions_line.group(1) in after, after
        assert "1 live output(s)" in after

        rows = live_rows(notebook)
        wait_for(lambda: live_rows(notebook) > rows + 5, timeout=60, what="the new panel live")

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "jupyterlab-quickstart.png"
        news = page.get_by_role("button", name="No")  # JupyterLab's news question, if asked
        if news.count():
            news.first.click()
        monitor_cell.evaluate("(cell) => cell.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1500)  # a few ticks after scrolling
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")

        # clearing the output closes the session (jupyter_bokeh sends destroy_server)
        monitor_cell.locator(".jp-InputArea-editor").first.click()
        page.keyboard.press("Escape")
        notebook.command("notebook:clear-cell-output")

        def cleared() -> str | None:
            text = notebook.output_text(notebook.run("status()"))
            return text if "no open session" in text else None

        text = wait_for(cleared, timeout=60, interval=1, what="the cleared output's session closed")
        assert "hub: 0 attribute(s), 0 reader(s)" in text
        errors = [c for c in console if c.startswith("error") and "bokeh" in c.lower()]
        assert not errors, errors
    finally:
        context.close()


def test_quickstart_in_notebook_7(jupyter: Jupyter, browser: Any):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{jupyter.url}notebooks/quickstart-nb7.ipynb?token={jupyter.token}")
        notebook = NotebookPage(page)
        notebook.wait_kernel_idle()
        notebook.run("import os")
        cell = notebook.run("panel = monitor(")
        cell.locator("canvas").first.wait_for(timeout=60_000)
        wait_for(lambda: live_rows(notebook) > 10, timeout=60, what="data in Notebook 7")
        rows = live_rows(notebook)
        wait_for(lambda: live_rows(notebook) > rows + 5, timeout=60, what="live updates")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "notebook7-quickstart.png"
        cell.evaluate("(cell) => cell.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        text = notebook.output_text(notebook.run("close_all()"))
        assert "no open session" in text
    finally:
        context.close()
