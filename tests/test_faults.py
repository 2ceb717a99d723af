"""Bad weather: device servers that hang, a Tango database that goes away and comes back.

Real processes throughout: the pages keep what they can show, say what they
cannot, and heal by themselves; nothing is reloaded by hand.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tango_bokeh.dashboard.client import open_page
from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub
from tango_bokeh.sim import ControlSystem
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh_devices.catalog import catalog

from .conftest import TANGO_TEST_SERVER, wait_for

pytestmark = pytest.mark.tango


def _samples(cursor, seconds: float) -> list:  # type: ignore[no-untyped-def]
    found: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found += cursor.read()
        time.sleep(0.1)
    return found


def test_a_hung_device_server_shows_as_errors_and_heals_when_it_resumes(
    hub: Hub, tango_test: str, control_system: ControlSystem
):
    """SIGSTOP: the process is there but answers nothing (a deadlocked server)."""
    cursor = hub.subscribe(f"{tango_test}/double_scalar")
    wait_for(lambda: any(s.ok for s in cursor.read()), what="a first value")
    control_system.signal_named(TANGO_TEST_SERVER, signal.SIGSTOP)
    try:
        hung = time.time()
        errors: list = []
        wait_for(lambda: errors.extend(s for s in cursor.read() if not s.ok) or errors,
                 timeout=30, what="the hang to show as an error")  # fmt: skip
        shown_after = time.time() - hung
    finally:
        control_system.signal_named(TANGO_TEST_SERVER, signal.SIGCONT)
    resumed = time.time()
    wait_for(lambda: any(s.ok and s.time > resumed for s in cursor.read()), timeout=30,
             what="values once the server resumes")  # fmt: skip
    assert shown_after < 30 and "timedout" in " ".join(str(e.error) for e in errors).lower()


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[ControlSystem]:
    """A control system of its own (its database is stopped and restarted by the test)."""
    counter = [s for s in catalog("outage") if s.server == "SimCounter"]
    system = ControlSystem(tmp_path, counter)
    system.start(timeout=120)
    try:
        yield system
    finally:
        system.stop()


def test_a_database_outage_leaves_open_pages_alone_and_heals(own_database: ControlSystem):
    host = own_database.tango_host
    attribute = f"tango://{host}/sim/counter/1/Counts"
    hub = Hub(Acquisition(AcquisitionConfig(poll_period=0.2, retry_delays=(0.5, 1.0))))
    text = f"title: Outage\nrefresh: 0.2 s\npanels: [{{trend: {{attributes: [{attribute}]}}}}]\n"
    page = parse(text, "outage.yaml")
    running = Serving(DashboardServer([page], hub=hub), ServeOptions(port=0)).start_thread()
    clients = []
    try:
        clients.append(open_page(f"{running.url}/outage"))
        cursor = hub.subscribe(attribute)
        wait_for(lambda: any(s.ok for s in cursor.read()), what="live values")
        own_database.stop_database(signal.SIGKILL)
        down = time.time()
        during = _samples(cursor, 4.0)
        assert [s for s in during if s.ok and s.time > down]  # the device still answers
        assert not [s for s in during if not s.ok]  # and nothing pretends it is broken
        clients.append(open_page(f"{running.url}/outage"))  # a new viewer during the outage
        assert len(running.server.sessions()) == 2
        own_database.restart_database()
        # A name never seen before needs the database: it resolves once the database is back.
        late = hub.subscribe(f"tango://{host}/sim/counter/1/State")
        wait_for(lambda: any(s.ok for s in late.read()), timeout=30, what="a new name after")
    finally:
        for client in clients:
            client.close()
        running.join()
        hub.close()


def test_a_cold_server_heals_once_the_database_returns(own_database: ControlSystem):
    host = own_database.tango_host
    own_database.stop_database()
    hub = Hub(Acquisition(AcquisitionConfig(poll_period=0.2, retry_delays=(0.5, 1.0))))
    try:
        cursor = hub.subscribe(f"tango://{host}/sim/counter/1/Counts")
        time.sleep(3)
        assert not any(s.ok for s in cursor.read())
        own_database.restart_database()
        wait_for(lambda: any(s.ok for s in cursor.read()), timeout=45,
                 what="values once the database is back")  # fmt: skip
    finally:
        hub.close()
