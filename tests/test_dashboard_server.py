"""The dashboard server on a real bokeh server and the embedded Tango database.

Fan-out (many viewers, one acquisition per attribute), release of closed pages,
/metrics, /healthz, the index, refused URL arguments, the websocket origin
check, and the server-side rules of writes and commands.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bokeh.document import Document
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

from tango_bokeh.dashboard.auth import ANONYMOUS, Viewer
from tango_bokeh.dashboard.build import DashboardSession
from tango_bokeh.dashboard.client import open_page
from tango_bokeh.dashboard.control import Actuator
from tango_bokeh.dashboard.guard import UNLIMITED
from tango_bokeh.dashboard.loader import load, parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub
from tango_bokeh.tango.names import parse_name

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "dashboards" / "demo.yaml"
VIEWERS = 20


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(f"{url}/metrics")
    assert status == 200
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


@pytest.fixture
def serving(hub: Hub) -> Iterator[Serving]:
    server = DashboardServer([load(DEMO)], hub=hub)
    options = ServeOptions(
        port=0, unused_session_lifetime=2.0, check_unused_sessions=0.5, health_detail=True,
        limits=UNLIMITED,  # 20 viewers from one address at once, on purpose
    )  # fmt: skip
    running = Serving(server, options).start_thread()
    try:
        yield running
    finally:
        running.join()


def test_many_viewers_share_one_acquisition_per_attribute(serving: Serving, hub: Hub):
    demo = load(DEMO)
    distinct = {parse_name(a).key for a in demo.model.attributes()}
    clients = [open_page(f"{serving.url}/demo") for _ in range(VIEWERS)]
    try:
        wait_for(lambda: len(serving.server.sessions()) == VIEWERS, what="20 server sessions")
        wait_for(lambda: hub.stats().consumers == VIEWERS * len(distinct), what="every reader")
        stats = hub.stats()
        assert set(stats.attributes) == distinct
        assert stats.channels == len(distinct)
        assert stats.consumers == VIEWERS * len(distinct)
        wait_for(
            lambda: hub.stats().subscriptions + hub.stats().polled == len(distinct),
            what="every attribute subscribed or polled once",
        )
        wait_for(lambda: all(s.ticks > 2 for s in serving.server.sessions()), what="ticks")
        found = metrics(serving.url)
        assert found[("tango_bokeh_sessions", (("dashboard", "demo"),))] == VIEWERS
        assert found[("tango_bokeh_attributes", ())] == len(distinct)
        assert found[("tango_bokeh_readers", ())] == VIEWERS * len(distinct)
        assert found[("tango_bokeh_hub_up", ())] == 1
        assert found[("tango_bokeh_tick_duration_seconds_max", (("dashboard", "demo"),))] > 0
        key = parse_name("sim/beam/current/Current").key
        assert (
            found[("tango_bokeh_attribute_mode", (("attribute", key), ("mode", "periodic")))] == 1
        )
        assert found[("tango_bokeh_attribute_readers", (("attribute", key),))] == VIEWERS
        assert found[("tango_bokeh_events_received_total", (("attribute", key),))] >= 1
        assert found[("tango_bokeh_event_queue_full_total", (("attribute", key),))] == 0
    finally:
        for client in clients:
            client.close()
    # Closed pages are discarded after the unused-session lifetime: nothing is left. (bokeh
    # runs two full gc.collect() per discarded session, ~0.3 s each with 20 demo pages open,
    # so releasing 20 pages at once takes a while.)
    wait_for(lambda: not serving.server.sessions(), timeout=90, what="sessions discarded")
    wait_for(lambda: hub.stats().channels == 0, timeout=10, what="every attribute released")
    wait_for(lambda: hub.stats().subscriptions == 0 and hub.stats().polled == 0, timeout=10,
             what="Tango subscriptions dropped")  # fmt: skip


def test_index_healthz_and_metrics_without_viewers(serving: Serving):
    status, body = get(f"{serving.url}/")
    assert status == 200
    assert "Simulated beamline" in body and "href='/demo'" in body
    status, body = get(f"{serving.url}/healthz")
    assert status == 200, body
    health = json.loads(body)
    assert health["status"] == "ok" and health["hub"]["running"]
    assert all(db["reachable"] for db in health["databases"].values())
    found = metrics(serving.url)
    assert found[("tango_bokeh_attributes", ())] == 0
    assert any(name.startswith("process_") for name, _ in found)


def test_healthz_fails_when_the_database_is_unreachable(hub: Hub, caplog):
    unreachable = parse(
        "title: Elsewhere\ntango_host: 127.0.0.1:1\npanels: [{table: {attributes: [a/b/c/d]}}]\n",
        "elsewhere.yaml",
    )
    server = DashboardServer([unreachable], hub=hub)
    running = Serving(server, ServeOptions(port=0, health_detail=True)).start_thread()
    try:
        with caplog.at_level(logging.INFO, logger="tornado.access"):
            status, body = get(f"{running.url}/healthz")
            wait_for(lambda: [r for r in caplog.records if r.name == "tornado.access"],
                     what="the probe in the access log")  # fmt: skip
        assert status == 503
        health = json.loads(body)
        assert health["status"] == "failing"
        assert health["databases"]["127.0.0.1:1"]["reachable"] is False
        probes = [r for r in caplog.records if r.name == "tornado.access"]
        assert probes and all(r.levelno == logging.WARNING for r in probes)  # news, not an ERROR
    finally:
        running.join()


def test_url_arguments_cannot_add_attributes(serving: Serving, hub: Hub):
    secret = "sim/storm/1/Counter"  # not named by the demo dashboard
    with open_page(f"{serving.url}/demo?attribute={secret}") as client:
        refused = client.document.get_model_by_name("refused")
        assert refused is not None and "Refused" in refused.text
        assert client.document.get_model_by_name("dashboard") is None
        assert hub.channel(secret) is None
        assert hub.stats().channels == 0


def test_websocket_from_a_foreign_origin_is_refused(serving: Serving):
    ws_url = serving.url.replace("http://", "ws://") + "/demo/ws"

    async def connect(origin: str) -> int:
        request = HTTPRequest(ws_url, headers={"Origin": origin})
        try:
            connection = await websocket_connect(request)
        except HTTPClientError as exc:
            return exc.code
        connection.close()
        return 101

    loop = IOLoop(make_current=False)
    try:
        assert loop.run_sync(lambda: connect("http://evil.example")) == 403
        assert loop.run_sync(lambda: connect(serving.url)) != 403
    finally:
        loop.close()


# -- writes and commands: the server decides ----------------------------------------------------

CONTROL = """
title: Control
panels:
  - table:
      attributes: [sim/motor/2/Velocity, sim/motor/2/Position, sim/motor/2/State]
      write: [sim/motor/2/Velocity]
      commands: [sim/motor/2/Stop]
"""


def _controls(viewer: Viewer, hub: Hub, actuator: Actuator):
    session = DashboardSession(
        parse(CONTROL, "control.yaml"), viewer=viewer, actuator=actuator, hub=hub, ticking=False,
    )  # fmt: skip
    session.attach(Document())
    (controls,) = session.controls
    return session, controls


def test_anonymous_sessions_cannot_write_or_run_commands(hub: Hub, velocity, caplog):
    actuator = Actuator()
    session, controls = _controls(ANONYMOUS, hub, actuator)
    try:
        before = velocity.read_attribute("Velocity").value
        assert controls.write_button.disabled  # the page shows it greyed out...
        controls.write_button.disabled = False  # ...but a doctored page may enable it
        controls.value.value = str(before + 1)
        with caplog.at_level(logging.WARNING, logger="tango_bokeh.audit"):
            controls._on_write()
            controls._on_command(0)
            controls._on_confirm()
        assert "Refused" in controls.status.text
        assert not controls.confirm_row.visible
        assert sum("refused" in r.message and "anonymous" in r.message for r in caplog.records) >= 2
        assert velocity.read_attribute("Velocity").value == before
    finally:
        session.close()
        actuator.close()


def test_logged_in_writes_are_converted_logged_and_limited_to_the_file(hub: Hub, velocity, caplog):
    actuator = Actuator()
    session, controls = _controls(Viewer("alice"), hub, actuator)
    try:
        before = velocity.read_attribute("Velocity").value
        wanted = round(before + 0.5, 3)
        # a doctored page naming an attribute the file does not offer for writing
        controls.target.value = "sim/motor/2/Position"
        controls.value.value = "3"
        controls._on_write()
        assert "not writable from this dashboard" in controls.status.text
        controls.target.value = "sim/motor/2/Velocity"
        controls.value.value = "fast"
        controls._on_write()
        wait_for(lambda: "is not a number" in controls.status.text, what="conversion error")
        controls.value.value = str(wanted)
        with caplog.at_level(logging.INFO, logger="tango_bokeh.audit"):
            controls._on_write()
            wait_for(lambda: "alice wrote" in controls.status.text, what="the write")
        assert velocity.read_attribute("Velocity").value == pytest.approx(wanted)
        written = [r.message for r in caplog.records if r.levelno == logging.INFO]
        assert len(written) == 1
        assert written[0].startswith("user=alice address=")
        assert (
            f"dashboard=control action=write target=sim/motor/2/Velocity old={before!r} "
            f"new={wanted!r} result=ok" in written[0]
        )
    finally:
        session.close()
        actuator.close()


def test_commands_need_a_confirmation(hub: Hub, caplog):
    actuator = Actuator()
    session, controls = _controls(Viewer("alice"), hub, actuator)
    try:
        with caplog.at_level(logging.INFO, logger="tango_bokeh.audit"):
            controls._on_command(0)
            assert controls.confirm_row.visible and "sim/motor/2/Stop" in controls.confirm_text.text
            controls._on_cancel()
            assert not controls.confirm_row.visible
            assert not any("action=command" in r.message for r in caplog.records)
            controls._on_command(0)
            controls._on_confirm()
            wait_for(
                lambda: "alice ran sim/motor/2/Stop" in controls.status.text, what="the command"
            )
        assert any(
            r.message.startswith("user=alice ")
            and "action=command target=sim/motor/2/Stop" in r.message
            and r.message.endswith("result=ok")
            for r in caplog.records
        )
    finally:
        session.close()
        actuator.close()


def test_write_true_offers_only_what_tango_says_is_writable(hub: Hub):
    text = (
        "title: All\npanels:\n  - table:\n"
        "      attributes: [sim/motor/2/Velocity, sim/motor/2/State, sim/motor/2/Acceleration]\n"
        "      write: true\n"
    )
    session = DashboardSession(parse(text, "all.yaml"), viewer=Viewer("alice"), hub=hub,
                               ticking=False)  # fmt: skip
    session.attach(Document())
    try:
        (controls,) = session.controls
        assert len(controls.target.options) == 3  # before the configurations are known

        def narrowed() -> bool:
            session.tick()
            return [value for value, _ in controls.target.options] == [
                "sim/motor/2/Velocity", "sim/motor/2/Acceleration"
            ]  # fmt: skip

        wait_for(narrowed, what="read-only State dropped from the choices")
    finally:
        session.close()


def test_a_user_removed_from_the_users_file_can_no_longer_write(hub: Hub, velocity, tmp_path):
    from tango_bokeh.dashboard.auth import Access, UsersFile, add_user
    from tango_bokeh.dashboard.logins import login_ref

    users = tmp_path / "users"
    add_user(users, "alice", "correct horse")
    add_user(users, "bob", "battery staple")
    access = Access(UsersFile(users))
    alice = access.viewer_from_login(login_ref(access.log_in("alice", "127.0.0.1")))
    assert alice.authenticated
    actuator = Actuator()
    session = DashboardSession(
        parse(CONTROL, "control.yaml"), viewer=alice, actuator=actuator, hub=hub,
        ticking=False, authorize=access.still_allowed,
    )  # fmt: skip
    session.attach(Document())
    (controls,) = session.controls
    try:
        before = velocity.read_attribute("Velocity").value
        controls.value.value = str(before)
        controls._on_write()
        wait_for(lambda: "alice wrote" in controls.status.text, what="the write")
        users.write_text("\n".join(line for line in users.read_text().splitlines()
                                   if not line.startswith("alice:")) + "\n")  # fmt: skip
        controls._on_write()
        assert "the login of alice has ended" in controls.status.text
        assert controls.write_button.disabled  # and the strip is read-only from now on
    finally:
        session.close()
        actuator.close()
