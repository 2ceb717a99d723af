"""Heap held by the hub on a large dashboard, and what a full garbage collection costs.

    .venv/bin/python bench/bench_gc.py [--attributes 500] [--samples 10000]

500 attributes, each receiving 10,000 samples read by one consumer every 100
samples (a session tick). Ours: rings release what every reader has read.
Baseline, same run: the same rings keeping everything up to their capacity
(what the hub did before), i.e. millions of GC-tracked samples. Prints samples
held, the duration of one full ``gc.collect()`` for both, and the ratio. No
Tango needed: the samples are pushed as acquisition would push them.
"""

from __future__ import annotations

import argparse
import gc
import time

import tango_bokeh.hub as hub_module
from tango_bokeh.hub import Channel, Hub
from tango_bokeh.tango.names import parse_name
from tango_bokeh.tango.sample import Quality, Sample

OURS = hub_module.RELEASE_THRESHOLD


def measure(attributes: int, samples: int, release_threshold: int) -> tuple[int, float]:
    hub_module.RELEASE_THRESHOLD = release_threshold
    hub = Hub.__new__(Hub)  # cursors only need a hub to release into
    readers = []
    for i in range(attributes):
        channel = Channel(parse_name(f"bench/gc/{i}/value"), hub_module.DEFAULT_CAPACITY)
        cursor = hub_module.Cursor(hub, channel)
        channel.add_cursor(cursor)
        readers.append((channel, cursor))
    t = 0.0
    for _ in range(samples // 100):
        for channel, cursor in readers:
            for k in range(100):
                t += 0.001
                channel.push(Sample(t, float(k), Quality.VALID))
            cursor.read()
    held = sum(channel.held for channel, _ in readers)
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    elapsed = time.perf_counter() - started
    del readers
    gc.collect()
    hub_module.RELEASE_THRESHOLD = OURS
    return held, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attributes", type=int, default=500)
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    keep_held, keep_gc = measure(args.attributes, args.samples, release_threshold=10**9)
    ours_held, ours_gc = measure(args.attributes, args.samples, OURS)
    print(f"{args.attributes} attributes x {args.samples} samples, one reader each")
    print(f"rings keeping everything: {keep_held:>9} samples held, full GC {keep_gc * 1e3:6.0f} ms")
    print(f"rings releasing (ours):   {ours_held:>9} samples held, full GC {ours_gc * 1e3:6.0f} ms")
    print(f"full GC ratio ours / keeping: {ours_gc / keep_gc:.3f}")


if __name__ == "__main__":
    main()
