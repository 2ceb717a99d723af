"""Release: closing many dashboard pages at once, with bokeh's collections and with ours.

    .venv/bin/python bench/bench_release.py [--pages 20] [--lifetime 5]

The demo dashboard (dashboards/demo.yaml, every simulated device) is served
by the real dashboard server on a shared hub. ``--pages`` pages (bokeh
clients) are opened, every attribute becomes live, then all pages are closed
together; measured: the time until the hub holds no reader and no Tango
subscription, and the full garbage collections run meanwhile (all of them
on the server's loop, stalling every other page). One page closed alone is
measured too: bokeh keeps a closed page's session ``--lifetime`` seconds and
looks for such sessions every second, so one page takes about lifetime + 1 s.

* bokeh (baseline): bokeh's own clean-up, two full ``gc.collect()`` per page;
* ours: the same server with ``tango_bokeh.cleanup`` (one coalesced collection).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEMO, ROOT, control_system

from tango_bokeh.hub import Hub


class FullCollections:
    """Counts full collections and the time they take (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._started


def release(url: str, hub: Hub, pages: int, timeout: float = 300.0) -> dict[str, float]:
    """Open ``pages`` pages, wait until every attribute is live, close them all."""
    from tango_bokeh.dashboard.client import open_page
    from tango_bokeh.tango.modes import Mode

    clients = [open_page(url) for _ in range(pages)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = hub.stats()
        if stats.channels and all(a.mode != Mode.PENDING for a in stats.attributes.values()):
            break
        time.sleep(0.2)
    collections = FullCollections()
    gc.callbacks.append(collections)
    try:
        started = time.monotonic()
        for client in clients:
            client.close()
        while time.monotonic() - started < timeout:
            stats = hub.stats()
            if stats.consumers == 0 and stats.subscriptions == 0 and stats.polled == 0:
                released = time.monotonic() - started
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{pages} pages: {hub.stats().consumers} readers left")
        time.sleep(2.0)  # a coalesced collection runs after the release
    finally:
        gc.callbacks.remove(collections)
    return {"released": released, "collections": collections.count, "gc": collections.seconds}


def measure(design: str, pages: int, lifetime: float) -> tuple[dict, dict]:
    import bokeh.document.document as bokeh_document
    from bokeh.application.handlers.document_lifecycle import DocumentLifecycleHandler

    import tango_bokeh.app
    from tango_bokeh import cleanup
    from tango_bokeh.dashboard.guard import UNLIMITED
    from tango_bokeh.dashboard.loader import load
    from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving

    if design == "bokeh":  # bokeh as it comes: its own lifecycle handler and gc module
        tango_bokeh.app.SessionLifecycle = DocumentLifecycleHandler  # type: ignore[misc]
        tango_bokeh.app.coalesce_collections = lambda: cleanup.COLLECTOR  # type: ignore[assignment]
        bokeh_document.gc = gc  # type: ignore[assignment]
    else:
        tango_bokeh.app.SessionLifecycle = cleanup.SessionLifecycle  # type: ignore[misc]
        tango_bokeh.app.coalesce_collections = cleanup.coalesce_collections
    dashboard = load(ROOT / "dashboards" / "demo.yaml")
    hub = Hub()
    server = DashboardServer([dashboard], hub=hub)
    running = Serving(
        server, ServeOptions(port=0, unused_session_lifetime=lifetime, limits=UNLIMITED)
    ).start_thread()
    try:
        url = f"{running.url}/{dashboard.name}"
        release(url, hub, 1)  # warm-up: imports, first connections
        return release(url, hub, 1), release(url, hub, pages)
    finally:
        running.join()
        hub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--lifetime", type=float, default=5.0, help="unused session lifetime (s)")
    args = parser.parse_args()
    with control_system(DEMO):
        rows = {design: measure(design, args.pages, args.lifetime) for design in ("bokeh", "ours")}
    print(f"demo dashboard, unused session lifetime {args.lifetime:g} s (checked every 1 s)")
    print("| design | pages closed | all released after | full collections | time in them |")
    print("| --- | --- | --- | --- | --- |")
    for design, results in rows.items():
        for pages, r in zip((1, args.pages), results, strict=True):
            print(
                f"| {design} | {pages} | {r['released']:.1f} s | {r['collections']} | "
                f"{r['gc']:.2f} s |"
            )
    ours, bokeh = rows["ours"][1], rows["bokeh"][1]
    print(
        f"{args.pages} pages: release ours / bokeh {ours['released'] / bokeh['released']:.2f}, "
        f"time in full collections ours / bokeh {ours['gc'] / max(bokeh['gc'], 1e-9):.3f}"
    )


if __name__ == "__main__":
    main()
