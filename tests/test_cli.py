"""``tango-bokeh sim``: starts everything, prints what it started, stops it all on a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .conftest import wait_for

SMALL = [sys.executable, "-m", "tango_bokeh.cli", "sim"]


def _clean_env() -> dict[str, str]:
    """Our environment without the test session's TANGO_HOST: the CLI must start its own."""
    return {k: v for k, v in os.environ.items() if k != "TANGO_HOST"}


def _start(state_dir: Path, *args: str) -> subprocess.Popen:
    env = _clean_env()
    return subprocess.Popen(
        [*SMALL, "--state-dir", str(state_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def _read_until(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError("output so far:\n" + "".join(lines))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sim_starts_prints_and_stops_everything(tmp_path: Path, sig: int):
    proc = _start(tmp_path)
    try:
        out = _read_until(proc, "press Ctrl-C")
        assert "TANGO_HOST=127.0.0.1:" in out
        assert "sim/motor/1" in out and "alias mot1" in out and "sim/camera/1" in out
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 9  # database + 8 device servers
        # A second start on the same state directory is refused clearly.
        second = subprocess.run(
            [*SMALL, "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, env=_clean_env(),
        )  # fmt: skip
        assert second.returncode != 0
        assert "already running" in second.stderr and "Traceback" not in second.stderr
        proc.send_signal(sig)
        assert proc.wait(60) == 0
        wait_for(
            lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
            timeout=15,
            what="every child process gone",
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_port_taken_gives_a_clear_message(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [*SMALL, "--state-dir", str(tmp_path), "--port", str(port)],
            capture_output=True, text=True, timeout=60, env=_clean_env(),
        )  # fmt: skip
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_existing_database_is_reported(tmp_path: Path):
    env = dict(os.environ, TANGO_HOST="127.0.0.1:1")
    result = subprocess.run(
        [*SMALL, "--state-dir", str(tmp_path), "--no-servers"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "127.0.0.1:1" in result.stderr and "unreachable" in result.stderr
    assert "Traceback" not in result.stderr
