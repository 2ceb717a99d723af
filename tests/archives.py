"""HDB++ archives the tests start: a real MariaDB with HDB++'s schema, and its reader's
configuration (the password in a file, as operators keep it). Shared by
``test_archive.py`` (the reader) and ``test_archive_trends.py`` (trends that use it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tango_bokeh.tango.archive import ArchiveConfig
from tango_bokeh_devices import mariadb
from tango_bokeh_devices.archiver import start_archive

#: Skip a test module when Debian's MariaDB is not installed.
NEEDS_MARIADB = pytest.mark.skipif(not mariadb.installed(), reason="needs Debian's mariadb-server")


def archive_config(db: mariadb.MariaDB, tmp: Path, timeout: float = 10.0) -> ArchiveConfig:
    """The reader's configuration of ``db``, its password in a file under ``tmp``."""
    secret = tmp / "hdbpp-password"
    secret.write_text(db.password + "\n")
    secret.chmod(0o600)
    return ArchiveConfig(
        reader="mariadb",
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
