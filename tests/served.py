"""``tango-bokeh serve`` as the shell runs it: a subprocess whose output is collected."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from .conftest import wait_for


class Served:
    """``tango-bokeh serve FILES --port 0 ...`` in a process group of its own.

    The secret comes from the environment (nothing is written to the home
    directory); logins live in ``state_dir``.
    """

    def __init__(
        self,
        files: list[Path],
        env: dict[str, str],
        *,
        users: Path | None = None,
        state_dir: Path | None = None,
        extra: list[str] | None = None,
        port: int = 0,
    ) -> None:
        argv = [sys.executable, "-m", "tango_bokeh.cli", "serve", *map(str, files),
                "--port", str(port), "--no-check"]  # fmt: skip
        if users is not None:
            argv += ["--users", str(users)]
        if state_dir is not None:
            argv += ["--secrets-dir", str(state_dir)]
        argv += extra or []
        env = {"TANGO_BOKEH_SECRET": secrets.token_urlsafe(48), **env}
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: self.url or self.proc.poll() is not None, timeout=60, what="the URL")
        if self.proc.poll() is not None:
            raise AssertionError("serve exited:\n" + self.output)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str | None:
        match = re.search(r"Dashboards at (http://\S+?)/\n", self.output)
        return match.group(1) if match else None

    @property
    def port(self) -> int:
        assert self.url is not None
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def free_port() -> int:
    """A loopback port free now (for a server that must come back on the same port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
