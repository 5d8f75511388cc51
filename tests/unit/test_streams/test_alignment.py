"""``streams.alignment``: a partition's inputs merged by record timestamp, whatever the fetches were."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from fake_kafka import consumer_record

from streams.alignment import NO_TIME, PartitionGroup, merge
from streams.forwarding import Origin, origin_headers, record_origin

CLICKS = TopicPartition("events.clickstream", 0)
ORDERS = TopicPartition("events.purchase", 0)
COMMANDS = TopicPartition("profile-commands", 0)
ORDERED = ("events.clickstream", "events.purchase")


def records(tp: TopicPartition, *timestamps: int) -> list[ConsumerRecord]:
    return [
        consumer_record(tp.topic, tp.partition, offset, b"k", b"v", timestamp=ts)
        for offset, ts in enumerate(timestamps)
    ]


def group(max_idle_s: float = 1.0) -> PartitionGroup:
    return PartitionGroup([CLICKS, ORDERS, COMMANDS], ordered_topics=ORDERED, max_idle_s=max_idle_s)


def drain(g: PartitionGroup, lag, monotonic: float) -> list[ConsumerRecord]:
    """What ``merge`` hands out of the one partition ``g`` now, its stream time moved as the runtime does."""
    stream_ms: dict[int, int] = {}
    out: list[ConsumerRecord] = []
    for _, run in merge({0: g}, stream_ms, lag, monotonic):
        out.extend(run)
        stream_ms[0] = max(stream_ms.get(0, NO_TIME), *(record.timestamp for record in run))
    return out


def order(out: list[ConsumerRecord]) -> list[tuple[str, int]]:
    return [(record.topic, record.timestamp) for record in out]


def test_records_of_the_inputs_go_by_timestamp_ties_in_input_order():
    g = group()
    g.add(CLICKS, records(CLICKS, 10, 30, 50))
    g.add(ORDERS, records(ORDERS, 20, 30))
    out = drain(g, lambda tp: 0, 0.0)
    assert order(out) == [
        ("events.clickstream", 10),
        ("events.purchase", 20),
        ("events.clickstream", 30),
        ("events.purchase", 30),
        ("events.clickstream", 50),
    ]
    assert g.buffered == 0


def test_an_empty_input_whose_lag_is_unknown_is_waited_for_then_given_up_after_the_idle_time():
    g = group(max_idle_s=1.0)
    g.add(CLICKS, records(CLICKS, 10, 20))
    lag = lambda tp: None if tp == ORDERS else 0  # noqa: E731  (no fetch response for ORDERS yet)
    assert drain(g, lag, 100.0) == []  # the order at 15 may be on the broker still
    assert drain(g, lag, 100.5) == []
    assert order(drain(g, lag, 101.0)) == [("events.clickstream", 10), ("events.clickstream", 20)]


def test_an_empty_input_with_a_known_lag_is_waited_for_without_a_bound():
    """KIP-695: its records are on the broker, so the next fetches bring them; however long that takes,
    the order does not depend on it."""
    g = group(max_idle_s=1.0)
    g.add(CLICKS, records(CLICKS, 10, 20))
    lag = lambda tp: 3 if tp == ORDERS else 0  # noqa: E731
    for now in (100.0, 101.0, 10_000.0):
        assert drain(g, lag, now) == []
    g.add(ORDERS, records(ORDERS, 15))
    assert order(drain(g, lambda tp: 0, 10_001.0)) == [
        ("events.clickstream", 10),
        ("events.purchase", 15),
        ("events.clickstream", 20),
    ]


def test_a_known_lag_is_waited_for_even_after_an_unknown_one_lapsed():
    g = group(max_idle_s=1.0)
    g.add(CLICKS, records(CLICKS, 10))
    assert drain(g, lambda tp: None if tp == ORDERS else 0, 100.0) == []
    assert drain(g, lambda tp: 2 if tp == ORDERS else 0, 102.0) == []  # now known: no bound


def test_the_merge_stops_where_an_input_runs_empty_while_behind():
    g = group()
    g.add(CLICKS, records(CLICKS, 10, 40))
    g.add(ORDERS, records(ORDERS, 20))
    out = drain(g, lambda tp: 1 if tp == ORDERS else 0, 0.0)
    assert order(out) == [("events.clickstream", 10), ("events.purchase", 20)]  # 40 waits for ORDERS' next fetch
    g.add(ORDERS, [consumer_record(ORDERS.topic, 0, 1, b"k", b"v", timestamp=30)])
    assert order(drain(g, lambda tp: 0, 0.0)) == [("events.purchase", 30), ("events.clickstream", 40)]


def test_an_input_outside_the_ordered_topics_is_not_waited_for():
    g = group()
    g.add(CLICKS, records(CLICKS, 10))
    out = drain(g, lambda tp: 5 if tp == COMMANDS else 0, 0.0)  # COMMANDS behind, empty: not ordered here
    assert order(out) == [("events.clickstream", 10)]


@pytest.mark.parametrize("seed", range(20))
def test_any_batching_and_interleaving_gives_the_same_order(seed: int):
    rng = random.Random(seed)
    history = {
        CLICKS: records(CLICKS, *sorted(rng.randrange(1000) for _ in range(40))),
        ORDERS: records(ORDERS, *sorted(rng.randrange(1000) for _ in range(15))),
    }
    reference = _deliver(history, random.Random(0), max_batch=1000)
    assert len(reference) == 55
    assert [r.timestamp for r in reference] == sorted(r.timestamp for r in reference)
    assert _deliver(history, rng, max_batch=rng.randint(1, 7)) == reference


def _deliver(history: dict[TopicPartition, list[ConsumerRecord]], rng: random.Random, max_batch: int) -> list:
    """Hand ``history`` to a group in random fetches of at most ``max_batch`` records per input; what comes out."""
    g = group()
    sent = dict.fromkeys(history, 0)
    out: list[ConsumerRecord] = []
    while any(sent[tp] < len(history[tp]) for tp in history) or g.buffered:
        pending = [tp for tp in history if sent[tp] < len(history[tp])]
        for tp in rng.sample(pending, rng.randint(1, len(pending))) if pending else ():
            size = rng.randint(1, max_batch)
            g.add(tp, history[tp][sent[tp] : sent[tp] + size])
            sent[tp] = min(sent[tp] + size, len(history[tp]))
        out.extend(drain(g, lambda tp: len(history.get(tp, ())) - sent.get(tp, 0), 0.0))
    return out


CLICKS_1 = TopicPartition("events.clickstream", 1)
COMMANDS_1 = TopicPartition("profile-commands", 1)
ALL_INPUTS = (*ORDERED, "profile-commands")


def worker_groups() -> dict[int, PartitionGroup]:
    """Two partitions of one worker, commands ordered by their origin headers."""

    def command_key(record: ConsumerRecord) -> tuple[int, int, int]:
        origin = record_origin(record)
        return (origin.at_ms, origin.depth, origin.source)

    def make(*inputs: TopicPartition) -> PartitionGroup:
        return PartitionGroup(
            inputs, ordered_topics=ALL_INPUTS, max_idle_s=1.0, record_key={"profile-commands": command_key}
        )

    return {0: make(CLICKS, ORDERS, COMMANDS), 1: make(CLICKS_1, COMMANDS_1)}


def merged(groups: dict[int, PartitionGroup], stream_ms: dict[int, int], lag=lambda tp: 0) -> list[tuple]:
    """What ``merge`` hands out, as (topic, partition, timestamp), each run processed before the next: the
    stream time moves to the largest timestamp handed out per partition (as the runtime's processing does)."""
    out = []
    for tp, run in merge(groups, stream_ms, lag, 0.0):
        for record in run:
            out.append((record.topic, record.partition, record.timestamp))
            stream_ms[tp.partition] = max(stream_ms.get(tp.partition, NO_TIME), record_origin(record).at_ms)
    return out


def test_a_worker_merges_its_partitions_by_event_time():
    groups = worker_groups()
    groups[0].add(CLICKS, records(CLICKS, 10, 40))
    groups[0].add(ORDERS, records(ORDERS, 30))
    groups[1].add(CLICKS_1, [replace(r, partition=1) for r in records(CLICKS_1, 20, 30, 50)])
    assert merged(groups, {}) == [
        ("events.clickstream", 0, 10),
        ("events.clickstream", 1, 20),
        ("events.purchase", 0, 30),  # a tie goes to the lower partition
        ("events.clickstream", 1, 30),
        ("events.clickstream", 0, 40),
        ("events.clickstream", 1, 50),
    ]


def test_a_partition_that_cannot_say_what_comes_next_holds_every_partition_at_its_stream_time():
    groups = worker_groups()
    groups[0].add(CLICKS, records(CLICKS, 10, 60))
    groups[1].add(CLICKS_1, [replace(r, partition=1) for r in records(CLICKS_1, 20, 70)])
    stream_ms = {1: 50}  # partition 1 is at 50; its commands input has records on the broker, not fetched
    lag = lambda tp: 2 if tp == COMMANDS_1 else 0  # noqa: E731
    assert merged(groups, stream_ms, lag) == [("events.clickstream", 0, 10)]  # 60 must wait: 1 may hold a 50
    assert groups[0].buffered == 1 and groups[1].buffered == 2


def test_a_command_goes_by_the_time_it_was_decided_after_what_led_to_it():
    groups = worker_groups()
    groups[0].add(CLICKS, records(CLICKS, 30, 50))
    origin = origin_headers(Origin(at_ms=30, depth=1, source=1))
    command = replace(records(COMMANDS, 99)[0], headers=origin)  # written later (timestamp 99), decided at 30
    groups[0].add(COMMANDS, [command])
    assert merged(groups, {}) == [
        ("events.clickstream", 0, 30),
        ("profile-commands", 0, 99),  # at 30, depth 1: after the inbound record of the same time
        ("events.clickstream", 0, 50),
    ]


def test_a_late_record_goes_at_its_partitions_stream_time():
    groups = worker_groups()
    groups[0].add(CLICKS, records(CLICKS, 5))  # stamped before partition 0's stream time of 40
    groups[1].add(CLICKS_1, [replace(r, partition=1) for r in records(CLICKS_1, 20, 45)])
    assert merged(groups, {0: 40}) == [
        ("events.clickstream", 1, 20),
        ("events.clickstream", 0, 5),  # processed at 40
        ("events.clickstream", 1, 45),
    ]


@pytest.mark.parametrize("seed", range(30))
def test_a_worker_merge_hands_out_the_smallest_key_one_record_at_a_time(seed: int):
    """Runs (``PartitionGroup.take_run``) give the order of picking, record by record, the smallest
    ``(effective time, depth, deciding partition, input, partition)`` over every head, late records and
    commands included."""
    rng = random.Random(seed)
    inputs = {0: (CLICKS, ORDERS, COMMANDS), 1: (CLICKS_1, COMMANDS_1)}
    history: dict[TopicPartition, list[ConsumerRecord]] = {}
    for tps in inputs.values():
        for tp in tps:
            stamps = sorted(rng.randrange(200) for _ in range(rng.randint(0, 25)))
            batch = [replace(r, partition=tp.partition) for r in records(tp, *stamps)]
            if tp.topic == "profile-commands":  # decided at a time, depth and source of their own
                batch = [
                    replace(r, headers=origin_headers(Origin(r.timestamp, rng.randint(1, 3), rng.randint(0, 1))))
                    for r in batch
                ]
            else:  # some stamped late: before records already in the input (processed at the stream time)
                batch = [replace(r, timestamp=max(r.timestamp - rng.choice((0, 0, 0, 60)), 0)) for r in batch]
            history[tp] = batch
    start = {partition: rng.choice((NO_TIME, 50)) for partition in inputs}

    groups = worker_groups()
    for partition, tps in inputs.items():
        for tp in tps:
            if history[tp]:
                groups[partition].add(tp, history[tp])
    assert merged(groups, dict(start)) == _one_at_a_time(inputs, history, dict(start))


def _one_at_a_time(inputs, history, stream_ms: dict[int, int]) -> list[tuple]:
    queues = {tp: list(history[tp]) for tps in inputs.values() for tp in tps}
    out = []
    while any(queues.values()):
        best = None
        for partition, tps in inputs.items():
            at_ms = stream_ms.get(partition, NO_TIME)
            for index, tp in enumerate(tps):
                if queues[tp]:
                    origin = record_origin(queues[tp][0])
                    raw = (queues[tp][0].timestamp, 0, partition) if tp.topic != "profile-commands" else origin
                    key = (max(raw[0], at_ms), raw[1], raw[2], index, partition)
                    if best is None or key < best[0]:
                        best = (key, tp)
        assert best is not None
        record = queues[best[1]].pop(0)
        out.append((record.topic, record.partition, record.timestamp))
        stream_ms[record.partition] = max(stream_ms.get(record.partition, NO_TIME), record_origin(record).at_ms)
    return out
