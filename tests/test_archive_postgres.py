"""HDB++ on PostgreSQL: pyhdbpp's TimescaleDB reader on a real server (``reader: timescaledb``).

Debian has no TimescaleDB package; its PostgreSQL serves HDB++'s TimescaleDB layout as
plain tables (``devices/hdbpp/hdb_timescale_plain.sql``), and pyhdbpp's reader runs
plain SQL on it. The rows are written as HDB++'s TimescaleDB archiver writes them
(``tests/postgres.py``); the reader (``tango_bokeh.tango.hdbpp.HdbppArchive`` over
pyhdbpp's ``TimescaleDbReader``) must give back the readings with their Tango
timestamps, decimate long ranges to each pixel column's minimum and maximum, say when
an attribute is not archived, and a trend of ``tango-bokeh serve`` must open filled
from it in Chromium.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tango_bokeh.sim import ControlSystem
from tango_bokeh.tango.archive import ArchiveError, NotArchived, decimate_minmax, open_archive
from tango_bokeh.views import archive_fill

from . import postgres
from .archives import NEEDS_POSTGRES, archive_config, timescale_db
from .test_archive_trends import (
    CURRENT_TANGO,
    DASHBOARD,
    NOT_ARCHIVED,
    TREND,
    _epoch,
    _filled,
    _open,
    _past,
    browser_page,
    real,
)

__all__ = ["browser_page", "timescale_db"]  # fixtures, used here

pytestmark = [NEEDS_POSTGRES]

HOST = "tango://archive.test:10000"


@pytest.fixture(scope="module")
def reader(timescale_db: postgres.PostgreSQL, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    archive = open_archive(
        archive_config(timescale_db, tmp_path_factory.mktemp("secret"), reader="timescaledb")
    )
    try:
        yield archive
    finally:
        archive.close()


def test_readings_come_back_with_their_tango_timestamps(timescale_db, reader):
    """Every VALID reading, to the microsecond; pyhdbpp's TimescaleDB reader leaves out the
    rows that are not VALID or hold an error (so they show no gap: docs/archive.md)."""
    name = f"{HOST}/test/pg/1/readings"
    t = float(int(time.time()) - 3600) + np.arange(60) * 0.75 + 0.123456
    value = np.cos(t / 7.0) * 1e3
    quality = np.zeros(60, np.int8)
    quality[[10, 11]] = 2  # ALARM
    quality[20] = 1  # INVALID: no value
    rows = [(a, None if q == 1 else b, int(q), None)
            for a, b, q in zip(t.tolist(), value.tolist(), quality, strict=True)]  # fmt: skip
    rows.append((t[-1] + 0.5, None, 1, "API_DeviceTimedOut: the device did not answer"))
    postgres.insert(timescale_db, name, "devdouble", rows)
    got = reader.read("test/pg/1/readings", t[0], t[-1] + 1, max_points=800)
    valid = quality == 0
    assert not got.decimated and got.rows == valid.sum() == len(got)
    np.testing.assert_allclose(got.t, t[valid], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.value, value[valid])
    assert set(got.quality.tolist()) == {0}
    # Only the range asked for: bounds are kept to the microsecond.
    inner = reader.read("test/pg/1/readings", t[30], t[40], max_points=800)
    np.testing.assert_allclose(inner.t, t[30:41], rtol=0, atol=1e-6)


def test_a_long_range_is_decimated_keeping_spikes(timescale_db, reader):
    name = f"{HOST}/test/pg/1/spiky"
    end = float(int(time.time()) - 7200)
    t = end - 7200 + np.arange(7200, dtype=np.float64)
    value = np.sin(t / 600.0)
    spikes = {1234: 40.0, 1235: -7.0, 5000: -40.0}
    for index, height in spikes.items():
        value[index] = height
    postgres.insert(
        timescale_db, name, "devdouble", [(a, b, 0, None) for a, b in zip(t, value, strict=True)]
    )
    width = 300
    got = reader.read("test/pg/1/spiky", t[0], t[-1], max_points=width)
    assert got.decimated and got.rows == len(t) and len(got) <= 2 * width
    for height in spikes.values():
        assert height in got.value, f"spike {height} lost"
    want_t, want_v, _ = decimate_minmax(t, value, np.zeros(len(t), np.int8), t[0], t[-1], width)
    np.testing.assert_allclose(got.t, want_t, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.value, want_v)
    # Zoomed in: every row.
    raw = reader.read("test/pg/1/spiky", t[1200], t[1300], max_points=800)
    assert not raw.decimated and len(raw) == 101


def test_an_attribute_not_archived_says_so(reader):
    with pytest.raises(NotArchived, match=r"sim/motor/2/Velocity is not archived in HDB\+\+ "):
        reader.read("sim/motor/2/Velocity", time.time() - 60, time.time(), 100)
    assert not reader.is_archived("sim/motor/2/Velocity")


def test_a_name_inside_another_is_an_error_not_silence(timescale_db, reader):
    """pyhdbpp finds names with ILIKE '%name%': two matches read nothing. Said so."""
    t = float(int(time.time()) - 600) + np.arange(5, dtype=np.float64)
    for attr in ("gap", "gap_2"):
        postgres.insert(timescale_db, f"{HOST}/test/pg/2/{attr}", "devdouble",
                        [(a, 1.0, 0, None) for a in t])  # fmt: skip
    assert len(reader.read("test/pg/2/gap_2", t[0], t[-1], 100)) == 5
    with pytest.raises(ArchiveError, match=r"reads none when several match \(.*/gap, .*/gap_2"):
        reader.read("test/pg/2/gap", t[0], t[-1], 100)


@real
def test_a_trend_opens_filled_from_postgresql(
    control_system: ControlSystem, timescale_db, tmp_path: Path, browser_page
):
    from .served import Served

    now = time.time()
    name = f"tango://{control_system.tango_host}/{CURRENT_TANGO.lower()}"
    t = now - 1800 + np.arange(1800, dtype=np.float64)
    postgres.insert(
        timescale_db, name, "devdouble", [(a, b, 0, None) for a, b in zip(t, _past(t), strict=True)]
    )
    config = archive_config(timescale_db, tmp_path, reader="timescaledb")
    text = DASHBOARD.format(
        host=config.host, port=config.port, database=config.database, user=config.user,
        password_file=config.password_file, current=CURRENT_TANGO, velocity=NOT_ARCHIVED,
    ).replace("reader: mariadb", "reader: timescaledb")  # fmt: skip
    assert "reader: timescaledb" in text
    (tmp_path / "archived.yaml").write_text(text)
    served = Served([tmp_path / "archived.yaml"], control_system.env(), state_dir=tmp_path)
    try:
        _open(browser_page, served)
        trend = _filled(browser_page, served)
        assert trend["names"] and all(n.endswith("(archive)") for n in trend["names"])
        assert "archive" in trend["legend"]
        assert max(trend["t"]) < min(trend["live_t"])
        drawn = np.asarray([_epoch(x, now) for x in trend["t"]])
        assert drawn.min() >= now - 600 - 5  # the trend's window (10 min)
        np.testing.assert_allclose(trend["y"], _past(drawn), rtol=0, atol=1e-3)
        assert len(trend["t"]) <= 2 * archive_fill.DEFAULT_WIDTH
        speed = browser_page.evaluate(TREND, "Motor speed")
        assert speed is not None and speed["t"] == []
    finally:
        assert served.stop() == 0, served.output
