"""``tango-bokeh serve`` and ``tango-bokeh demo`` as the shell runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import tango

from tango_bokeh.dashboard.client import open_page
from tango_bokeh.sim import ControlSystem

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "dashboards" / "demo.yaml"
CLI = [sys.executable, "-m", "tango_bokeh.cli"]
SECRET = secrets.token_urlsafe(48)


def _env(tango_host: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TANGO_HOST"}
    env["TANGO_BOKEH_SECRET"] = SECRET  # nothing written to the home directory
    if tango_host:
        env["TANGO_HOST"] = tango_host
    return env


def _check(path: Path, tango_host: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "serve", str(path), "--check-only"],
        capture_output=True, text=True, timeout=120, env=_env(tango_host),
    )  # fmt: skip


BAD_FILES = {
    "syntax": (
        "title: Bad\npanels:\n  - trend: {attributes: [mot1/Position\n",
        r"syntax\.yaml:4: YAML syntax error: .*",
    ),
    "unknown_key": (
        "title: Bad\npanels:\n  - trend:\n      attributes: [mot1/Position]\n      colour: [red]\n",
        r"unknown_key\.yaml:5: panels\[0\]\.trend\.colour: unknown key 'colour' "
        r"\(did you mean 'colors'\?\)",
    ),
    "wrong_type": (
        "title: Bad\npanels:\n  - trend:\n      attributes: [mot1/Position]\n      log_y: maybe\n",
        r"wrong_type\.yaml:5: panels\[0\]\.trend\.log_y: expected true or false \(got 'maybe'\)",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_are_refused_with_file_line_and_key(tmp_path: Path, kind: str):
    text, expected = BAD_FILES[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    result = _check(path)  # no Tango needed: the file is refused before any check
    assert result.returncode == 1
    assert re.search(expected, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_attributes_are_all_reported(control_system: ControlSystem, tmp_path: Path):
    path = tmp_path / "names.yaml"
    path.write_text(
        "title: Names\n"
        "panels:\n"
        "  - trend:\n"
        "      attributes: [sim/motor/1/positon, sim/motr/1/Position]\n"
        "  - image: {attribute: sim/spectro/1/Spectrum}\n"
        "  - table:\n"
        "      attributes: [sim/motor/1/State]\n"
        "      commands: [sim/motor/1/Hom]\n"
    )
    result = _check(path, control_system.tango_host)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert (
        f"{path}:4: panels[0].trend.attributes[0]: 'sim/motor/1/positon' is not an attribute "
        "of sim/motor/1 (did you mean 'Position'?)" in lines
    )
    assert (
        f"{path}:4: panels[0].trend.attributes[1]: 'sim/motr/1/Position': no device "
        "'sim/motr/1' in the Tango database" in lines
    )
    assert any(
        line.startswith(f"{path}:5: panels[1].image.attribute: 'sim/spectro/1/Spectrum' is a "
                        "spectrum attribute: an image panel needs an image attribute")
        for line in lines
    )  # fmt: skip
    assert (
        f"{path}:8: panels[2].table.commands[0]: 'sim/motor/1/Hom' is not a command of "
        "sim/motor/1 (did you mean 'Home'?)" in lines
    )
    assert "Traceback" not in result.stderr


def test_the_demo_dashboard_passes_the_check(control_system: ControlSystem):
    result = _check(DEMO, control_system.tango_host)
    assert result.returncode == 0, result.stderr
    assert "1 dashboard file(s) OK" in result.stdout


def test_an_unreachable_database_is_reported(tmp_path: Path):
    result = _check(DEMO, "127.0.0.1:1")
    assert result.returncode == 1
    assert "127.0.0.1:1 is unreachable" in result.stderr and "--no-check" in result.stderr
    assert "Traceback" not in result.stderr


class Running:
    """A long-running command whose output is read on a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_running(self, timeout: float = 120) -> str:
        wait_for(
            lambda: "press Ctrl-C" in self.output or self.proc.poll() is not None,
            timeout=timeout,
            what="the command to run",
        )
        assert self.proc.poll() is None, self.output
        match = re.search(r"Dashboards at (http://\S+?)/\n", self.output)
        assert match, self.output
        return match.group(1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=20) as response:
        return json.loads(response.read())


def test_num_procs_forks_workers_after_checking_and_stops_them(control_system: ControlSystem):
    served = Running(
        [*CLI, "serve", str(DEMO), "--port", "0", "--num-procs", "2", "--health-detail"],
        _env(control_system.tango_host),
    )
    try:
        url = served.wait_running()
        parent = psutil.Process(served.proc.pid)
        workers = wait_for(lambda: len(parent.children()) == 2 and parent.children(),
                           what="two workers")  # fmt: skip
        # The parent never initialised Tango (no ORB threads, no connection to the database);
        # the attribute check ran in a child process.
        assert parent.num_threads() <= 2
        db_port = int(control_system.tango_host.rsplit(":", 1)[1])
        assert not [c for c in parent.net_connections() if c.raddr and c.raddr.port == db_port]
        pids = set()
        clients = []
        try:
            for _ in range(6):
                clients.append(open_page(f"{url}/demo"))
                assert clients[-1].document.get_model_by_name("dashboard") is not None
            deadline = time.monotonic() + 20
            while len(pids) < 2 and time.monotonic() < deadline:
                pids.add(_health(url)["pid"])
        finally:
            for client in clients:
                client.close()
        assert pids <= {w.pid for w in workers}
        assert all(w.num_threads() > 2 for w in workers if w.pid in pids)  # Tango lives there
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(60) == 0, served.output
        wait_for(lambda: not any(w.is_running() and w.status() != "zombie" for w in workers),
                 timeout=20, what="every worker gone")  # fmt: skip
    finally:
        served.kill()


def test_demo_starts_beamline_and_dashboard_and_stops_on_ctrl_c(tmp_path: Path):
    demo = Running([*CLI, "demo", "--state-dir", str(tmp_path), "--http-port", "0"], _env(None))
    try:
        url = demo.wait_running(timeout=180)
        host = re.search(r"TANGO_HOST=(\S+)", demo.output).group(1)
        assert f"{url}/demo  (Simulated beamline)" in demo.output
        with urllib.request.urlopen(f"{url}/demo", timeout=30) as response:
            assert response.status == 200
        assert _health(url)["status"] == "ok"
        children = psutil.Process(demo.proc.pid).children(recursive=True)
        assert len(children) >= 9  # database + 8 device servers
        motor = tango.DeviceProxy(f"tango://{host}/sim/motor/1")
        wait_for(lambda: motor.state() == tango.DevState.MOVING, timeout=30,
                 what="the demo to move the motors")  # fmt: skip
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(60) == 0, demo.output
        assert "Stopped." in demo.output
        wait_for(lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
                 timeout=20, what="every child process gone")  # fmt: skip
    finally:
        demo.kill()
