"""HDB++ archives the tests start: a real MariaDB with HDB++'s schema, a real PostgreSQL
with HDB++'s TimescaleDB layout (``tests/postgres.py``), and their readers'
configurations (the password in a file, as operators keep it). Shared by
``test_archive.py`` (the reader), ``test_archive_trends.py`` (trends that use it),
``test_archive_postgres.py`` and ``test_archive_notebook.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tango_bokeh.tango.archive import ArchiveConfig
from tango_bokeh_devices import mariadb
from tango_bokeh_devices.archiver import start_archive

from . import postgres

#: Skip a test module when Debian's MariaDB is not installed.
NEEDS_MARIADB = pytest.mark.skipif(not mariadb.installed(), reason="needs Debian's mariadb-server")


def archive_config(
    db: mariadb.MariaDB | postgres.PostgreSQL,
    tmp: Path,
    timeout: float = 10.0,
    reader: str = "mariadb",
) -> ArchiveConfig:
    """The reader's configuration of ``db`` (``reader``: pyhdbpp's ``mariadb`` or
    ``timescaledb`` reader), its password in a file under ``tmp``."""
    secret = tmp / f"hdbpp-{reader}-password"
    secret.write_text(db.password + "\n")
    secret.chmod(0o600)
    return ArchiveConfig(
        reader=reader,
        host=db.host,
        port=db.port,
        database=db.database,
        user=db.user,
        password_file=str(secret),
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def archive_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mariadb.MariaDB]:
    """An empty HDB++ archive (MariaDB in a temp dir, on a free port), stopped after."""
    db = start_archive(tmp_path_factory.mktemp("hdbpp"))
    try:
        yield db
    finally:
        db.stop()


#: Skip a test module when Debian's PostgreSQL (or psycopg2) is not installed.
NEEDS_POSTGRES = pytest.mark.skipif(
    not postgres.installed(), reason="needs Debian's postgresql and psycopg2"
)


@pytest.fixture(scope="module")
def timescale_db() -> Iterator[postgres.PostgreSQL]:
    """An empty HDB++ archive in TimescaleDB's layout (plain PostgreSQL), stopped after."""
    db = postgres.PostgreSQL().start()
    try:
        yield db
    finally:
        db.stop()
