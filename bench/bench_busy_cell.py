"""Busy cell: a panel's update rate while another cell computes, against an idle kernel.

    .venv/bin/python bench/bench_busy_cell.py [--seconds 20] [--period 0.2]

A real IPython kernel (jupyter_client) shows ``monitor("sim/counter/1/Counts")``
(change events at ~10 Hz) and a real bokeh client, standing in for the page,
claims the output and counts the trend updates it receives (one data stream
per tick with new samples) and how far the newest sample's Tango time moves.
The baseline is the same panel with the kernel idle, measured in the same run;
then the same window while a cell runs synchronous Python that never yields to
the kernel's loop: ``time.sleep`` in a loop, numpy (``eigvals`` of 200x200
matrices), pure Python (a generator sum) and blocking PyTango reads (a scan's
``read_attribute`` calls, back to back). Prints updates per second and
Tango seconds per wall second for each, and the ratio busy / idle (target
≥ 0.9). Before the notebook server had a thread of its own the ratio was 0.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import textwrap
import threading
import time
from typing import Any
from urllib.request import urlopen

from _common import control_system, servers

BUSY = {
    "sleep": "time.sleep(0.05)",
    "numpy": "numpy.linalg.solve(A, numpy.fft.fft2(A).real @ A)",
    "python": "sum(i * i for i in range(300_000))",
    # numpy's eigvals (LAPACK geev) holds the GIL for its whole run: nothing else runs
    "gil-held": "numpy.linalg.eigvals(numpy.random.rand(200, 200))",
    # a scan's blocking PyTango calls, back to back: a read of the counter the panel shows
    "tango": 'counter.read_attribute("Counts")',
}


class Counter:
    """A websocket client on the output's bokeh session, counting trend streams as they arrive.

    It speaks bokeh's wire protocol itself: ``bokeh.client`` handles each message
    one recursion level deeper than the last and dies after a minute of patches.
    """

    def __init__(self, url: str, token: str) -> None:
        with urlopen(f"{url}tango-bokeh/claim?output={token}", timeout=10) as reply:
            self._token = json.loads(reply.read())["token"]
        self._url = url.replace("http", "ws", 1) + "ws"
        self.streams = 0
        self.newest = 0.0  # Tango time (s) of the newest sample received
        self._lock = threading.Lock()
        self._loop: Any = None
        self._socket: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._socket is None:
            raise RuntimeError("the client did not connect")

    def _run(self) -> None:
        from tornado.ioloop import IOLoop

        self._loop = IOLoop(make_current=False)
        try:
            self._loop.run_sync(self._listen)
        finally:
            self._ready.set()
            self._loop.close()

    async def _listen(self) -> None:
        from tornado.websocket import websocket_connect

        self._socket = await websocket_connect(self._url, subprotocols=["bokeh", self._token])
        self._ready.set()
        while True:
            header = await self._socket.read_message()
            if header is None:
                return
            metadata = await self._socket.read_message()
            content = await self._socket.read_message()
            buffers: dict[str, bytes] = {}
            for _ in range(json.loads(header).get("num_buffers", 0)):
                ref = json.loads(await self._socket.read_message())
                buffers[ref["id"]] = await self._socket.read_message()
            if metadata is not None and content is not None:
                self._count(json.loads(header), json.loads(content), buffers)

    def _count(self, header: dict[str, Any], content: Any, buffers: dict[str, bytes]) -> None:
        if header.get("msgtype") != "PATCH-DOC":
            return
        for event in content.get("events", []):
            if event.get("kind") != "ColumnsStreamed":
                continue
            entries = dict(event.get("data", {}).get("entries", []))
            column = entries.get("t")
            if column is None:
                continue
            times = _floats(column, buffers)
            with self._lock:
                self.streams += 1
                if times:
                    self.newest = max(self.newest, times[-1] / 1000.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def read(self) -> tuple[int, float]:
        with self._lock:
            return self.streams, self.newest

    def close(self) -> None:
        if self._loop is not None and self._socket is not None:
            self._loop.add_callback(self._socket.close)
        self._thread.join(10)


def _floats(column: Any, buffers: dict[str, bytes]) -> list[float]:
    """A streamed column's values: a JSON list, or a float64 ndarray in a binary buffer."""
    if isinstance(column, list):
        return [float(v) for v in column]
    data = column.get("array", {}).get("data")
    if isinstance(data, dict) and data.get("id") in buffers and column.get("dtype") == "float64":
        return list(struct.unpack(f"<{len(buffers[data['id']]) // 8}d", buffers[data["id"]]))
    return []


def window(counter: Counter, seconds: float) -> dict[str, float]:
    streams0, newest0 = counter.read()
    start = time.monotonic()
    time.sleep(seconds)
    streams1, newest1 = counter.read()
    elapsed = time.monotonic() - start
    return {
        "updates_per_s": (streams1 - streams0) / elapsed,
        "tango_s_per_s": (newest1 - newest0) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each window")
    parser.add_argument("--period", type=float, default=0.2, help="the panel's update period")
    parser.add_argument("--setup", default="", help="Python run in the kernel first")
    parser.add_argument("--only", default="", help="comma-separated busy kinds to run")
    args = parser.parse_args()
    busy = {k: v for k, v in BUSY.items() if not args.only or k in args.only.split(",")}

    from jupyter_client.manager import KernelManager

    with control_system(servers("SimCounter")), tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "IPYTHONDIR": tmp, "JUPYTER_RUNTIME_DIR": tmp}
        for name in ("TANGO_BOKEH_EXTERNAL_URL", "JUPYTER_BOKEH_EXTERNAL_URL", "JPY_PARENT_PID"):
            env.pop(name, None)
        manager = KernelManager(kernel_name="python3")
        manager.start_kernel(env=env)
        kernel = manager.client()
        kernel.start_channels()
        try:
            kernel.wait_for_ready(timeout=60)
            reply: dict[str, Any] = {}

            def output_hook(message: dict[str, Any]) -> None:
                content = message["content"]
                if message["msg_type"] == "display_data" and "text/html" in content["data"]:
                    reply["html"] = content["data"]["text/html"]

            kernel.execute_interactive(
                f"{args.setup}\nimport time, numpy\nfrom tango_bokeh.notebook import monitor\n"
                "A = numpy.random.rand(400, 400)\n"
                'import tango\ncounter = tango.DeviceProxy("sim/counter/1")\n'
                f'panel = monitor("sim/counter/1/Counts", period={args.period})',
                output_hook=output_hook,
                timeout=60,
            )
            html = reply["html"]
            claim = html.split('claim = "', 1)[1].split('"', 1)[0]
            url, token = claim.split("tango-bokeh/claim?output=")
            counter = Counter(url, token)
            try:
                time.sleep(3)  # settle: first ticks, views chosen
                results = {"idle": window(counter, args.seconds)}
                for name, step in busy.items():
                    code = textwrap.dedent(
                        f"""
                        end = time.monotonic() + {args.seconds + 4}
                        while time.monotonic() < end:
                            {step}
                        """
                    )
                    kernel.execute(code)
                    time.sleep(2)  # well inside the busy cell
                    results[name] = window(counter, args.seconds)
                    if not counter.alive:
                        raise RuntimeError(f"the client lost its connection during {name}")
                    kernel.get_shell_msg(timeout=args.seconds + 60)  # the busy cell's reply
            finally:
                counter.close()
        finally:
            kernel.stop_channels()
            manager.shutdown_kernel(now=False)

    idle = results["idle"]
    print(f"period {args.period} s, windows of {args.seconds:g} s, sim/counter/1/Counts")
    print(f"{'kernel':<14}{'updates/s':>10}{'Tango s/s':>11}{'ratio':>8}")
    for name, result in results.items():
        ratio = result["updates_per_s"] / idle["updates_per_s"] if idle["updates_per_s"] else 0
        label = "idle" if name == "idle" else f"busy: {name}"
        print(
            f"{label:<14}{result['updates_per_s']:>10.2f}{result['tango_s_per_s']:>11.2f}"
            f"{ratio:>8.2f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
