"""``/metrics``: the hub's counters and the sessions' tick times in Prometheus text format.

A custom collector reads :meth:`Hub.stats` and the open sessions when
Prometheus scrapes, so the data path (Tango threads, ticks) never updates a
metric: nothing is added to the hot path.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..hub import Hub
from ..session import Session

PREFIX = "tango_bokeh"


class HubCollector(Collector):
    """Hub totals, per-attribute counters and per-dashboard sessions, read at scrape time."""

    def __init__(
        self,
        hub: Callable[[], Hub | None],
        sessions: Callable[[], Iterable[Session]],
        dashboard_of: Callable[[Session], str],
    ) -> None:
        self._hub = hub
        self._sessions = sessions
        self._dashboard_of = dashboard_of

    def collect(self) -> Iterator[Metric]:
        yield from self._session_metrics()
        hub = self._hub()
        up = GaugeMetricFamily(f"{PREFIX}_hub_up", "1 if the hub is running")
        up.add_metric([], 0.0 if hub is None or hub_closed(hub) else 1.0)
        yield up
        if hub is None:
            return
        stats = hub.stats()
        acquisition = hub.acquisition.stats()
        totals = [
            ("attributes", "Attributes acquired (one acquisition each)", stats.channels),
            ("readers", "Cursors reading the hub (sessions x attributes)", stats.consumers),
            ("tango_subscriptions", "Live Tango event subscriptions", stats.subscriptions),
            ("polled_attributes", "Attributes under client polling", stats.polled),
            ("polled_devices", "Devices under client polling", stats.polled_devices),
            ("poll_duration_seconds", "Longest last read_attributes of a polled device",
             acquisition.get("poll_duration", 0.0)),
        ]  # fmt: skip
        for name, doc, value in totals:
            gauge = GaugeMetricFamily(f"{PREFIX}_{name}", doc)
            gauge.add_metric([], float(value))
            yield gauge
        reads = CounterMetricFamily(
            f"{PREFIX}_device_reads", "read_attributes calls made by client polling"
        )
        reads.add_metric([], float(stats.device_reads))
        yield reads
        restarts = CounterMetricFamily(
            f"{PREFIX}_worker_restarts",
            "Acquisition threads that died and were restarted",
            labels=["worker"],
        )
        for worker, count in sorted(stats.worker_restarts.items()):
            restarts.add_metric([worker], float(count))
        yield restarts

        labels = ["attribute"]
        mode = GaugeMetricFamily(
            f"{PREFIX}_attribute_mode",
            "Acquisition mode of each attribute (1 for the current mode)",
            labels=["attribute", "mode"],
        )
        readers = GaugeMetricFamily(f"{PREFIX}_attribute_readers", "Readers", labels=labels)
        received = CounterMetricFamily(
            f"{PREFIX}_events_received", "Samples received (events or polls)", labels=labels
        )
        dropped = CounterMetricFamily(
            f"{PREFIX}_samples_dropped", "Samples readers lost to ring overflow", labels=labels
        )
        queue_full = CounterMetricFamily(
            f"{PREFIX}_event_queue_full",
            "Drains that found Tango's event queue full (events lost before the hub)",
            labels=labels,
        )
        lost = CounterMetricFamily(
            f"{PREFIX}_events_lost_estimate",
            "Events lost before the hub (Tango's event queue full, ZMQ's missed events): an "
            "estimate, exact for attributes that count their events, else from Tango "
            "timestamps",
            labels=labels,
        )
        late = CounterMetricFamily(
            f"{PREFIX}_samples_out_of_order", "Samples older than the last one, not shown",
            labels=labels,
        )  # fmt: skip
        errors = CounterMetricFamily(f"{PREFIX}_errors", "Error samples", labels=labels)
        age = GaugeMetricFamily(
            f"{PREFIX}_attribute_last_update_age_seconds",
            "Seconds since the newest good value of each attribute (its Tango timestamp; "
            "errors, time-outs and INVALID values do not count; a change-event attribute "
            "whose value holds still ages too)",
            labels=labels,
        )
        attribute_up = GaugeMetricFamily(
            f"{PREFIX}_attribute_up",
            "1 while an attribute delivers values (acquired by events or polling, newest "
            "sample not an error), 0 while its device is unreachable, its reads fail, or it "
            "is pending or failed",
            labels=labels,
        )
        switches = CounterMetricFamily(
            f"{PREFIX}_attribute_mode_switches",
            "Times acquisition changed between events and client polling at run time",
            labels=labels,
        )
        poll_period = GaugeMetricFamily(
            f"{PREFIX}_attribute_poll_period_seconds",
            "Seconds between client reads of each polled attribute, as read (longer than "
            "asked when it is slow or its device's polling budget is spent)",
            labels=labels,
        )
        poll_asked = GaugeMetricFamily(
            f"{PREFIX}_attribute_poll_requested_seconds",
            "Seconds between client reads of each polled attribute, as asked",
            labels=labels,
        )
        read_seconds = GaugeMetricFamily(
            f"{PREFIX}_attribute_read_seconds",
            "Seconds a client read of each polled attribute takes (its device's batch, or "
            "the attribute alone when it is too slow for the batch)",
            labels=labels,
        )
        now = time.time()
        for key, channel in sorted(stats.attributes.items()):
            if channel.poll_period is not None:
                poll_period.add_metric([key], channel.poll_period)
                poll_asked.add_metric([key], float(channel.poll_requested or 0.0))
                read_seconds.add_metric([key], float(channel.read_seconds or 0.0))
            mode.add_metric([key, channel.mode], 1.0)
            readers.add_metric([key], float(channel.consumers))
            received.add_metric([key], float(channel.received))
            dropped.add_metric([key], float(channel.dropped))
            queue_full.add_metric([key], float(channel.queue_full))
            lost.add_metric([key], float(channel.lost_estimate))
            late.add_metric([key], float(channel.out_of_order))
            errors.add_metric([key], float(channel.errors))
            if channel.last_good is not None:
                age.add_metric([key], max(0.0, now - channel.last_good))
            attribute_up.add_metric([key], 1.0 if channel.up else 0.0)
            switches.add_metric([key], float(channel.mode_switches))
        yield from (mode, readers, received, dropped, queue_full, lost, late, errors, age)
        yield from (attribute_up, switches)
        yield from (poll_period, poll_asked, read_seconds)
        load = GaugeMetricFamily(
            f"{PREFIX}_device_poll_load",
            "Share of each polled device's time that client polling takes (planned; at most "
            "the polling budget)",
            labels=["device"],
        )
        for device, share in sorted(stats.poll_load.items()):
            load.add_metric([device], share)
        yield load
        splits = CounterMetricFamily(
            f"{PREFIX}_poll_splits",
            "Batch reads that failed as a whole and were split into reads of one attribute",
        )
        splits.add_metric([], float(stats.poll_splits))
        yield splits

    def _session_metrics(self) -> Iterator[Metric]:
        per: dict[str, list[Session]] = defaultdict(list)
        for session in self._sessions():
            if not session.closed:
                per[self._dashboard_of(session)].append(session)
        count = GaugeMetricFamily(
            f"{PREFIX}_sessions", "Open viewer sessions", labels=["dashboard"]
        )
        tick_max = GaugeMetricFamily(
            f"{PREFIX}_tick_duration_seconds_max",
            "Longest last tick (drain the hub + update the views) among open sessions",
            labels=["dashboard"],
        )
        tick_mean = GaugeMetricFamily(
            f"{PREFIX}_tick_duration_seconds_mean",
            "Mean last tick among open sessions",
            labels=["dashboard"],
        )
        ticks = CounterMetricFamily(
            f"{PREFIX}_ticks", "Ticks run by the open sessions", labels=["dashboard"]
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_page_lag_seconds_max",
            "How far the slowest open page trails what the server sent it",
            labels=["dashboard"],
        )
        skipped = GaugeMetricFamily(
            f"{PREFIX}_ticks_skipped",
            "View updates left out by the open pages because they had fallen behind",
            labels=["dashboard"],
        )
        for dashboard, sessions in sorted(per.items()):
            durations = [s.last_tick_duration for s in sessions if s.ticks]
            count.add_metric([dashboard], float(len(sessions)))
            ticks.add_metric([dashboard], float(sum(s.ticks for s in sessions)))
            if durations:
                tick_max.add_metric([dashboard], max(durations))
                tick_mean.add_metric([dashboard], statistics.fmean(durations))
            paces = [p for p in (getattr(s, "pace", None) for s in sessions) if p is not None]
            if paces:
                lag.add_metric([dashboard], max(p.lag for p in paces))
                skipped.add_metric([dashboard], float(sum(p.skipped for p in paces)))
        yield from (count, tick_max, tick_mean, ticks, lag, skipped)


def hub_closed(hub: Hub) -> bool:
    """Whether ``hub`` stopped (closed, or its acquisition threads are gone)."""
    return not hub.running


def make_registry(
    hub: Callable[[], Hub | None],
    sessions: Callable[[], Iterable[Session]],
    dashboard_of: Callable[[Session], str],
) -> CollectorRegistry:
    """A registry of its own (several servers may live in one test process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub, sessions, dashboard_of))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class SecurityCollector(Collector):
    """Logins, lockouts and refused requests, read at scrape time."""

    def __init__(self, access: Any, refused: Callable[[], dict[str, int]]) -> None:
        self._access = access
        self._refused = refused

    def collect(self) -> Iterator[Metric]:
        throttle = self._access.throttle
        failures = CounterMetricFamily(f"{PREFIX}_login_failures", "Failed logins")
        failures.add_metric([], float(throttle.stats.failures))
        yield failures
        lockouts = CounterMetricFamily(
            f"{PREFIX}_login_lockouts", "Login lockouts started", labels=["scope"]
        )
        for scope in ("user+address", "address"):
            lockouts.add_metric([scope], float(throttle.stats.lockouts.get(scope, 0)))
        yield lockouts
        throttled = CounterMetricFamily(
            f"{PREFIX}_login_throttled", "Login attempts refused while locked or spaced"
        )
        throttled.add_metric([], float(throttle.stats.refused))
        yield throttled
        locked = GaugeMetricFamily(
            f"{PREFIX}_login_locked", "User/address pairs and addresses locked now"
        )
        locked.add_metric([], float(throttle.locked()))
        yield locked
        refused = CounterMetricFamily(
            f"{PREFIX}_requests_refused", "Requests and websockets refused, by reason",
            labels=["reason"],
        )  # fmt: skip
        for reason, count in sorted(self._refused().items()):
            refused.add_metric([reason], float(count))
        yield refused
