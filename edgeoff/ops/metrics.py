"""Prometheus metrics of one daemon, on a registry of its own (several daemons can share a process).

The daemons already count everything that matters in :class:`~edgeoff.wire.mqtt.Counters` (a lock and a
dict). :class:`CountersCollector` turns a snapshot of them into Prometheus counter families at scrape
time, so the hot paths are unchanged. Counter names map to metric families by the table
:data:`COUNTER_FAMILIES`: an exact name (`out_acked`) or the part before the first dot (`in_dropped` of
`in_dropped.oversized`, whose rest becomes a label value). A name the table does not know is still
exported, as `edgeoff_events_total{event="..."}`, so a new counter is never invisible.

Metric families (all prefixed `edgeoff_`):

| metric (`_total` counters)       | labels            | from the counters                                  |
|----------------------------------|-------------------|----------------------------------------------------|
| mqtt_messages_received_total     |                   | `in` (every PUBLISH, before validation)             |
| mqtt_messages_sent_total         |                   | `out`                                              |
| mqtt_messages_acked_total        |                   | `out_acked` (QoS 1 PUBACKs)                        |
| messages_dropped_total           | direction, reason | `in_dropped.*`, `tasks_dropped.*`, `out_dropped.*` |
| mqtt_connects_total ...          |                   | `connects`, `disconnects`, `connect_failures`, ... |
| heartbeats_sent_total            |                   | site: `heartbeats_sent`                            |
| heartbeats_received_total        |                   | worker: `in_heartbeats`                            |
| statuses_received_total          |                   | worker: `in_statuses`                              |
| detector_verdicts_total          | verdict           | worker: `verdicts.up`, `verdicts.down`             |
| predictions_published_total      |                   | worker: `predictions.published`                    |
| predictions_unpublished_total    |                   | worker: `predictions.not_published`                |
| tasks_total                      | outcome           | site: `tasks_claimed`, `tasks_done`, ...           |
| policy_recomputations_total      |                   | agent: `policy_recomputations`                     |
| fallbacks_total                  | reason            | agent: `fallbacks.*`                               |
| store_errors_total               |                   | `store_errors`                                     |
| events_total                     | event             | any other counter                                  |

Besides these, :class:`~edgeoff.ops.daemon.Operations` keeps gauges (`edgeoff_ready`,
`edgeoff_broker_connected`, `edgeoff_redis_reachable`, `edgeoff_loop_heartbeat_timestamp_seconds`) and the
daemons add their histograms (`edgeoff_task_seconds`, `edgeoff_prediction_abs_error`,
`edgeoff_task_round_trip_seconds`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "COUNTER_FAMILIES",
    "METRIC_PREFIX",
    "CounterFamily",
    "CountersCollector",
    "Metrics",
    "SupportsSnapshot",
    "exposition",
]

METRIC_PREFIX = "edgeoff_"


class SupportsSnapshot(Protocol):
    """What the collector reads: `edgeoff.wire.mqtt.Counters` or anything with `snapshot()`."""

    def snapshot(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class CounterFamily:
    """A Prometheus counter family fed by one or more daemon counters."""

    name: str  # without prefix and without `_total`
    help: str
    labels: Mapping[str, str] = field(default_factory=dict)  # fixed labels of this source
    suffix_label: str | None = None  # the label that takes the part after the first dot

    @property
    def label_names(self) -> tuple[str, ...]:
        names = tuple(self.labels)
        return (*names, self.suffix_label) if self.suffix_label is not None else names


_DROPPED = "Messages dropped (logged and counted, never handled), by direction and reason."
_TASKS = "Task attempts seen by a site, by outcome (claimed, done, duplicate, abandoned)."

COUNTER_FAMILIES: Mapping[str, CounterFamily] = {
    "in": CounterFamily("mqtt_messages_received", "MQTT messages received, before validation."),
    "out": CounterFamily("mqtt_messages_sent", "MQTT messages handed to the broker connection."),
    "out_acked": CounterFamily("mqtt_messages_acked", "QoS 1 publications acknowledged by the broker."),
    "in_dropped": CounterFamily("messages_dropped", _DROPPED, {"direction": "in"}, "reason"),
    "tasks_dropped": CounterFamily("messages_dropped", _DROPPED, {"direction": "in"}, "reason"),
    "out_dropped": CounterFamily("messages_dropped", _DROPPED, {"direction": "out"}, "reason"),
    "connects": CounterFamily("mqtt_connects", "Connections accepted by the broker."),
    "disconnects": CounterFamily("mqtt_disconnects", "Connections lost or closed."),
    "connect_failures": CounterFamily("mqtt_connect_failures", "Connection attempts that failed."),
    "connect_refused": CounterFamily("mqtt_connect_refused", "Connections refused by the broker (CONNACK)."),
    "callback_errors": CounterFamily("mqtt_callback_errors", "Exceptions caught in MQTT callbacks."),
    "subscribe_refused": CounterFamily("mqtt_subscribe_refused", "Subscriptions refused by the broker."),
    "heartbeats_sent": CounterFamily("heartbeats_sent", "Heartbeats published by a site."),
    "in_heartbeats": CounterFamily("heartbeats_received", "Heartbeats of owned sites fed to the detector."),
    "in_statuses": CounterFamily("statuses_received", "Site statuses of owned sites fed to the detector."),
    "verdicts": CounterFamily("detector_verdicts", "Failure detector verdicts, by verdict.", {}, "verdict"),
    "predictions.published": CounterFamily("predictions_published", "Availability predictions published."),
    "predictions.not_published": CounterFamily(
        "predictions_unpublished", "Prediction changes stored but not published (offline)."
    ),
    "tasks_claimed": CounterFamily("tasks", _TASKS, {"outcome": "claimed"}),
    "tasks_done": CounterFamily("tasks", _TASKS, {"outcome": "done"}),
    "tasks_duplicate": CounterFamily("tasks", _TASKS, {"outcome": "duplicate"}),
    "tasks_abandoned": CounterFamily("tasks", _TASKS, {"outcome": "abandoned"}),
    "policy_recomputations": CounterFamily("policy_recomputations", "Policies recomputed by an agent."),
    "fallbacks": CounterFamily(
        "fallbacks", "Next-best actions taken after a failure, by reason.", {}, "reason"
    ),
    "store_errors": CounterFamily("store_errors", "Redis operations that failed."),
}
OTHER_EVENTS = CounterFamily("events", "Other daemon counters, by name.", {}, "event")


def _family_of(counter: str) -> tuple[CounterFamily, tuple[str, ...]]:
    """The family of a counter name and the label values of its sample."""
    exact = COUNTER_FAMILIES.get(counter)
    if exact is not None:
        return exact, tuple(exact.labels.values()) + (("",) if exact.suffix_label else ())
    head, dot, rest = counter.partition(".")
    family = COUNTER_FAMILIES.get(head) if dot else None
    if family is not None and family.suffix_label is not None:
        return family, (*family.labels.values(), rest)
    return OTHER_EVENTS, (counter,)


class CountersCollector(Collector):
    """Reads every watched `Counters` at scrape time and yields Prometheus counter families."""

    def __init__(self, sources: Iterable[SupportsSnapshot] = ()) -> None:
        self._lock = threading.Lock()
        self._sources = list(sources)

    def watch(self, source: SupportsSnapshot) -> None:
        with self._lock:
            self._sources.append(source)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        totals: dict[str, dict[tuple[str, ...], int]] = {}
        families: dict[str, CounterFamily] = {}
        for source in sources:
            for counter, value in source.snapshot().items():
                family, values = _family_of(counter)
                families.setdefault(family.name, family)
                samples = totals.setdefault(family.name, {})
                samples[values] = samples.get(values, 0) + value
        for name in sorted(totals):
            family = families[name]
            metric = CounterMetricFamily(METRIC_PREFIX + name, family.help, labels=list(family.label_names))
            for values, value in sorted(totals[name].items()):
                metric.add_metric(list(values), value)
            yield metric

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on what was counted: no check at registration


class Metrics:
    """One daemon's registry: the counters collector, its own instruments, and the /metrics server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.counters = CountersCollector()
        self.registry.register(self.counters)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def watch(self, counters: SupportsSnapshot) -> None:
        """Export `counters` (read at scrape time)."""
        self.counters.watch(counters)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(METRIC_PREFIX + name, help, list(labels), registry=self.registry)

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(METRIC_PREFIX + name, help, list(labels), registry=self.registry)

    def histogram(
        self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return Histogram(METRIC_PREFIX + name, help, list(labels), registry=self.registry, buckets=buckets)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on `host:port` in a daemon thread; returns the bound port. Raises OSError."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    @property
    def port(self) -> int | None:
        return int(self._server.server_port) if self._server is not None else None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None


def exposition(metrics: Metrics) -> str:
    """The Prometheus text format of `metrics` (what /metrics serves)."""
    return generate_latest(metrics.registry).decode("utf-8")
