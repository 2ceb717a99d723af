"""Many session open/close cycles leave nothing behind."""

from __future__ import annotations

import threading

from bokeh.client import pull_session

from tango_bokeh.app import ThreadedServer, session_application
from tango_bokeh.hub import Hub
from tango_bokeh.session import Session

from .conftest import wait_for

ATTRIBUTES = (
    "sim/counter/1/Counts",
    "sim/motor/1/Position",
    "sim/beam/current/Current",
    "sim/temp/1/Temperature",
    "sim/spectro/1/Spectrum",
)


class Five(Session):
    attributes = ATTRIBUTES


def _settled(hub: Hub) -> bool:
    stats = hub.stats()
    return stats.channels == 0 and stats.subscriptions == 0 and stats.polled == 0


def test_open_close_cycles_leave_no_session_subscription_or_thread(hub: Hub):
    # Warm up: the first cycle creates proxies and Tango's own threads.
    Five("warm", hub=hub).close()
    wait_for(lambda: _settled(hub), what="warm-up clean-up")
    threads = threading.active_count()
    for i in range(60):
        session = Five(f"cycle-{i % 3}", hub=hub)  # names recur: replacement path too
        if i % 4 == 0:
            wait_for(lambda s=session: all(c.latest() for c in s.cursors.values()), what="data")
        session.close()
    assert not Session.sessions()
    wait_for(lambda: _settled(hub), what="every subscription and poll dropped")
    assert threading.active_count() <= threads + 1  # Tango may keep one event thread


def test_server_session_cycles_leave_nothing(hub: Hub):
    server = ThreadedServer(
        {"/five": session_application(lambda _doc: Five(hub=hub, callback_period=0.1))},
        check_unused_sessions_milliseconds=50,
        unused_session_lifetime_milliseconds=50,
    ).start()
    try:
        for _ in range(10):
            with pull_session(url=f"{server.url}/five"):
                wait_for(lambda: Session.sessions(), what="a session")
        wait_for(lambda: not Session.sessions(), timeout=15, what="server sessions destroyed")
        wait_for(lambda: _settled(hub), what="every subscription dropped")
    finally:
        server.stop()
