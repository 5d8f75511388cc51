"""Lag and wake-up gauges (streams.lag): what the loop's hook publishes after each fetch."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.structs import TopicPartition

from core.due_index import DueIndex
from streams import metrics
from streams.lag import LagGauges, oldest_wakeup_age

CLICKS = TopicPartition("events.clickstream", 0)
COMMANDS = TopicPartition("streamcdp.profile-commands", 0)


class FakeConsumer:
    """What the hook reads from aiokafka's consumer: the assignment and each partition's high watermark."""

    def __init__(self, highwater: dict[TopicPartition, int | None]) -> None:
        self._highwater = highwater

    def assignment(self) -> set[TopicPartition]:
        return set(self._highwater)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater[tp]


def record(offset: int, timestamp_s: float) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, timestamp=int(timestamp_s * 1000))


def store_with_wakeups(*due_at: float) -> SimpleNamespace:
    index = DueIndex()
    for number, when in enumerate(due_at):
        index.push(b"key%d" % number, when)
    return SimpleNamespace(due_index=index)


def sample(name: str, tp: TopicPartition) -> float | None:
    return metrics.registry.get_sample_value(name, {"topic": tp.topic, "partition": str(tp.partition)})


def test_records_and_seconds_behind_per_partition() -> None:
    gauges = LagGauges()
    consumer = FakeConsumer({CLICKS: 110, COMMANDS: 50})
    batch = {CLICKS: [record(98, 1000.0), record(99, 1001.0)], COMMANDS: [record(49, 1002.0)]}
    gauges.observe(consumer, batch, [], now=1010.0)
    assert sample("streamcdp_consumer_lag_records", CLICKS) == 10  # high watermark 110 - position 100
    assert sample("streamcdp_consumer_lag_seconds", CLICKS) == 9.0  # the last processed record is 9 s old
    assert sample("streamcdp_consumer_lag_records", COMMANDS) == 0  # caught up ...
    assert sample("streamcdp_consumer_lag_seconds", COMMANDS) == 0.0  # ... so not late, however old


def test_an_empty_fetch_keeps_the_position_and_ages_the_lag() -> None:
    gauges = LagGauges()
    gauges.observe(FakeConsumer({CLICKS: 10}), {CLICKS: [record(4, 100.0)]}, [], now=100.0)
    gauges.observe(FakeConsumer({CLICKS: 30}), {}, [], now=160.0)
    assert sample("streamcdp_consumer_lag_records", CLICKS) == 25
    assert sample("streamcdp_consumer_lag_seconds", CLICKS) == 60.0


def test_a_revoked_partition_stops_being_reported_and_the_change_is_counted() -> None:
    gauges = LagGauges()
    before = metrics.registry.get_sample_value("streamcdp_assignment_changes_total") or 0.0
    gauges.observe(
        FakeConsumer({CLICKS: 5, COMMANDS: 5}), {CLICKS: [record(4, 1.0)], COMMANDS: [record(4, 1.0)]}, [], 2.0
    )
    gauges.observe(FakeConsumer({COMMANDS: 5}), {}, [], 3.0)
    assert sample("streamcdp_consumer_lag_records", CLICKS) is None
    assert sample("streamcdp_consumer_lag_records", COMMANDS) == 0
    assert metrics.registry.get_sample_value("streamcdp_assignment_changes_total") == before + 2


def test_a_partition_never_fetched_has_no_figure() -> None:
    gauges = LagGauges()
    fresh = TopicPartition("events.purchase", 3)
    gauges.observe(FakeConsumer({fresh: None}), {}, [], 1.0)
    assert sample("streamcdp_consumer_lag_records", fresh) is None


def test_oldest_wakeup_age_is_how_overdue_the_earliest_is() -> None:
    stores = [store_with_wakeups(500.0, 900.0), store_with_wakeups(450.0), store_with_wakeups()]
    assert oldest_wakeup_age(stores, now=400.0) == 0.0  # nothing due yet
    assert oldest_wakeup_age(stores, now=460.0) == 10.0
    assert oldest_wakeup_age([], now=460.0) == 0.0
    LagGauges().observe(FakeConsumer({}), {}, stores, now=470.0)
    assert metrics.registry.get_sample_value("streamcdp_oldest_wakeup_age_seconds") == 20.0
