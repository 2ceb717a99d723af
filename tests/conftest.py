"""Fixtures: a real Tango database with the simulated beamline, fresh hubs, clean sessions."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

# Methods meant for a Document's loop raise when called off it (tango_bokeh/threads.py);
# set before tango_bokeh is imported, and inherited by the servers the tests start.
os.environ.setdefault("TANGO_BOKEH_CHECK_THREADS", "1")

from tango_bokeh.app import ThreadedServer, session_application
from tango_bokeh.hub import Hub
from tango_bokeh.session import Session
from tango_bokeh.sim import ControlSystem
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh_devices.catalog import AWKWARD, DEMO

#: Which Tango database ``control_system`` runs on: ``sqlite`` (PyTango's own database
#: server, the default) or ``facility`` (Debian's C++ DataBaseds on MariaDB, as facilities
#: run it; ``dev.py test`` runs the browser tests a second time with it).
DATABASE_ENV = "TANGO_BOKEH_TEST_DATABASE"
DATABASES = ("sqlite", "facility")


def database_kind() -> str:
    """The database this run asked for (``DATABASE_ENV``); a typo is an error, not sqlite."""
    name = os.environ.get(DATABASE_ENV, "sqlite") or "sqlite"
    if name not in DATABASES:
        raise pytest.UsageError(f"{DATABASE_ENV}={name!r}: expected one of {DATABASES}")
    return name


def pytest_configure(config: pytest.Config) -> None:
    """An explicit request for the facility database fails at once when its packages are absent."""
    config.addinivalue_line(
        "markers", "sqlite_only: needs PyTango's sqlite database server; left out of the "
        "facility pass (say why in the marker's reason)",
    )  # fmt: skip
    if database_kind() == "facility":
        from .facility import require

        try:
            require(f"{DATABASE_ENV}=facility")
        except RuntimeError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    if database_kind() == "facility":
        return "Tango database: Debian's C++ DataBaseds on MariaDB (facility pass)"
    return "Tango database: PyTango's sqlite database server"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the facility pass, tests marked ``sqlite_only`` are skipped with their reason."""
    if database_kind() != "facility":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"sqlite only: {reason}"))


@pytest.fixture(scope="session")
def control_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlSystem]:
    """The test database on a free port plus every simulated device server.

    PyTango's sqlite database server, or with ``TANGO_BOKEH_TEST_DATABASE=facility`` the
    C++ DataBaseds on a private MariaDB (tests/facility.py). TANGO_HOST of the test
    process points at it, so plain names work.
    """
    with contextlib.ExitStack() as stack:
        tango_host = None
        if database_kind() == "facility":
            from .facility import facility_database

            where = tmp_path_factory.mktemp("facility")
            tango_host = stack.enter_context(facility_database(where))
        system = ControlSystem(
            tmp_path_factory.mktemp("tango"), DEMO, tango_host=tango_host, export_env=True
        )
        stack.callback(system.stop)
        system.start(timeout=120)
        yield system


@pytest.fixture
def fake_hub() -> Iterator[Hub]:
    """A hub on the in-memory acquisition (tango/fake.py): for our own logic, no Tango."""
    from tango_bokeh.tango.fake import FakeAcquisition

    hub = Hub(FakeAcquisition())
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture
def hub(control_system: ControlSystem) -> Iterator[Hub]:
    """A hub of its own (fast polling), closed after the test."""
    hub = Hub(Acquisition(AcquisitionConfig(poll_period=0.2, retry_delays=(0.5, 1.0))))
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture(autouse=True)
def _no_session_left() -> Iterator[None]:
    yield
    Session.close_all()


def wait_for(
    predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@contextlib.contextmanager
def serving(
    path: str, make: Callable[[], Session]
) -> Iterator[tuple[ThreadedServer, list[Session]]]:
    """A bokeh server whose page ``path`` makes a session with ``make()``; the sessions made.

    Closed browser sessions are discarded within a few hundred milliseconds.
    """
    made: list[Session] = []

    def factory(_doc: object) -> Session:
        made.append(make())
        return made[-1]

    server = ThreadedServer(
        {path: session_application(factory)},
        check_unused_sessions_milliseconds=100,
        unused_session_lifetime_milliseconds=100,
    ).start()
    try:
        yield server, made
    finally:
        server.stop()


def thread_count() -> int:
    return threading.active_count()


#: Debian's C++ TangoTest (package ``tango-test``, installed by ``.ci/run``).
TANGO_TEST = "/usr/lib/tango/TangoTest"
TANGO_TEST_SERVER = "TangoTest/test"
TANGO_TEST_DEVICE = "sys/tg_test/1"


@pytest.fixture(scope="session")
def tango_test(control_system: ControlSystem) -> Iterator[str]:
    """``sys/tg_test/1``, served by Debian's C++ TangoTest on the test database.

    A device none of us wrote: no polling configured, every attribute kind.
    """
    import os

    if not os.path.exists(TANGO_TEST):  # pragma: no cover - .ci/run installs it
        pytest.skip(f"needs Debian's tango-test ({TANGO_TEST})")
    control_system.start_executable(TANGO_TEST_SERVER, TANGO_TEST, {TANGO_TEST_DEVICE: "TangoTest"})
    try:
        yield TANGO_TEST_DEVICE
    finally:
        control_system.stop_named(TANGO_TEST_SERVER)


@pytest.fixture(scope="session")
def awkward(
    control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``sim/awkward/1`` (devices/awkward.py) on the test database, started by the first test
    that asks (the other tests do not pay for its server). Tests restore what they change."""
    system = ControlSystem(
        tmp_path_factory.mktemp("awkward"), AWKWARD, tango_host=control_system.tango_host
    )
    system.start(timeout=60)
    try:
        yield AWKWARD[0].devices[0].name
    finally:
        system.stop()


@pytest.fixture
def velocity(control_system: ControlSystem) -> Iterator[object]:
    """``sim/motor/2``, whose Velocity the write tests change, put back as it was."""
    import tango

    motor = tango.DeviceProxy("sim/motor/2")
    before = motor.read_attribute("Velocity").value
    try:
        yield motor
    finally:
        motor.write_attribute("Velocity", before)
