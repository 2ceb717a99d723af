"""One value must not break the whole server: bounded durations, workers that survive and restart.

* Every duration of a dashboard file is finite and within its documented
  bounds (``docs/dashboards.md``); every problem names its file, line and key.
* The Python API refuses the same bad polling periods at subscribe time,
  before anything reaches a Tango thread.
* The acquisition threads survive an exception in one attribute's work (that
  attribute shows the error, the others keep updating), and a worker killed
  anyway is restarted, logged and counted.
"""

from __future__ import annotations

import logging
import math
import threading

import pytest
from prometheus_client import generate_latest

from tango_bokeh.dashboard.loader import DashboardError, parse
from tango_bokeh.dashboard.metrics import make_registry
from tango_bokeh.dashboard.schema import parse_duration
from tango_bokeh.hub import Hub
from tango_bokeh.session import Session
from tango_bokeh.tango import acquisition as acquisition_module
from tango_bokeh.tango import parse_name
from tango_bokeh.tango.acquisition import (
    Acquisition,
    AcquisitionConfig,
    LogLimit,
    restart_delay,
)
from tango_bokeh.tango.modes import (
    MAX_POLL_PERIOD,
    MIN_POLL_PERIOD,
    Mode,
    checked_poll_period,
)

from ..conftest import wait_for

# -- dashboard files ------------------------------------------------------------------------

PAGE = "title: x\n{key}: {value}\npanels: [{{table: {{attributes: [a/b/c/d]}}}}]\n"
VIEW = "title: x\npanels:\n  - {kind}:\n      {attrs}\n      {key}: {value}\n"
ATTRS = {
    "trend": "attributes: [a/b/c/d]",
    "table": "attributes: [a/b/c/d]",
    "spectrum": "attribute: a/b/c/d",
    "image": "attribute: a/b/c/d",
}

#: (template, line, key path, key, lowest, highest) of every duration key.
DURATION_KEYS = [
    ("page", 2, "refresh", "refresh", "0.1 s", "1 min"),
    ("page", 2, "poll_period", "poll_period", "0.1 s", "1 h"),
    ("trend", 5, "panels[0].trend.history", "history", "1 s", "7 days"),
    *[
        (kind, 5, f"panels[0].{kind}.poll_period", "poll_period", "0.1 s", "1 h")
        for kind in ("trend", "table", "spectrum", "image")
    ],
]
IDS = [f"{t}-{key}" for t, _, _, key, _, _ in DURATION_KEYS]


def dashboard_text(template: str, key: str, value: str) -> str:
    if template == "page":
        return PAGE.format(key=key, value=value)
    return VIEW.format(kind=template, attrs=ATTRS[template], key=key, value=value)


def problems(text: str) -> list[str]:
    with pytest.raises(DashboardError) as info:
        parse(text, "d.yaml")
    return [str(p) for p in info.value.problems]


#: YAML value -> the message it must get (``{low}``/``{high}``: the key's bounds).
BAD_VALUES = {
    ".inf": "inf is not a finite duration: write e.g. 30, '30 s', '10 min' or '2 h'",
    "-.inf": "-inf is not a finite duration: write e.g. 30, '30 s', '10 min' or '2 h'",
    ".nan": "nan is not a finite duration: write e.g. 30, '30 s', '10 min' or '2 h'",
    ".NaN": "nan is not a finite duration: write e.g. 30, '30 s', '10 min' or '2 h'",
    "'inf s'": "'inf s' is not a duration: write e.g. 30, '30 s', '10 min' or '2 h'",
    "'1e400 s'": "'1e400 s' is not a finite duration: write e.g. 30, '30 s', '10 min' or '2 h'",
    "1e-6": "must be at least {low}, got 1e-06 s",  # a string for YAML 1.1
    "0.000001": "must be at least {low}, got 1e-06 s",
    "'1 us'": "'1 us' is not a duration: write e.g. 30, '30 s', '10 min' or '2 h'",
    "0": "must be at least {low}, got 0 s",
    "-5": "must be at least {low}, got -5 s",
    "1.0e+12": "must be at most {high}, got 1e+12 s",
    "'100000 h'": "must be at most {high}, got 3.6e+08 s",
    "1000000000": "must be at most {high}, got 1e+09 s",
}


@pytest.mark.parametrize(("template", "line", "path", "key", "low", "high"), DURATION_KEYS, ids=IDS)
def test_every_duration_key_refuses_non_finite_tiny_and_huge_values(
    template, line, path, key, low, high
):
    for value, message in BAD_VALUES.items():
        expected = f"d.yaml:{line}: {path}: " + message.format(low=low, high=high)
        assert problems(dashboard_text(template, key, value)) == [expected], value


@pytest.mark.parametrize(("template", "line", "path", "key", "low", "high"), DURATION_KEYS, ids=IDS)
def test_every_duration_key_takes_its_bounds(template, line, path, key, low, high):
    for value in (low, high):
        parse(dashboard_text(template, key, f"'{value}'"), "d.yaml")


def test_durations_in_the_python_parser():
    assert parse_duration("7 days") == 7 * 86400 and parse_duration("1 d") == 86400
    assert parse_duration("1e-3 s") == 1e-3 and parse_duration("2.5e1") == 25
    for bad in (math.inf, -math.inf, math.nan, "inf", "inf s", "nan s", "1e400 s", "-1 s"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_ranges_are_finite():
    text = (
        "title: x\n"
        "panels:\n"
        "  - trend: {attributes: [a/b/c/d], y_range: [0, .inf]}\n"
        "  - spectrum: {attribute: a/b/c/d, y_range: [.nan, 1]}\n"
        "  - image: {attribute: a/b/c/d, range: [-.inf, 1.0e+400]}\n"
    )
    assert problems(text) == [
        "d.yaml:3: panels[0].trend.y_range: bounds must be finite numbers, got [0.0, inf]",
        "d.yaml:4: panels[1].spectrum.y_range: bounds must be finite numbers, got [nan, 1.0]",
        "d.yaml:5: panels[2].image.range: bounds must be finite numbers, got [-inf, inf]",
    ]


def test_the_documentation_states_every_bound():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "dashboards.md").read_text()
    for _, _, _, key, low, high in DURATION_KEYS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert f"`{low}`" in row and f"`{high}`" in row, row


# -- the Python API ----------------------------------------------------------------------


class _Feed:
    def push(self, sample): ...
    def extend(self, samples): ...
    def note_queue_full(self): ...
    def set_mode(self, mode, error=None): ...
    def set_info(self, info): ...
    def resolve(self, name): ...


@pytest.fixture
def idle_hub():
    """A hub of its own that is never asked anything valid: no Tango call is made."""
    hub = Hub(Acquisition(AcquisitionConfig()))
    try:
        yield hub
    finally:
        hub.close()


BAD_PERIODS = [math.inf, -math.inf, math.nan, 1e-6, 0.0, -1.0, 1e9]


@pytest.mark.parametrize("period", BAD_PERIODS)
def test_the_python_api_refuses_bad_poll_periods_at_subscribe_time(idle_hub, period):
    with pytest.raises(ValueError, match="poll_period"):
        idle_hub.subscribe("sim/temp/1/Temperature", poll_period=period)
    assert idle_hub.stats().channels == 0  # nothing started, no reader left behind
    session = Session(hub=idle_hub, callback_period=None)
    with pytest.raises(ValueError, match="poll_period"):
        session.subscribe("sim/temp/1/Temperature", poll_period=period)
    assert not session.cursors
    session.close()
    with pytest.raises(ValueError, match="poll_period"):
        idle_hub.acquisition.start(parse_name("sim/temp/1/Temperature"), _Feed(), period)
    with pytest.raises(ValueError, match="poll_period"):
        AcquisitionConfig(poll_period=period)
    assert idle_hub.running


def test_the_poll_period_policy():
    assert checked_poll_period(MIN_POLL_PERIOD) == MIN_POLL_PERIOD == 0.1
    assert checked_poll_period(MAX_POLL_PERIOD) == MAX_POLL_PERIOD == 3600.0
    assert checked_poll_period(2) == 2.0
    with pytest.raises(ValueError, match=r"poll_period must be at least 0.1 s, got 1e-06 s"):
        checked_poll_period(1e-6)
    with pytest.raises(ValueError, match=r"poll_period must be a finite number of seconds"):
        checked_poll_period(math.inf)
    with pytest.raises(ValueError, match=r"poll_period must be a number of seconds"):
        checked_poll_period("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drain_period"):
        AcquisitionConfig(drain_period=math.inf)
    with pytest.raises(ValueError, match="retry_delays"):
        AcquisitionConfig(retry_delays=(1.0, math.nan))


def test_restart_delays_and_log_limits():
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[0] <= 1.0 and delays == sorted(delays) and delays[-1] <= 30.0
    limit = LogLimit(interval=60.0)
    assert limit.check("a", now=0.0) == 0  # first time: log
    assert limit.check("a", now=1.0) is None  # within the interval: quiet
    assert limit.check("b", now=1.0) == 0  # another key is independent
    assert limit.check("a", now=2.0) is None
    assert limit.check("a", now=61.0) == 2  # logs again, saying how many were held back


# -- the acquisition threads on the real control system -----------------------------------


def ok_samples(cursor, count: int, what: str) -> None:
    got: list = []

    def enough() -> bool:
        got.extend(s for s in cursor.read() if s.ok)
        return len(got) >= count

    wait_for(enough, timeout=30, what=what)


def error_samples(cursor, text: str, count: int = 1) -> list:
    got: list = []

    def enough() -> bool:
        got.extend(s for s in cursor.read() if s.error and text in s.error)
        return len(got) >= count

    wait_for(enough, timeout=30, what=f"{count} error sample(s) saying {text!r}")
    return got


@pytest.mark.tango
def test_a_failing_attribute_does_not_stop_the_other_polled_attributes(hub, monkeypatch, caplog):
    real = acquisition_module.sample_from_attribute

    def faulty(attr):
        if attr.name.lower() == "pressure":
            raise RuntimeError("injected conversion fault")
        return real(attr)

    monkeypatch.setattr(acquisition_module, "sample_from_attribute", faulty)
    caplog.set_level(logging.WARNING, logger="tango_bokeh.tango.acquisition")
    bad = hub.subscribe("sim/vacuum/1/Pressure")
    same_device = hub.subscribe("sim/vacuum/1/State")  # read in the same read_attributes call
    other = hub.subscribe("sim/temp/1/Temperature")
    wait_for(lambda: bad.mode is Mode.POLL and same_device.mode is Mode.POLL, what="polling")
    errors = error_samples(bad, "injected conversion fault", count=4)
    assert all(s.value is None and not s.ok for s in errors)  # an error, not a frozen value
    ok_samples(same_device, 3, "the same device's other attribute to keep updating")
    ok_samples(other, 3, "another device to keep updating")
    assert hub.stats().attributes["sim/vacuum/1/pressure"].last_error
    logged = [r for r in caplog.records if "injected conversion fault" in r.getMessage()]
    assert 1 <= len(logged) < len(errors)  # rate-limited: not a line per tick
    assert hub.running and hub.stats().worker_restarts == {"scheduler": 0, "drain": 0}


@pytest.mark.tango
def test_a_failing_event_attribute_does_not_stop_the_other_event_attributes(hub, monkeypatch):
    real = acquisition_module.samples_from_events

    def faulty(events):
        if events and "counter/1/counts" in events[0].attr_name.lower():
            raise RuntimeError("injected event fault")
        return real(events)

    monkeypatch.setattr(acquisition_module, "samples_from_events", faulty)
    bad = hub.subscribe("sim/counter/1/Counts")
    good = hub.subscribe("sim/beam/current/Current")
    wait_for(lambda: bad.mode is Mode.CHANGE and good.mode.is_event, what="event subscriptions")
    error_samples(bad, "injected event fault", count=2)
    ok_samples(good, 3, "the other event attribute to keep updating")
    assert hub.running and hub.stats().worker_restarts["drain"] == 0


class Killer(BaseException):
    """Not an Exception: escapes every per-attribute guard and ends the thread it runs on."""


def restarts_metric(hub: Hub) -> str:
    registry = make_registry(lambda: hub, lambda: [], lambda _session: "")
    return generate_latest(registry).decode()


@pytest.mark.tango
def test_a_killed_drain_thread_is_restarted_and_counted(hub, monkeypatch, caplog):
    real = acquisition_module.samples_from_events
    fired = threading.Event()

    def kill_once(events):
        if not fired.is_set():
            fired.set()
            raise Killer("injected worker death")
        return real(events)

    good = hub.subscribe("sim/beam/current/Current")
    wait_for(lambda: good.mode.is_event, what="an event subscription")
    caplog.set_level(logging.ERROR, logger="tango_bokeh.tango.acquisition")
    monkeypatch.setattr(acquisition_module, "samples_from_events", kill_once)
    wait_for(fired.is_set, what="the drain thread to be killed")
    wait_for(lambda: hub.stats().worker_restarts["drain"] == 1, what="a restart")
    good.read()
    ok_samples(good, 3, "events after the restart")
    wait_for(lambda: hub.running, what="the hub running again")
    assert hub.stats().worker_restarts == {"scheduler": 0, "drain": 1}
    assert any(
        r.levelno == logging.ERROR and "drain" in r.getMessage() and "Killer" in r.getMessage()
        for r in caplog.records
    )
    assert 'tango_bokeh_worker_restarts_total{worker="drain"} 1.0' in restarts_metric(hub)
    assert 'tango_bokeh_worker_restarts_total{worker="scheduler"} 0.0' in restarts_metric(hub)


@pytest.mark.tango
def test_a_killed_scheduler_is_restarted_and_polling_resumes(hub, caplog):
    polled = hub.subscribe("sim/temp/1/Temperature")
    wait_for(lambda: polled.mode is Mode.POLL, what="polling")
    ok_samples(polled, 2, "polled values")
    caplog.set_level(logging.ERROR, logger="tango_bokeh.tango.acquisition")

    def die() -> None:
        raise Killer("injected scheduler death")

    hub.acquisition._later(0.0, die)  # runs on the scheduler thread itself
    wait_for(lambda: hub.stats().worker_restarts["scheduler"] == 1, what="a restart")
    polled.read()
    ok_samples(polled, 3, "polling to resume after the restart")
    wait_for(lambda: hub.running, what="the hub running again")
    assert any("scheduler" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert 'tango_bokeh_worker_restarts_total{worker="scheduler"} 1.0' in restarts_metric(hub)


@pytest.mark.tango
def test_an_inf_timer_cannot_kill_the_scheduler(hub):
    """Defence in depth: a non-finite delay is refused where it is asked for, not on the thread."""
    with pytest.raises(ValueError, match="delay"):
        hub.acquisition._later(math.inf, lambda: None)
    polled = hub.subscribe("sim/temp/1/Temperature")
    ok_samples(polled, 2, "polled values")
    assert hub.running and hub.stats().worker_restarts["scheduler"] == 0


@pytest.mark.parametrize("period", [float("inf"), float("nan"), -1.0, 1e9])
def test_a_session_refuses_a_tick_period_that_never_comes(period: float) -> None:
    from tango_bokeh.session import Session

    with pytest.raises(ValueError, match="callback_period must be between"):
        Session(callback_period=period)
    assert Session(callback_period=0.01).callback_period == 0.1  # below the floor: the floor
