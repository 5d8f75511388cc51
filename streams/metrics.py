"""Prometheus metrics of the worker, served at ``/metrics`` by the worker's web server.

Names follow Prometheus conventions (``streamcdp_<what>_total`` for counters); labels are bounded
sets (family, reason code, kind, channel), never ids.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.triggers.guards import OUTCOMES

registry = CollectorRegistry(auto_describe=True)

events_ingested = Counter(
    "streamcdp_events_ingested_total", "Valid inbound events, by family.", ["family"], registry=registry
)
events_unknown = Counter(
    "streamcdp_events_unknown_total", "Valid track events of a name streamcdp does not model.", registry=registry
)
events_deadlettered = Counter(
    "streamcdp_events_deadlettered_total",
    "Inbound messages sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=registry,
)
profile_commands = Counter(
    "streamcdp_profile_commands_total",
    "Commands handled by the profile stage, by command type.",
    ["kind"],
    registry=registry,
)
profile_notes = Counter(
    "streamcdp_profile_outcomes_total",
    "Outcomes of the profile stage (applied, duplicate, forwarded, linked, overmerge_blocked, forgotten, ...).",
    ["outcome"],
    registry=registry,
)
audience_changes = Counter(
    "streamcdp_audience_changes_total",
    "Records published on segments.changes, by kind (segment, score).",
    ["kind"],
    registry=registry,
)
triggers_emitted = Counter(
    "streamcdp_triggers_emitted_total",
    "Triggers published, by kind and channel.",
    ["kind", "channel"],
    registry=registry,
)
trigger_decisions = Counter(
    "streamcdp_trigger_decisions_total",
    "Triggers decided, cancelled or expired, by kind and outcome (" + ", ".join(o.name for o in OUTCOMES) + ").",
    ["kind", "outcome"],
    registry=registry,
)
wakeups_indexed = Gauge(
    "streamcdp_wakeups_indexed", "Entries in this worker's wake-up index at its last rebuild.", registry=registry
)
event_lag_seconds = Histogram(
    "streamcdp_event_lag_seconds",
    "Event timestamp → profile updated, for events younger than an hour.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=registry,
)
flush_seconds = Histogram(
    "streamcdp_flush_seconds",
    "One flush: outputs sent and acknowledged, changelog written, offsets committed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=registry,
)
outputs_sent = Counter(
    "streamcdp_outputs_sent_total",
    "Records sent by the profile stage (triggers, segment changes, dead letters, re-keyed commands).",
    registry=registry,
)
changelog_records = Counter(
    "streamcdp_changelog_records_total",
    "State records written to the changelog (one per dirty key per flush).",
    registry=registry,
)
restored_records = Counter(
    "streamcdp_restored_records_total", "Changelog records read back into partition stores.", registry=registry
)
forwards = Counter(
    "streamcdp_forwards_total",
    "Commands the profile stage addressed to another key: applied in place (partition held here) or via Kafka.",
    ["path"],
    registry=registry,
)
assigned_partitions = Gauge("streamcdp_assigned_partitions", "State partitions this worker holds.", registry=registry)


@cache
def child(metric: Counter | Gauge | Histogram, *label_values: str):
    """``metric.labels(*label_values)``, looked up once: label sets are bounded, and the lookup costs a
    few microseconds on the per-event path."""
    return metric.labels(*label_values)


class Tally:
    """Counter increments of the per-event path, added up in a plain dict and published in one go.

    A prometheus-client ``inc`` takes a lock (~1 µs); the stage makes several per event. The runtime
    publishes at every flush and ``/metrics`` before every scrape, so what a scrape shows is current.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple, float] = {}

    def add(self, metric: Counter, *label_values: str, amount: float = 1) -> None:
        key = (metric, label_values)
        counts = self._counts
        counts[key] = counts.get(key, 0) + amount

    def publish(self) -> None:
        counts, self._counts = self._counts, {}
        for (metric, label_values), amount in counts.items():
            (child(metric, *label_values) if label_values else metric).inc(amount)


tally = Tally()
