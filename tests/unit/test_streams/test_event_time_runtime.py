"""The runtime decides the same triggers and segment changes for the same history, whatever the fetches.

A history of carts (``events.clickstream``) and orders (``events.purchase``) with timestamps hours in the
past is handed to the loop through the fake consumer in different batch sizes and topic interleavings,
every input's high watermark known from the start (the history is complete in Kafka). The outputs must
be identical, and a cart whose order comes before its reminder time must get no reminder even when all
of its partition's clicks are fetched before the orders.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from fake_kafka import FakeConsumer, FakeProducer, FakeRestoreConsumer, FakeTransactionalProducer, consumer_record

from agents.outbox import Outbox
from agents.pipeline import ProfilePipeline
from agents.tally import Tally
from core.audiences import AudiencePolicy
from core.privacy import PiiPolicy
from core.profile.policy import ProfilePolicy
from core.profile_stage import StagePolicy
from core.rules.definitions import load_definitions
from core.scoring import load_models
from core.triggers.definitions import load_triggers
from core.triggers.engine import TriggerPolicy
from schemas.validation import ContractLimits
from streams.assignor import CoPartitionAssignor
from streams.partitioning import owning_partition
from streams.runtime import Runtime
from streams.settings import Settings
from streams.topics import topic_names

PARTITIONS = 2
POLICY = StagePolicy(
    profile=ProfilePolicy(pii_hash_key="test-secret"),
    audiences=AudiencePolicy(definitions=load_definitions(), models=load_models()),
    triggers=TriggerPolicy(load_triggers()),
)
T0 = round(time.time()) - 6 * 3600  # a history six hours old: every reminder is overdue by the wall clock
CUSTOMERS = 12


def event(name: str, user: str, at: float, message_id: str, **properties) -> dict:
    return {
        "type": "track",
        "event": name,
        "userId": user,
        "messageId": message_id,
        "timestamp": at,
        "properties": properties,
    }


def history() -> dict[str, list[dict]]:
    """Per inbound family, in timestamp order: every customer adds to a cart; odd ones order 10 minutes later
    (before the 30-minute reminder); everyone views a product an hour later (stream time passes the reminders)."""
    clicks, orders = [], []
    for n in range(CUSTOMERS):
        user = f"u{n}"
        clicks.append(event("Product Added", user, T0 + n, f"add-{n}", product_id="p-1", price=20.0))
        if n % 2:
            orders.append(event("Order Completed", user, T0 + 600 + n, f"order-{n}", order_id=f"o{n}", total=20.0))
        clicks.append(event("Product Viewed", user, T0 + 3600 + n, f"view-{n}", product_id="p-2", price=5.0))
    clicks.sort(key=lambda payload: payload["timestamp"])
    return {"clickstream": clicks, "purchase": orders}


def device_history() -> dict[str, list[dict]]:
    """Anonymous devices that log in: each adds to a cart anonymously, logs in five minutes later (the device is
    linked to its customer: a link to the device's key, the device's profile absorbed back), views a product
    anonymously (forwarded to the customer), and odd ones order before the reminder. The device and its customer
    are often in different partitions, so their commands cross partitions."""
    clicks, orders = [], []
    for n in range(CUSTOMERS):
        device, user = f"d{n}", f"v{n}"
        anonymous = {"anonymousId": device}
        clicks.append(
            {**event("Product Added", user, T0 + n, f"dadd-{n}", product_id="p-1", price=20.0), "userId": None}
            | anonymous
        )
        clicks.append(event("Product Viewed", user, T0 + 300 + n, f"dlogin-{n}", product_id="p-1") | anonymous)
        clicks.append(
            {**event("Product Viewed", user, T0 + 900 + n, f"dview-{n}", product_id="p-3"), "userId": None} | anonymous
        )
        if n % 2:
            orders.append(event("Order Completed", user, T0 + 1200 + n, f"dorder-{n}", order_id=f"d{n}", total=20.0))
        clicks.append(event("Product Viewed", user, T0 + 3600 + n, f"dlater-{n}", product_id="p-2", price=5.0))
    for family in (clicks, orders):
        for payload in family:
            if payload["userId"] is None:
                del payload["userId"]
    clicks.sort(key=lambda payload: payload["timestamp"])
    return {"clickstream": clicks, "purchase": orders}


def inputs(rt: Runtime, made=history) -> dict[TopicPartition, list[ConsumerRecord]]:
    """The history as Kafka holds it: per topic partition (murmur2 of the routing id: userId, else anonymousId),
    record timestamp = event time."""
    out: dict[TopicPartition, list[ConsumerRecord]] = {}
    for family, payloads in made().items():
        for payload in payloads:
            key = (payload.get("userId") or payload["anonymousId"]).encode()
            tp = TopicPartition(rt.topics.inbound(family), owning_partition(key, PARTITIONS))
            queue = out.setdefault(tp, [])
            queue.append(
                consumer_record(
                    tp.topic,
                    tp.partition,
                    len(queue),
                    key,
                    orjson.dumps(payload),
                    timestamp=payload["timestamp"] * 1000,
                )
            )
    return out


def fetches(
    data: dict[TopicPartition, list[ConsumerRecord]], rng: random.Random, max_batch: int, topic_first: str | None
):
    """``data`` cut into fetches of random sizes and topic mixes; ``topic_first``: that topic is all fetched first."""
    sent = dict.fromkeys(data, 0)
    batches = []
    if topic_first is not None:
        batches.append({tp: records for tp, records in data.items() if tp.topic == topic_first})
        sent.update({tp: len(data[tp]) for tp in data if tp.topic == topic_first})
    while any(sent[tp] < len(data[tp]) for tp in data):
        pending = [tp for tp in data if sent[tp] < len(data[tp])]
        batch = {}
        for tp in rng.sample(pending, rng.randint(1, len(pending))):
            size = rng.randint(1, max_batch)
            batch[tp] = data[tp][sent[tp] : sent[tp] + size]
            sent[tp] += len(batch[tp])
        batches.append(batch)
    return batches


def build(
    tmp_path: Path,
    fetch_max_records: int,
    guarantee: str,
    buffered_records_per_input: int = 1_000,
    flush_max_dirty_keys: int = 5_000,
) -> tuple[Runtime, list[FakeProducer]]:
    """A runtime over the fakes, and the producers whose committed outputs are the run's outputs."""
    settings = Settings(
        topic_prefix="t1.",
        app_id="unit",
        data_dir=tmp_path,
        topic_partitions=PARTITIONS,
        fetch_max_records=fetch_max_records,
        processing_guarantee=guarantee,
        buffered_records_per_input=buffered_records_per_input,
        flush_max_dirty_keys=flush_max_dirty_keys,
    )
    calls: list[str] = []
    outbox = Outbox()
    stages = ProfilePipeline(
        POLICY,
        topics=topic_names(settings),
        limits=ContractLimits(),
        privacy=PiiPolicy(hash_key=b"unit"),
        outbox=outbox,
        tally=Tally(),
    )
    exactly_once = guarantee == "exactly_once"
    producers: list[FakeProducer] = [FakeTransactionalProducer(calls) if exactly_once else FakeProducer(calls)]
    runtime = Runtime(
        settings,
        stages,
        outbox=outbox,
        producer=producers[0],
        consumer=FakeConsumer(calls, PARTITIONS),
        restore_consumer=FakeRestoreConsumer(calls, topic_names(settings).state_changelog(settings.app_id)),
        assignor=CoPartitionAssignor("http://127.0.0.1:1"),
    )
    return runtime, producers


async def decide(
    tmp_path: Path,
    *,
    seed: int,
    max_batch: int,
    topic_first: str | None,
    guarantee: str = "exactly_once",
    made=history,
    buffered_records_per_input: int = 1_000,
    calls: list[str] | None = None,
    flush_max_dirty_keys: int = 5_000,
) -> tuple[set, set]:
    """Run the loop over the history fetched one way, then an idle tick; the triggers and segment changes sent
    (``calls``: filled with the fakes' calls)."""
    rt, producers = build(tmp_path, max_batch, guarantee, buffered_records_per_input, flush_max_dirty_keys)
    if calls is not None:
        rt.consumer.calls = rt.producer.calls = calls
    data = inputs(rt, made)
    await rt.start()
    await rt.on_partitions_assigned([TopicPartition(t, p) for t in rt.source_topics for p in range(PARTITIONS)])
    for tp, records in data.items():
        rt.consumer.highwaters[tp] = len(records)  # complete in Kafka: every input is behind until fetched
    rt.consumer.batches = fetches(data, random.Random(seed), max_batch, topic_first and rt.topics.inbound(topic_first))
    rt.consumer.when_drained = rt.stop
    await rt.run()
    await rt.tick(time.time())  # caught up: the wall clock fires what is left (each wake-up decided at its due time)
    await rt.close()
    if calls is not None:
        calls.append(f"withheld {rt.consumer.withheld_records}")
    sent = [output for producer in producers for output in producer.sent]
    triggers = {
        (value["trigger_id"], value["kind"], value["customer_id"], value["decided_at"])
        for topic, _, raw in sent
        if topic in rt.topics.all_triggers
        for value in [orjson.loads(raw)]
    }
    changes = {
        (value["customer_id"], value["segment"], value["change"], value["at"])
        for topic, _, raw in sent
        if topic == rt.topics.segment_changes
        for value in [orjson.loads(raw)]
    }
    return triggers, changes


@pytest.mark.parametrize(
    ("seed", "max_batch", "topic_first", "guarantee"),
    [
        (1, 1, None, "exactly_once"),
        (2, 3, "clickstream", "exactly_once"),
        (3, 2, "purchase", "exactly_once"),
        (4, 50, None, "exactly_once"),
        (5, 1, "clickstream", "at_least_once"),
    ],
)
async def test_the_same_history_decides_the_same_whatever_the_fetches(
    tmp_path: Path, seed: int, max_batch: int, topic_first: str | None, guarantee: str
):
    reference_triggers, reference_changes = await decide(tmp_path / "ref", seed=0, max_batch=10_000, topic_first=None)
    triggers, changes = await decide(
        tmp_path / "run", seed=seed, max_batch=max_batch, topic_first=topic_first, guarantee=guarantee
    )
    assert triggers == reference_triggers
    assert changes == reference_changes
    reminded = {customer for _, kind, customer, _ in triggers if kind == "cart_abandonment"}
    assert reminded == {f"u{n}" for n in range(CUSTOMERS) if n % 2 == 0}  # no reminder for a cart that was ordered
    assert all(T0 <= at < T0 + 2 * 3600 for *_, at in changes)  # event time, not the time of processing
    assert changes  # segments were entered (and the comparison is not of two empty sets)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_flushes_within_a_fetch_decide_the_same(tmp_path: Path, guarantee: str):
    """A fetch that changes ``flush_max_dirty_keys`` keys is flushed between two runs and goes on after it:
    the whole history in one fetch, flushed every few keys, decides what one flush at the end decides."""
    reference = await decide(tmp_path / "ref", seed=0, max_batch=10_000, topic_first=None, made=device_history)
    calls: list[str] = []
    flushed = await decide(
        tmp_path / "run",
        seed=0,
        max_batch=10_000,
        topic_first=None,
        guarantee=guarantee,
        made=device_history,
        calls=calls,
        flush_max_dirty_keys=3,
    )
    assert flushed == reference
    assert calls.count("txn commit" if guarantee == "exactly_once" else "commit") > 10  # flushed within the fetch


@pytest.mark.parametrize(
    ("seed", "max_batch", "topic_first", "guarantee"),
    [
        (11, 1, None, "exactly_once"),
        (12, 3, "clickstream", "exactly_once"),
        (13, 2, "purchase", "exactly_once"),
        (14, 2, None, "at_least_once"),
    ],
)
async def test_commands_across_partitions_decide_the_same_whatever_the_fetches(
    tmp_path: Path, seed: int, max_batch: int, topic_first: str | None, guarantee: str
):
    """Links, absorbed profiles and events of linked devices cross partitions: applied in the worker's
    event-time order when decided, they give the same outputs however the inputs were fetched."""
    reference = await decide(tmp_path / "ref", seed=0, max_batch=10_000, topic_first=None, made=device_history)
    triggers, changes = await decide(
        tmp_path / "run",
        seed=seed,
        max_batch=max_batch,
        topic_first=topic_first,
        guarantee=guarantee,
        made=device_history,
    )
    assert (triggers, changes) == reference
    reminded = {customer for _, kind, customer, _ in triggers if kind == "cart_abandonment"}
    assert reminded == {f"v{n}" for n in range(CUSTOMERS) if n % 2 == 0}  # the anonymous cart, once logged in
    assert changes


async def test_a_wall_clock_decision_moves_the_stream_time_which_a_restart_keeps(tmp_path: Path):
    """An idle partition's timers fire by the wall clock; its stream time moves there, so a record stamped
    earlier that comes later is processed at that time (it cannot undo the decision), and the stream time
    is committed with the state: a runtime restored from the changelog goes on from it."""
    rt, producers = build(tmp_path / "a", 100, "exactly_once")
    await rt.start()
    await rt.on_partitions_assigned([TopicPartition(t, p) for t in rt.source_topics for p in range(PARTITIONS)])
    data = inputs(rt)
    tp = next(tp for tp in data if tp.topic == rt.topics.inbound("clickstream"))
    first, *later = data[tp]
    rt.process(tp, [first])  # a cart six hours ago: its reminder is overdue by the wall clock
    assert rt.stream_time(tp.partition) == first.timestamp / 1000
    now = time.time()
    await rt.tick(now)  # idle (nothing behind): the reminder fires by the wall clock
    assert rt.stream_time(tp.partition) == int(now * 1000) / 1000
    rt.process(tp, later[:1])  # stamped hours before the decision: processed at the stream time, not its own
    assert rt.stream_time(tp.partition) == int(now * 1000) / 1000
    await rt.checkpoint.commit(rt.stores.values())
    (producer,) = producers
    assert isinstance(producer, FakeTransactionalProducer)
    changelog = producer.changelog_log[tp.partition]
    await rt.close()

    restarted, _ = build(tmp_path / "b", 100, "exactly_once")
    restarted.restore_consumer.changelog = {tp.partition: changelog}
    await restarted.start()
    await restarted.on_partitions_assigned(
        [TopicPartition(t, p) for t in restarted.source_topics for p in range(PARTITIONS)]
    )
    try:
        assert restarted.stream_time(tp.partition) == int(now * 1000) / 1000
        assert restarted.stream_time(1 - tp.partition) is None  # no record, no wall-clock decision there
    finally:
        await restarted.close()


async def test_the_wall_clock_moves_a_partition_no_further_than_a_partition_still_catching_up(tmp_path: Path):
    """A partition behind may still forward commands decided at its stream time: an idle one's timers fire by
    the wall clock only up to that time."""
    rt, _ = build(tmp_path, 100, "exactly_once")
    await rt.start()
    await rt.on_partitions_assigned([TopicPartition(t, p) for t in rt.source_topics for p in range(PARTITIONS)])
    try:
        data = inputs(rt)
        tp = next(tp for tp in data if tp.topic == rt.topics.inbound("clickstream"))
        first = data[tp][0]
        rt.process(tp, [first])  # a cart six hours ago: its reminder is due 30 minutes later
        other = 1 - tp.partition
        behind_ms = first.timestamp + 3_600_000  # the other partition has caught up to one hour later only
        rt._stream_ms[other] = behind_ms
        await rt.tick(time.time(), behind={other})
        assert rt.stream_time(tp.partition) == behind_ms / 1000  # not the wall clock: at most that far
        decided = [topic for topic, *_ in rt.outbox.records if topic in rt.topics.all_triggers]
        assert decided  # the reminder, due by then, fired
    finally:
        await rt.close()


async def test_an_input_fetched_far_ahead_is_paused_until_the_one_behind_it_catches_up(tmp_path: Path):
    """All clicks are fetched before any order: held for event-time order behind the orders, they would all
    sit in memory. With a bound of 3 buffered records per input, the click inputs are paused until the orders
    are fetched and the merge drains them, then resumed; the decisions are the same."""
    reference = await decide(tmp_path / "ref", seed=0, max_batch=10_000, topic_first=None)
    calls: list[str] = []
    bounded = await decide(
        tmp_path / "run",
        seed=21,
        max_batch=2,
        topic_first="clickstream",
        buffered_records_per_input=3,
        calls=calls,
    )
    assert bounded == reference
    paused = [call for call in calls if call.startswith("pause ")]
    resumed = [call for call in calls if call.startswith("resume ")]
    assert any("clickstream" in call for call in paused)
    assert any("clickstream" in call for call in resumed)
    assert not any("purchase" in call for call in paused)  # the input behind is never paused


@pytest.mark.parametrize(("seed", "max_batch", "made"), [(22, 3, history), (23, 4, device_history), (24, 1, history)])
async def test_inputs_paused_and_resumed_at_random_decide_the_same(tmp_path: Path, seed: int, max_batch: int, made):
    """Random fetches with at most 2 records held per input: partitions are paused with records of theirs in
    later fetches (withheld until resumed); nothing is lost, reordered or decided twice."""
    reference = await decide(tmp_path / "ref", seed=0, max_batch=10_000, topic_first=None, made=made)
    calls: list[str] = []
    bounded = await decide(
        tmp_path / "run",
        seed=seed,
        max_batch=max_batch,
        topic_first=None,
        made=made,
        buffered_records_per_input=2,
        calls=calls,
    )
    assert bounded == reference
    assert bounded[1]  # segments were entered (the comparison is not of two empty sets)
    assert int(calls[-1].removeprefix("withheld ")) > 0  # a pause did hold records back
