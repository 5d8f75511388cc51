"""Exactly-once processing without a broker: one transaction per worker over all its partitions (EOS v2), in
order; a failure at any step commits nothing of any partition; cross-partition forwards are applied in
memory; the offsets carry the group's generation; the restore reads past control records. The last tests
are issue 10's loss path, closed by the single transaction: a crash can no longer commit one partition's
state derived from another's uncommitted state."""

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

from agents.tables import IDENTITIES, PROFILES
from streams.checkpoint import transactional_id
from streams.eos_v2 import GroupMetadata
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


def producer_of(rt: Runtime) -> FakeTransactionalProducer:
    producer = rt.producer
    assert isinstance(producer, FakeTransactionalProducer)
    return producer


def transaction_calls(rt: Runtime) -> list[str]:
    return [call for call in rt.consumer.calls if call.startswith("txn ")]


def test_the_transactional_id_names_the_worker_not_a_partition():
    assert transactional_id("shop", "10.0.0.7:6066") == "shop-10.0.0.7:6066"


async def test_a_checkpoint_commits_every_partitions_outputs_changelog_and_offsets_in_one_transaction(
    runtime: Runtime,
):
    user, anonymous = ids_in_different_partitions()
    tp, event = record(runtime, viewed("m1", userId=user), offset=41)
    other_tp, other = record(runtime, viewed("m2", anonymousId=anonymous), offset=5)
    p, q = tp.partition, other_tp.partition
    commands = TopicPartition(runtime.topics.profile_commands, p)
    runtime.process(tp, [event, replace(event, offset=42, value=b"garbage")])  # the second is dead-lettered
    runtime.process(other_tp, [other])
    runtime.checkpoint.store_offset(commands, 7, 0)
    await runtime.checkpoint.commit(runtime.stores.values())

    offsets = sorted([(tp.topic, p, 43), (commands.topic, p, 7), (other_tp.topic, q, 6)])
    changelogs = sorted([f"txn changelog p{p} x2", f"txn changelog p{q} x2"])  # a profile and a stream time each
    calls = transaction_calls(runtime)
    assert calls[0] == "txn begin" and calls[1] == f"txn send {runtime.topics.deadletter}"
    assert sorted(calls[2:4]) == changelogs
    assert calls[4:] == [f"txn offsets {offsets}", "txn commit"]  # one transaction, one offset commit
    producer = producer_of(runtime)
    assert producer.offsets == {tp: 43, commands: 7, other_tp: 6}
    assert producer.groups == [GroupMetadata("unit", 1, "fake-member")]  # fenced by the group's generation
    assert runtime.consumer.committed == {}  # offsets go through the transaction, never the consumer
    for partition in (p, q):
        store = runtime.stores[partition]
        assert store.changelog_offset == 1 and store.dirty_count == 0  # persisted after the commit (2 records)
        assert producer.changelog_log[partition][-1] is None  # the commit marker takes an offset
    assert runtime.checkpoint.empty
    await runtime.checkpoint.commit(runtime.stores.values())
    assert transaction_calls(runtime) == calls  # no empty transactions


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
        producer = producer_of(runtime)
        assert producer.calls[-1] == "txn abort"
        assert (producer.sent, producer.changelog, producer.offsets) == ([], {}, {})
        store = runtime.stores[tp.partition]
        # The cache holds the aborted state: the profile and the partition's stream time.
        assert store.changelog_offset == -1 and store.dirty_count == 2
        with pytest.raises(RuntimeError, match="earlier flush failed"):
            await runtime.checkpoint.commit(runtime.stores.values())
    finally:
        for store in runtime.stores.values():
            store.close()


def read_back(runtime: Runtime, forwarded: list[tuple[bytes, dict]], *, first_offset: int) -> None:
    """Hand the ``profile-commands`` copies of ``forwarded`` (key, headers) to the runtime,
    each from the partition its key belongs to, as a consumer reads them."""
    values = {key: value for topic, key, value, _ in runtime.outbox.records if topic == runtime.topics.profile_commands}
    for offset, (key, headers) in enumerate(forwarded, start=first_offset):
        target = owning_partition(key, PARTITIONS)
        copy_tp = TopicPartition(runtime.topics.profile_commands, target)
        copy = consumer_record(copy_tp.topic, target, offset, key, values[key], headers=list(headers.items()))
        runtime.process(copy_tp, [copy])


async def test_a_forward_to_another_partition_held_here_is_applied_now_and_its_copy_written(
    runtime: Runtime,
):
    """The link goes to the alias's partition, the absorbed profile comes back: each is applied in memory when
    decided (in event-time order) and written to ``profile-commands``, naming the deciding partition;
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
        (key, dict(headers or ()))
        for topic, key, _, headers in runtime.outbox.records
        if topic == runtime.topics.profile_commands
    ]
    assert [(key, h[SOURCE_HEADER]) for key, h in forwarded] == [
        (anonymous.encode(), str(user_partition).encode()),  # the link, decided in the user's partition
        (user.encode(), str(alias_partition).encode()),  # the absorbed profile, decided in the alias's partition
    ]
    assert all(AT_HEADER in h for _, h in forwarded)  # decided at: ordered by it where they are read
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


async def test_the_workers_producer_starts_with_it_and_outlives_rebalances(tmp_path: Path):
    """One transactional producer per worker: started (``init_transactions``) before the consumer joins,
    not restarted by rebalances, whose fencing the group coordinator does on the offsets' generation."""
    runtime = build_runtime(tmp_path, guarantee="exactly_once")
    calls = runtime.consumer.calls
    await runtime.start()
    assert calls.index("txn start") < calls.index("consumer start")
    await runtime.on_partitions_assigned(assignment(runtime, 0, 1))
    await runtime.on_partitions_revoked(assignment(runtime, 0, 1))
    await runtime.on_partitions_assigned(assignment(runtime, 1, 2))
    assert calls.count("txn start") == 1 and "txn stop" not in calls
    await runtime.close()
    assert calls.count("txn stop") == 1


async def test_state_committed_in_transactions_is_restored_past_the_commit_markers(tmp_path: Path):
    first = build_runtime(tmp_path / "a", guarantee="exactly_once")
    await first.on_partitions_assigned(assignment(first, *range(PARTITIONS)))
    tp, event = record(first, viewed("m1", userId="u-1"))
    first.process(tp, [event])
    await first.checkpoint.commit(first.stores.values())
    first.process(tp, [replace(event, offset=1, value=b"not json")])  # a transaction without state
    producer = producer_of(first)
    await first.close()
    changelog = producer.changelog_log[tp.partition]
    # The commit marker ends the partition; the transaction without state wrote none there (a marker goes
    # only to the partitions a transaction wrote).
    assert changelog[-1] is None and changelog[-2] is not None
    assert transaction_calls(first)[-2:] == ["txn commit", "txn stop"] and producer.offsets[tp] == 2

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
    assert producer_of(runtime).offsets == {commands: 11}  # else the group would lag one record behind


async def test_a_partition_read_past_an_aborted_transaction_without_records_gets_its_position_committed(
    runtime: Runtime,
):
    """A killed worker's open transaction is aborted; a read-committed fetch skips its records and marker and
    returns nothing, so nothing would ever commit that position: the group would show the lag forever."""
    commands = TopicPartition(runtime.topics.profile_commands, 1)
    runtime.consumer.highwaters[commands] = 4  # assigned
    runtime.consumer.positions[commands] = 4  # three aborted copies and the abort marker, skipped
    assert not runtime.checkpoint.empty  # never committed by this process
    await runtime.checkpoint.commit(runtime.stores.values())
    assert producer_of(runtime).offsets == {commands: 4}
    assert runtime.checkpoint.empty  # the last stable offset is not past the commit
    calls = transaction_calls(runtime)
    await runtime.checkpoint.commit(runtime.stores.values())
    assert transaction_calls(runtime) == calls  # nothing moved: no transaction


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
    assert producer_of(runtime).offsets[clicks] == 2  # click 2 is not skipped on a restart


async def test_a_replay_that_links_the_alias_after_more_of_its_events_loses_none_of_them(tmp_path: Path):
    """Issue 10: the link (decided in the user's partition) and the absorb of the alias's profile (decided in
    the alias's partition) are applied in memory in both partitions. With a transaction per partition, a crash
    between the two commits left the user's partition committed with the absorb and the alias's not; the
    alias's replay linked after three more events of the device, and the new absorb, carrying the same
    absorb_id, was dropped (2 events instead of 5). In the worker's one transaction a crash at the commit
    leaves neither partition's state: the replay, in whatever order, rebuilds all five events."""
    first = build_runtime(tmp_path / "a", guarantee="exactly_once")
    await first.on_partitions_assigned(assignment(first, *range(PARTITIONS)))
    user, anonymous = ids_in_different_partitions()
    alias_partition = owning_partition(anonymous.encode(), PARTITIONS)
    tp, seen = record(first, viewed("m1", anonymousId=anonymous))
    first.process(tp, [seen])
    user_tp, linking = record(first, viewed("m2", userId=user, anonymousId=anonymous))
    first.process(user_tp, [linking])  # the link and the absorb (m1), each applied in memory where it goes
    assert events_of(first, user) == 2
    # The crash falls at the commit, after every partition's changelog records were sent.
    producer = producer_of(first)
    producer.fail_at = "commit"
    with pytest.raises(KafkaError):
        await first.checkpoint.commit(first.stores.values())
    changelogs = producer.changelog_log
    assert sorted(changelogs) == sorted({alias_partition, user_tp.partition})  # both partitions were written
    assert all(row is None for rows in changelogs.values() for row in rows)  # and nothing of either committed
    await first.close()

    second = build_runtime(tmp_path / "b", guarantee="exactly_once")
    second.restore_consumer.changelog = changelogs
    await second.on_partitions_assigned(assignment(second, *range(PARTITIONS)))
    try:
        assert events_of(second, user) == 0  # no partition holds the absorb without its cause
        # The alias's partition replays m1 and its later events before the user's partition replays the link.
        alias_tp = TopicPartition(second.topics.inbound("clickstream"), alias_partition)
        later = [record(second, viewed(f"m{n}", anonymousId=anonymous), offset=n - 2)[1] for n in range(3, 6)]
        second.process(alias_tp, [seen, *later])
        second.process(user_tp, [linking])
        assert events_of(second, user) == 5  # m1, m2 and the three later events of the device
        await second.checkpoint.commit(second.stores.values())
        assert producer_of(second).offsets == {alias_tp: 4, user_tp: linking.offset + 1}
    finally:
        await second.close()
