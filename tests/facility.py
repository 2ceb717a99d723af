"""The facility topology, natively: what a beamline runs, from Debian's packages.

MariaDB (``mariadb-server``) in a temporary directory with the Tango database
schema that Debian's ``tango-db`` package creates, the C++ ``DataBaseds`` on it,
the simulated beamline and Debian's C++ TangoTest registered there, and several
``tango-bokeh serve`` replicas behind ``nginx`` with the sticky-session
configuration of ``docker/nginx/tango-bokeh.conf.template``. Every process is
started on free loopback ports, in its own process group, and stopped by
:meth:`Facility.stop`; nothing is written outside the given directory.

``.ci/run`` installs the packages; :func:`missing` says which are absent.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tango_bokeh.dashboard.auth import add_user
from tango_bokeh.sim import ControlSystem, _Process
from tango_bokeh_devices.catalog import DEMO
from tango_bokeh_devices.mariadb import MARIADBD
from tango_bokeh_devices.mariadb import MariaDB as _MariaDB

from .conftest import TANGO_TEST, TANGO_TEST_DEVICE, TANGO_TEST_SERVER, wait_for
from .served import Served, free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "docker" / "nginx" / "tango-bokeh.conf.template"
#: What Debian's tango-db runs through dbconfig-common to create the schema (it sources
#: create_db_tables.sql and stored_proc.sql, then adds the database's own devices).
TANGO_SCHEMA = Path("/usr/share/dbconfig-common/data/tango-db/install/mysql")
DATABASEDS = Path("/usr/lib/tango/DataBaseds")
NGINX = "nginx"
PASSWORD = "correct horse battery"
#: The route cookie of docker/nginx/tango-bokeh.conf.template.
ROUTE_COOKIE = "tango_bokeh_route"


def missing() -> list[str]:
    """Debian packages of the facility topology that are not installed."""
    need = {
        "mariadb-server": shutil.which(MARIADBD) or shutil.which("mariadb-install-db"),
        "mariadb-client": shutil.which("mariadb"),
        "tango-db": DATABASEDS.exists() and TANGO_SCHEMA.exists(),
        "tango-test": Path(TANGO_TEST).exists(),
        "nginx": shutil.which(NGINX) or Path("/usr/sbin/nginx").exists(),
    }
    return [name for name, there in need.items() if not there]


#: What the Tango database alone needs (no nginx, no TangoTest).
DATABASE_PACKAGES = ("mariadb-server", "mariadb-client", "tango-db")


def require(why: str, packages: Sequence[str] = DATABASE_PACKAGES) -> None:
    """Fail (not skip) when a run explicitly asked for the facility and a package is absent."""
    absent = [name for name in missing() if name in packages]
    if absent:
        raise RuntimeError(
            f"{why} needs Debian's {', '.join(absent)} (.ci/run installs them: "
            f"apt-get install {' '.join(absent)})"
        )


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class MariaDB(_MariaDB):
    """The private MariaDB of :mod:`tango_bokeh_devices.mariadb` with the Tango schema loaded."""

    def start(self, timeout: float = 90.0) -> MariaDB:
        super().start(timeout)
        # The schema as Debian's tango-db creates it (dbconfig-common's install script).
        self.client(self.database, stdin=TANGO_SCHEMA)
        return self


class DataBaseds:
    """Debian's C++ Tango database server (``tango-db``) on a MariaDB, on a free port."""

    def __init__(self, where: Path, mariadb: MariaDB) -> None:
        self.where = where
        self.mariadb = mariadb
        self.port = 0
        self.proc: _Process | None = None

    @property
    def tango_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> DataBaseds:
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            TANGO_HOST=self.tango_host,
            MYSQL_HOST=f"127.0.0.1:{self.mariadb.port}",
            MYSQL_USER=self.mariadb.user,
            MYSQL_PASSWORD=self.mariadb.password,
            MYSQL_DATABASE=self.mariadb.database,
        )
        argv = [str(DATABASEDS), "2", "-ORBendPoint", f"giop:tcp:127.0.0.1:{self.port}"]
        self.proc = _Process("DataBaseds", argv, env, self.where / "DataBaseds.log")
        import tango

        deadline = time.monotonic() + timeout
        while True:
            try:
                tango.Database("127.0.0.1", self.port).get_info()
                return self
            except tango.DevFailed:
                if not self.proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"DataBaseds did not start:\n{self.proc.tail()}") from None
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@contextlib.contextmanager
def facility_database(where: Path) -> Iterator[str]:
    """A private MariaDB with the Tango schema and the C++ DataBaseds on it; its TANGO_HOST.

    Both are stopped (by process group) when the block ends, whatever happened.
    """
    mariadb = MariaDB(where / "mariadb")
    databaseds = DataBaseds(where, mariadb)
    try:
        mariadb.start()
        databaseds.start()
        yield databaseds.tango_host
    finally:
        databaseds.stop()
        mariadb.stop()


def render_nginx(servers: Sequence[str], listen: str, extra_location: str = "") -> str:
    """docker/nginx/tango-bokeh.conf.template with its replicas and port filled in."""
    text = NGINX_TEMPLATE.read_text()
    lines = "\n".join(f"    server {s} max_fails=1 fail_timeout=5s;" for s in servers)
    text = re.sub(r"^@SERVERS@$", lambda _: lines, text, flags=re.M)
    text = text.replace("listen @LISTEN@;", f"listen {listen};")
    if extra_location:
        cookie = "add_header Set-Cookie"
        text = text.replace(cookie, f"{extra_location}\n        {cookie}")
    return text


class Nginx:
    """Debian's nginx in the foreground with its whole prefix in ``where``."""

    def __init__(self, where: Path, servers: Sequence[str], port: int) -> None:
        self.where = where
        self.servers = list(servers)
        self.port = port
        self.proc: _Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        prefix = self.where
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers read proxy temp files
        # Tests only: which replica answered (operators do not need internal addresses).
        site = render_nginx(
            self.servers,
            f"127.0.0.1:{self.port}",
            "add_header X-Tango-Bokeh-Replica $upstream_addr always;",
        )
        return (
            f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"  access_log {prefix}/access.log;\n"
            f"  client_body_temp_path {prefix}/client_body;\n  proxy_temp_path {prefix}/proxy;\n"
            f"  fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n"
            f"  scgi_temp_path {prefix}/scgi;\n"
            f"{site}\n}}\n"
        )

    def start(self) -> Nginx:
        self.where.mkdir(parents=True, exist_ok=True)
        conf = self.where / "nginx.conf"
        conf.write_text(self.config())
        argv = [_sbin(NGINX), "-p", str(self.where), "-e", str(self.where / "error.log"),
                "-c", str(conf), "-g", "daemon off;"]  # fmt: skip
        test = subprocess.run([*argv[:-2], "-t"], capture_output=True, text=True, timeout=30)
        if test.returncode:
            raise RuntimeError(f"nginx -t: {test.stderr}")
        self.proc = _Process("nginx", argv, dict(os.environ), self.where / "nginx.log")
        wait_for(lambda: _get(f"{self.url}/nginx-alive")[0] == 200 or not self.proc.alive(),
                 timeout=20, what="nginx")  # fmt: skip
        if not self.proc.alive():
            raise RuntimeError(f"nginx exited: {self.proc.tail()}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()  # SIGTERM: fast shutdown, websockets closed
            self.proc = None


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET; status 0 when nothing answers."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()
    except OSError:
        return 0, {}, b""


class Facility:
    """MariaDB + DataBaseds + beamline + TangoTest + ``replicas`` dashboard servers + nginx."""

    def __init__(
        self,
        where: Path,
        dashboards: Sequence[Path],
        replicas: int = 2,
        serve_args: Sequence[str] = (),
    ) -> None:
        self.where = where
        self.serve_args = list(serve_args)
        self.dashboards = list(dashboards)
        self.replica_count = replicas
        self.mariadb = MariaDB(where / "mariadb")
        self.databaseds = DataBaseds(where, self.mariadb)
        self.system: ControlSystem | None = None
        self.replicas: list[Served] = []
        self.ports: list[int] = []
        self.nginx: Nginx | None = None
        self.secret = secrets.token_urlsafe(48)
        self.secrets_dir = where / "secrets"
        self.users = where / "users"
        self.timings: dict[str, float] = {}

    @property
    def tango_host(self) -> str:
        return self.databaseds.tango_host

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def _timed(self, what: str, start: float) -> None:
        self.timings[what] = round(time.monotonic() - start, 2)

    def start(self) -> Facility:
        try:
            t = time.monotonic()
            self.mariadb.start()
            self._timed("mariadb+schema", t)
            t = time.monotonic()
            self.databaseds.start()
            self._timed("DataBaseds", t)
            t = time.monotonic()
            self.system = ControlSystem(self.where / "beamline", DEMO, tango_host=self.tango_host)
            self.system.start(timeout=120)
            self.system.start_executable(
                TANGO_TEST_SERVER, TANGO_TEST, {TANGO_TEST_DEVICE: "TangoTest"}
            )
            self._timed("device servers", t)
            t = time.monotonic()
            self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
            add_user(self.users, "alice", PASSWORD)
            nginx_port = free_port()
            self.ports = [free_port() for _ in range(self.replica_count)]
            self._nginx_port = nginx_port
            with ThreadPoolExecutor(self.replica_count) as pool:
                self.replicas = list(pool.map(self._serve, self.ports))
            self._timed("replicas", t)
            t = time.monotonic()
            upstreams = [f"127.0.0.1:{p}" for p in self.ports]
            self.nginx = Nginx(self.where / "nginx", upstreams, nginx_port)
            self.nginx.start()
            self._timed("nginx", t)
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self, port: int) -> Served:
        """One replica: the shared secret, logins and users; nginx's name is a host it serves."""
        assert self.system is not None
        extra = ["--check", "--trusted-proxy", "127.0.0.1", *self.serve_args]
        for host in (f"127.0.0.1:{self._nginx_port}", f"localhost:{self._nginx_port}",
                     f"127.0.0.1:{port}"):  # fmt: skip
            extra += ["--allow-websocket-origin", host]
        env = {**self.system.env(), "TANGO_BOKEH_SECRET": self.secret}
        return Served(self.dashboards, env, users=self.users, state_dir=self.secrets_dir,
                      extra=extra, port=port)  # fmt: skip

    def stop_replica(self, index: int) -> int:
        return self.replicas[index].stop()

    def start_replica(self, index: int) -> Served:
        """(Re)start replica ``index`` on its own port, as a service manager would."""
        old = self.replicas[index]
        if old.proc.poll() is None:
            old.stop()
        self.replicas[index] = self._serve(self.ports[index])
        return self.replicas[index]

    def replica_of(self, route: str, path: str = "/alive") -> int | None:
        """Which replica nginx sends a browser with this route cookie to (None: none answers)."""
        status, headers, _ = _get(f"{self.url}{path}", {"Cookie": f"{ROUTE_COOKIE}={route}"})
        answered = headers.get("X-Tango-Bokeh-Replica", "").split(",")[-1].strip()
        match = re.search(r":(\d+)$", answered)
        if status != 200 or not match or int(match.group(1)) not in self.ports:
            return None
        return self.ports.index(int(match.group(1)))

    def route_to(self, index: int, tries: int = 1000) -> str | None:
        """A route cookie value that nginx's consistent hash maps to replica ``index``."""
        for n in range(tries):
            if self.replica_of(f"r{n}") == index:
                return f"r{n}"
        return None

    def stop(self) -> None:
        """Stop everything that was started, in reverse order; idempotent."""
        if self.nginx is not None:
            self.nginx.stop()
            self.nginx = None
        for replica in self.replicas:
            replica.stop()
        if self.system is not None:
            self.system.stop()
            self.system = None
        self.databaseds.stop()
        self.mariadb.stop()
