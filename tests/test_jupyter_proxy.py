"""The quickstart's panel behind jupyter-server-proxy, laid out like a JupyterHub user server.

JupyterLab runs under a hub-style base URL (``/user/tester/``) with the
``jupyter_server_proxy`` extension enabled; the kernel gets what a spawner
would give it: ``JUPYTERHUB_SERVICE_PREFIX`` and ``TANGO_BOKEH_EXTERNAL_URL``
set to the Jupyter server's own address, so tango_bokeh publishes its panels
under ``<jupyter>/user/tester/proxy/<bokeh port>/``. Headless Chromium, logged
in with the token, runs the monitoring cell: every request and websocket of the
page is recorded, none may go to the bokeh port directly, the websocket must go
through ``/proxy/``, and the plot's data must keep growing with live values.
The Jupyter server and its kernel are stopped by PID / process group.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tango_bokeh.sim import ControlSystem

from .browser import HAVE_CHROMIUM
from .test_notebook import kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.tango]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Debian's chromium (/usr/bin/chromium)", allow_module_level=True)

pytest.importorskip("jupyter_server_proxy")
sync_api = pytest.importorskip("playwright.sync_api")

from .test_jupyterlab import (  # noqa: E402
    Jupyter,
    NotebookPage,
    Traffic,
    launched_chromium,
    run_monitoring_cell,
    running_jupyterlab,
)

ROOT = Path(__file__).resolve().parent.parent
#: The single-user server's prefix, as JupyterHub gives it.
PREFIX = "/user/tester/"


def free_port() -> int:
    """A free loopback port: the proxy URL has to name Jupyter's port before it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def proxied_jupyter(control_system: ControlSystem, tmp_path: Path) -> Iterator[Jupyter]:
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = kernel_env(
        tmp_path / "state",
        TANGO_HOST=control_system.tango_host,
        JUPYTERHUB_SERVICE_PREFIX=PREFIX,
        TANGO_BOKEH_EXTERNAL_URL=f"{origin}/",  # + the prefix + proxy/<port>/
    )
    with running_jupyterlab(
        root,
        env,
        tmp_path / "jupyter.log",
        port=port,
        base_url=PREFIX,
        extra_args=["--ServerApp.jpserver_extensions={'jupyter_server_proxy': True}"],
    ) as server:
        log = server.log.read_text()
        assert "jupyter_server_proxy | extension was successfully loaded" in log, log
        yield server


def test_panel_through_jupyter_server_proxy(proxied_jupyter: Jupyter, tmp_path: Path):
    jupyter = proxied_jupyter
    with launched_chromium(tmp_path / "chromium-home") as chromium:
        page = chromium.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        traffic = Traffic(page)
        page.goto(f"{jupyter.url}lab/tree/quickstart.ipynb?token={jupyter.token}")
        run_monitoring_cell(
            NotebookPage(page),
            "through the proxy",
            lambda: (
                f"websockets: {traffic.websockets}\nconsole: {traffic.console}\n"
                f"jupyter log: {jupyter.log.read_text()[-3000:]}"
            ),
        )
        # the kernel's own view of its bokeh server: on loopback, on this port
        kernel = jupyter.kernel_client(page)
        try:
            address, bokeh_port = kernel.run(
                "import tango_bokeh.notebook as nb; s = nb.NotebookServer.current().server; "
                "print(s.address, s.port)"
            ).split()
        finally:
            kernel.close()

    assert address == "127.0.0.1"
    proxied = f"{jupyter.url}proxy/{bokeh_port}/"
    direct = [u for u in traffic.urls if urlparse(u).port == int(bokeh_port)]
    assert not direct, f"the page went around the proxy: {direct}"
    assert any(u.startswith(proxied) and "/static/js/bokeh" in u for u in traffic.requests)
    bokeh_sockets = [u for u in traffic.websockets if "/proxy/" in u]
    assert bokeh_sockets, traffic.websockets
    assert all(u.startswith(proxied.replace("http:", "ws:", 1)) for u in bokeh_sockets)
    assert any(traffic.frames[u] > 1 for u in bokeh_sockets), traffic.frames  # patches flow
    print(f"bokeh server 127.0.0.1:{bokeh_port}, websockets {bokeh_sockets}, {traffic.frames}")
    errors = [c for c in traffic.console if c.startswith("error") and "bokeh" in c.lower()]
    assert not errors, errors
