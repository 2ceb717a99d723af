"""Tick cost: CPU time of one session tick, against the naive approach, in the same run.

    .venv/bin/python bench/bench_tick.py [--ticks 120]

A MonitorSession on a bare bokeh Document ticks once per simulated second
(back to back, on a simulated clock),
fed through the real hub by the in-memory acquisition (``tango/fake.py``; no
Tango: the point is the cost of the views, not of the events):

* 20 trends, one attribute each, 10 Hz events (10 new samples per tick),
  600 s of history already drawn (6,000 points each);
* one 512x512 uint16 image at 10 Hz (10 frames per tick).

Measured per tick with ``time.process_time``: the tick itself, and the tick
plus serialising its messages the way a bokeh server does (that is where the
naive approach spends its time). The naive approach is the seed's example:
each period, every source's whole ``data`` is replaced (trends: 6,000 points
each; image: the newest full frame, not decimated).
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

from tango_bokeh.hub import Hub
from tango_bokeh.monitor import MonitorSession
from tango_bokeh.session import Session
from tango_bokeh.tango.fake import FakeAcquisition
from tango_bokeh.tango.sample import AttributeInfo, Format
from tango_bokeh.views import Image, Trend
from tango_bokeh.views.wire import WireTap, message_bytes


class NaiveTrend(Trend):
    """The seed's way inside the same page: every tick, the whole data of the source replaced."""

    def _apply(self, series, new, now_ms):
        if new is None:
            return
        data = series.source.data
        series.source.data = {
            k: np.concatenate([np.asarray(data[k]), new[k]])[-self.history_points :]
            for k in ("t", "y", "q")
        }


class NaiveImage(Image):
    """A redraw per event: every frame of the tick sent in full (no decimation, no coalescing)."""

    def draw(self, batch, now, states):
        for sample in batch.get(self.attribute, ()):
            self._source.data = {
                "image": [sample.value],
                "x": [0],
                "y": [0],
                "dw": [512],
                "dh": [512],
            }


def _names(n: int) -> list[str]:
    return [f"bench/dev/{i}/value{i}" for i in range(n)]


class SimulatedMonitor(MonitorSession):
    """Ticks back to back on a simulated clock (``now``), one simulated second apart."""

    now = 0.0

    def clock(self) -> float:
        return self.now


def _session(views: list, infos: dict[str, AttributeInfo]) -> tuple:
    acquisition = FakeAcquisition()
    for name, info in infos.items():
        acquisition.configure(name, format=info.format, dtype=info.dtype, unit=info.unit)
    hub = Hub(acquisition)
    session = SimulatedMonitor(*views, hub=hub, callback_period=None)
    session.attach(Document())
    return session, hub, acquisition, WireTap(session.document)


def _timed_tick(session: MonitorSession, tap: WireTap) -> tuple[float, float, int]:
    tap.reset()
    start = time.process_time()
    session.tick()
    tick = time.process_time() - start
    sent = sum(message_bytes(e) for e in tap.events)  # serialising = what a server then does
    return tick, time.process_time() - start, sent


def _summary(ticks: list[tuple[float, float, int]]) -> dict[str, float]:
    tick, serialised, sent = zip(*ticks, strict=True)
    return {
        "tick": statistics.median(tick),
        "serialised": statistics.median(serialised),
        "serialised_mean": statistics.mean(serialised),
        "worst": max(serialised),
        "bytes": statistics.mean(sent),
    }


def trends(cls: type[Trend], ticks: int, count: int = 20, rate: int = 10) -> dict:
    """``count`` trends at ``rate`` Hz with 600 s (the default window) already drawn."""
    names = _names(count)
    infos = {n: AttributeInfo(n, unit="mm") for n in names}
    session, hub, acquisition, tap = _session([cls(n) for n in names], infos)
    history = 600.0
    now = time.time() - history - ticks
    backlog = np.arange(int(history * rate)) / rate
    for name in names:  # one big first tick, not measured
        for t in backlog:
            acquisition.push(name, float(t), t=now + t)
    now += history
    session.now = now
    session.tick()
    measured = []
    for k in range(ticks):
        for name in names:  # the last simulated second's events
            for i in range(rate):
                acquisition.push(name, float(k * rate + i), t=now + i / rate + 0.05)
        now += 1.0
        session.now = now
        measured.append(_timed_tick(session, tap))
    session.close()
    hub.close()
    return _summary(measured)


def image(cls: type[Image], ticks: int, rate: int = 10) -> dict:
    name = "bench/camera/1/image"
    info = AttributeInfo(name, format=Format.IMAGE, dtype="uint16")
    session, hub, acquisition, tap = _session([cls(name)], {name: info})
    rng = np.random.default_rng(3)
    now = time.time()
    measured = []
    for _ in range(ticks):  # a camera: every frame new (an unchanged frame is not re-sent)
        frames = [rng.integers(0, 4096, (512, 512), dtype=np.uint16) for _ in range(rate)]
        for i, frame in enumerate(frames):
            acquisition.push(name, frame, t=now + i / rate)
        now += 1.0
        session.now = now
        measured.append(_timed_tick(session, tap))
    session.close()
    hub.close()
    return _summary(measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=120)
    args = parser.parse_args()
    ms = 1000.0

    ours, naive = trends(Trend, args.ticks), trends(NaiveTrend, args.ticks)
    print("20 trends, 10 Hz events, 600 s (6,000 points each) drawn, 1 s ticks, CPU per tick:")
    for label, r in (("streamed (ours)", ours), ("whole data replaced", naive)):
        print(
            f"  {label:<22} tick {r['tick'] * ms:6.2f} ms | + serialising: median "
            f"{r['serialised'] * ms:6.2f} ms, mean {r['serialised_mean'] * ms:6.2f} ms, "
            f"worst {r['worst'] * ms:6.2f} ms | {r['bytes']:>11,.0f} bytes/tick"
        )
    print(
        f"  ratio ours / naive: tick {ours['tick'] / naive['tick']:.3f}, "
        f"tick + serialising (mean) {ours['serialised_mean'] / naive['serialised_mean']:.3f}, "
        f"bytes {ours['bytes'] / naive['bytes']:.4f}"
    )

    ticks = max(10, args.ticks // 4)
    ours, naive = image(Image, ticks), image(NaiveImage, ticks)
    print("One 512x512 uint16 image at 10 Hz, 1 s ticks, CPU per tick:")
    for label, r in (("newest, decimated (ours)", ours), ("every frame, full size", naive)):
        print(
            f"  {label:<24} tick {r['tick'] * ms:6.2f} ms | + serialising: median "
            f"{r['serialised'] * ms:6.2f} ms | {r['bytes']:>11,.0f} bytes/tick"
        )
    print(
        f"  ratio ours / naive: tick + serialising {ours['serialised'] / naive['serialised']:.3f}, "
        f"bytes {ours['bytes'] / naive['bytes']:.4f}"
    )
    Session.close_all()


if __name__ == "__main__":
    main()
