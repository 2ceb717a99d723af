"""Thread contracts in code, and the one loop where samples reach views.

Every session method says which thread it may be called from
(tango_bokeh/threads.py); the tests run with ``TANGO_BOKEH_CHECK_THREADS=1``
(tests/conftest.py), so a loop-only method called from elsewhere raises.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from bokeh.models import Div

from tango_bokeh.dashboard.build import DashboardSession
from tango_bokeh.dashboard.loader import parse
from tango_bokeh.hub import Hub
from tango_bokeh.monitor import MonitorSession
from tango_bokeh.session import Session
from tango_bokeh.tango.sample import Sample
from tango_bokeh.tango.state import AttributeState
from tango_bokeh.threads import ANY, CHECK, LOOP, QUEUED, WrongThread, contract
from tango_bokeh.views.base import View

from .conftest import serving, wait_for


@contextlib.contextmanager
def page_of(path: str, make: Callable[[], Session]) -> Iterator[Session]:
    """One server session made by ``make``, with a client connected to it."""
    with serving(path, make) as (server, made), pull_session(url=f"{server.url}{path}"):
        wait_for(lambda: made and made[0].ready, what="a server session")
        yield made[0]


EXPECTED = {
    "close": ANY,
    "on_close": ANY,
    "start": ANY,
    "stop": ANY,
    "pause": ANY,
    "resume": ANY,
    "update_callback_period": ANY,
    "freeze": ANY,
    "safe_document_modifications": ANY,
    "timeout_callback": ANY,
    "clear": QUEUED,
    "attach": LOOP,
    "setup_document": LOOP,
    "tick": LOOP,
    "on_samples": LOOP,
}


def test_the_contracts_are_declared_and_inherited():
    assert CHECK, "tests/conftest.py turns the loop-only check on"
    for cls in (Session, MonitorSession, DashboardSession):
        found = {name: contract(getattr(cls, name)) for name in EXPECTED}
        assert found == EXPECTED, cls.__name__
    assert "on_samples" not in vars(MonitorSession)  # one loop: Session.on_samples
    assert "on_samples" not in vars(DashboardSession)


def test_a_timer_set_from_another_thread_runs_on_an_idle_loop(hub: Hub):
    """No periodic callback wakes the loop: the timer must be set there through the queue."""
    with page_of("/idle", lambda: Session(callback_period=None, hub=hub)) as session:
        ran: list[int] = []
        setter = threading.Thread(
            target=session.timeout_callback,
            args=(lambda: ran.append(threading.get_ident()), 0.2),
        )
        setter.start()
        setter.join()
        wait_for(lambda: ran, timeout=10, what="the timer set from another thread")
        assert ran == [session._loop_thread] != [setter.ident]


def test_loop_only_methods_refuse_other_threads_and_run_when_queued(hub: Hub):
    ticks: list[int] = []

    class Counting(Session):
        def periodic_callback(self) -> None:
            ticks.append(threading.get_ident())

    with page_of("/count", lambda: Counting(callback_period=None, hub=hub)) as session:
        with pytest.raises(WrongThread, match=r"Counting\.tick runs on its Document's loop"):
            session.tick()
        assert not ticks
        session.safe_document_modifications(session.tick)
        wait_for(lambda: ticks, what="the queued tick")
        assert ticks == [session._loop_thread]


def test_pause_from_another_thread_stops_the_ticks(hub: Hub):
    with page_of("/p", lambda: Session(callback_period=0.1, hub=hub)) as session:
        wait_for(lambda: session.ticks > 2, what="ticks")
        threading.Thread(target=session.pause).start()
        wait_for(lambda: session._periodic is None, what="the periodic callback removed")
        ticks = session.ticks
        time.sleep(0.5)
        assert session.ticks == ticks


class Flaky(View):
    """A view whose update raises while ``broken`` says so."""

    def __init__(self, attribute: str) -> None:
        super().__init__((attribute,), title="flaky")
        self.broken: str | None = None
        self.updates = 0
        self.problems: list[str | None] = []

    def build(self) -> Div:
        return Div(text="flaky")

    def update(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        if self.broken:
            raise RuntimeError(self.broken)
        self.updates += 1

    def show_problem(self, text: str | None) -> None:
        self.problems.append(text)


PAGE = """
title: Loop
panels:
  - trend: {title: Current, attributes: [sim/beam/current/Current]}
"""


@pytest.mark.parametrize("front_end", ["monitor", "dashboard"])
def test_one_policy_for_a_failing_view_in_every_front_end(hub: Hub, front_end: str, caplog):
    flaky = Flaky("sim/beam/current/Current")
    if front_end == "monitor":
        session: Session = MonitorSession(flaky, "sim/beam/current/Current", hub=hub,
                                          callback_period=None)  # fmt: skip
    else:
        session = DashboardSession(parse(PAGE, "loop.yaml"), hub=hub, ticking=False)
        session._panel_views.insert(0, flaky)  # a view of the file, as the registry builds it
    session.attach(Document())
    try:
        others = [v for v in session.views if v is not flaky]
        with caplog.at_level(logging.INFO, logger="tango_bokeh.session"):
            flaky.broken = "boom"
            for _ in range(3):
                session.tick()
            flaky.broken = "bang"
            session.tick()
            flaky.broken = None
            session.tick()
            session.tick()
        failed = [r for r in caplog.records if "failed to update" in r.getMessage()]
        assert len(failed) == 2  # once per change of the error, not once per tick
        assert any("updates again" in r.getMessage() for r in caplog.records)
        assert flaky.problems == [
            "this panel failed to update: RuntimeError: boom",
            "this panel failed to update: RuntimeError: bang",
            None,
        ]
        assert flaky.updates == 2 and session.ticks == 6 and others  # the tick went on
    finally:
        session.close()


def test_a_dashboard_page_freezes_clears_and_exports(hub: Hub):
    session = DashboardSession(parse(PAGE, "loop.yaml"), hub=hub, ticking=False)
    session.attach(Document())
    try:
        (trend,) = session.views
        wait_for(lambda: session.tick() or trend.to_csv().count("\n") > 2, timeout=20,
                 what="samples on the trend")  # fmt: skip
        assert session.export().filename.startswith("Loop-")  # one file, named after the page
        session.freeze_toggle.active = True  # what the page's Freeze button does
        assert session.frozen and session.freeze_toggle.label == "▶ Resume"
        shown = trend.to_csv()
        (cursor,) = session.cursors.values()
        received = cursor.channel.received
        wait_for(lambda: session.tick() or cursor.channel.received > received + 1, timeout=20,
                 what="new samples arriving while frozen")  # fmt: skip
        assert trend.to_csv() == shown  # held: they wait in the hub
        session.freeze_toggle.active = False
        session.tick()
        assert trend.to_csv() != shown and not cursor.read()  # all taken in at once
        session.clear()
        assert trend.to_csv().count("\n") <= 1
        session.download.send(session.export())  # a bare Document: its chunks go at once
        assert session.download.sent == 1 and session.download.chunks == 1
    finally:
        session.close()
