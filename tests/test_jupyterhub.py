"""The quickstart's panel in a notebook served by a real JupyterHub.

JupyterHub (its configurable-http-proxy in front, a dummy authenticator, the
simple local-process spawner) runs on loopback ports of its own; headless
Chromium logs in through the hub's login form, JupyterHub spawns the user's
JupyterLab, and the monitoring cell runs there. The panel must reach the
browser only through the hub's proxy and the user's server
(``/user/tester/proxy/<bokeh port>/``), with the hub's login cookie, and keep
showing live values, with nothing configured for tango_bokeh: the hub knows
its public URL and gives it to the user server. Every process (hub, proxy, user server, kernel) is
stopped by PID or process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import urlopen

import psutil
import pytest

from tango_bokeh.sim import ControlSystem

from .browser import HAVE_CHROMIUM
from .conftest import wait_for
from .test_notebook import kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.tango]

ROOT = Path(__file__).resolve().parent.parent
#: Where ``python3 dev.py test`` installs the hub's proxy (pinned in tests/hub/package.json).
PROXY = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
USER, PASSWORD = "tester", "not-a-secret"

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Debian's chromium (/usr/bin/chromium)", allow_module_level=True)
if not PROXY.exists():  # pragma: no cover - dev.py installs it where npm exists
    pytest.skip(f"needs configurable-http-proxy ({PROXY}): install npm", allow_module_level=True)
pytest.importorskip("jupyterhub")
pytest.importorskip("jupyter_server_proxy")
sync_api = pytest.importorskip("playwright.sync_api")

from .test_jupyterlab import (  # noqa: E402
    NotebookPage,
    Traffic,
    launched_chromium,
    run_monitoring_cell,
)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Hub:
    process: subprocess.Popen[bytes]
    url: str  # the public URL: http://127.0.0.1:PORT/
    log: Path

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """SIGTERM to the hub's group (the hub stops the user server and its proxy), then
        whatever is left by PID: kernels and the proxy run in process groups of their own."""
        left = self.descendants()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        for child in left:
            try:
                child.terminate()
                child.wait(10)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                child.kill()


def hub_config(state: Path, ports: list[int], env: dict[str, str], notebooks: Path) -> str:
    public, hub, api = ports
    singleuser = Path(sys.executable).parent / "jupyterhub-singleuser"
    args = [
        f"--ServerApp.root_dir={notebooks}",
        "--ServerApp.jpserver_extensions={'jupyter_server_proxy': True}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    return textwrap.dedent(
        f"""
        c = get_config()  # noqa: F821
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {public}
        c.JupyterHub.public_url = "http://127.0.0.1:{public}/"  # the user server learns it
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {hub}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
        c.ConfigurableHTTPProxy.command = [{str(PROXY)!r}]
        c.JupyterHub.db_url = "sqlite:///{state / "jupyterhub.sqlite"}"
        c.JupyterHub.cookie_secret_file = {str(state / "cookie_secret")!r}
        c.JupyterHub.pid_file = {str(state / "jupyterhub.pid")!r}
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = {PASSWORD!r}
        c.Authenticator.allowed_users = {{{USER!r}}}
        c.JupyterHub.spawner_class = "simple"
        c.SimpleLocalProcessSpawner.home_dir_template = {str(notebooks)!r}
        c.Spawner.cmd = [{str(singleuser)!r}]
        c.Spawner.args = {args!r}
        c.Spawner.default_url = "/lab"
        c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL"]
        c.Spawner.environment = {env!r}
        c.Spawner.start_timeout = 120
        c.Spawner.http_timeout = 120
        c.Spawner.popen_kwargs = {{"start_new_session": False}}  # in the hub's process group
        """
    )


@pytest.fixture
def jupyterhub(control_system: ControlSystem, tmp_path: Path) -> Iterator[Hub]:
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    state = tmp_path / "hub"
    state.mkdir()
    ports = free_ports(3)
    url = f"http://127.0.0.1:{ports[0]}/"
    full = kernel_env(tmp_path / "state", TANGO_HOST=control_system.tango_host)
    keep = ("TANGO_HOST", "PYTHONPATH")
    env = {k: v for k, v in full.items() if k.startswith(("JUPYTER_", "IPYTHON")) or k in keep}
    config = state / "jupyterhub_config.py"
    config.write_text(hub_config(state, ports, env, notebooks))
    log = tmp_path / "jupyterhub.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            env=full,
            cwd=state,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(process, url, log)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"jupyterhub exited:\n{log.read_text()[-3000:]}")
        try:
            with urlopen(f"{url}hub/login", timeout=5) as reply:
                return reply.status == 200
        except (URLError, OSError):
            return False

    try:
        wait_for(answers, timeout=90, interval=0.3, what="JupyterHub's login page")
        yield hub
    finally:
        hub.stop()


def test_panel_in_a_jupyterhub_user_server(jupyterhub: Hub, tmp_path: Path):
    hub = jupyterhub
    with launched_chromium(tmp_path / "chromium-home") as chromium:
        page = chromium.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        traffic = Traffic(page)
        page.goto(f"{hub.url}hub/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"**/user/{USER}/lab**", timeout=120_000)
        page.goto(f"{hub.url}user/{USER}/lab/tree/quickstart.ipynb")
        run_monitoring_cell(
            NotebookPage(page),
            "through the hub",
            lambda: f"websockets: {traffic.websockets}\nhub log: {hub.log.read_text()[-4000:]}",
        )

    public = urlparse(hub.url)
    outside = [u for u in traffic.urls if urlparse(u).port != public.port]
    assert not outside, f"the page went around the hub's proxy: {outside[:5]}"
    panel = [u for u in traffic.websockets if f"/user/{USER}/proxy/" in u]
    assert panel, traffic.websockets
    assert any(traffic.frames[u] > 1 for u in panel), traffic.frames  # patches flow through it
    assert any(f"/user/{USER}/proxy/" in u and "/static/js/bokeh" in u for u in traffic.requests)
