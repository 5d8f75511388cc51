"""Prometheus metrics of the worker, served at ``/metrics`` by the worker's web server.

Names follow Prometheus conventions (``streamcdp_<what>_total`` for counters); labels are bounded
sets (family, reason code, kind, channel), never ids.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from agents import tally as tally_names
from agents.tally import Tally
from core.triggers.guards import OUTCOMES
from schemas.conversions import RESPONSES
from streams.gc_pauses import GcPauses

registry = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total, process_start_time_seconds, ...: the dashboard's RSS.
ProcessCollector(registry=registry)

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
segment_changes = Counter(
    "streamcdp_segment_changes_total",
    "Segment entries and exits published on segments.changes, by change (entered, exited).",
    ["change"],
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
trigger_responses = Counter(
    "streamcdp_trigger_responses_total",
    "Responses attributed to triggers (published on trigger-conversions), by kind and response ("
    + ", ".join(RESPONSES)
    + ").",
    ["kind", "response"],
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
flush_records = Histogram(
    "streamcdp_flush_records",
    "What one flush held: records sent, by kind (``outputs``: triggers, segment changes, dead letters, re-keyed "
    "and forwarded commands; ``changelog``: changed state keys). A worker's memory peaks with its largest flushes.",
    ["kind"],
    buckets=(10, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000),
    registry=registry,
)
heap_trim_seconds = Histogram(
    "streamcdp_heap_trim_seconds",
    "One return of the C heap's free pages to the system after a flush (glibc malloc_trim); its count: the trims.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    registry=registry,
)
# The garbage collector's pauses by generation, counted by a lock-free ``gc.callbacks`` entry
# (``streams.gc_pauses``; the worker installs it).
gc_pauses = GcPauses()
registry.register(gc_pauses)
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
fetches = Counter(
    "streamcdp_fetches_total",
    "Fetches of the stream loop, by whether they returned records (empty: the wait ended with none).",
    ["result"],
    registry=registry,
)
fetched_records = Counter(
    "streamcdp_fetched_records_total", "Records the stream loop's fetches returned.", registry=registry
)
restored_records = Counter(
    "streamcdp_restored_records_total", "Changelog records read back into partition stores.", registry=registry
)
forwards = Counter(
    "streamcdp_forwards_total",
    "Commands the profile stage addressed to another key, by path: in_place (partition held here, applied at "
    "once), kafka (partition held elsewhere), copy_skipped (the durable copy of one applied in place, read back).",
    ["path"],
    registry=registry,
)
assigned_partitions = Gauge("streamcdp_assigned_partitions", "State partitions this worker holds.", registry=registry)

# --- operations (streams.lag, streams.gauges): lag, wake-up age, readiness, state size, failures ------------
consumer_lag_records = Gauge(
    "streamcdp_consumer_lag_records",
    "Records of an assigned input partition not processed yet (high watermark minus position).",
    ["topic", "partition"],
    registry=registry,
)
consumer_lag_seconds = Gauge(
    "streamcdp_consumer_lag_seconds",
    "Now minus the timestamp of the last processed record of an input partition that is behind (0: caught up).",
    ["topic", "partition"],
    registry=registry,
)
oldest_wakeup_age_seconds = Gauge(
    "streamcdp_oldest_wakeup_age_seconds",
    "How long the earliest pending wake-up of this worker is overdue (0: none due yet).",
    registry=registry,
)
assignment_changes = Counter(
    "streamcdp_assignment_changes_total",
    "Rebalances that changed the input partitions assigned to this worker.",
    registry=registry,
)
flush_failures = Counter(
    "streamcdp_flush_failures_total",
    "Flushes that failed (the worker stops so that the inputs since the last commit replay).",
    registry=registry,
)
ready = Gauge(
    "streamcdp_ready", "1 when every assigned partition is restored (/readyz is 200), else 0.", registry=registry
)
state_bytes = Gauge(
    "streamcdp_state_bytes", "Bytes on disk of this worker's RocksDB partition stores.", registry=registry
)


@cache
def child(metric: Counter | Gauge | Histogram, *label_values: str):
    """``metric.labels(*label_values)``, looked up once: label sets are bounded, and the lookup costs a
    few microseconds on the per-event path."""
    return metric.labels(*label_values)


# The agents' counts and observations (``agents.tally``) by name: published into these at every flush and scrape.
COUNTER_BY_NAME: dict[str, Counter] = {
    tally_names.EVENTS_INGESTED: events_ingested,
    tally_names.EVENTS_UNKNOWN: events_unknown,
    tally_names.EVENTS_DEADLETTERED: events_deadlettered,
    tally_names.PROFILE_COMMANDS: profile_commands,
    tally_names.PROFILE_OUTCOMES: profile_notes,
    tally_names.AUDIENCE_CHANGES: audience_changes,
    tally_names.TRIGGERS_EMITTED: triggers_emitted,
    tally_names.TRIGGER_DECISIONS: trigger_decisions,
    tally_names.SEGMENT_CHANGES: segment_changes,
    tally_names.FORWARDS: forwards,
    tally_names.TRIGGER_RESPONSES: trigger_responses,
}
HISTOGRAM_BY_NAME: dict[str, Histogram] = {tally_names.EVENT_LAG_SECONDS: event_lag_seconds}


class PublishedTally(Tally):
    """The worker's ``Tally``, published into the Prometheus metrics of the same names in one go.

    A prometheus-client ``inc`` takes a lock (~1 µs); the stage makes several per event. The runtime
    publishes at every flush and ``/metrics`` before every scrape, so what a scrape shows is current.
    """

    def __init__(
        self,
        counters: dict[str, Counter] = COUNTER_BY_NAME,
        histograms: dict[str, Histogram] = HISTOGRAM_BY_NAME,
    ) -> None:
        super().__init__()
        self._counters = counters
        self._histograms = histograms

    def publish(self) -> None:
        counts, observed = self.take()
        for (name, label_values), amount in counts.items():
            counter = self._counters[name]
            (child(counter, *label_values) if label_values else counter).inc(amount)
        for name, values in observed.items():
            observe = self._histograms[name].observe
            for value in values:
                observe(value)


tally = PublishedTally()
