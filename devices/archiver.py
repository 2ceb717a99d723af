"""A test HDB++ archiver: fills an HDB++ MariaDB archive the way HDB++'s event subscriber does.

HDB++'s event subscriber (``hdbpp-es``) subscribes to each archived attribute's
archive events and inserts one row per event into the table of the attribute's type
(``att_scalar_devdouble_ro``, ...): the event's Tango timestamp as ``data_time``, the
reception time as ``recv_time``, the read value (``NULL`` when INVALID or an error),
the quality number, and for an error event the error's description
(``att_error_desc``). :class:`Archiver` does the same in threads, with PyTango; where an
attribute has no archive event configured it takes change events, then periodic events
(HDB++ itself would need the archive event configured). The schema is HDB++'s own
(:data:`SCHEMA`, libhdbpp-mysql's InnoDB schema).

:func:`backfill` writes a synthetic past quickly (bulk inserts), so that a demo or a
bench starts with hours of history; :class:`HdbppWriter` is the table-level writer both use.
:func:`set_default_reader` writes pyhdbpp's own configuration (the ``HDB++`` free
properties of the Tango database), so ``pyhdbpp.get_default_reader()`` finds the archive.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from .mariadb import MariaDB

log = logging.getLogger(__name__)

SCHEMA = Path(__file__).resolve().parent / "hdbpp" / "create_hdb++_mysql_innodb.sql"
#: Scalar numbers of the simulated beamline that the demo archives (each sends events:
#: HDB++ archives nothing else).
DEMO_ARCHIVED = (
    "sim/motor/1/Position",
    "sim/motor/2/Position",
    "sim/beam/current/Current",
    "sim/counter/1/Counts",
    "sim/faulty/1/Value",
)
#: Synthetic past the demo starts with (hours, rows per second).
DEMO_BACKFILL = (2.0, 1.0)
ROW = tuple[float, Any, int, str | None]  # Tango time, value (None: none), quality, error


@dataclass(frozen=True)
class Connection:
    """Where the archive is (what a reader's configuration holds, password included)."""

    host: str
    port: int
    database: str
    user: str
    password: str

    @classmethod
    def of(cls, db: MariaDB) -> Connection:
        return cls(db.host, db.port, db.database, db.user, db.password)

    def connect(self, timeout: float = 10.0) -> Any:
        import pymysql

        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            database=self.database, autocommit=True, connect_timeout=timeout,
            read_timeout=60, write_timeout=60,
        )  # fmt: skip


def start_archive(where: Path, database: str = "hdbpp", user: str = "hdbpp") -> MariaDB:
    """A private MariaDB in ``where`` with HDB++'s schema in ``database``."""
    db = MariaDB(where, database=database, user=user).start()
    try:
        install_schema(db)
    except BaseException:
        db.stop()
        raise
    return db


def install_schema(db: MariaDB) -> None:
    db.client(db.database, stdin=SCHEMA)


def hdbpp_type(data_type: str, data_format: str, writable: str) -> str:
    """HDB++'s ``att_conf_data_type.data_type``: ``scalar_devdouble_ro`` from Tango's
    ``DevDouble``, ``SCALAR`` and ``READ`` (``array_`` for spectra and images, ``_rw`` when
    writable)."""
    shape = "scalar" if data_format.upper() == "SCALAR" else "array"
    mode = "ro" if writable.upper() == "READ" else "rw"
    return f"{shape}_{data_type.lower()}_{mode}"


class HdbppWriter:
    """Rows into HDB++'s tables over one connection (use one writer per thread)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.db = connection.connect()
        self._errors: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()

    def add(self, name: str, data_type: str) -> tuple[int, str]:
        """Register ``tango://host:port/dom/fam/mem/attr`` (as HDB++'s configuration manager
        does: ``att_conf`` and an ``add`` and ``start`` in ``att_history``); its id and table."""
        name = name.lower()
        facility, _, rest = name.removeprefix("tango://").partition("/")
        domain, family, member, attr = rest.split("/")
        with self.db.cursor() as cur:
            cur.execute("SELECT att_conf_id FROM att_conf WHERE att_name = %s", (name,))
            found = cur.fetchone()
            if found is None:
                cur.execute(
                    "INSERT INTO att_conf (att_name, att_conf_data_type_id, facility, domain, "
                    "family, member, name) SELECT %s, att_conf_data_type_id, %s, %s, %s, %s, %s "
                    "FROM att_conf_data_type WHERE data_type = %s",
                    (name, facility, domain, family, member, attr, data_type),
                )
                if cur.rowcount != 1:
                    raise ValueError(f"HDB++ has no table for {data_type}")
                att_id = int(cur.lastrowid)
                for event in ("add", "start"):
                    cur.execute(
                        "INSERT INTO att_history (att_conf_id, time, att_history_event_id) "
                        "SELECT %s, NOW(6) + INTERVAL %s MICROSECOND, att_history_event_id "
                        "FROM att_history_event WHERE event = %s",
                        (att_id, 1 if event == "start" else 0, event),
                    )
            else:
                att_id = int(found[0])
        return att_id, f"att_{data_type}"

    def _error_id(self, text: str) -> int:
        text = text[:255]
        if text not in self._errors:
            with self.db.cursor() as cur:
                cur.execute("INSERT IGNORE INTO att_error_desc (error_desc) VALUES (%s)", (text,))
                cur.execute(
                    "SELECT att_error_desc_id FROM att_error_desc WHERE error_desc = %s", (text,)
                )
                self._errors[text] = int(cur.fetchone()[0])
        return self._errors[text]

    def insert(
        self, att_id: int, table: str, rows: Iterable[ROW], recv: float | None = None
    ) -> int:
        """Insert ``(tango_time, value, quality, error)`` rows; a row whose time is already
        there is replaced (HDB++'s primary key is the attribute and ``data_time``)."""
        recv = time.time() if recv is None else recv
        recv = _microseconds(recv)
        values = [
            (att_id, _microseconds(t), recv, None if v is None else _number(v), q,
             None if e is None else self._error_id(e))
            for t, v, q, e in rows
        ]  # fmt: skip
        if not values:
            return 0
        write = ", value_w" if table.endswith("_rw") else ""
        row = f"(%s, FROM_UNIXTIME(%s), FROM_UNIXTIME(%s), %s{', NULL' if write else ''}, %s, %s)"
        with self.db.cursor() as cur:
            for lo in range(0, len(values), 5000):  # one statement per 5000 rows
                chunk = values[lo : lo + 5000]
                cur.execute(
                    f"REPLACE INTO {table} (att_conf_id, data_time, recv_time, value_r{write}, "
                    f"quality, att_error_desc_id) VALUES {', '.join([row] * len(chunk))}",
                    [field for r in chunk for field in r],
                )
        return len(values)


def _microseconds(t: float) -> Decimal:
    """A Tango time as HDB++ keeps it (DATETIME(6)): rounded to the microsecond, exactly
    (a float given to FROM_UNIXTIME would be cut, not rounded)."""
    return Decimal(f"{t:.6f}")


def _number(value: Any) -> float | int:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    return float(value)


def synthetic(t: np.ndarray, seed: int = 0, end_value: float | None = None) -> np.ndarray:
    """A plausible past: slow drift, a few oscillations and noise, ending at ``end_value``."""
    rng = np.random.default_rng(seed)
    span = max(float(t[-1] - t[0]), 1.0) if len(t) else 1.0
    x = (t - t[0]) / span
    walk = np.cumsum(rng.normal(0.0, 1.0, len(t))) / math.sqrt(max(len(t), 1))
    value = 2.0 * np.sin(2 * math.pi * (3 + seed % 5) * x) + 3.0 * walk
    value += rng.normal(0.0, 0.05, len(t))
    if end_value is not None and len(t):
        value += end_value - value[-1]
    return value


def backfill(
    writer: HdbppWriter,
    name: str,
    data_type: str,
    start: float,
    end: float,
    rate: float = 1.0,
    values: Callable[[np.ndarray], np.ndarray] | None = None,
    chunk: int = 20000,
) -> int:
    """Write rows every ``1/rate`` s over ``[start, end)`` for ``name``; how many were written."""
    att_id, table = writer.add(name, data_type)
    t = start + np.arange(int((end - start) * rate)) / rate
    v = (values or synthetic)(t)
    recv = end
    written = 0
    for lo in range(0, len(t), chunk):
        rows = zip(t[lo : lo + chunk].tolist(), v[lo : lo + chunk].tolist(), strict=True)
        written += writer.insert(att_id, table, ((a, b, 0, None) for a, b in rows), recv)
    return written


def set_default_reader(tango_host: str, connection: Connection, schema: str = "hdbpp") -> None:
    """pyhdbpp's own configuration in the Tango database (free properties ``HDB++``):
    ``DefaultSchema`` and the schema's connection, as pyhdbpp's documentation shows."""
    import tango

    host, port = tango_host.rsplit(":", 1)
    db = tango.Database(host, int(port))
    db.put_property("HDB++", {"DefaultSchema": [schema]})
    db.put_property(
        "HDB++",
        {
            schema: [
                "apiclass=pyhdbpp.mariadb.MariaDBReader",
                f"host={connection.host}",
                f"port={connection.port}",
                f"database={connection.database}",
                f"user={connection.user}",
                f"password={connection.password}",
            ]
        },
    )


class Archiver:
    """Subscribes to ``attributes`` (names on ``tango_host``) and archives every event.

    ``start()`` subscribes (archive events, else change, else periodic), ``stop()``
    unsubscribes and writes what is queued. ``written`` counts rows per attribute (the
    ``tango://host:port/...`` name HDB++ stores).
    """

    def __init__(self, connection: Connection, tango_host: str, attributes: Sequence[str]) -> None:
        self.connection = connection
        self.tango_host = tango_host
        self.attributes = list(attributes)
        self.written: dict[str, int] = {}
        self.modes: dict[str, str] = {}
        self._queue: queue.Queue[tuple[str, ROW] | None] = queue.Queue()
        self._tables: dict[str, tuple[int, str]] = {}
        self._subscriptions: list[tuple[Any, int]] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def full_name(self, attribute: str) -> str:
        return f"tango://{self.tango_host}/{attribute}".lower()

    def table(self, name: str) -> str:
        """The HDB++ table of an archived attribute (its full name)."""
        return self._tables[name][1]

    def start(self) -> Archiver:
        import tango

        writer = HdbppWriter(self.connection)
        try:
            for attribute in self.attributes:
                device, attr = attribute.rsplit("/", 1)
                proxy = tango.DeviceProxy(f"tango://{self.tango_host}/{device}")
                config = proxy.get_attribute_config(attr)
                data_type = hdbpp_type(
                    str(tango.CmdArgType.values[config.data_type]),
                    str(config.data_format),
                    str(config.writable),
                )
                name = self.full_name(attribute)
                self._tables[name] = writer.add(name, data_type)
                self.written.setdefault(name, 0)
                self._subscribe(proxy, attr, name)
        finally:
            writer.close()
        self._thread = threading.Thread(target=self._run, name="hdbpp-archiver", daemon=True)
        self._thread.start()
        return self

    def _subscribe(self, proxy: Any, attr: str, name: str) -> None:
        import tango

        callback = _Callback(self._queue, name)
        last: Exception | None = None
        for event in (
            tango.EventType.ARCHIVE_EVENT,
            tango.EventType.CHANGE_EVENT,
            tango.EventType.PERIODIC_EVENT,
        ):
            try:
                eid = proxy.subscribe_event(attr, event, callback)
            except tango.DevFailed as exc:
                last = exc
                continue
            with self._lock:
                self._subscriptions.append((proxy, eid))
            self.modes[name] = str(event)
            return
        raise RuntimeError(f"cannot archive {name}: no event works ({last})")

    def _run(self) -> None:
        writer = HdbppWriter(self.connection)
        try:
            while True:
                item = self._queue.get()
                batch: dict[str, list[ROW]] = {}
                stop = item is None
                while item is not None:
                    batch.setdefault(item[0], []).append(item[1])
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    stop = stop or item is None
                for name, rows in batch.items():
                    att_id, table = self._tables[name]
                    try:
                        writer.insert(att_id, table, rows)
                    except Exception:
                        log.exception("archiving %s failed", name)
                        continue
                    with self._lock:
                        self.written[name] += len(rows)
                if stop:
                    return
        finally:
            writer.close()

    def stop(self) -> None:
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for proxy, eid in subscriptions:
            try:
                proxy.unsubscribe_event(eid)
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(30)
            self._thread = None


class _Callback:
    """Push-mode callback on Tango's thread: one row per event into the archiver's queue."""

    def __init__(self, out: queue.Queue, name: str) -> None:
        self.out = out
        self.name = name

    def push_event(self, event: Any) -> None:
        if event.err:
            error = event.errors[0]
            text = f"{error.reason}: {error.desc.strip()}"
            when = event.reception_date.totime()
            self.out.put((self.name, (when, None, 1, text)))  # INVALID, as HDB++ stores errors
            return
        value = event.attr_value
        data = value.value
        if data is not None and not np.isscalar(data):
            return  # spectra and images: not archived here
        self.out.put((self.name, (value.time.totime(), data, int(value.quality), None)))


class DemoArchive:
    """The demo's archive (``tango-bokeh sim --archive``): a fresh MariaDB in ``where``
    with HDB++'s schema, :data:`DEMO_BACKFILL` of synthetic past for :data:`DEMO_ARCHIVED`
    (ending at each attribute's present value), the :class:`Archiver` on their events,
    pyhdbpp's default reader set in the Tango database, the password in ``where/password``.
    """

    def __init__(
        self,
        where: Path,
        tango_host: str,
        attributes: Sequence[str] = DEMO_ARCHIVED,
        backfill: tuple[float, float] = DEMO_BACKFILL,
    ) -> None:
        self.where = Path(where)
        self.tango_host = tango_host
        self.attributes = list(attributes)
        self.hours, self.rate = backfill
        self.db: MariaDB | None = None
        self.archiver: Archiver | None = None
        self.rows = 0

    @property
    def password_file(self) -> Path:
        return self.where / "password"

    def start(self) -> DemoArchive:
        import shutil

        import tango

        if self.where.exists():  # synthetic history: every run starts afresh
            shutil.rmtree(self.where)
        self.db = start_archive(self.where)
        try:
            connection = Connection.of(self.db)
            self.password_file.write_text(connection.password + "\n")
            self.password_file.chmod(0o600)
            self.archiver = Archiver(connection, self.tango_host, self.attributes).start()
            now = time.time()
            writer = HdbppWriter(connection)
            try:
                for seed, attribute in enumerate(self.attributes):
                    name = self.archiver.full_name(attribute)
                    data_type = self.archiver.table(name).removeprefix("att_")
                    device, attr = attribute.rsplit("/", 1)
                    proxy = tango.DeviceProxy(f"tango://{self.tango_host}/{device}")
                    try:
                        present = float(proxy.read_attribute(attr).value)
                    except (tango.DevFailed, TypeError, ValueError):
                        present = 0.0
                    scale = max(abs(present) * 0.02, 0.5)

                    def past(t: np.ndarray, seed: int = seed, present: float = present,
                             scale: float = scale) -> np.ndarray:  # fmt: skip
                        shape = synthetic(t, seed)
                        return present + scale * (shape - shape[-1])

                    self.rows += backfill(
                        writer, name, data_type, now - 3600 * self.hours, now, self.rate, past
                    )
            finally:
                writer.close()
            set_default_reader(self.tango_host, connection)
        except BaseException:
            self.stop()
            raise
        return self

    def describe(self) -> str:
        assert self.db is not None
        return (
            f"HDB++ archive: MariaDB at {self.db.host}:{self.db.port}, database "
            f"{self.db.database}, user {self.db.user}, password in {self.password_file}\n"
            f"  archived: {', '.join(self.attributes)}\n"
            f"  {self.rows} rows of synthetic past ({self.hours:g} h), then live events\n"
            "  pyhdbpp's default reader is set in the Tango database (free properties HDB++)"
        )

    def stop(self) -> None:
        if self.archiver is not None:
            self.archiver.stop()
            self.archiver = None
        if self.db is not None:
            self.db.stop()
            self.db = None
