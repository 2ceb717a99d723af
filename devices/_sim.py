"""Helpers shared by the simulated devices: seeded noise, errors, paced pusher threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import tango

_BLOCK = 1024
T = TypeVar("T")


def seed_words(seed: int, *streams: int) -> list[int]:
    """Entropy words for ``numpy.random.default_rng``; any int seed (even negative) is fine."""
    return [int(seed) & 0xFFFFFFFF, *(int(s) & 0xFFFFFFFFFFFF for s in streams)]


def rng_for(seed: int, *streams: int) -> np.random.Generator:
    """A generator that depends only on (seed, streams): random access to a seeded sequence."""
    return np.random.default_rng(seed_words(seed, *streams))


class SeededNormals:
    """Standard normal numbers ``z[k]`` indexed by sample number, fixed by (seed, stream).

    Values are generated in blocks so that reading sample ``k`` costs O(1) however the
    reads are spaced in time: the same seed gives the same sequence, whoever reads it.
    """

    def __init__(self, seed: int, stream: int = 0) -> None:
        self._seed = seed
        self._stream = stream
        self._block_index = -1
        self._block = np.empty(0)

    def __call__(self, k: int) -> float:
        block_index, offset = divmod(int(k), _BLOCK)
        if block_index != self._block_index:
            self._block = rng_for(self._seed, self._stream, block_index).standard_normal(_BLOCK)
            self._block_index = block_index
        return float(self._block[offset])


def throw(reason: str, desc: str, origin: str) -> None:
    """Raise a ``DevFailed`` whose reason a client can test and whose description a person reads."""
    tango.Except.throw_exception(reason, desc, origin)


class PacedLoop:
    """A daemon thread producing frames at ``rate()`` Hz and publishing them until :meth:`stop`.

    ``make(sim_time)`` builds a frame outside any lock (the expensive part); ``publish(frame)``
    then runs under the device's Tango monitor, after checking that the loop was not
    stopped meanwhile. The monitor matters: ``push_change_event`` takes it anyway, and a
    command or ``delete_device`` holds it, so :meth:`stop` only signals and never joins
    (joining while holding the monitor would deadlock with a pusher waiting for it).

    Pacing is by deadline (no drift); after a stall of more than a second the schedule
    restarts instead of bursting to catch up. ``sim_time`` advances by ``1/rate`` per
    frame, so frame *n* does not depend on scheduling jitter.
    """

    def __init__(
        self,
        device: tango.LatestDeviceImpl,
        rate: Callable[[], float],
        make: Callable[[float], T],
        publish: Callable[[T], None],
    ) -> None:
        self._device = device
        self._rate = rate
        self._make = make
        self._publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{device.get_name()} frames", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        with tango.EnsureOmniThread():
            sim_time = 0.0
            deadline = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if deadline > now:
                    if self._stop.wait(deadline - now):
                        break
                elif now - deadline > 1.0:
                    deadline = now
                try:
                    frame = self._make(sim_time)
                    with tango.AutoTangoMonitor(self._device):
                        if self._stop.is_set():
                            break
                        self._publish(frame)
                except Exception as exc:  # keep producing frames; say why one was lost
                    print(f"{self._thread.name}: {exc!r}", flush=True)
                period = 1.0 / max(self._rate(), 1e-3)
                sim_time += period
                deadline += period
