"""Exactly-once processing without a broker: one transaction per state partition, in order; a failure at
any step commits nothing; cross-partition forwards are applied in memory with a durable copy in Kafka;
producers follow the assignment; the restore reads past control records. The last test is a known, open loss
path (strict xfail): a crash between two partitions' transactions followed by a replay in another order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from fake_kafka import FakeTransactionalProducer, consumer_record
from test_runtime_processing import (
    PARTITIONS,
    assignment,
    build_runtime,
    events_of,
    ids_in_different_partitions,
    record,
    viewed,
)

from agents.outbox import Outbox
from agents.tables import IDENTITIES, PROFILES
from streams.checkpoint import transactional_id
from streams.forwarding import AT_HEADER, SOURCE_HEADER
from streams.partitioning import owning_partition
from streams.runtime import Runtime


@pytest.fixture
async def runtime(tmp_path: Path):
    rt = build_runtime(tmp_path, guarantee="exactly_once")
    await rt.on_partitions_assigned(assignment(rt, *range(PARTITIONS)))
    yield rt
    for store in rt.stores.values():
        store.close()


def producer_of(rt: Runtime, partition: int) -> FakeTransactionalProducer:
    producer = rt.partition_producers[partition]
    assert isinstance(producer, FakeTransactionalProducer)
    return producer


def calls_of(rt: Runtime, partition: int) -> list[str]:
    return [call for call in rt.consumer.calls if call.startswith(f"p{partition} ")]


def test_the_outbox_groups_records_by_the_partition_whose_work_produced_them():
    outbox = Outbox()
    outbox.partition = 2
    outbox.send("a", b"k1", b"1")
    outbox.partition = 0
    outbox.send("b", b"k2", b"2")
    outbox.partition = 2
    outbox.send("c", b"k3", b"3")
    assert outbox.take_by_partition() == {
        2: [("a", b"k1", b"1", None), ("c", b"k3", b"3", None)],
        0: [("b", b"k2", b"2", None)],
    }
    assert len(outbox) == 0 and outbox.partitions == []


def test_the_transactional_id_follows_the_partition_not_the_worker():
    assert transactional_id("shop", 3) == "shop-3"


async def test_a_checkpoint_commits_each_partitions_outputs_changelog_and_offsets_in_its_own_transaction(
    runtime: Runtime,
):
    tp, event = record(runtime, viewed("m1", userId="u-1"), offset=41)
    p = tp.partition
    commands = TopicPartition(runtime.topics.profile_commands, p)
    runtime.process(tp, [event, replace(event, offset=42, value=b"garbage")])  # the second is dead-lettered
    runtime.checkpoint.store_offset(commands, 7, 0)
    await runtime.checkpoint.commit(runtime.stores.values())

    offsets = sorted([(tp.topic, p, 43), (commands.topic, p, 7)])
    assert calls_of(runtime, p)[-5:] == [
        f"p{p} begin",
        f"p{p} send {runtime.topics.deadletter}",
        f"p{p} changelog x2",  # the profile and the partition's stream time
        f"p{p} offsets {offsets}",
        f"p{p} commit",
    ]
    producer = producer_of(runtime, p)
    assert producer.offsets == {tp: 43, commands: 7}
    assert runtime.consumer.committed == {}  # offsets go through the transaction, never the consumer
    store = runtime.stores[p]
    assert store.changelog_offset == 1 and store.dirty_count == 0  # persisted after the commit (2 records)
    assert producer.changelog_log[-1] is None  # the commit marker takes an offset
    assert all(not calls_of(runtime, q)[1:] for q in range(PARTITIONS) if q != p)  # no empty transactions
    assert runtime.checkpoint.empty


@pytest.mark.parametrize("fail_at", ["send", "changelog", "offsets", "commit"])
async def test_a_failure_at_any_step_commits_nothing_persists_nothing_and_stops_later_checkpoints(
    tmp_path: Path, fail_at: str
):
    runtime = build_runtime(tmp_path, guarantee="exactly_once", fail_at=fail_at)
    await runtime.on_partitions_assigned(assignment(runtime, *range(PARTITIONS)))
    try:
        tp, event = record(runtime, viewed("m1", userId="u-1"))
        runtime.process(tp, [event, replace(event, offset=1, value=b"garbage")])  # an output and state
        with pytest.raises(KafkaError):
            await runtime.checkpoint.commit(runtime.stores.values())
        producer = producer_of(runtime, tp.partition)
        assert producer.calls[-1] == f"p{tp.partition} abort"
        assert (producer.sent, producer.changelog, producer.offsets) == ([], {}, {})
        store = runtime.stores[tp.partition]
        # The cache holds the aborted state: the profile and the partition's stream time.
        assert store.changelog_offset == -1 and store.dirty_count == 2
        with pytest.raises(RuntimeError, match="earlier flush failed"):
            await runtime.checkpoint.commit(runtime.stores.values())
    finally:
        for store in runtime.stores.values():
            store.close()


def read_back(runtime: Runtime, forwarded: list[tuple[bytes, int, dict]], *, first_offset: int) -> None:
    """Hand the ``profile-commands`` copies of ``forwarded`` (key, producing partition, headers) to the runtime,
    each from the partition its key belongs to, as a consumer reads them."""
    values = {key: value for topic, key, value, _ in runtime.outbox.records if topic == runtime.topics.profile_commands}
    for offset, (key, _, headers) in enumerate(forwarded, start=first_offset):
        target = owning_partition(key, PARTITIONS)
        copy_tp = TopicPartition(runtime.topics.profile_commands, target)
        copy = consumer_record(copy_tp.topic, target, offset, key, values[key], headers=list(headers.items()))
        runtime.process(copy_tp, [copy])


async def test_a_forward_to_another_partition_held_here_is_applied_now_and_written_in_this_partitions_transaction(
    runtime: Runtime,
):
    """The link goes to the alias's partition, the absorbed profile comes back: each is applied in memory when
    decided (in event-time order) and written to ``profile-commands`` in the deciding partition's transaction;
    their copies read back from Kafka are skipped, and read by a process that did not apply them (a restart)
    they change nothing."""
    user, anonymous = ids_in_different_partitions()
    user_partition = owning_partition(user.encode(), PARTITIONS)
    alias_partition = owning_partition(anonymous.encode(), PARTITIONS)
    tp, first = record(runtime, viewed("m1", anonymousId=anonymous))
    runtime.process(tp, [first])
    tp, linking = record(runtime, viewed("m2", userId=user, anonymousId=anonymous))
    runtime.process(tp, [linking])

    forwarded = [
        (key, partition, dict(headers or ()))
        for (topic, key, _, headers), partition in zip(runtime.outbox.records, runtime.outbox.partitions, strict=True)
        if topic == runtime.topics.profile_commands
    ]
    assert [(key, partition) for key, partition, _ in forwarded] == [
        (anonymous.encode(), user_partition),  # the link, decided in the user's partition
        (user.encode(), alias_partition),  # the absorbed profile, decided in the alias's partition
    ]
    assert [h[SOURCE_HEADER] for _, _, h in forwarded] == [str(user_partition).encode(), str(alias_partition).encode()]
    assert all(AT_HEADER in h for _, _, h in forwarded)  # decided at: ordered by it where they are read
    alias_store = runtime.stores[alias_partition]
    assert alias_store.get(IDENTITIES, anonymous.encode()).redirect_to == user  # linked in memory
    assert events_of(runtime, user) == 2  # the alias's view, absorbed

    # The copies come back from Kafka: already applied, skipped.
    read_back(runtime, forwarded, first_offset=0)
    assert events_of(runtime, user) == 2
    assert alias_store.get(IDENTITIES, anonymous.encode()).redirect_to == user
    assert len(runtime._copies) == 0  # each copy matched once

    # The same copies read by a process that did not apply them in memory: applied, and idempotent.
    read_back(runtime, forwarded, first_offset=len(forwarded))
    assert events_of(runtime, user) == 2
    assert alias_store.get(IDENTITIES, anonymous.encode()).redirect_to == user


async def test_producers_start_before_the_restore_and_stop_when_revoked(tmp_path: Path):
    runtime = build_runtime(tmp_path, guarantee="exactly_once")
    calls = runtime.consumer.calls
    await runtime.on_partitions_assigned(assignment(runtime, 0, 1))
    assert calls == ["p0 start", "p1 start"] and sorted(runtime.partition_producers) == [0, 1]
    await runtime.on_partitions_revoked(assignment(runtime, 0, 1))
    assert calls[-2:] == ["p0 stop", "p1 stop"] and runtime.partition_producers == {}
    await runtime.on_partitions_assigned(assignment(runtime, 1, 2))
    assert calls[-2:] == ["p1 start", "p2 start"]  # new producers: init_transactions fences older owners
    await runtime.close()
    assert {"p1 stop", "p2 stop"} <= set(calls[-3:]) and runtime.partition_producers == {}


async def test_state_committed_in_transactions_is_restored_past_the_commit_markers(tmp_path: Path):
    first = build_runtime(tmp_path / "a", guarantee="exactly_once")
    await first.on_partitions_assigned(assignment(first, *range(PARTITIONS)))
    tp, event = record(first, viewed("m1", userId="u-1"))
    first.process(tp, [event])
    await first.checkpoint.commit(first.stores.values())
    first.process(tp, [replace(event, offset=1, value=b"not json")])  # a transaction without state
    producer = producer_of(first, tp.partition)
    await first.close()
    changelog = producer.changelog_log
    assert changelog[-1] is None and changelog[-2] is None  # two commit markers end the partition

    second = build_runtime(tmp_path / "b", guarantee="exactly_once")
    second.restore_consumer.changelog = {tp.partition: changelog}
    await second.on_partitions_assigned(assignment(second, *range(PARTITIONS)))
    try:
        assert events_of(second, "u-1") == 1
        assert second.stores[tp.partition].changelog_offset == 1  # the profile, then the stream time
    finally:
        await second.close()


async def test_a_warm_store_behind_only_a_commit_marker_is_neither_rebuilt_nor_stuck(tmp_path: Path):
    runtime = build_runtime(tmp_path, guarantee="exactly_once")
    recovery = runtime.recovery
    stores, _ = await recovery.open_stores([0])
    stores[0].put(PROFILES, b"u-1", None)
    stores[0].persist(stores[0].pending_records(), 1)  # the last data record is at offset 1
    stores[0].close()
    runtime.restore_consumer.changelog = {0: [(b"x", None), (b"u-1", None), None]}  # then the commit marker
    stores, restored = await recovery.open_stores([0])
    try:
        assert restored == 0 and stores[0].changelog_offset == 1  # not "ahead of its changelog", not wiped
    finally:
        stores[0].close()


async def test_the_committed_offset_skips_the_transaction_markers_after_the_last_processed_record(runtime: Runtime):
    commands = TopicPartition(runtime.topics.profile_commands, 1)
    runtime.checkpoint.store_offset(commands, 10, 1)  # the record at offset 9 was processed
    runtime.consumer.positions[commands] = 11  # the fetch also read the commit marker at offset 10
    await runtime.checkpoint.commit(runtime.stores.values())
    assert producer_of(runtime, 1).offsets == {commands: 11}  # else the group would lag one record behind


async def test_records_held_for_their_timestamp_order_are_not_covered_by_the_transactions_offsets(runtime: Runtime):
    """A fetch moves the consumer's position past every record it returns; records the partition group still
    holds (an earlier order may yet come from the purchase topic) must replay after a crash, so the offset
    the transaction commits is the next one processed, not the position."""
    runtime.settings = runtime.settings.model_copy(update={"max_task_idle_ms": 60_000})  # hold, whatever the pace
    clicks, first = record(runtime, viewed("m1", userId="u-1"))
    orders = TopicPartition(runtime.topics.inbound("purchase"), clicks.partition)
    t = 1_700_000_000_000
    click_records = [replace(first, offset=n, timestamp=t + 1000 * n) for n in range(3)]
    order = replace(first, topic=orders.topic, offset=0, timestamp=t + 1500)
    runtime.consumer.highwaters[orders] = 2  # a second order is on the broker, not fetched yet
    runtime.consumer.batches = [{clicks: click_records, orders: [order]}]
    runtime.consumer.when_drained = runtime.stop
    await runtime.run()

    # Processed: clicks 0 and 1, then the order (t + 1.5 s); click 2 (t + 2 s) waits for the second order.
    assert runtime.consumer.positions[clicks] == 3
    await runtime.checkpoint.commit(runtime.stores.values())
    assert producer_of(runtime, clicks.partition).offsets[clicks] == 2  # click 2 is not skipped on a restart


@pytest.mark.xfail(
    strict=True,
    reason="known, open (issue 10): a partition commits state derived from another partition's uncommitted "
    "state (an absorb applied in memory); if that one's replay decides the link after more of the alias's events "
    "(records arriving late, in another order), the new absorb carries the same absorb_id and is dropped as a "
    "duplicate: the events applied to the alias in between are lost (seen at full size in the chaos test)",
)
async def test_a_replay_that_links_the_alias_after_more_of_its_events_loses_none_of_them(tmp_path: Path):
    first = build_runtime(tmp_path / "a", guarantee="exactly_once")
    await first.on_partitions_assigned(assignment(first, *range(PARTITIONS)))
    user, anonymous = ids_in_different_partitions()
    alias_partition = owning_partition(anonymous.encode(), PARTITIONS)
    tp, seen = record(first, viewed("m1", anonymousId=anonymous))
    first.process(tp, [seen])
    tp, linking = record(first, viewed("m2", userId=user, anonymousId=anonymous))
    first.process(tp, [linking])  # the link and the absorb (m1), each applied in memory where it goes
    assert events_of(first, user) == 2
    # The link's durable copy, written in the user's partition's transaction.
    (key, link_value, link_headers), *_ = (
        (key, value, list(headers or ()))
        for topic, key, value, headers in first.outbox.records
        if topic == first.topics.profile_commands and key == anonymous.encode()
    )
    # The crash falls between the two partitions' transactions: the user's commits, the alias's does not.
    producer_of(first, alias_partition).fail_at = "commit"
    with pytest.raises(KafkaError):
        await first.checkpoint.commit(first.stores.values())
    changelogs = {p: producer_of(first, p).changelog_log for p in range(PARTITIONS)}
    await first.close()

    second = build_runtime(tmp_path / "b", guarantee="exactly_once")
    second.restore_consumer.changelog = changelogs
    await second.on_partitions_assigned(assignment(second, *range(PARTITIONS)))
    try:
        assert events_of(second, user) == 2  # the absorb of m1 was committed with the user's partition
        # The alias's partition replays m1, and its later events arrive before the link's copy is read.
        alias_tp = TopicPartition(second.topics.inbound("clickstream"), alias_partition)
        later = [record(second, viewed(f"m{n}", anonymousId=anonymous), offset=n - 2)[1] for n in range(3, 6)]
        second.process(alias_tp, [seen, *later])
        copy_tp = TopicPartition(second.topics.profile_commands, alias_partition)
        copy = consumer_record(copy_tp.topic, alias_partition, 0, key, link_value, headers=link_headers)
        second.process(copy_tp, [copy])
        assert events_of(second, user) == 5  # m1, m2 and the three later events of the device
    finally:
        await second.close()
