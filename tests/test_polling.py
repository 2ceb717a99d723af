"""Client polling as a guest of the device: slow attributes isolated, failures split, a budget.

The policy is tested as pure functions; the behaviour against the awkward
device (``sim/awkward/1``), whose ``Slow`` attribute takes ``SlowDelay``
seconds to read while it holds the device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
import tango

from tango_bokeh.dashboard.metrics import HubCollector
from tango_bokeh.hub import Hub
from tango_bokeh.tango.acquisition import Acquisition, AcquisitionConfig
from tango_bokeh.tango.modes import MAX_POLL_PERIOD, Mode
from tango_bokeh.tango.names import parse_name
from tango_bokeh.tango.polling import (
    Failure,
    PollRate,
    batch_cost,
    classify,
    describe,
    effective_periods,
    fair_shares,
    is_slow,
    may_rejoin,
    next_cost,
)
from tango_bokeh.tango.sample import AttributeInfo, Quality, Sample
from tango_bokeh.views import Trend, ValueTable
from tango_bokeh.views.base import AttributeState

from .conftest import wait_for

# -- the policy ------------------------------------------------------------------------


def test_fair_shares_serve_the_cheap_first_and_never_exceed_the_budget():
    assert fair_shares([0.01, 3.0], 0.05) == pytest.approx([0.01, 0.04])
    assert fair_shares([0.01, 0.02], 0.05) == pytest.approx([0.01, 0.02])
    shares = fair_shares([1.0, 2.0, 0.001, 5.0], 0.2)
    assert sum(shares) <= 0.2 + 1e-12 and shares[2] == pytest.approx(0.001)
    assert shares[0] == pytest.approx(shares[1]) == pytest.approx(shares[3])
    assert fair_shares([], 0.05) == []


def test_effective_periods_keep_the_batch_and_slow_down_the_slow():
    batch, slow = effective_periods([(1.0, 0.005), (1.0, 3.0)], 0.05)
    assert batch == 1.0  # the cheap batch keeps its period
    assert slow == pytest.approx(3.0 / 0.045)  # the rest of the budget: 67 s
    assert 0.005 / batch + 3.0 / slow <= 0.05 + 1e-12
    assert effective_periods([(0.5, 0.0)], 0.05) == [0.5]  # cost unknown yet: as asked
    assert effective_periods([(1.0, 1e9)], 0.05) == [MAX_POLL_PERIOD]
    # A batch alone over budget is slowed too, to exactly the budget.
    (period,) = effective_periods([(0.2, 0.02)], 0.05)
    assert period == pytest.approx(0.4)


def test_slow_rejoin_and_cost_estimates():
    assert is_slow(0.06, 1.0, 0.05) and not is_slow(0.04, 1.0, 0.05)
    assert may_rejoin(0.01, 1.0, 0.05) and not may_rejoin(0.02, 1.0, 0.05)  # hysteresis
    assert next_cost(None, 2.0) == 2.0 and next_cost(1.0, 3.0) == 3.0  # longer: at once
    assert next_cost(3.0, 1.0) == 2.0  # shorter: halfway
    assert batch_cost(None, 0.004) == 0.004
    assert batch_cost(0.001, 0.044) == pytest.approx(0.0139)  # one busy moment: smoothed


def test_failures_are_classified_from_the_tango_error_stack():
    timeout = ["API_CorbaException", "API_DeviceTimedOut"]
    assert classify(timeout, ["TRANSIENT_CallTimedout", ""]) is Failure.TIMEOUT
    assert classify(["API_CorbaException"], ["TRANSIENT_CallTimedout"]) is Failure.TIMEOUT
    assert classify(["API_CantConnectToDevice"]) is Failure.UNREACHABLE
    assert classify(["API_DeviceNotExported"]) is Failure.UNREACHABLE
    assert classify(["API_AttrNotFound"]) is Failure.OTHER


def test_the_rate_is_described_only_when_it_is_not_as_asked():
    assert describe(None) is None
    assert describe(PollRate(1.0, 1.05, 0.001, False, 0.05)) is None
    text = describe(PollRate(1.0, 62.0, 3.0, True, 0.05))
    assert text == "slow to read (3 s): read alone every 62 s (device budget 5 %)"
    text = describe(PollRate(0.2, 0.4, 0.02, False, 0.05))
    assert text == "read every 0.4 s instead of 0.2 s (0.02 s a read, device budget 5 %)"
    rate = PollRate(1.0, 60.0, 3.0, True, 0.05)
    assert not rate.differs(PollRate(1.0, 63.0, 3.1, True, 0.05))
    assert rate.differs(PollRate(1.0, 80.0, 3.1, True, 0.05))
    assert rate.differs(PollRate(1.0, 60.0, 3.0, False, 0.05))


def test_time_outs_and_budget_are_configurable_and_checked():
    config = AcquisitionConfig(timeout_ms=2000, device_timeouts_ms={"Sim/Awkward/1": 9000})
    acquisition = Acquisition(config)
    try:
        assert acquisition.timeout_ms(parse_name("sim/awkward/1/Slow")) == 9000
        assert acquisition.timeout_ms(parse_name("SIM/AWKWARD/1/Slow")) == 9000
        assert acquisition.timeout_ms(parse_name("sim/motor/1/Position")) == 2000
    finally:
        acquisition.close()
    for bad in (0.0, -0.1, 1.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="poll_budget"):
            AcquisitionConfig(poll_budget=bad)
    with pytest.raises(ValueError, match="device_timeouts_ms"):
        AcquisitionConfig(device_timeouts_ms={"a/b/c": 0})
    with pytest.raises(ValueError, match="slow_timeout_ms"):
        AcquisitionConfig(slow_timeout_ms=0)


# -- against the awkward device ----------------------------------------------------------

#: What a dashboard of the awkward device polls: eight cheap attributes and the slow one.
FAST = ("Fast", "Flaky", "NonFinite", "Temperature", "Phase", "SlowDelay", "Spectrum", "State")
PERIOD = 0.5


@pytest.fixture
def device(awkward: str) -> Iterator[tango.DeviceProxy]:
    proxy = tango.DeviceProxy(awkward)
    proxy.set_timeout_millis(10_000)
    proxy.write_attribute("SlowDelay", 0.0)  # waits for any slow read still in the device
    try:
        yield proxy
    finally:
        proxy.write_attribute("SlowDelay", 0.0)


@pytest.fixture
def guest() -> Iterator[Hub]:
    """A hub whose batch reads time out after 1 s; a slow attribute alone may take 5 s."""
    config = AcquisitionConfig(
        poll_period=PERIOD, timeout_ms=1000, slow_timeout_ms=5000, retry_delays=(0.5, 1.0)
    )
    hub = Hub(Acquisition(config))
    try:
        yield hub
    finally:
        hub.close()


def _subscribe_all(hub: Hub, device: str) -> dict[str, object]:
    cursors = {name: hub.subscribe(f"{device}/{name}") for name in (*FAST, "Slow")}
    wait_for(lambda: all(c.mode is Mode.POLL for c in cursors.values()), what="client polling")
    return cursors


def _keep_updating(hub: Hub, cursors: dict, device: str, seconds: float) -> None:
    """Every cheap attribute keeps VALID values (Flaky: between its own failures), read at its
    period, while the slow one is read alone, slowed and said so.

    Measured once the device is done with the read that timed out (it takes its time,
    whoever asked: the cheap attributes wait for it once, without errors).
    """
    wait_for(lambda: any(s.ok for s in cursors["Fast"].read()), what="the device free again")
    for cursor in cursors.values():
        cursor.read()
    deadline = time.monotonic() + seconds
    got: dict[str, list] = {name: [] for name in cursors}
    while time.monotonic() < deadline:
        for name, cursor in cursors.items():
            got[name] += cursor.read()
        time.sleep(0.1)
    for name in FAST:
        good = [s for s in got[name] if s.ok and s.quality is not Quality.INVALID]
        assert len(good) >= 3, (name, got[name][-3:])
        if name != "Flaky":
            assert all(s.error is None for s in got[name]), (name, got[name][-3:])
    flaky = [s for s in got["Flaky"] if s.error]
    assert all("SimAwkward_Flaky" in s.error for s in flaky)  # its own failures only
    stats = hub.stats().attributes
    for name in FAST:
        polled = stats[f"{device}/{name}".lower()]
        assert polled.poll_period == PERIOD and not polled.read_alone, polled
    slow = stats[f"{device}/slow"]
    assert slow.read_alone and slow.poll_period >= 10 * PERIOD, slow
    assert slow.poll_requested == PERIOD and slow.read_seconds >= 1.0
    load = hub.stats().poll_load
    assert 0 < sum(load.values()) <= 0.05 + 1e-9, load  # the planned load within the budget
    assert "slow to read" in (cursors["Slow"].status or "")


@pytest.mark.tango
@pytest.mark.parametrize("delay", [1.5, 3.0])  # 3 s: the device is still busy long after
def test_a_slow_attribute_found_at_start_harms_only_itself(guest: Hub, device, awkward, delay):
    device.write_attribute("SlowDelay", delay)  # longer than the 1 s time-out
    cursors = _subscribe_all(guest, awkward)
    wait_for(
        lambda: guest.stats().attributes[f"{awkward}/slow"].read_alone,
        what="the slow attribute found by reading each new attribute alone once",
    )
    _keep_updating(guest, cursors, awkward, 5.0)
    slow = [s for s in [*cursors["Slow"].read(), cursors["Slow"].latest()] if s is not None]
    assert slow and (slow[-1].ok or "slow to read" in (slow[-1].error or "")), slow[-1]


@pytest.mark.tango
def test_a_batch_that_times_out_is_split_and_the_slow_one_isolated(guest: Hub, device, awkward):
    cursors = _subscribe_all(guest, awkward)  # Slow answers at once: all in one batch
    wait_for(
        lambda: all(s.poll_period for s in guest.stats().attributes.values()),
        what="every attribute read",
    )
    alone = {k: s for k, s in guest.stats().attributes.items() if s.read_alone}
    assert not alone, alone
    device.write_attribute("SlowDelay", 1.5)  # now the whole batch times out
    wait_for(
        lambda: guest.stats().attributes[f"{awkward}/slow"].read_alone,
        what="the batch split and the slow attribute isolated",
    )
    assert guest.stats().poll_splits >= 1
    _keep_updating(guest, cursors, awkward, 5.0)
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in HubCollector(lambda: guest, list, str).collect()
        for s in m.samples
    }
    slow_key = (("attribute", f"{awkward}/slow"),)
    assert found[("tango_bokeh_attribute_poll_period_seconds", slow_key)] >= 10 * PERIOD
    assert found[("tango_bokeh_attribute_poll_requested_seconds", slow_key)] == PERIOD
    assert found[("tango_bokeh_attribute_read_seconds", slow_key)] >= 1.0
    fast_key = (("attribute", f"{awkward}/fast"),)
    assert found[("tango_bokeh_attribute_poll_period_seconds", fast_key)] == PERIOD
    assert 0 < found[("tango_bokeh_device_poll_load", (("device", awkward),))] <= 0.05 + 1e-9
    assert found[("tango_bokeh_poll_splits_total", ())] >= 1


@pytest.mark.tango
def test_a_slow_attribute_that_becomes_fast_rejoins_the_batch(device, awkward):
    config = AcquisitionConfig(poll_period=0.2, timeout_ms=1000, poll_budget=0.5)
    hub = Hub(Acquisition(config))
    try:
        device.write_attribute("SlowDelay", 0.3)  # slow for a 0.2 s period, within 0.5 budget
        slow = hub.subscribe(f"{awkward}/Slow")
        key = f"{awkward}/slow"
        wait_for(lambda: hub.stats().attributes[key].read_alone, what="isolated")
        device.write_attribute("SlowDelay", 0.0)
        wait_for(lambda: not hub.stats().attributes[key].read_alone, what="back in the batch")
        assert slow.status is None
    finally:
        hub.close()


# -- what views say ----------------------------------------------------------------------


def test_views_say_when_polling_reads_less_often_than_asked():
    name = "sim/awkward/1/Slow"
    info = AttributeInfo(name, unit="s")
    slowed = PollRate(1.0, 62.0, 3.0, True, 0.05)
    states = {name: AttributeState(name, info, Mode.POLL, describe(slowed), poll=slowed)}
    table, trend = ValueTable(name), Trend(name)
    now = time.time()
    for view in (table, trend):
        view.update({name: [Sample(now - 1, 2.0)]}, now, states)
    assert table.rows[0]["mode"] == "polling · every 62 s (slow read)"
    assert table.rows[0]["quality"] == "VALID" and table.rows[0]["error"] == ""
    assert "read alone every 62 s" in trend.problem_text
    as_asked = PollRate(1.0, 1.0, 0.001, False, 0.05)
    states = {name: AttributeState(name, info, Mode.POLL, None, poll=as_asked)}
    for view in (table, trend):
        view.update({}, now, states)
    assert table.rows[0]["mode"] == "polling" and trend.problem_text == ""
    budget = PollRate(0.2, 0.4, 0.02, False, 0.05)
    states = {name: AttributeState(name, info, Mode.POLL, describe(budget), poll=budget)}
    table.update({}, now, states)
    assert table.rows[0]["mode"] == "polling · every 0.4 s (budget)"
