"""The HDB++ archive: a real MariaDB with HDB++'s schema, real Tango devices, pyhdbpp.

The test archiver (``tango_bokeh_devices.archiver``) fills the archive from the
simulated beamline's events as HDB++'s event subscriber does; the reader
(``tango_bokeh.tango.hdbpp.HdbppArchive``, pyhdbpp underneath) must give back exactly
those rows (values, Tango timestamps, quality), decimate long ranges to each pixel
column's minimum and maximum (spikes kept), say when an attribute is not archived,
and fail fast and clearly when the database is killed or hung. The in-memory
``FakeArchive`` must behave the same way for the tests of code that uses an archive.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tango_bokeh.sim import ControlSystem
from tango_bokeh.tango.archive import (
    QUALITY_CODES,
    Archive,
    ArchiveConfig,
    ArchiveError,
    ArchiveUnavailable,
    FakeArchive,
    NotArchived,
    NotConfigured,
    NotPlottable,
    decimate_minmax,
    open_archive,
)
from tango_bokeh.tango.sample import Quality
from tango_bokeh_devices import mariadb
from tango_bokeh_devices.archiver import (
    Archiver,
    Connection,
    HdbppWriter,
    backfill,
    set_default_reader,
    start_archive,
)

from .archives import NEEDS_MARIADB, archive_db
from .archives import archive_config as _config
from .conftest import wait_for

__all__ = ["archive_db"]  # a fixture of .archives, used here

pytestmark = [
    pytest.mark.tango,
    NEEDS_MARIADB,
]

FAULTY = "sim/faulty/1/Value"  # change events; values, INVALID readings and errors
COUNTS = "sim/counter/1/Counts"  # archive events every second (archive_period)


@pytest.fixture(scope="module")
def archive(archive_db: mariadb.MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    reader = open_archive(_config(archive_db, tmp_path_factory.mktemp("secret")))
    try:
        yield reader
    finally:
        reader.close()


class _Collector:
    """The test's own subscription: what Tango sent, independently of the archiver."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float | None, int]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def push_event(self, event) -> None:  # Tango's thread
        with self.lock:
            if event.err:
                self.errors.append(event.errors[0].desc.strip())
                return
            value = event.attr_value
            data = None if value.value is None else float(value.value)
            self.events.append((value.time.totime(), data, int(value.quality)))


def test_archived_events_read_back_exactly(
    control_system: ControlSystem, archive_db: mariadb.MariaDB, archive
):
    import tango

    archiver = Archiver(Connection.of(archive_db), control_system.tango_host, [FAULTY, COUNTS])
    archiver.start()
    name = archiver.full_name(FAULTY)
    assert archiver.modes[name] == "CHANGE_EVENT"  # no archive event configured there
    assert archiver.modes[archiver.full_name(COUNTS)] == "ARCHIVE_EVENT"
    collector = _Collector()
    proxy = tango.DeviceProxy(FAULTY.rsplit("/", 1)[0])
    eid = proxy.subscribe_event("Value", tango.EventType.CHANGE_EVENT, collector)
    subscribed = time.time()
    try:

        def enough() -> bool:
            with collector.lock:
                qualities = [q for t, _, q in collector.events if t > subscribed]
            return qualities.count(0) >= 8 and QUALITY_CODES[Quality.INVALID] in qualities

        wait_for(enough, timeout=120, what="valid and INVALID readings of the faulty device")
    finally:
        proxy.unsubscribe_event(eid)
        archiver.stop()
    with collector.lock:
        # The first events of a subscription are its own reads: compare what came after.
        seen = [e for e in collector.events if e[0] > subscribed]
        first = collector.events[:4]
    start, end = seen[0][0], seen[-1][0]
    got = archive.read(FAULTY, start, end, max_points=10_000)
    assert not got.decimated and got.rows == len(got)
    # Error events have no Tango timestamp (the archiver's reception time): compare the
    # readings, each with its Tango timestamp, value (None: NaN) and quality.
    readings = [(t, v, q) for t, v, q in zip(got.t, got.value, got.quality, strict=True)]
    by_time = {round(t, 6): (v, q) for t, v, q in readings}
    for t, value, quality in seen:
        assert round(t, 6) in by_time, f"event at {t} not archived ({subscribed=}, {first=})"
        v, q = by_time[round(t, 6)]
        assert q == quality
        assert (np.isnan(v) and value is None) or v == value
    # What else is there in that time are error rows (no value, INVALID).
    extra = len(got) - len(seen)
    assert 0 <= extra <= len(collector.errors) + 1
    assert set(got.qualities()) >= {Quality.VALID, Quality.INVALID}
    # Errors are archived as HDB++ does: no value, INVALID, the error's description.
    if collector.errors:
        rows = archive_db.client(
            archive_db.database, "-N", sql="SELECT error_desc FROM att_error_desc"
        )
        assert any(err.split("\n")[0][:100] in rows for err in collector.errors)
    # Archive events of the counter, one a second, are there too.
    counts = archive.read(COUNTS, start, end, max_points=10_000)
    assert len(counts) >= 3 and np.all(np.diff(counts.t) > 0)


def _spiky(t: np.ndarray, spikes: dict[int, float], gap: int) -> np.ndarray:
    value = np.sin((t - t[0]) / 600.0) + 0.01 * np.cos(t)
    for index, height in spikes.items():
        value[index] = height
    value[gap] = np.nan
    return value


@pytest.fixture(scope="module")
def six_hours(archive_db: mariadb.MariaDB) -> tuple[str, float, np.ndarray, np.ndarray]:
    """6 h at 1 Hz of a smooth signal with four one-sample spikes and one gap."""
    name = "tango://archive.test:10000/test/spiky/1/value"
    end = float(int(time.time()) - 3600)
    start = end - 6 * 3600
    t = start + np.arange(6 * 3600, dtype=np.float64)
    spikes = {1234: 40.0, 1235: -7.0, 9000: -40.0, 20001: 25.0}
    value = _spiky(t, spikes, gap=15000)
    writer = HdbppWriter(Connection.of(archive_db))
    try:
        att_id, table = writer.add(name, "scalar_devdouble_ro")
        rows = [(a, None if np.isnan(b) else b, 0 if not np.isnan(b) else 1, None)
                for a, b in zip(t.tolist(), value.tolist(), strict=True)]  # fmt: skip
        writer.insert(att_id, table, rows)
    finally:
        writer.close()
    return name, start, t, value


def test_decimation_keeps_each_columns_min_and_max(archive, six_hours):
    name, start, t, value = six_hours
    end = t[-1]
    width = 300
    got = archive.read(name, start, end, max_points=width)
    assert got.decimated and got.rows == len(t)
    assert len(got) <= 2 * width + 1  # + the column with the gap
    for height in (40.0, -7.0, -40.0, 25.0):
        assert height in got.value, f"spike {height} lost"
    # Exactly what decimating every row here gives (times, values, qualities).
    quality = np.where(np.isnan(value), 1, 0).astype(np.int8)
    want_t, want_v, want_q = decimate_minmax(t, value, quality, start, end, width)
    np.testing.assert_allclose(got.t, want_t, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.value, want_v)
    np.testing.assert_array_equal(got.quality, want_q)
    assert np.isnan(got.value).sum() == 1  # the gap stays a gap


def test_zoomed_in_gives_every_row(archive, six_hours):
    name, _, t, value = six_hours
    lo, hi = 1200, 1500  # 300 s around the first spikes
    got = archive.read(name, t[lo], t[hi], max_points=800)
    assert not got.decimated
    np.testing.assert_allclose(got.t, t[lo : hi + 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.value, value[lo : hi + 1])


def test_an_attribute_not_archived_says_so(archive, control_system: ControlSystem):
    with pytest.raises(NotArchived, match="sim/motor/2/Velocity is not archived in HDB"):
        archive.read("sim/motor/2/Velocity", time.time() - 60, time.time(), 100)
    assert not archive.is_archived("sim/motor/2/Velocity")
    assert not issubclass(NotArchived, ArchiveUnavailable)


def test_strings_are_not_plotted(archive, archive_db: mariadb.MariaDB):
    writer = HdbppWriter(Connection.of(archive_db))
    try:
        writer.add("tango://archive.test:10000/test/text/1/status", "scalar_devstring_ro")
    finally:
        writer.close()
    with pytest.raises(NotPlottable, match="devstring"):
        archive.read("test/text/1/status", 0, time.time(), 100)


def test_pyhdbpp_default_reader_from_the_tango_database(
    control_system: ControlSystem, archive_db: mariadb.MariaDB, six_hours
):
    import tango

    name, _, t, _ = six_hours
    set_default_reader(control_system.tango_host, Connection.of(archive_db))
    db = tango.Database()
    try:
        reader = open_archive()  # nothing given: pyhdbpp's own default
        try:
            got = reader.read(name, t[0], t[99], 1000)
        finally:
            reader.close()
    finally:
        db.delete_property("HDB++", ["DefaultSchema", "hdbpp"])
    np.testing.assert_allclose(got.t, t[:100], rtol=0, atol=1e-6)
    # Nothing configured at all: said so, distinct from an archive that is down.
    with pytest.raises(NotConfigured, match="no archive configured"):
        open_archive()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_a_dead_archive_is_a_clear_error_not_a_hang(tmp_path: Path, fault: str):
    db = start_archive(tmp_path / "hdbpp")
    try:
        writer = HdbppWriter(Connection.of(db))
        now = time.time()
        backfill(writer, "tango://archive.test:10000/test/x/1/y", "scalar_devdouble_ro",
                 now - 600, now, 1.0)  # fmt: skip
        writer.close()
        reader = open_archive(_config(db, tmp_path, timeout=3.0))
        assert len(reader.read("test/x/1/y", now - 600, now, 100)) > 0
        if fault == "killed":
            db.kill()
        else:
            db.proc.signal_group(signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(ArchiveUnavailable, match="did not answer") as caught:
            reader.read("test/x/1/y", now - 600, now, 100)
        took = time.monotonic() - t0
        assert "HDB++ 127.0.0.1" in str(caught.value)
        assert took < 60, f"{fault}: the error took {took:.0f} s"
        reader.close()
    finally:
        if db.proc is not None:
            db.proc.signal_group(signal.SIGCONT)
        db.stop()


def test_password_comes_from_the_environment_or_a_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HDBPP_TEST_PASSWORD", "from env")
    assert ArchiveConfig(password_env="HDBPP_TEST_PASSWORD").password() == "from env"
    (tmp_path / "pw").write_text("from file\nignored\n")
    assert ArchiveConfig(password_file=str(tmp_path / "pw")).password() == "from file"
    monkeypatch.delenv("HDBPP_TEST_PASSWORD")
    with pytest.raises(ArchiveError, match="HDBPP_TEST_PASSWORD is not set"):
        ArchiveConfig(password_env="HDBPP_TEST_PASSWORD").password()
    with pytest.raises(ArchiveError, match="password file"):
        ArchiveConfig(password_file=str(tmp_path / "absent")).password()


def test_the_fake_archive_behaves_like_the_real_one():
    fake = FakeArchive()
    assert isinstance(fake, Archive)
    t = 1000.0 + np.arange(10_000, dtype=np.float64)
    value = _spiky(t, {500: 9.0, 7000: -9.0}, gap=3000)
    fake.add("sim/motor/1/Position", t, value, np.where(np.isnan(value), 1, 0))
    got = fake.read("tango://somewhere:10000/SIM/motor/1/position", t[0], t[-1], 200)
    assert got.decimated and len(got) <= 2 * 200 + 1
    assert 9.0 in got.value and -9.0 in got.value and np.isnan(got.value).sum() == 1
    raw = fake.read("sim/motor/1/Position", t[100], t[199], 200)
    assert not raw.decimated and len(raw) == 100
    with pytest.raises(NotArchived):
        fake.read("sim/motor/1/Velocity", t[0], t[-1], 200)
    fake.down = True
    with pytest.raises(ArchiveUnavailable):
        fake.read("sim/motor/1/Position", t[0], t[-1], 200)
    assert [r[0] for r in fake.reads][-1] == "sim/motor/1/Position"


@pytest.mark.timeout(300)
def test_sim_archive_starts_a_filled_archive_and_stops_it(tmp_path: Path):
    """``tango-bokeh sim --archive``: hours of past at once, live rows after, all stopped."""
    import os
    import subprocess
    import sys

    import psutil

    env = {k: v for k, v in os.environ.items() if k != "TANGO_HOST"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tango_bokeh.cli", "sim", "--archive", "--state-dir",
         str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        lines: list[str] = []
        while not any("press Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "sim --archive exited:\n" + "".join(lines)
            lines.append(line)
        out = "".join(lines)
        assert "HDB++ archive: MariaDB at 127.0.0.1:" in out, out
        password = tmp_path / "hdbpp" / "password"
        assert password.stat().st_mode & 0o777 == 0o600
        port = int(out.split("HDB++ archive: MariaDB at 127.0.0.1:")[1].split(",")[0])
        config = ArchiveConfig(reader="mariadb", host="127.0.0.1", port=port, database="hdbpp",
                               user="hdbpp", password_file=str(password))  # fmt: skip
        reader = open_archive(config)
        try:
            now = time.time()
            past = reader.read("sim/motor/1/Position", now - 7200, now, 800)
            assert past.decimated and past.rows >= 7000  # 2 h at 1 Hz, at once
            before = past.rows
            wait_for(
                lambda: reader.read("sim/counter/1/Counts", now - 1, time.time(), 800).rows >= 3,
                timeout=60,
                what="live archive events of the counter",
            )
            assert reader.read("sim/motor/1/Position", now - 7200, time.time(), 800).rows >= before
        finally:
            reader.close()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("mariadbd" in c.name() for c in children)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
        wait_for(
            lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
            timeout=30,
            what="every child process gone, MariaDB included",
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize(
    ("data_type", "spike"), [("scalar_devfloat_ro", 123.456), ("scalar_devlong_rw", 99999)]
)
def test_decimation_of_floats_and_integers_keeps_spikes(archive, archive_db, data_type, spike):
    """FLOAT columns print 6 digits and integers are not doubles: spikes must survive both."""
    name = f"tango://archive.test:10000/test/types/1/{data_type}"
    end = float(int(time.time()) - 7200)
    t = end - 3000 + np.arange(3000, dtype=np.float64)
    value = np.round(10 * np.sin(t / 100.0), 0 if "long" in data_type else 3)
    value[1717] = spike
    writer = HdbppWriter(Connection.of(archive_db))
    try:
        att_id, table = writer.add(name, data_type)
        writer.insert(att_id, table, [(a, b, 0, None) for a, b in zip(t, value, strict=True)])
    finally:
        writer.close()
    got = archive.read(name, t[0], t[-1], max_points=100)
    assert got.decimated and len(got) <= 200
    hit = np.flatnonzero(np.isclose(got.value, spike, rtol=1e-6))
    assert len(hit) == 1 and abs(got.t[hit[0]] - t[1717]) < 1e-6
    assert np.isclose(got.value.min(), value.min(), rtol=1e-6)


def test_reads_from_several_threads_at_once_agree(archive, six_hours):
    """Views read off the loop, from workers: one reader, concurrent reads, same answers."""
    from concurrent.futures import ThreadPoolExecutor

    name, start, t, _ = six_hours
    asks = [
        (start, t[-1], 300),
        (t[1000], t[1400], 800),
        (start, t[-1], 120),
        (t[100], t[9000], 50),
    ]
    alone = [archive.read(name, *ask) for ask in asks]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda ask: archive.read(name, *ask), asks * 2))
    for one, other in zip(alone * 2, together, strict=True):
        assert one.decimated == other.decimated
        np.testing.assert_array_equal(one.t, other.t)
        np.testing.assert_array_equal(one.value, other.value)


def test_a_device_alias_reads_its_devices_archive(archive, archive_db, control_system):
    """HDB++ stores device names; a dashboard may name the device by its alias (mot1)."""
    name = f"tango://{control_system.tango_host}/sim/motor/1/velocity"
    t = float(int(time.time()) - 600) + np.arange(10, dtype=np.float64)
    writer = HdbppWriter(Connection.of(archive_db))
    try:
        att_id, table = writer.add(name, "scalar_devdouble_rw")
        writer.insert(att_id, table, [(a, float(i), 0, None) for i, a in enumerate(t.tolist())])
    finally:
        writer.close()
    got = archive.read("mot1/Velocity", t[0], t[-1], max_points=800)
    assert got.rows == 10 and list(got.value) == [float(i) for i in range(10)]
    with pytest.raises(NotArchived):
        archive.read("nosuchalias/Velocity", t[0], t[-1], max_points=800)
