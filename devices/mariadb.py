"""A private MariaDB server (Debian's ``mariadb-server``): data in a directory, a free port.

Used by the facility topology (the Tango database on MariaDB, ``tests/facility.py``), the
HDB++ archive of the tests and of ``tango-bokeh sim --archive`` (:mod:`.archiver`).
``mariadbd`` runs in its own process group with its data in ``where``; :meth:`MariaDB.stop`
ends it (:meth:`MariaDB.kill` is a crash). Nothing is written outside ``where``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

MARIADBD = "mariadbd"


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed() -> bool:
    """Whether Debian's ``mariadb-server`` and ``mariadb-client`` are here."""
    server = shutil.which(MARIADBD) or Path(_sbin(MARIADBD)).exists()
    return bool(server and shutil.which("mariadb-install-db") and shutil.which("mariadb"))


class MariaDB:
    """``mariadbd`` with its data in ``where``, on a free loopback port.

    :meth:`start` creates the (empty) database ``database`` and the user ``user`` with a
    random :attr:`password`, allowed from 127.0.0.1 only; load a schema with :meth:`client`.
    """

    def __init__(self, where: Path, database: str = "tango", user: str = "tango") -> None:
        self.where = Path(where)
        self.data = self.where / "data"
        self.socket = self.where / "mysqld.sock"
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.proc = None  # tango_bokeh.sim._Process while running

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def client(self, *args: str, sql: str | None = None, stdin: Path | None = None) -> str:
        """Run Debian's ``mariadb`` client as the database's root, over the socket."""
        argv = ["mariadb", "--no-defaults", "-uroot", f"--socket={self.socket}", *args]
        with open(stdin, "rb") if stdin else contextlib.nullcontext() as handle:
            done = subprocess.run(
                argv if sql is None else [*argv, "-e", sql],
                stdin=handle if handle else subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
            )
        if done.returncode:
            raise RuntimeError(f"mariadb {' '.join(args)} failed: {done.stderr.decode()}")
        return done.stdout.decode()

    def start(self, timeout: float = 90.0) -> MariaDB:
        from tango_bokeh.sim import _Process

        self.where.mkdir(parents=True, exist_ok=True)
        as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root otherwise
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *as_root],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.port = _free_port()
        argv = [
            _sbin(MARIADBD), "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
            f"--pid-file={self.where / 'mysqld.pid'}", f"--log-error={self.where / 'error.log'}",
            "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=2", "--max-connections=200", *as_root,
        ]  # fmt: skip
        self.proc = _Process("mariadb", argv, dict(os.environ), self.where / "mariadbd.log")
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.client(sql="SELECT 1")
                break
            if not self.proc.alive() or time.monotonic() > deadline:
                error = self._error_log()
                self.stop()
                raise RuntimeError(f"mariadbd did not start:\n{error}")
            time.sleep(0.2)
        self.client(
            sql=f"CREATE DATABASE {self.database}; "
            f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
            f"GRANT ALL PRIVILEGES ON {self.database}.* TO '{self.user}'@'127.0.0.1';"
        )
        return self

    def _error_log(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.where / "error.log").read_text().splitlines()[-15:])
        return ""

    def kill(self) -> None:
        """SIGKILL the server (a crash); :meth:`stop` still tidies up."""
        if self.proc is not None:
            self.proc.crash()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=30)
            self.proc = None

    def __enter__(self) -> MariaDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
