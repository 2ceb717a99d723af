"""An HDB++ archive read with pyhdbpp: :class:`HdbppArchive`, the real :class:`Archive`.

pyhdbpp (the Tango community's reader) finds the archive (its own default: the
``HDB++`` free properties of the Tango database), resolves names to HDB++'s
``att_conf`` rows and reads raw rows (``get_attribute_values``). Two things it does
not do are done here, on its connection: a range too long for the plot is decimated
in the database, keeping the rows of each pixel column's minimum and maximum (pyhdbpp's
own ``decimate`` keeps one arbitrary row per interval, so spikes vanish), and every
connection gets a connect and read timeout (a stopped or unreachable server raises
:class:`ArchiveUnavailable` instead of hanging). pyhdbpp prints and swallows errors
of its raw reads (returning no rows); a range that the database counts rows in but
that comes back empty is reported as :class:`ArchiveUnavailable` too.

Times: HDB++ (libhdbpp-mysql) stores ``data_time`` as the database session's local
time of the Tango timestamp, and pyhdbpp writes its query bounds in this process's
local time; the archive's server, its archiver and this process must agree on the
time zone (as they do for HDB++ itself). The decimated query uses ``FROM_UNIXTIME``
bounds and is exact whatever the zone.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from .archive import (
    ArchiveColumns,
    ArchiveConfig,
    ArchiveError,
    ArchiveUnavailable,
    NotArchived,
    NotConfigured,
    NotPlottable,
    columns_for,
    decimate_minmax,
    normalise_name,
)

#: Half the archive's resolution (DATETIME(6)): bounds are compared this loosely.
HALF_US = 5e-7
DEFAULT_PORTS = {"mariadb": 3306, "timescaledb": 5432}
MARIADB_READER = "pyhdbpp.mariadb.MariaDBReader"
TIMESCALE_READER = "pyhdbpp.timescaledb.TimescaleDbReader"
#: HDB++ tables whose ``value_r`` is one number per row (what a trend draws).
NUMERIC = ("boolean", "uchar", "short", "ushort", "long", "ulong", "long64", "ulong64",
           "float", "double", "state", "enum")  # fmt: skip

_RANGE = (
    "att_conf_id = %(id)s AND data_time BETWEEN FROM_UNIXTIME(%(t0)s) AND FROM_UNIXTIME(%(t1)s)"
)
#: Each pixel column's minimum, maximum and number of rows: one pass over the range of
#: the primary key.
_EXTREMES = (
    "SELECT MIN(CAST(value_r AS DOUBLE)), MAX(CAST(value_r AS DOUBLE)), COUNT(*) "
    "FROM {table} WHERE " + _RANGE + " "
    "GROUP BY FLOOR((UNIX_TIMESTAMP(data_time) - %(t0)s) / %(dt)s)"
)
#: The rows holding one of those values (or none): a second pass, few rows sent. Values
#: compare as DOUBLE on both sides (a FLOAT column's own text form has 6 digits only).
_CANDIDATES = (
    "SELECT CAST(UNIX_TIMESTAMP(data_time) AS DOUBLE), CAST(value_r AS DOUBLE), quality "
    "FROM {table} WHERE " + _RANGE + " AND (CAST(value_r AS DOUBLE) IN ({values}) "
    "OR value_r IS NULL)"
)


def _reader_class() -> type:
    """pyhdbpp's MariaDBReader whose every connection has a connect and read timeout."""
    import pymysql
    from pyhdbpp.mariadb import MariaDBReader

    class TimedMariaDBReader(MariaDBReader):
        timeout = 10.0

        def _connect(self) -> Any:
            return pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                database=self.database,
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                write_timeout=self.timeout,
                autocommit=True,
            )

    return TimedMariaDBReader


def _unavailable(where: str, exc: BaseException) -> ArchiveUnavailable:
    text = str(exc.args[-1]) if getattr(exc, "args", None) else str(exc) or type(exc).__name__
    return ArchiveUnavailable(f"the HDB++ archive at {where} did not answer: {text}")


class HdbppArchive:
    """An HDB++ archive (MariaDB/MySQL schema) read with pyhdbpp; see the module doc."""

    def __init__(self, reader: Any, name: str, timeout: float = 10.0) -> None:
        self.reader = reader
        self.name = name
        self.timeout = timeout
        self._lock = threading.Lock()

    # -- construction ----------------------------------------------------------------

    @classmethod
    def open(cls, config: ArchiveConfig) -> HdbppArchive:
        try:
            import pyhdbpp
        except ImportError:
            raise ArchiveError(
                "reading an HDB++ archive needs pyhdbpp and pymysql: "
                "pip install 'tango-bokeh[archive]'"
            ) from None
        timed = _reader_class()
        timed.timeout = config.timeout
        if config.reader == "default":
            try:
                default = pyhdbpp.get_default_reader()
            except Exception:  # pyhdbpp 2.1.3: IndexError when DefaultSchema is not set
                default = None
            if default is None:
                raise NotConfigured(
                    "no archive configured, and pyhdbpp has no default reader (the HDB++ "
                    "free properties of the Tango database, or PYHDBPP_READER)"
                )
            if type(default).__name__ != "MariaDBReader":
                return cls(default, f"HDB++ ({type(default).__name__})", config.timeout)
            settings = dict(default.config)
            settings.pop("apiclass", None)
            reader = timed(**settings)
        elif config.reader == "mariadb":
            reader = timed(
                host=config.host,
                port=config.port or DEFAULT_PORTS["mariadb"],
                database=config.database,
                user=config.user,
                password=config.password(),
            )
        elif config.reader == "timescaledb":
            reader = pyhdbpp.reader(
                apiclass=TIMESCALE_READER,
                config={
                    "host": config.host,
                    "port": config.port or DEFAULT_PORTS["timescaledb"],
                    "database": config.database,
                    "user": config.user,
                    "password": config.password(),
                    # pyhdbpp 2.1.3 takes a second connection while holding the first:
                    # its default pool of one fails every read ("pool exhausted").
                    "connection_pool_max_conn": 4,
                },
            )
        else:
            raise ArchiveError(f"unknown archive reader {config.reader!r}")
        where = f"{reader.host}:{reader.port}/{reader.database}"
        return cls(reader, f"HDB++ {where}", config.timeout)

    @property
    def _mariadb(self) -> bool:
        return hasattr(self.reader, "get_attribute_id_table")

    # -- Archive ----------------------------------------------------------------------

    def is_archived(self, attribute: str) -> bool:
        try:
            if not self._mariadb:  # pyhdbpp's other readers answer it themselves
                return self._generic_name(attribute) is not None
            self._lookup(attribute)
        except NotArchived:
            return False
        return True

    def read(self, attribute: str, start: float, end: float, max_points: int) -> ArchiveColumns:
        max_points = max(1, int(max_points))
        if end < start:
            start, end = end, start
        if not self._mariadb:
            return self._read_generic(attribute, start, end, max_points)
        name, att_id, table = self._lookup(attribute)
        kind = table.split("_")[2] if table.count("_") >= 2 else ""
        if not table.startswith("att_scalar_") or kind.removeprefix("dev") not in NUMERIC:
            raise NotPlottable(f"{attribute} is archived as {table[4:]}, not as numbers")
        bounds = {"id": int(att_id), "t0": float(start), "t1": float(end)}
        params = {**bounds, "dt": (end - start) / max_points}
        # One connection: each column's extremes and row count, then the rows holding them.
        with self._connection() as db:
            extremes = self._sql(_EXTREMES.format(table=table), params, db)
            rows = sum(int(count) for _, _, count in extremes)
            if rows > 2 * max_points:
                values = sorted({v for lo, hi, _ in extremes for v in (lo, hi) if v is not None})
                literals = ",".join(_literal(v) for v in values) or "NULL"
                found = self._sql(_CANDIDATES.format(table=table, values=literals), bounds, db)
        if rows <= 2 * max_points:
            return self._raw(attribute, name, start, end, rows, max_points)
        # The candidates hold every column's minimum and maximum (and other columns'
        # values between them): decimating them again picks each column's own.
        t, value, quality = decimate_minmax(*self._arrays(found), start, end, max_points)
        return ArchiveColumns(attribute, start, end, t, value, quality, True, rows)

    def close(self) -> None:
        executor = getattr(self.reader, "executor", None)
        if executor is not None:
            executor.shutdown(wait=False)
        pool = getattr(self.reader, "connection_pool", None)  # the TimescaleDB reader's
        if pool is not None:
            with contextlib.suppress(Exception):  # closed already, or a dead server
                pool.closeall()

    # -- internals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A new connection (with the reader's timeouts), closed after use."""
        import pymysql

        try:
            db = self.reader._connect()
        except (pymysql.MySQLError, OSError) as exc:
            raise _unavailable(self.name, exc) from None
        try:
            yield db
        finally:
            with contextlib.suppress(Exception):  # the connection may be dead already
                db.close()

    def _sql(self, query: str, params: dict[str, Any], db: Any = None) -> list[tuple]:
        import pymysql

        if db is None:
            with self._connection() as db:
                return self._sql(query, params, db)
        try:
            with db.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall())
        except (pymysql.OperationalError, pymysql.InterfaceError, OSError) as exc:
            raise _unavailable(self.name, exc) from None
        except pymysql.MySQLError as exc:
            raise ArchiveError(f"{self.name}: {exc.args[-1]}") from None

    def _lookup(self, attribute: str) -> tuple[str, int, str]:
        """(HDB++ name, att_conf_id, table) of ``attribute``; :class:`NotArchived` if none."""
        import pymysql

        key = normalise_name(attribute)
        tries = [key]
        if key.startswith("tango://"):
            tries.append(key.split("/", 3)[3])  # the same name on any control system
        tries += _by_device_name(attribute)  # HDB++ knows devices by name, never by alias
        with self._lock:
            try:
                for reload in (False, True):
                    if reload:  # pyhdbpp caches att_conf: look again for newly archived ones
                        self.reader.get_attributes(load=True)
                    for name in tries:
                        found = self.reader.get_attribute_name(name)
                        if found:
                            row = self.reader.get_attribute_id_table(found)[0]
                            return row[0], int(row[1]), str(row[2])
            except (pymysql.OperationalError, pymysql.InterfaceError, OSError) as exc:
                raise _unavailable(self.name, exc) from None
            except pymysql.MySQLError as exc:
                raise ArchiveError(f"{self.name}: {exc.args[-1]}") from None
            except Exception as exc:  # pyhdbpp's own: MultipleAttributeMatches
                if "MultipleAttributeMatches" in str(exc):
                    raise ArchiveError(
                        f"{attribute} names several archived attributes in {self.name}: "
                        "give the full tango://host:port/... name"
                    ) from None
                raise
        raise NotArchived(attribute, self.name)

    def _raw(
        self, attribute: str, name: str, start: float, end: float, rows: int, max_points: int
    ) -> ArchiveColumns:
        # pyhdbpp's bounds are whole seconds of local time: ask one second wider, cut here.
        found = self.reader.get_attribute_values(
            name, math.floor(start) - 1, math.ceil(end) + 1, decimate=0
        )
        if rows and not found:  # pyhdbpp printed the error and returned nothing
            self._sql("SELECT 1", {})  # raises ArchiveUnavailable when that is what happened
            raise ArchiveUnavailable(f"{self.name}: reading {attribute} returned no rows")
        t, value, quality = self._arrays([(r[0], r[1], r[2]) for r in found])
        # The archive keeps microseconds: a bound given as a float may be a hair off them.
        got = columns_for(attribute, start - HALF_US, end + HALF_US, t, value, quality, max_points)
        return replace(got, start=start, end=end)

    def _read_generic(
        self, attribute: str, start: float, end: float, max_points: int
    ) -> ArchiveColumns:
        """Any other pyhdbpp reader: raw rows, decimated here."""
        name = self._generic_name(attribute)
        if name is None:
            raise NotArchived(attribute, self.name)
        try:
            found = self.reader.get_attribute_values(name, start, end)
        except KeyError:  # pyhdbpp logged a failure, or matched several names: read none
            raise self._generic_failure(attribute, name) from None
        except Exception as exc:
            raise _unavailable(self.name, exc) from None
        # (time, value_r[, value_w], quality, error): the quality is next to last.
        t, value, quality = self._arrays([(_epoch(r[0]), r[1], r[-2]) for r in found or ()])
        return columns_for(attribute, start, end, t, value, quality, max_points)

    def _generic_name(self, attribute: str) -> str | None:
        """The name another pyhdbpp reader knows ``attribute`` by (as given, then without
        its host, then by device name), or None when it is not archived."""
        key = normalise_name(attribute)
        tries = [key]
        if key.startswith("tango://"):
            tries.append(key.split("/", 3)[3])  # the same name on any control system
        tries += _by_device_name(attribute)
        try:
            with self._lock:
                return next((n for n in tries if self.reader.is_attribute_archived(n)), None)
        except Exception as exc:
            raise _unavailable(self.name, exc) from None

    def _generic_failure(self, attribute: str, name: str) -> ArchiveError:
        """Why pyhdbpp's reader returned nothing for ``name``: its TimescaleDB reader finds
        names with ``ILIKE '%name%'`` and reads none when several match."""
        try:
            matches = self.reader.get_attributes(pattern=f"*{name}*")
        except Exception as exc:
            return _unavailable(self.name, exc)
        if len(matches) > 1:
            return ArchiveError(
                f"{attribute}: pyhdbpp's reader finds names as substrings and reads none when "
                f"several match ({', '.join(sorted(matches)[:3])} in {self.name})"
            )
        return ArchiveUnavailable(f"{self.name}: reading {attribute} returned nothing")

    @staticmethod
    def _arrays(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not rows:
            return np.empty(0), np.empty(0), np.empty(0, np.int8)
        t = np.fromiter((float(r[0]) for r in rows), np.float64, len(rows))
        value = np.fromiter(
            (math.nan if r[1] is None else float(r[1]) for r in rows), np.float64, len(rows)
        )
        quality = np.fromiter((1 if r[2] is None else int(r[2]) for r in rows), np.int8, len(rows))
        order = np.argsort(t, kind="stable")
        return t[order], value[order], quality[order]


def _literal(value: Any) -> str:
    """A number as an SQL literal that compares exactly with a DOUBLE column."""
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text if "e" in text else text + "e0"  # a DOUBLE literal, not a DECIMAL


def _epoch(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _by_device_name(attribute: str) -> list[str]:
    """``attribute`` with its device alias replaced by the device's name (none if no alias)."""
    from .database import resolve_alias
    from .names import InvalidName, parse_name

    try:
        name = parse_name(attribute)
    except InvalidName:
        return []
    if not name.is_alias:
        return []
    device = resolve_alias(name.device, name.host)
    if not device:
        return []
    prefix = f"tango://{name.host}/" if name.host else ""
    return [normalise_name(f"{prefix}{device}/{name.attribute}")]
