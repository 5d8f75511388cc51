"""Counts of the per-event path, kept by metric name in a plain dict; ``streams.metrics`` publishes them.

The agents count what they do (events ingested, commands, outcomes, triggers, …) without importing
Prometheus: a count costs one dict add here, and the runtime publishes the sums into the Prometheus
metrics of the same name at every flush (and ``/metrics`` before every scrape). Names are the constants
below; ``streams.metrics`` maps each to its Prometheus metric.
"""

from __future__ import annotations

# Counters, with their label values in the order the Prometheus metric declares them.
EVENTS_INGESTED = "events_ingested"  # family
EVENTS_UNKNOWN = "events_unknown"
EVENTS_DEADLETTERED = "events_deadlettered"  # reason
PROFILE_COMMANDS = "profile_commands"  # kind
PROFILE_OUTCOMES = "profile_outcomes"  # outcome
AUDIENCE_CHANGES = "audience_changes"  # kind
TRIGGERS_EMITTED = "triggers_emitted"  # kind, channel
TRIGGER_DECISIONS = "trigger_decisions"  # kind, outcome (core.triggers.guards.OUTCOMES)
SEGMENT_CHANGES = "segment_changes"  # change: entered / exited
TRIGGER_RESPONSES = "trigger_responses"  # kind, response (schemas.conversions.RESPONSES)
FORWARDS = "forwards"  # path
COUNTERS = (
    EVENTS_INGESTED,
    EVENTS_UNKNOWN,
    EVENTS_DEADLETTERED,
    PROFILE_COMMANDS,
    PROFILE_OUTCOMES,
    AUDIENCE_CHANGES,
    TRIGGERS_EMITTED,
    TRIGGER_DECISIONS,
    SEGMENT_CHANGES,
    FORWARDS,
    TRIGGER_RESPONSES,
)
# Observations (histograms).
EVENT_LAG_SECONDS = "event_lag_seconds"
OBSERVATIONS = (EVENT_LAG_SECONDS,)


class Tally:
    """Counter increments and histogram observations by metric name, until ``take`` hands them over."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, tuple[str, ...]], float] = {}
        self._each: dict[tuple[str, tuple[str, ...]], int] = {}  # add_each's, split into _counts by take
        self._observed: dict[str, list[float]] = {name: [] for name in OBSERVATIONS}

    def add(self, name: str, *label_values: str, amount: float = 1) -> None:
        key = (name, label_values)
        counts = self._counts
        counts[key] = counts.get(key, 0) + amount

    def add_each(self, name: str, values: tuple[str, ...]) -> None:
        """``add(name, value)`` for each of ``values`` (a counter of one label), in one step: the tuple is
        counted as it is and split when taken, since the same few tuples come again and again (a profile
        command's outcomes)."""
        key = (name, values)
        each = self._each
        each[key] = each.get(key, 0) + 1

    def observe(self, name: str, value: float) -> None:
        self._observed[name].append(value)

    def take(self) -> tuple[dict[tuple[str, tuple[str, ...]], float], dict[str, list[float]]]:
        """The counts and observations since the last ``take``; the tally starts again from zero."""
        counts, self._counts = self._counts, {}
        for (name, values), times in self._each.items():
            for value in values:
                key = (name, (value,))
                counts[key] = counts.get(key, 0) + times
        self._each = {}
        observed, self._observed = self._observed, {name: [] for name in OBSERVATIONS}
        return counts, observed
