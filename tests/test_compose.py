"""docker/compose.yaml, built and brought up for real; a dashboard read in Chromium.

The whole stack (MariaDB + the C++ Tango database, TangoTest, the simulated
beamline, two dashboard replicas behind nginx, JupyterLab) is built from the
repository's Dockerfiles and started with compose under a project name of its
own on free ports; Chromium opens the dashboards through nginx and reads live
values; ``down -v`` must leave no container, network or volume of the project.

Needs a Docker engine. When none answers, the test starts ``dockerd`` itself (as
root, as on the development machines and CI, where Debian's ``docker.io`` is
installed but its service is not started) and stops it afterwards. When no image
registry is reachable, the two official base images the Dockerfiles name are
replaced by local stand-ins built from Debian's packages (docker/local-bases.sh,
needs ``mmdebstrap``). Without any of this the test is skipped, saying why.
Built images are kept (the next run reuses their layers). One compose test runs at
a time on a machine (a lock in /tmp): a run that started dockerd stops it at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tango_bokeh.dashboard.auth import add_user

from .browser import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from .conftest import wait_for
from .facility import _get
from .served import free_port

pytestmark = [pytest.mark.docker, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
BASES = ("debian:bookworm-slim", "python:3.11-slim")
NEWEST = """(title) => {
  if (!window.Bokeh || Bokeh.documents.length === 0) return null;
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(title));
  if (!plot) return null;
  const times = plot.renderers.filter(r => r.data_source && r.data_source.data.t)
    .flatMap(r => Array.from(r.data_source.data.t));
  return times.length ? Math.max(...times) : null;
}"""
TABLE = """(first) => {
  if (!window.Bokeh || Bokeh.documents.length === 0) return null;
  const table = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'DataTable' && m.source.data.label && m.source.data.label[0] === first);
  if (!table) return null;
  const d = table.source.data;
  return Object.fromEntries(d.label.map((label, i) => [label, d.value[i]]));
}"""

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)


def _run(*argv: str, timeout: float = 120, env: dict[str, str] | None = None, check: bool = True):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def _engine_answers() -> bool:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    return False


#: One compose test at a time per machine (other clones' test runs too): a run that
#: started dockerd stops it at the end, which would kill another run's containers.
ENGINE_LOCK = Path("/tmp/tango-bokeh-docker-test.lock")


@pytest.fixture(scope="module")
def engine_lock() -> Iterator[None]:
    with open(ENGINE_LOCK, "a") as handle:
        deadline = time.monotonic() + 1200
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another compose test held {ENGINE_LOCK} for 20 minutes")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def docker_engine(engine_lock: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker engine that answers: the running one, else a ``dockerd`` started here."""
    if shutil.which("docker") is None:
        pytest.skip("needs the docker client (Debian's docker.io; .ci/run installs it)")
    if _engine_answers():
        yield
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        pytest.skip("no Docker engine answers and dockerd is not installed (docker.io)")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine answers and only root may start dockerd here")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _engine_answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
                pytest.skip(f"dockerd could not be started here:\n{tail}")
            time.sleep(0.5)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="module")
def base_images(docker_engine: None) -> dict[str, float]:
    """The official bases the Dockerfiles name: pulled, else built locally from Debian."""
    timings: dict[str, float] = {}
    missing = [b for b in BASES if _run("docker", "image", "inspect", b, check=False).returncode]
    for base in list(missing):
        if _run("docker", "pull", base, timeout=600, check=False).returncode == 0:
            missing.remove(base)
    if missing:
        if shutil.which("mmdebstrap") is None:
            pytest.skip(f"no registry for {', '.join(missing)} and no mmdebstrap to build them")
        start = time.monotonic()
        env = dict(os.environ)
        # This interpreter (pyenv's here) as the stand-in's CPython: Debian's 3.11.2 is older
        # than some pinned packages require.
        if sys.version_info[:2] == (3, 11) and Path(sys.base_prefix) != Path("/usr"):
            env["PYTHON_PREFIX"] = sys.base_prefix
        _run("bash", str(ROOT / "docker" / "local-bases.sh"), timeout=1200, env=env)
        timings["local base images"] = round(time.monotonic() - start, 1)
    return timings


def _compose_command() -> list[str]:
    if _run("docker", "compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("needs docker compose (v2 plugin) or docker-compose (Debian's package)")


class Stack:
    """``compose -p PROJECT -f docker/compose.yaml`` with this test's environment."""

    def __init__(self, where: Path) -> None:
        self.project = f"tbtest{secrets.token_hex(4)}"
        self.port = free_port()
        self.jupyter_port = free_port()
        self.secrets = where / "secrets"
        self.secrets.mkdir(mode=0o700)
        for name in ("tango_bokeh_secret", "tango_db_password", "jupyter_token"):
            (self.secrets / name).write_text(secrets.token_urlsafe(36) + "\n")
            (self.secrets / name).chmod(0o600)
        add_user(self.secrets / "tango_bokeh_users", "alice", "correct horse battery")
        self.env = {
            **os.environ,
            "TANGO_BOKEH_PORT": str(self.port),
            "JUPYTER_PORT": str(self.jupyter_port),
            "TANGO_BOKEH_ORIGINS": f"127.0.0.1:{self.port} localhost:{self.port}",
            "TANGO_BOKEH_SECRETS": str(self.secrets),
            "DASHBOARD_REPLICAS": "2",
        }
        # The notebook test drives JupyterLab through its application object, which a lab
        # shows the page only when asked (as tests/test_jupyterlab.py starts its own).
        override = where / "compose.test.yaml"
        override.write_text(
            "services:\n  jupyterlab:\n"
            '    command: ["jupyterlab", "--LabApp.expose_app_in_browser=True"]\n'
        )
        self.compose = [*_compose_command(), "-p", self.project, "-f", str(COMPOSE_FILE),
                        "-f", str(override)]  # fmt: skip
        self.timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __call__(self, *args: str, timeout: float = 600, check: bool = True):
        return _run(*self.compose, *args, timeout=timeout, env=self.env, check=check)

    def timed(self, what: str, *args: str, timeout: float = 1500) -> None:
        start = time.monotonic()
        self(*args, timeout=timeout)
        self.timings[what] = round(time.monotonic() - start, 1)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, listing in (("containers", ["ps", "-a"]), ("networks", ["network", "ls"]),
                              ("volumes", ["volume", "ls"])):  # fmt: skip
            out = _run("docker", *listing, "-q", "--filter", label).stdout.split()
            found[kind] = out
        return found


@pytest.fixture(scope="module")
def stack(base_images: dict[str, float], tmp_path_factory: pytest.TempPathFactory):
    stack = Stack(tmp_path_factory.mktemp("compose"))
    stack.timings.update(base_images)
    try:
        # pip inside the build: over 25 min on a shared 2-core host at load 50-80.
        # TANGO_BOKEH_COMPOSE_BUILD=0: the images built last time (a test's quick re-run)
        if os.environ.get("TANGO_BOKEH_COMPOSE_BUILD", "1") != "0":
            stack.timed("build", "build", timeout=3600)
        stack.timed("up -d", "up", "-d")
        start = time.monotonic()
        try:
            wait_for(lambda: _get(f"{stack.url}/healthz")[0] == 200, timeout=300, interval=1,
                     what="the dashboards behind nginx")  # fmt: skip
        except AssertionError:
            logs = stack("logs", "--tail", "30", check=False).stdout
            raise AssertionError(f"the stack did not come up:\n{logs[-6000:]}") from None
        stack.timings["healthy"] = round(time.monotonic() - start, 1)
        yield stack
    finally:
        start = time.monotonic()
        stack("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        stack.timings["down"] = round(time.monotonic() - start, 1)
        print(f"compose timings (s): {stack.timings}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.timeout(5400)
def test_a_notebook_in_the_stacks_jupyterlab_shows_a_live_panel(stack: Stack, browser):
    """The quickstart notebook, opened in the stack's JupyterLab through its published port.

    Its monitoring cell runs in the container's kernel against the stack's Tango database;
    the panel's bokeh server (inside the kernel, on the container's loopback) is reached
    through jupyter-server-proxy at the published port only, and its plot gets live data.
    Runs before the test that takes the stack down (the module's one stack).
    """
    from .test_jupyterlab import NotebookPage, Traffic, run_monitoring_cell

    token = (stack.secrets / "jupyter_token").read_text().strip()
    # The name the compose file gives the notebook panels (TANGO_BOKEH_EXTERNAL_URL).
    jupyter = f"http://localhost:{stack.jupyter_port}/"
    wait_for(lambda: _get(f"{jupyter}api/status?token={token}")[0] == 200, timeout=120,
             interval=1, what="JupyterLab in the stack")  # fmt: skip
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    try:
        page = context.new_page()
        traffic = Traffic(page)
        page.goto(f"{jupyter}lab/tree/quickstart.ipynb?token={token}")
        notebook = NotebookPage(page)
        try:  # the container's kernel: slower to start than a local one on a busy host
            notebook.wait_kernel_idle(timeout=300)
        except Exception as exc:
            page.screenshot(path=str(ROOT / "artifacts" / "compose-jupyterlab.png"))
            logs = stack("logs", "--tail", "60", "jupyterlab", check=False).stdout
            raise AssertionError(f"no idle kernel in the stack's JupyterLab:\n{logs}") from exc
        run_monitoring_cell(
            notebook,
            "from the stack's JupyterLab",
            lambda: (
                f"websockets: {traffic.websockets}\nconsole: {traffic.console[-20:]}\n"
                f"jupyterlab log: {stack('logs', '--tail', '40', 'jupyterlab', check=False).stdout}"
            ),
        )
        # the kernel's own account: the hub's channels and what each received
        hub = notebook.output_text(notebook.run("from tango_bokeh import Hub"))
    finally:
        context.close()
    # Every request of the page went to the published port; the panel's websocket through
    # jupyter-server-proxy (the kernel's bokeh server is not published).
    ports = {urlparse(u).port for u in traffic.urls}
    assert ports == {stack.jupyter_port}, traffic.urls
    panels = [u for u in traffic.websockets if "/proxy/" in u]
    assert panels and any(traffic.frames[u] > 1 for u in panels), traffic.frames
    current = re.search(r"sim/beam/current/current\s.*?received=(\d+)", hub.lower())
    assert current and int(current.group(1)) > 0, hub  # the stack's beamline, acquired


@pytest.mark.timeout(5400)
def test_the_compose_stack_serves_live_dashboards_and_leaves_nothing(stack: Stack, browser):
    # Every service is up; the dashboards tier has its replicas.
    services = stack("ps", "--services").stdout.split()
    assert set(services) >= {"mariadb", "tango-db", "tangotest", "beamline", "dashboards",
                             "nginx", "jupyterlab"}, services  # fmt: skip
    replicas = stack("ps", "-q", "dashboards").stdout.split()
    assert len(replicas) == 2, replicas
    status, headers, body = _get(f"{stack.url}/healthz")
    assert status == 200 and b'"ok"' in body
    assert headers.get("Set-Cookie", "").startswith("tango_bokeh_route="), headers
    assert _get(f"http://127.0.0.1:{stack.jupyter_port}/api")[0] == 200  # JupyterLab answers
    # (a notebook's live panel in it: test_a_notebook_in_the_stacks_jupyterlab_shows_a_live_panel)

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/demo")
        first = wait_for(lambda: page.evaluate(NEWEST, "Ring current"), timeout=60,
                         what="ring current data")  # fmt: skip
        wait_for(lambda: (page.evaluate(NEWEST, "Ring current") or 0) > first, timeout=30,
                 what="the ring current to update")  # fmt: skip
        page.goto(f"{stack.url}/tangotest")
        values = wait_for(
            lambda: (
                (v := page.evaluate(TABLE, "State")) and v.get("long") not in (None, "", "…") and v
            ),
            timeout=60,
            what="TangoTest values",
        )
        assert values["State"] and values["text"], values
    finally:
        context.close()

    # Tango itself: the devices live in MariaDB, served by the C++ database server.
    rows = stack(
        "exec",
        "-T",
        "mariadb",
        "sh",
        "-c",
        'mariadb -N -e "SELECT name FROM device WHERE exported=1" tango',
    ).stdout.split()
    assert {"sys/database/2", "sys/tg_test/1", "sim/motor/1"} <= set(rows), rows

    stack.timed("down -v", "down", "-v", "--remove-orphans", "--timeout", "20")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
