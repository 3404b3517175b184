"""Prometheus metrics of one worker: a registry per app, so several apps can live in one process.

Counters are bumped by the agent (``streams.app``); gauges that describe the worker right now
(pending timers, assigned partitions, consumer lag) are computed when ``/metrics`` is scraped, never
per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain"  # Prometheus text format 0.0.4 (aiohttp adds the charset)
#: Timer lateness (now - due) in seconds; SPEC 4 promises < 1 s in live mode.
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)


class _LagCollector(Collector):
    """``leadflow_consumer_lag{topic,partition}`` from a callable giving ``(topic, partition, lag)``."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "leadflow_consumer_lag", "Messages not yet consumed, per assigned input partition",
            labels=["topic", "partition"],
        )
        try:
            for topic, partition, lag in self._source():
                family.add_metric([topic, str(partition)], lag)
        except Exception:  # noqa: BLE001 - a scrape must never fail because faust is rebalancing
            pass
        yield family


class _PolicyCollector(Collector):
    """``leadflow_policy_info{version,source} 1``: the policy in use now (one series)."""

    def __init__(self, policy: Callable[[], Any]) -> None:
        self._policy = policy

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("leadflow_policy_info", "The policy this worker judges leads by (SPEC 11)",
                                   labels=["version", "source"])
        policy = self._policy()
        family.add_metric([policy.policy_version, policy.source], 1)
        yield family


def _children(metric: Any) -> Callable[[str], Any]:
    """``metric.labels(value)`` for a metric of one label, each child looked up once.

    ``labels()`` validates its arguments, takes the metric's lock and looks the child up on every
    call (per message, for the agent); prometheus_client returns the same child for the same value
    every time, and no child is ever removed here, so keeping them is the same child, cheaper."""
    cache: dict[str, Any] = {}

    def child(value: str) -> Any:
        try:
            return cache[value]
        except KeyError:
            made = cache[value] = metric.labels(value)
            return made

    return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("leadflow_events", "Valid input events processed, by type",
                              ["event_type"], registry=r)
        self.duplicates = Counter("leadflow_duplicate_events", "Events ignored as repeats (event_id seen)",
                                  registry=r)
        self.forwarded = Counter("leadflow_forwarded_events",
                                 "Events re-keyed to the repartition topic (key or partition not the lead's)",
                                 registry=r)
        self.transitions = Counter("leadflow_transitions", "Lifecycle records emitted, by target stage",
                                   ["to_stage"], registry=r)
        self.alerts = Counter("leadflow_alerts", "Alert records emitted, by type", ["type"], registry=r)
        self.dlq = Counter("leadflow_dlq_records", "Inputs dead-lettered, by error code", ["error"], registry=r)
        self.reemitted = Counter("leadflow_reemitted_records",
                                 "Records re-sent from the outbox after a crash or a redelivery", registry=r)
        self.timer_commands = Counter("leadflow_timer_commands", "Timer commands sent", registry=r)
        self.stalls = Counter("leadflow_partition_stalls_recovered",
                              "Partitions with a backlog and no progress that were re-read from their committed offset",
                              registry=r)
        self.errors = Counter("leadflow_processing_errors", "Messages whose processing raised (skipped, logged)",
                              registry=r)
        self.lateness = Histogram("leadflow_timer_lateness_seconds",
                                  "Wall-clock delay between an SLA step's due time and its alert",
                                  buckets=LATENESS_BUCKETS, registry=r)
        # prometheus_client adds "_total" to a counter's name: leadflow_late_events_total
        self.store_failures = Counter("leadflow_store_failures",
                                      "Attempts to store a message that failed (retried, never dead-lettered)",
                                      registry=r)
        self.late_events = Counter("leadflow_late_events",
                                   "Events whose time lies before their lead's latest applied event",
                                   registry=r)
        self.lateness_of_events = Histogram(
            "leadflow_event_lateness_seconds", "How far a late event's time lies before its lead's latest",
            buckets=(1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400), registry=r)
        self.timers_pending = Gauge("leadflow_timers_pending", "SLA steps scheduled on this worker",
                                    registry=r)
        self.partitions = Gauge("leadflow_partitions_assigned", "Active lead partitions on this worker",
                                registry=r)
        self.policy_changes = Counter("leadflow_policy_changes",
                                      "Published policies this worker switched to", registry=r)
        self.policy_refused = Counter("leadflow_policy_refused",
                                      "Published policies that failed to load (the worker kept its policy)",
                                      registry=r)
        #: the labelled children of the per-message counters, by label value (``_children``)
        self.events_of = _children(self.events)
        self.transitions_to = _children(self.transitions)
        self.alerts_of = _children(self.alerts)
        self.dlq_of = _children(self.dlq)

    def bind(self, *, pending: Callable[[], int], partitions: Callable[[], int],
             lag: Callable[[], Iterable[tuple[str, int, int]]], policy: Callable[[], Any] | None = None) -> None:
        """Compute the point-in-time gauges from the app at scrape time; ``policy``: the
        ``lifecycle.policy.Policy`` in use."""
        self.timers_pending.set_function(pending)
        self.partitions.set_function(partitions)
        self.registry.register(_LagCollector(lag))
        if policy is not None:
            self.registry.register(_PolicyCollector(policy))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: Any) -> float:
        """One sample's current value (tests, ``/health``); 0 when absent."""
        got = self.registry.get_sample_value(name, labels or None)
        return got if got is not None else 0.0
