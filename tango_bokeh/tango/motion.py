"""Keeps the demo alive: moves the simulated motors now and then, as a scan would.

The simulated motors only move when told to; a newcomer opening the demo
dashboard should see motion at once, so ``tango-bokeh demo`` runs this
driver. It is a plain Tango client on a thread of the demo process (which
never forks).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence

import tango

from .errors import describe
from .proxies import ProxyCache

log = logging.getLogger(__name__)

#: (device, low, high) of each motor to move; within the DEMO catalog's soft limits.
DEMO_MOTORS = (("sim/motor/1", -40.0, 40.0), ("sim/motor/2", 0.0, 80.0))


class DemoMotion:
    """Sends each idle motor to a random position every ``period`` seconds."""

    def __init__(
        self,
        tango_host: str | None,
        motors: Sequence[tuple[str, float, float]] = DEMO_MOTORS,
        period: float = 4.0,
        seed: int = 7,
    ) -> None:
        self.tango_host = tango_host
        self.motors = list(motors)
        self.period = period
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DemoMotion:
        self._thread = threading.Thread(target=self._run, name="demo-motion", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        prefix = f"tango://{self.tango_host}/" if self.tango_host else ""
        proxies = ProxyCache(2000)
        while not self._stop.wait(self.period if len(proxies) else 0.5):
            for device, low, high in self.motors:
                try:
                    proxy = proxies.get(prefix + device)
                    state = proxy.state()
                    if state in (tango.DevState.OFF, tango.DevState.FAULT):
                        proxy.command_inout("On")
                    elif state == tango.DevState.ON:
                        proxy.command_inout("MoveTo", round(self._random.uniform(low, high), 2))
                except tango.DevFailed as exc:  # a motor may be stopped by a user: carry on
                    log.debug("demo motion of %s: %s", device, describe(exc)[1])
