"""Twenty pages of which ten frozen: the live ones go on, the frozen ones cost the server nothing.

One dashboard server (in this process), twenty pages in headless Chromium: each
page to freeze in a browser context of its own, the ten live ones in another
(contexts never share a renderer process, and a paused page stalls its whole
process). Ten are then frozen for real: the debugger pauses their main thread
(``Debugger.pause`` over the Chrome DevTools Protocol).
``Page.setWebLifecycleState {state: 'frozen'}`` was tried first and does not
stop a visible page's timers in this Chromium: a page's counter kept running.
A paused page runs no script at all, so it neither applies nor acknowledges
what it is sent, and once Chromium's own buffers are full it stops reading its
socket, as a frozen or swapped-out tab does.

Asserted, while they are frozen:

* the ten live pages show data newer than the freeze;
* the server paces the frozen pages: their sessions go on ticking but leave
  their views alone (``pace.skipped`` grows), and ``/metrics`` has their lag;
* what the server holds for the frozen pages stays small: the bytes waiting
  in each frozen websocket's tornado buffer plus the kernel's unsent bytes of
  its socket (``TIOCOUTQ``). Without pacing (``Pace.behind`` always False, tried
  once) these grow to the socket's limit, about 4 MB per frozen page, and the
  frozen sessions' ticks stop, blocked on writes nobody reads;

then, once unfrozen, they show fresh data, their lag note (which says they were
behind) goes, and once every page is closed the server holds no session and the
hub no channel, reader or Tango subscription.
"""

from __future__ import annotations

import fcntl
import re
import struct
import termios
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from bokeh.util.token import get_session_id

from tango_bokeh.dashboard.build import DashboardSession
from tango_bokeh.dashboard.client import _TOKEN
from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub

from .browser import HAVE_CHROMIUM, chromium
from .conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.tango]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)

PAGES = 20
FROZEN = 10
#: How long the frozen pages stay frozen once they are seen to be (s): unpaced, the bytes
#: held for one grow by ~70 kB/s from the start and pass the limit within a few seconds.
FROZEN_FOR = 60.0
#: Bytes the server may hold for one frozen page (its write buffer and its socket's unsent
#: bytes): what was sent before it was found late and the clock's small changes since,
#: that Chromium did not take in. Unpaced, a frozen page reaches several MB.
HELD_LIMIT = 256_000

PAGE = """
title: Frozen
refresh: 0.5 s
panels:
  - row:
      - trend: {title: Current, attributes: [sim/beam/current/Current], history: 1 min}
      - image: {title: Camera, attribute: sim/camera/1/Image, max_display: [128, 128]}
"""
NEWEST = """() => {
  if (!window.Bokeh || !Bokeh.documents.length) return null;
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Current'));
  if (!plot) return null;
  const t = plot.renderers.filter(r => r.data_source && r.data_source.data.t)
    .flatMap(r => Array.from(r.data_source.data.t));
  return t.length ? Math.max(...t) / 1000 : null;
}"""
LAG_NOTE = """() => { const n = document.getElementById('tango-bokeh-lag');
  return n ? n.textContent : null; }"""
WORST_LAG = "() => (window.tangoBokehPace && window.tangoBokehPace.worst) || 0"


def held_bytes(session: DashboardSession) -> int:
    """Bytes the server holds for the page of ``session``, not yet taken by the browser."""
    bokeh_session = session.document.session_context._session  # type: ignore[union-attr]
    total = 0
    for connection in list(bokeh_session._subscribed_connections):
        stream = connection._socket.ws_connection.stream
        total += len(stream._write_buffer)
        if not stream.closed():
            unsent = fcntl.ioctl(stream.socket.fileno(), termios.TIOCOUTQ, b"\0" * 4)
            total += struct.unpack("i", unsent)[0]
    return total


def metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=60) as response:
        text = response.read().decode()
    match = re.search(rf'^{name}{{dashboard="frozen"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def lags(sessions: list[DashboardSession], seconds: float, also: Any = None) -> list[float]:
    """Every page's lag (s), twice a second for ``seconds``; ``also()`` called each time."""
    found: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found += [s.pace.lag for s in sessions]
        if also is not None:
            also()
        time.sleep(0.5)
    return found


def _spread(lags: list[float]) -> str:
    ordered = sorted(lags)
    median, p95 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.95)]
    return f"median {median:.1f} s, 95th percentile {p95:.1f} s, most {ordered[-1]:.1f} s"


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.mark.timeout(900)  # 2 min on a quiet machine; much more when 20 pages share 2 busy cores
def test_ten_frozen_pages_of_twenty_are_paced_and_the_others_go_on(hub: Hub, browser: Any):
    started = time.monotonic()

    def log(what: str) -> None:  # shown when the test fails: how far it got, and when
        print(f"{time.monotonic() - started:6.1f} s  {what}", flush=True)

    server = DashboardServer([parse(PAGE, "frozen.yaml")], hub=hub)
    running = Serving(server, ServeOptions(port=0)).start_thread()
    try:
        # a browser context for each page to freeze, one for the live ones: contexts never
        # share a renderer process (a paused page stalls its whole process), and the live
        # pages share their context's cache (bokeh's scripts)
        contexts = [browser.new_context(viewport={"width": 900, "height": 600})
                    for _ in range(FROZEN + 1)]  # fmt: skip
        pages = [contexts[min(i, FROZEN)].new_page() for i in range(PAGES)]
        for page in pages:  # all load at once
            page.goto(f"{running.url}/frozen", wait_until="commit", timeout=120_000)
        for i, page in enumerate(pages):  # (evaluate has no time-out of its own)
            page.wait_for_function(NEWEST, timeout=300_000, polling=500)
            log(f"page {i + 1} shows data")
        by_id = {s.document.session_context.id: s for s in server.sessions()}
        sessions = [by_id[get_session_id(_TOKEN.search(p.content()).group(1))] for p in pages]
        wait_for(lambda: all(s.pace.clock.seen > 0 for s in sessions), timeout=60,
                 what="every page's first acknowledgement")  # fmt: skip
        frozen, live = pages[:FROZEN], pages[FROZEN:]
        frozen_sessions, live_sessions = sessions[:FROZEN], sessions[FROZEN:]
        wait_for(lambda: all(s.pace.lag < s.pace.allowance for s in sessions), timeout=120,
                 what="every page to catch up after loading")  # fmt: skip
        before = lags(live_sessions, 10.0)  # baseline: the same pages, none frozen
        log(f"lag of the live pages, none frozen: {_spread(before)}")

        debuggers = [
            context.new_cdp_session(page)
            for context, page in zip(contexts[:FROZEN], frozen, strict=True)
        ]
        for cdp in debuggers:
            cdp.send("Debugger.enable")
        for cdp in debuggers:
            cdp.send("Debugger.pause")  # takes effect with the page's next script: a message
        wait_for(lambda: all(s.pace.lag > 5 for s in frozen_sessions), timeout=60,
                 what="the frozen pages to stop acknowledging")  # fmt: skip
        frozen_at = time.time()
        log("frozen pages stopped acknowledging")
        skipped = [s.pace.skipped for s in frozen_sessions]
        held: list[int] = []

        def hold() -> None:
            held.append(max(held_bytes(s) for s in frozen_sessions))

        during = lags(live_sessions, FROZEN_FOR, hold)
        log(f"lag of the live pages, {FROZEN} frozen: {_spread(during)}; bytes held for a "
            f"frozen page, most: {max(held)}")  # fmt: skip
        fresh_data = f"() => ({NEWEST})() > {frozen_at + 1}"
        for page in live:
            page.wait_for_function(fresh_data, timeout=120_000, polling=500)
        assert max(held) < HELD_LIMIT, f"bytes held for a frozen page: {held}"
        for earlier, session in zip(skipped, frozen_sessions, strict=True):
            assert session.pace.skipped > earlier + 5  # still ticking, leaving its views alone
            assert session.pace.lag > FROZEN_FOR / 2
        assert (metric(running.url, "tango_bokeh_page_lag_seconds_max") or 0) > FROZEN_FOR / 2
        assert (metric(running.url, "tango_bokeh_ticks_skipped") or 0) >= sum(skipped)

        for cdp in debuggers:
            cdp.send("Debugger.resume")
            cdp.send("Debugger.disable")
        thawed_at = time.time()
        log("unfrozen")
        fresh_data = f"() => ({NEWEST})() > {thawed_at - 1}"
        for page in frozen:
            page.wait_for_function(fresh_data, timeout=120_000, polling=500)
            assert page.evaluate(WORST_LAG) > FROZEN_FOR / 2  # it said how far behind it was
        no_note = f"() => ({LAG_NOTE})() === null"
        for page in frozen:
            page.wait_for_function(no_note, timeout=120_000, polling=500)
        wait_for(lambda: all(s.pace.lag < s.pace.allowance for s in frozen_sessions), timeout=60,
                 what="the unfrozen pages to acknowledge again")  # fmt: skip

        log("the unfrozen pages caught up")
        for context in contexts:
            context.close()

        def released() -> bool:
            stats = hub.stats()
            return not server.sessions() and not (
                stats.channels or stats.consumers or stats.subscriptions
            )

        wait_for(released, timeout=60, what="sessions, readers, channels, subscriptions at 0")
        log("all released")
    finally:
        running.join()
