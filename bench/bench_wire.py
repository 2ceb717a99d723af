"""Wire: bytes a browser receives per tick from each view, against the naive approach.

    .venv/bin/python bench/bench_wire.py [--ticks 60]

Everything runs on real bokeh Documents; each change event is serialised the
way a bokeh server sends it (one PATCH-DOC message: header, metadata and
content frames plus one header and one binary frame per buffer), with bokeh's
own protocol (see ``tango_bokeh.views.wire``).

* Trend: 10,000 points of history, one new point per tick (1 Hz ticks, a
  change event per second), against the seed's example: the whole ``data``
  replaced every period (as numpy arrays, binary; and as Python lists, JSON,
  as the seed wrote it). Target ratio ≤ 0.005.
* Spectrum: 1024 points, a new frame each tick; naive: replace x and y (float64).
* Image: 512x512 uint16 at 10 Hz, 1 s ticks, ``max_display=(400, 400)``; naive:
  the newest full frame every tick, and a full frame per event (redraw per event).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import AttributeInfo, Format, Sample
from tango_bokeh.views import Image, Spectrum, Trend
from tango_bokeh.views.base import AttributeState
from tango_bokeh.views.wire import WireTap

POS = "sim/motor/1/Position"
SPEC = "sim/spectro/1/Spectrum"
IMG = "sim/camera/1/Image"


def _state(name: str, **info) -> dict[str, AttributeState]:
    return {name: AttributeState(name, AttributeInfo(name, **info), Mode.CHANGE, None)}


def _naive(columns: dict[str, np.ndarray]) -> tuple[ColumnDataSource, WireTap]:
    doc = Document()
    source = ColumnDataSource(data=columns)
    fig = figure()
    x_name, y_name = list(columns)
    fig.line(x_name, y_name, source=source)
    doc.add_root(fig)
    return source, WireTap(doc)


def trend(ticks: int) -> dict[str, float]:
    history = 10_000
    view = Trend(POS, history_points=history, history_seconds=3 * 3600)
    doc = Document()
    doc.add_root(view.model)
    tap = WireTap(doc)
    state = _state(POS, unit="mm")
    now = time.time() - ticks - 1
    t = now - history + np.arange(history, dtype=float)
    view.update({POS: [Sample(x, float(i)) for i, x in enumerate(t)]}, now, state)
    ours = []
    for k in range(ticks):
        now += 1.0
        tap.reset()
        view.update({POS: [Sample(now - 0.05, float(k))]}, now, state)
        ours.append(tap.bytes)

    # A change-only attribute at rest: nothing new, only the "now" segment moves on.
    idle = []
    for _ in range(ticks):
        now += 1.0
        tap.reset()
        view.update({}, now, state)
        idle.append(tap.bytes)

    # The seed's way: the whole history replaced every period.
    x, y = t * 1000.0, np.arange(history, dtype=float)
    source, naive_tap = _naive({"x": x, "y": y})
    naive_numpy, naive_lists = [], []
    for k in range(ticks):
        x = np.append(x[1:], x[-1] + 1000.0)
        y = np.append(y[1:], float(k))
        naive_tap.reset()
        source.data = {"x": x, "y": y}
        naive_numpy.append(naive_tap.bytes)
        if k < 5:  # JSON lists are slow to serialise: a few are enough
            naive_tap.reset()
            source.data = {"x": x.tolist(), "y": y.tolist()}
            naive_lists.append(naive_tap.bytes)
    return {
        "ours": statistics.mean(ours),
        "idle": statistics.mean(idle),
        "idle_messages": sum(1 for b in idle if b) / len(idle),
        "naive_numpy": statistics.mean(naive_numpy),
        "naive_lists": statistics.mean(naive_lists),
    }


def spectrum(ticks: int) -> dict[str, float]:
    view = Spectrum(SPEC)
    doc = Document()
    doc.add_root(view.model)
    tap = WireTap(doc)
    state = _state(SPEC, format=Format.SPECTRUM)
    rng = np.random.default_rng(1)
    now = time.time()
    view.update({SPEC: [Sample(now, rng.random(1024) * 1000)]}, now, state)
    ours = []
    for _ in range(ticks):
        now += 1
        tap.reset()
        view.update({SPEC: [Sample(now, rng.random(1024) * 1000)]}, now, state)
        ours.append(tap.bytes)
    source, naive_tap = _naive({"x": np.arange(1024.0), "y": np.zeros(1024)})
    naive = []
    for _ in range(ticks):
        naive_tap.reset()
        source.data = {"x": np.arange(1024.0), "y": rng.random(1024) * 1000}
        naive.append(naive_tap.bytes)
    return {"ours": statistics.mean(ours), "naive": statistics.mean(naive)}


def image(ticks: int) -> dict[str, float]:
    view = Image(IMG, max_display=(400, 400))
    doc = Document()
    doc.add_root(view.model)
    tap = WireTap(doc)
    state = _state(IMG, format=Format.IMAGE, dtype="uint16")
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 4096, (512, 512), dtype=np.uint16) for _ in range(10)]
    now = time.time()
    ours = []
    for _ in range(ticks):  # a camera: every frame new (an unchanged frame is not re-sent)
        frames = [rng.integers(0, 4096, (512, 512), dtype=np.uint16) for _ in range(10)]
        batch = {IMG: [Sample(now + i / 10, frames[i]) for i in range(10)]}  # 10 Hz, 1 s tick
        now += 1
        tap.reset()
        view.update(batch, now, state)
        ours.append(tap.bytes)

    doc = Document()
    source = ColumnDataSource(data={"image": [frames[0]]})
    fig = figure()
    fig.image("image", x=0, y=0, dw=512, dh=512, source=source)
    doc.add_root(fig)
    naive_tap = WireTap(doc)
    per_tick, per_event = [], []
    for _ in range(min(ticks, 10)):
        naive_tap.reset()
        source.data = {"image": [frames[-1]]}
        per_tick.append(naive_tap.bytes)
        naive_tap.reset()
        for frame in frames:
            source.data = {"image": [frame]}
        per_event.append(naive_tap.bytes)
    return {
        "ours": statistics.mean(ours),
        "naive_per_tick": statistics.mean(per_tick),
        "naive_per_event": statistics.mean(per_event),
        "shape": view.displayed.shape if view.displayed is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=60)
    args = parser.parse_args()

    t = trend(args.ticks)
    print("Trend, 10,000 points of history, 1 new point per tick (bytes per tick):")
    print(f"  streamed (ours)                  {t['ours']:>10,.0f}")
    print(f"  whole data replaced, numpy       {t['naive_numpy']:>10,.0f}")
    print(f"  whole data replaced, lists       {t['naive_lists']:>10,.0f}")
    ratio = t["ours"] / t["naive_numpy"]
    verdict = "met" if ratio <= 0.005 else "MISSED"
    print(f"  ratio ours / naive numpy         {ratio:>10.5f}  (target <= 0.005: {verdict})")
    print(f"  ratio ours / naive lists         {t['ours'] / t['naive_lists']:>10.5f}")
    print(
        f"  idle (no new sample), mean       {t['idle']:>10,.0f}"
        f"  ('now' segment redrawn on {t['idle_messages']:.0%} of the ticks)"
    )

    s = spectrum(args.ticks)
    print("Spectrum, 1024 points, a new frame per tick (bytes per tick):")
    print(f"  y only, float32 (ours)           {s['ours']:>10,.0f}")
    print(f"  x and y replaced, float64        {s['naive']:>10,.0f}")
    print(f"  ratio                            {s['ours'] / s['naive']:>10.3f}")

    i = image(max(5, args.ticks // 6))
    print("Image, 512x512 uint16 at 10 Hz, 1 s ticks, max_display 400x400 (bytes per tick):")
    print(f"  newest frame, decimated {i['shape']} (ours) {i['ours']:>10,.0f}")
    print(f"  newest full frame per tick       {i['naive_per_tick']:>10,.0f}")
    print(f"  full frame per event (10/tick)   {i['naive_per_event']:>10,.0f}")
    print(f"  ratio ours / per tick            {i['ours'] / i['naive_per_tick']:>10.3f}")
    print(f"  ratio ours / per event           {i['ours'] / i['naive_per_event']:>10.3f}")


if __name__ == "__main__":
    main()
