"""The embedded control system: a real Tango database and the simulated beamline.

Starts PyTango's sqlite database server on a free loopback port inside a
state directory, registers the simulated devices (properties, polling and
event configuration all stored in the database), starts one process per device
server and waits until every device answers. :meth:`ControlSystem.stop` ends
every process it started, by process group. Tests use the same class as a
fixture; ``tango-bokeh sim`` and ``tango-bokeh demo`` use it from the shell.

This module starts processes and so must not initialise Tango itself before
they are forked; it only talks to Tango from the child processes, except in
:meth:`ControlSystem.wait_ready`, which runs after every process is started.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from tango_bokeh_devices.catalog import DEMO, DeviceSpec, ServerSpec

log = logging.getLogger(__name__)

#: How long an existing (not embedded) database may take to answer.
EXTERNAL_DB_TIMEOUT = 10.0

_LISTENING = re.compile(r"host=(?P<host>[^,\s]+),\s*port=(?P<port>\d+)")


class ControlSystemError(RuntimeError):
    """The embedded control system could not be started; the message says why."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM the child if we die, so nothing is ever orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class _Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def crash(self, timeout: float = 10.0) -> None:
        """SIGKILL the process group at once (a crash, for tests); :meth:`stop` still reaps it."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(5)
        self.signal_group(signal.SIGKILL)  # stragglers of the group, if any
        self._log.close()


class ControlSystem:
    """A Tango database (embedded unless ``tango_host`` is given) plus device servers.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        state_dir: str | Path,
        servers: Sequence[ServerSpec] = DEMO,
        *,
        tango_host: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        start_servers: bool = True,
        export_env: bool = False,
        server_host: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.servers = tuple(servers)
        self.host = host
        #: Where the device servers listen (``host`` unless given; ``0.0.0.0``: every
        #: interface, publishing the machine's address, as a container network needs).
        self.server_host = host if server_host is None else server_host
        self.port = port
        self.external_host = tango_host
        self.start_servers = start_servers
        self.export_env = export_env
        self._db: _Process | None = None
        self._servers: dict[str, _Process] = {}
        self._lock_file: IO[str] | None = None
        self.tango_host: str | None = tango_host

    # -- public -------------------------------------------------------------------

    @property
    def devices(self) -> list[DeviceSpec]:
        return [device for server in self.servers for device in server.devices]

    @property
    def embedded(self) -> bool:
        return self.external_host is None

    def env(self) -> dict[str, str]:
        """Environment for a process that should talk to this control system."""
        env = dict(os.environ)
        if self.tango_host:
            env["TANGO_HOST"] = self.tango_host
        return env

    def start(self, timeout: float = 90.0) -> ControlSystem:
        """Start (or join) the database, register and start the servers, wait for the devices."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self._take_lock()
        try:
            deadline = time.monotonic() + timeout
            if self.embedded:
                self._start_database(deadline)
                self._wait_database(deadline)
            else:  # somebody else's database: it answers now or it is down
                self._wait_database(min(deadline, time.monotonic() + EXTERNAL_DB_TIMEOUT))
            if self.export_env and self.tango_host:
                os.environ["TANGO_HOST"] = self.tango_host  # this process's clients use it too
            if self.start_servers:
                self.register()
                for server in self.servers:
                    self.start_server(server)
                self.wait_ready(deadline=deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process this object started; idempotent."""
        for name in list(self._servers):
            self._servers.pop(name).stop()
        if self._db is not None:
            self._db.stop()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> ControlSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        procs = [*self._servers.values(), *([self._db] if self._db else [])]
        return [p.pid for p in procs if p.alive()]

    def server(self, full_name: str) -> ServerSpec:
        for server in self.servers:
            if server.full_name.lower() == full_name.lower():
                return server
        raise KeyError(full_name)

    def start_server(self, server: ServerSpec) -> None:
        """Start one device server process (it must be registered)."""
        old = self._servers.get(server.full_name)
        if old is not None and old.alive():
            raise ControlSystemError(f"device server {server.full_name} is already running")
        argv = [
            sys.executable, "-m", "tango_bokeh_devices", server.server, server.instance,
            "-ORBendPoint", self._endpoint(),
        ]  # fmt: skip
        log_path = self.state_dir / "logs" / f"{server.server}-{server.instance}.log"
        self._servers[server.full_name] = _Process(server.full_name, argv, self.env(), log_path)

    def stop_database(self, sig: int = signal.SIGTERM) -> None:
        """Stop the embedded database (an outage); :meth:`restart_database` brings it back."""
        if self._db is not None:
            if sig == signal.SIGKILL:
                self._db.signal_group(signal.SIGKILL)
                self._db.popen.wait(10)
            self._db.stop()
            self._db = None

    def restart_database(self, timeout: float = 60.0) -> None:
        """Start the embedded database again on the same port, with the same data."""
        if not self.embedded or self.tango_host is None:
            raise ControlSystemError("only an embedded database can be restarted")
        if self._db is not None and self._db.alive():
            raise ControlSystemError("the database is running")
        self.port = int(self.tango_host.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while not port_is_free(self.host, self.port):  # the old listener's socket lingers
            if time.monotonic() > deadline:
                raise ControlSystemError(f"port {self.port} stays busy")
            time.sleep(0.2)
        self._start_database(deadline)
        self._wait_database(deadline)

    def start_executable(
        self, full_name: str, executable: str | Path, devices: Mapping[str, str]
    ) -> None:
        """Register and start a device server none of us wrote (e.g. Debian's C++ TangoTest).

        ``full_name`` is ``Server/instance``; ``devices`` maps device names to classes.
        The process is stopped with the others; :meth:`stop_named` stops it alone.
        """
        from .tango.database import connect, register_device

        db = connect(self.tango_host)
        for name, tango_class in devices.items():
            register_device(db, name, tango_class, full_name)
        self.restart_executable(full_name, executable)
        self.wait_ready(list(devices))

    def restart_executable(self, full_name: str, executable: str | Path) -> None:
        """(Re)start a registered foreign device server."""
        old = self._servers.get(full_name)
        if old is not None and old.alive():
            raise ControlSystemError(f"device server {full_name} is already running")
        instance = full_name.split("/", 1)[1]
        argv = [str(executable), instance, "-ORBendPoint", self._endpoint()]
        log_path = self.state_dir / "logs" / f"{full_name.replace('/', '-')}.log"
        self._servers[full_name] = _Process(full_name, argv, self.env(), log_path)

    def stop_named(self, full_name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one device server by its ``Server/instance`` name (``SIGKILL``: a crash)."""
        proc = self._servers.pop(full_name, None)
        if proc is None:
            return
        if sig == signal.SIGKILL:
            proc.signal_group(signal.SIGKILL)
            proc.popen.wait(10)
        proc.stop()

    def signal_named(self, full_name: str, sig: int) -> None:
        """Send ``sig`` to one device server (``SIGSTOP``/``SIGCONT``: a hung server)."""
        proc = self._servers.get(full_name)
        if proc is not None:
            proc.signal_group(sig)

    def stop_server(self, server: ServerSpec, sig: int = signal.SIGTERM) -> None:
        """Stop one device server (``SIGKILL`` simulates a crash)."""
        self.stop_named(server.full_name, sig)

    def register(self) -> None:
        """Write every device of :attr:`servers` into the database."""
        from .tango.database import connect, register_device  # after every fork of the db

        db = connect(self.tango_host)
        for server in self.servers:
            for device in server.devices:
                register_device(
                    db,
                    device.name,
                    device.tango_class,
                    server.full_name,
                    properties=device.properties,
                    polled=device.polled,
                    attribute_properties=device.attribute_properties,
                    alias=device.alias,
                )

    def wait_ready(self, names: Iterable[str] | None = None, deadline: float | None = None) -> None:
        """Block until every device (or ``names``) answers a ping."""
        from .tango.database import answers

        deadline = deadline or time.monotonic() + 60
        pending = list(names) if names is not None else [d.name for d in self.devices]
        while pending:
            for proc in self._servers.values():
                if not proc.alive():
                    raise ControlSystemError(
                        f"device server {proc.name} exited (code {proc.popen.returncode}); "
                        f"its log ({proc.log_path}) ends with:\n{proc.tail()}"
                    )
            name = pending[0]
            if answers(f"tango://{self.tango_host}/{name}", 1000):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise ControlSystemError(f"device {name} did not answer in time")
            time.sleep(0.2)

    # -- internals ----------------------------------------------------------------

    def _endpoint(self) -> str:
        """omniORB endpoint of a device server: an empty host listens on every interface."""
        host = "" if self.server_host in ("", "0.0.0.0") else self.server_host
        return f"giop:tcp:{host}:"

    def _take_lock(self) -> None:
        path = self.state_dir / "lock"
        handle = open(path, "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise ControlSystemError(
                f"the state directory {self.state_dir} is in use by {owner}: "
                "is the demo already running? Stop it, or use another --state-dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    def _start_database(self, deadline: float) -> None:
        if self.port and not port_is_free(self.host, self.port):
            raise ControlSystemError(
                f"port {self.port} on {self.host} is already in use: "
                "choose another --port, or 0 for any free port"
            )
        env = dict(os.environ)
        env["PYTANGO_DATABASE_NAME"] = str(self.state_dir / "tango.db")
        env.pop("TANGO_HOST", None)
        argv = [
            sys.executable, "-m", "tango.databaseds.database",
            "--host", self.host, "--port", str(self.port), "--print-host-port", "2",
        ]  # fmt: skip
        log_path = self.state_dir / "logs" / "database.log"
        log_path.write_bytes(b"")
        self._db = _Process("database", argv, env, log_path)
        while True:
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                self.tango_host = f"{match.group('host')}:{match.group('port')}"
                return
            if not self._db.alive():
                raise ControlSystemError(
                    f"the Tango database server exited; its log ends with:\n{self._db.tail()}"
                )
            if time.monotonic() > deadline:
                raise ControlSystemError("the Tango database server did not start in time")
            time.sleep(0.1)

    def _wait_database(self, deadline: float) -> None:
        from .tango.database import ping

        while True:
            reachable, why = ping(self.tango_host)
            if reachable:
                return
            if time.monotonic() > deadline:
                raise ControlSystemError(
                    f"the Tango database at {self.tango_host} is unreachable: {why}"
                )
            time.sleep(0.5)
