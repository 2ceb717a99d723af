"""A private PostgreSQL (Debian's ``postgresql``) holding HDB++'s TimescaleDB layout.

pyhdbpp's ``TimescaleDbReader`` runs plain SQL, so plain PostgreSQL tables of that
layout (``devices/hdbpp/hdb_timescale_plain.sql``, no TimescaleDB extension: Debian has
none) are what it reads in the tests. ``initdb`` and ``postgres`` run with their data
and unix socket in a fresh directory and listen on a free loopback port. PostgreSQL
refuses to run as root: as root (CI) they run as Debian's ``postgres`` user through
``setpriv`` (no fork, so the server's PID is ours to stop); otherwise as the test's
user. :meth:`PostgreSQL.stop` ends the process group (fast shutdown) and removes the
directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tango_bokeh.sim import _Process
from tango_bokeh_devices.mariadb import _free_port

SCHEMA = Path(__file__).resolve().parent.parent / "devices" / "hdbpp" / "hdb_timescale_plain.sql"
#: The user the server runs as when the tests run as root (Debian's package creates it).
SERVER_USER = "postgres"


def bin_dir() -> Path | None:
    """Debian's newest PostgreSQL server programs (``/usr/lib/postgresql/<version>/bin``)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    if not found:
        return None
    return Path(max(found, key=lambda p: int(Path(p).parts[-3]))).parent


def installed() -> bool:
    """Whether the server, psycopg2 and (as root) an unprivileged user to run it are here."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return False
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(SERVER_USER)
            return bin_dir() is not None and shutil.which("setpriv") is not None
        return False
    return bin_dir() is not None


class PostgreSQL:
    """``postgres`` on a free loopback port, the database ``database`` with HDB++'s tables.

    ``user`` (password :attr:`password`, scram-sha-256 over TCP) owns the cluster.
    """

    def __init__(self, database: str = "hdbpp", user: str = "hdbpp") -> None:
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.proc: _Process | None = None
        # Under /tmp itself: the server's user must reach it (pytest's dirs are root's, 0700).
        self.where = Path(tempfile.mkdtemp(prefix="tango-bokeh-pg-"))
        self._as: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            self._owner = (account.pw_uid, account.pw_gid)
            os.chown(self.where, *self._owner)
            self._as = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                        "--init-groups", "--"]  # fmt: skip

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _run(self, argv: Sequence[str]) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, timeout=120, cwd=self.where)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout.decode()}{done.stderr.decode()}")

    def start(self, timeout: float = 90.0) -> PostgreSQL:
        programs = bin_dir()
        assert programs is not None, "Debian's postgresql is not installed"
        secret = self.where / "pwfile"
        secret.write_text(self.password + "\n")
        secret.chmod(0o600)
        if self._owner is not None:
            os.chown(secret, *self._owner)
        self._run([str(programs / "initdb"), "-D", str(self.where / "data"), "-U", self.user,
                   f"--pwfile={secret}", "--auth-local=trust", "--auth-host=scram-sha-256",
                   "-E", "UTF8", "--no-sync"])  # fmt: skip
        secret.unlink()
        self.port = _free_port()
        argv = [*self._as, str(programs / "postgres"), "-D", str(self.where / "data"),
                "-p", str(self.port), "-k", str(self.where), "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=100", "-c", "shared_buffers=32MB"]  # fmt: skip
        self.proc = _Process("postgres", argv, dict(os.environ), self.where / "postgres.log")
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin = self.connect("postgres")
                break
            except Exception as exc:
                if not self.proc.alive() or time.monotonic() > deadline:
                    log = self.proc.tail()
                    self.stop()
                    raise RuntimeError(f"postgres did not start: {exc}\n{log}") from None
                time.sleep(0.2)
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            admin.close()
        with contextlib.closing(self.connect()) as db, db, db.cursor() as cursor:
            cursor.execute(SCHEMA.read_text())
        return self

    def connect(self, database: str | None = None) -> Any:
        """A psycopg2 connection as :attr:`user` over TCP (as a reader connects)."""
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            dbname=database or self.database, connect_timeout=10,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the server's process group (a crash); :meth:`stop` still tidies up."""
        if self.proc is not None:
            self.proc.crash()

    def stop(self) -> None:
        """Fast shutdown (SIGINT: open connections do not hold it up), then the directory."""
        if self.proc is not None:
            self.proc.signal_group(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.popen.wait(30)
            self.proc.stop(timeout=10)
            self.proc = None
        shutil.rmtree(self.where, ignore_errors=True)


def insert(
    db: PostgreSQL,
    name: str,
    data_type: str,
    rows: Iterable[tuple[float, Any, int, str | None]],
) -> int:
    """Archive ``rows`` (Tango time, value or None, quality, error text or None) of ``name``
    (``tango://host:port/dom/fam/mem/attr``) as HDB++'s TimescaleDB archiver does: its
    ``att_conf`` row (registered once) and one row per reading in the table of
    ``data_type`` (``devdouble``, ...), the Tango timestamp to the microsecond. Its id."""
    from psycopg2.extras import execute_values

    name = name.lower()
    cs_name, _, rest = name.removeprefix("tango://").partition("/")
    domain, family, member, attr = rest.split("/")
    table = f"att_scalar_{data_type}"
    with contextlib.closing(db.connect()) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT att_conf_id FROM att_conf WHERE att_name = %s", (name,))
        found = cur.fetchone()
        if found is None:
            cur.execute(
                "INSERT INTO att_conf (att_name, att_conf_type_id, att_conf_format_id, "
                "att_conf_write_id, table_name, cs_name, domain, family, member, name) "
                "SELECT %s, t.att_conf_type_id, f.att_conf_format_id, w.att_conf_write_id, "
                "%s, %s, %s, %s, %s, %s FROM att_conf_type t, att_conf_format f, "
                "att_conf_write w WHERE t.type = %s AND f.format = 'SCALAR' AND w.write = 'READ' "
                "RETURNING att_conf_id",
                (name, table, cs_name, domain, family, member, attr,
                 "DEV_" + data_type.removeprefix("dev").upper()),
            )  # fmt: skip
            found = cur.fetchone()
        att_id = int(found[0])
        values = []
        for t, value, quality, error in rows:
            error_id = None
            if error is not None:
                cur.execute(
                    "INSERT INTO att_error_desc (error_desc) VALUES (%s) ON CONFLICT (error_desc) "
                    "DO UPDATE SET error_desc = EXCLUDED.error_desc RETURNING att_error_desc_id",
                    (error,),
                )
                error_id = cur.fetchone()[0]
            value = value.item() if hasattr(value, "item") else value  # numpy scalars: as Python's
            values.append((att_id, datetime.fromtimestamp(t, UTC), value, int(quality), error_id))
        execute_values(
            cur,
            f"INSERT INTO {table} (att_conf_id, data_time, value_r, quality, att_error_desc_id) "
            "VALUES %s",
            values,
            page_size=5000,
        )
    return att_id
