"""A zoomed-out trend from the HDB++ archive: decimated in the database against every raw row.

    .venv/bin/python bench/bench_archive.py [--attributes 10] [--hours 24] [--width 800]

A private MariaDB with HDB++'s schema (Debian's mariadb-server, as the tests start it)
holds 24 h at 1 Hz of 10 attributes (864,000 rows, written by the test archiver's bulk
backfill), each with one single-sample spike. Then, from a freshly opened reader each
time, the 10 attributes of a trend ``--width`` pixels wide are read over the whole 24 h:

* ours: ``HdbppArchive.read(attribute, start, end, max_points=width)`` (pyhdbpp for the
  names, per-column min/max computed in MariaDB, only those rows sent);
* baseline: pyhdbpp's ``get_attribute_values`` of every raw row, all of them plotted;
* for reference: pyhdbpp's own ``decimate=True`` (one row per interval of its 1080-point
  plot size), which returns few rows but not each interval's extremes.

Prints, per method: seconds until the 10 attributes are read (median of ``--repeat``),
points per attribute, and how many of the 10 spikes are among them; then the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository on sys.path
import numpy as np

from tango_bokeh.tango.archive import ArchiveConfig, open_archive
from tango_bokeh_devices.archiver import Connection, HdbppWriter, backfill, start_archive


def fill(writer: HdbppWriter, attributes: int, start: float, end: float) -> tuple[list, list]:
    names, spikes = [], []
    for i in range(attributes):
        name = f"tango://bench.archive:10000/bench/archive/{i}/value"
        rng = np.random.default_rng(i)
        spike_at = int(rng.integers(1000, int(end - start) - 1000))

        def values(t: np.ndarray, i: int = i, spike_at: int = spike_at) -> np.ndarray:
            v = np.sin((t - t[0]) / (900.0 + 60 * i)) + 0.05 * np.random.default_rng(i).normal(
                size=len(t)
            )
            v[spike_at] = 25.0 + i  # one reading far above everything else
            return v

        backfill(writer, name, "scalar_devdouble_ro", start, end, 1.0, values)
        names.append(name)
        spikes.append(25.0 + i)
    return names, spikes


def ours(config: ArchiveConfig, names: list[str], start: float, end: float, width: int):
    t0 = time.perf_counter()
    archive = open_archive(config)
    try:
        got = [archive.read(name, start, end, width) for name in names]
    finally:
        archive.close()
    return time.perf_counter() - t0, [c.value for c in got]


def pyhdbpp_reader(config: ArchiveConfig):
    import pyhdbpp

    return pyhdbpp.reader(
        apiclass="pyhdbpp.mariadb.MariaDBReader",
        config={"host": config.host, "port": config.port, "database": config.database,
                "user": config.user, "password": config.password()},
    )  # fmt: skip


def baseline(config: ArchiveConfig, names: list[str], start: float, end: float, decimate):
    t0 = time.perf_counter()
    reader = pyhdbpp_reader(config)
    got = []
    for name in names:
        rows = reader.get_attribute_values(name, start, end + 1, decimate=decimate)
        got.append(np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64))
    reader.executor.shutdown(wait=False)
    return time.perf_counter() - t0, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attributes", type=int, default=10)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-archive-") as where:
        db = start_archive(Path(where) / "hdbpp")
        try:
            secret = Path(where) / "password"
            secret.write_text(db.password)
            config = ArchiveConfig(reader="mariadb", host=db.host, port=db.port,
                                   database=db.database, user=db.user,
                                   password_file=str(secret), timeout=120)  # fmt: skip
            end = float(int(time.time()))
            start = end - 3600 * args.hours
            writer = HdbppWriter(Connection.of(db))
            t0 = time.perf_counter()
            names, spikes = fill(writer, args.attributes, start, end)
            writer.close()
            filled = time.perf_counter() - t0
            rows = int(
                db.client(db.database, "-N", sql="SELECT COUNT(*) FROM att_scalar_devdouble_ro")
            )
            print(f"archive: {rows} rows ({args.attributes} attributes x {args.hours:g} h at "
                  f"1 Hz), written in {filled:.1f} s")  # fmt: skip
            methods = {
                "ours (min/max per column in MariaDB)": lambda: ours(
                    config, names, start, end, args.width
                ),
                "pyhdbpp raw rows (baseline)": lambda: baseline(config, names, start, end, 0),
                "pyhdbpp decimate=True": lambda: baseline(config, names, start, end, True),
            }
            results: dict[str, dict] = {}
            times: dict[str, list[float]] = {m: [] for m in methods}
            for _ in range(args.repeat):  # interleaved: the machine's load hits each alike
                for method, run in methods.items():
                    took, values = run()
                    times[method].append(took)
                    results[method] = {
                        "points_per_attribute": int(np.mean([len(v) for v in values])),
                        "max_points_per_attribute": max(len(v) for v in values),
                        "spikes_kept": sum(
                            bool(np.any(v == s)) for v, s in zip(values, spikes, strict=True)
                        ),
                    }
            for method in methods:
                results[method]["seconds"] = round(statistics.median(times[method]), 3)
                results[method]["all_seconds"] = [round(t, 3) for t in times[method]]
        finally:
            db.stop()

    width = args.width
    print(f"\nA trend {width} px wide over {args.hours:g} h, {args.attributes} attributes, "
          f"fresh reader each time (median of {args.repeat}):")  # fmt: skip
    print(f"{'method':40} {'seconds':>8} {'points/attr':>12} {'spikes kept':>12}")
    for method, r in results.items():
        print(f"{method:40} {r['seconds']:8.2f} {r['points_per_attribute']:12d} "
              f"{r['spikes_kept']:>9d}/{args.attributes}")  # fmt: skip
    mine = results["ours (min/max per column in MariaDB)"]
    base = results["pyhdbpp raw rows (baseline)"]
    print(f"\ntime: baseline / ours = {base['seconds'] / mine['seconds']:.1f}x; points: ours "
          f"{mine['max_points_per_attribute']} per attribute at most (target <= 2 x {width} = "
          f"{2 * width}), baseline {base['points_per_attribute']} "
          f"({base['points_per_attribute'] / mine['points_per_attribute']:.0f}x more)")  # fmt: skip
    print(json.dumps({"rows": rows, "width": width, "results": results}))


if __name__ == "__main__":
    main()
