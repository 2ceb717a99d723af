"""Sessions: registry semantics (on the in-memory acquisition: no Tango needed), Document
lifecycle on a real bokeh server, Tango clean-up."""

from __future__ import annotations

import time

import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from bokeh.models import ColumnDataSource

from tango_bokeh.app import ThreadedServer, session_application
from tango_bokeh.hub import Hub
from tango_bokeh.session import Session
from tango_bokeh.tango import InvalidName

from .conftest import serving, wait_for


class Recorder(Session):
    """Counts what each tick hands over."""

    attributes = ("sim/counter/1/Counts", "sim/motor/1/Position")

    def __init__(self, *args, **kwargs):
        self.received: dict[str, int] = {}
        self.periodic_calls = 0
        self.setup_calls = 0
        super().__init__(*args, **kwargs)

    def setup_document(self):
        self.setup_calls += 1
        self.source = ColumnDataSource(data={"x": [], "y": []})

    def on_samples(self, batch):
        for name, samples in batch.items():
            self.received[name] = self.received.get(name, 0) + len(samples)

    def periodic_callback(self):
        self.periodic_calls += 1


def test_names_and_registry(fake_hub: Hub):
    a = Session("alpha", hub=fake_hub)
    b = Session(hub=fake_hub)
    assert Session.get("alpha") is a and len(b.name) == 36  # uuid when unnamed
    assert {a, b} <= set(Session.sessions())
    assert "alpha" in Session.status() and repr(a).startswith("Session:alpha:")


def test_same_name_closes_the_older_session_and_its_subscriptions(fake_hub: Hub):
    first = Recorder("cell-1", hub=fake_hub)
    wait_for(lambda: fake_hub.stats().subscriptions == 2, what="2 subscriptions")
    second = Recorder("cell-1", hub=fake_hub)
    assert first.closed and not second.closed
    assert Session.get("cell-1") is second
    assert fake_hub.stats().consumers == 2  # the second one's only
    second.close()
    wait_for(lambda: fake_hub.stats().subscriptions == 0, what="subscriptions dropped")


def test_close_is_idempotent_and_final(fake_hub: Hub):
    session = Recorder("once", hub=fake_hub)
    session.close()
    session.close()
    assert session.closed and Session.get("once") is None
    with pytest.raises(RuntimeError, match="closed"):
        session.subscribe("sim/counter/1/Counts")
    assert fake_hub.stats().consumers == 0


def test_callback_period_has_a_floor():
    session = Session(callback_period=0.01, hub=Hub.__new__(Hub))  # no Tango needed
    assert session.callback_period == 0.1
    session.callback_period = None
    assert not session.periodic_callback_enabled()
    Session._registry.pop(session.name, None)


def test_malformed_attribute_fails_the_constructor_cleanly(fake_hub: Hub):
    class Bad(Session):
        attributes = ("sim/counter/1/Counts", "not-a-name")

    with pytest.raises(InvalidName):
        Bad("bad", hub=fake_hub)
    assert Session.get("bad") is None
    wait_for(lambda: fake_hub.stats().consumers == 0, what="the good attribute released")


def test_bare_document_tick(hub: Hub):
    session = Recorder(hub=hub, callback_period=None)
    session.attach(Document())
    assert session.ready and session.setup_calls == 1
    wait_for(lambda: (session.tick(), session.received.get("sim/counter/1/Counts"))[1], what="data")
    assert session.periodic_calls >= 1


@pytest.fixture
def served(hub: Hub):
    with serving("/rec", lambda: Recorder(hub=hub, callback_period=0.1)) as served:
        yield served


def test_server_session_ticks_pause_resume_and_close(served, hub: Hub):
    server, made = served
    with pull_session(url=f"{server.url}/rec") as client:
        wait_for(lambda: made, what="a server session")
        session = made[0]
        assert session.bokeh_session_id == client.id
        wait_for(lambda: session.received.get("sim/counter/1/Counts"), what="ticks with data")
        session.pause()
        time.sleep(0.3)
        ticks = session.ticks
        time.sleep(0.5)
        assert session.ticks == ticks and session.suspended
        session.resume()
        wait_for(lambda: session.ticks > ticks, what="ticks after resume")
        session.update_callback_period(0.5)
        assert session.callback_period == 0.5
    # the browser went away: the server discards the session, which closes ours
    wait_for(lambda: session.closed, timeout=10, what="on_session_destroyed to close the session")
    wait_for(lambda: hub.stats().subscriptions == 0, what="subscriptions dropped")
    assert Session.get(session.name) is None


def test_timeout_and_safe_document_modifications_run_on_the_loop(served):
    server, made = served
    with pull_session(url=f"{server.url}/rec"):
        wait_for(lambda: made, what="a server session")
        session = made[0]
        calls: list[str] = []
        session.safe_document_modifications(lambda: calls.append("next"))
        session.timeout_callback(lambda: calls.append("timeout"), 0.2)
        wait_for(lambda: calls == ["next", "timeout"], what="both callbacks")


def test_stopping_the_server_closes_its_sessions(hub: Hub):
    made: list[Recorder] = []
    server = ThreadedServer(
        {"/rec": session_application(lambda _d: made.append(Recorder(hub=hub)) or made[-1])}
    ).start()
    with pull_session(url=f"{server.url}/rec"):
        wait_for(lambda: made, what="a session")
        server.stop()
    assert made[0].closed
    wait_for(lambda: hub.stats().subscriptions == 0, what="subscriptions dropped")
