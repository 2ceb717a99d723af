"""Export with archived points: real MariaDB with HDB++'s schema, real devices, Chromium.

The dashboard of tests/test_archive_trends.py (2 h of ``sim/beam/current/Current`` in the
archive, values a known function of their time), zoomed out to the two hours so the
archive's min/max-decimated points are drawn before the live ones, then exported from
the page: the archived rows are in the file, marked ``archive-minmax``, with the
archive's own timestamps and values, followed by the live rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np

from .conftest import wait_for
from .test_archive_trends import (
    CURRENT_TANGO,
    TREND,
    ZOOM,
    _ArchivedDashboard,
    _filled,
    _open,
    _past,
    browser_page,  # noqa: F401 - the fixture, shared
    real,
)


def _export(page, choice: str, where: Path) -> Path:
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="Export").click()
        page.get_by_text(choice).click()
    path = where / info.value.suggested_filename
    info.value.save_as(path)
    return path


@real
def test_archived_rows_are_exported_with_the_archives_timestamps(
    control_system,
    tmp_path,
    browser_page,  # noqa: F811 - the imported fixture
):
    page = browser_page
    archived = _ArchivedDashboard(control_system, tmp_path)
    try:
        _open(page, archived.served)
        trend = _filled(page, archived.served)
        now_ms = max(trend["live_t"])
        page.evaluate(ZOOM, ["Ring current", now_ms - 7200_000, now_ms])
        wait_for(
            lambda: min(page.evaluate(TREND, "Ring current")["t"]) < now_ms - 6000_000,
            timeout=120,
            what="two hours of archive drawn",
        )
        drawn = page.evaluate(TREND, "Ring current")
        path = _export(page, "CSV (long format)", tmp_path)
        rows = [r for r in csv.DictReader(path.open()) if r["attribute"] == CURRENT_TANGO]
        past = [r for r in rows if r["origin"] != "live"]
        live = [r for r in rows if r["origin"] == "live"]
        assert past and live
        assert {r["origin"] for r in past} == {"archive-minmax"}  # decimated for the width
        # Every archived point drawn in the zoomed range is in the file, before the live rows.
        assert len(past) == len(drawn["t"])
        t = np.asarray([float(r["time_epoch"]) for r in past])
        assert t.max() < min(float(r["time_epoch"]) for r in live)
        # The archive's own rows: written every second from start, values a function of t.
        start = round(archived.now - 7200, 6)
        steps = t - start
        assert np.all(np.abs(steps - np.round(steps)) <= 2e-6), "not the archive's timestamps"
        np.testing.assert_allclose([float(r["value"]) for r in past], _past(t), rtol=0, atol=1e-3)
        # The same in HDF5, where the decimation is said on the origin dataset.
        path = _export(page, "HDF5 (NeXus)", tmp_path)
        with h5py.File(path) as f:
            group = f["entry/sim_beam_current_Current"]
            origin = group["origin"][()]
            assert group["origin"].attrs["decimated"]
            assert int((origin == 2).sum()) == len(past) and int((origin == 0).sum()) > 0
            h5_t = group["time"][()][origin == 2]
            np.testing.assert_array_equal(np.round(h5_t * 1e6), np.round(t * 1e6))
    finally:
        archived.stop()
