"""KIP-447 against the real broker: ``TxnOffsetCommit`` v3 from ``streams.eos_v2``'s producer, and the stable
offset fetch (``OffsetFetch`` v7, ``require_stable``) of its consumer.

A consumer joins the group (generation g); a second member joins, so the group moves to generation g' > g.
A transaction committing offsets with the first member's old generation is refused by the group coordinator
(``ILLEGAL_GENERATION``): ``send_offsets_to_transaction`` fails, the transaction is aborted and the group's
committed offset does not move. The same producer, in its next transaction with the member's current
generation, commits, and the offset is there. A member id the group does not know is refused as well."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from streams.eos_v2 import (
    GroupFencedError,
    GroupFencedProducer,
    GroupMetadata,
    StableOffsetsConsumer,
    UnstableOffsetsError,
    group_metadata,
)
from streams.settings import Settings

PARTITIONS = 2


def create_topic(settings: Settings) -> str:
    topic = f"eosv2-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.broker_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    return topic


async def joined(consumer: AIOKafkaConsumer, *, after_generation: int = -1, timeout_s: float = 60.0) -> GroupMetadata:
    """The consumer's group metadata once it holds an assignment of a generation newer than ``after_generation``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        await consumer.getmany(timeout_ms=200)
        metadata = group_metadata(consumer)
        if metadata.generation_id > after_generation and consumer.assignment():
            return metadata
        if asyncio.get_running_loop().time() > deadline:
            msg = f"the consumer did not join a generation after {after_generation}: {metadata}"
            raise AssertionError(msg)


async def committed(
    consumer: AIOKafkaConsumer, tp: TopicPartition, *, expected: int | None, wait_s: float
) -> int | None:
    """The group's committed offset of ``tp`` once it is ``expected``, or after ``wait_s``: the commit markers
    reach ``__consumer_offsets`` after ``EndTxn`` returns, and until then the coordinator answers the last
    materialised offset."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        offset = await consumer.committed(tp)
        if offset == expected or asyncio.get_running_loop().time() > deadline:
            return offset
        await asyncio.sleep(0.1)


async def fencing_run(settings: Settings) -> dict[str, object]:
    topic = create_topic(settings)
    group_id = f"eosv2-group-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.broker_bootstrap
    config = {"bootstrap_servers": bootstrap, "group_id": group_id, "enable_auto_commit": False}
    first = AIOKafkaConsumer(topic, **config, session_timeout_ms=10000, heartbeat_interval_ms=300)
    second = AIOKafkaConsumer(topic, **config, session_timeout_ms=10000, heartbeat_interval_ms=300)
    producer = GroupFencedProducer(bootstrap_servers=bootstrap, transactional_id=f"eosv2-{uuid.uuid4().hex[:8]}")
    tp = TopicPartition(topic, 0)
    result: dict[str, object] = {}
    await first.start()
    await producer.start()
    try:
        old = await joined(first)
        await second.start()
        # Both members poll until the first sees the generation the second's join started.
        current_task = asyncio.create_task(joined(first, after_generation=old.generation_id))
        while not current_task.done():
            await second.getmany(timeout_ms=200)
        current = current_task.result()
        result["old"], result["current"] = old, current

        await producer.begin_transaction()
        await producer.send(topic, b"stale", partition=0)
        try:
            await producer.send_offsets_to_transaction({tp: 7}, old)
        except GroupFencedError as exc:
            result["stale_error"] = str(exc)
        await producer.abort_transaction()
        result["after_stale"] = await committed(first, tp, expected=7, wait_s=2.0)

        await producer.begin_transaction()
        try:
            await producer.send_offsets_to_transaction(
                {tp: 9}, GroupMetadata(group_id, current.generation_id, "no-such-member")
            )
        except GroupFencedError as exc:
            result["unknown_member_error"] = str(exc)
        await producer.abort_transaction()

        await producer.begin_transaction()
        await producer.send(topic, b"current", partition=0)
        await producer.send_offsets_to_transaction({tp: 11}, group_metadata(first))
        await producer.commit_transaction()
        result["after_current"] = await committed(first, tp, expected=11, wait_s=15.0)
    finally:
        await producer.stop()
        await second.stop()
        await first.stop()
    return result


def test_stale_generation_is_fenced_and_current_commits(kafka_settings: Settings) -> None:
    result = asyncio.run(fencing_run(kafka_settings))
    old, current = result["old"], result["current"]
    assert isinstance(old, GroupMetadata) and isinstance(current, GroupMetadata)
    assert current.generation_id > old.generation_id
    assert "IllegalGenerationError" in str(result.get("stale_error")), result
    assert result["after_stale"] is None  # the aborted transaction's offset was never committed
    assert "UnknownMemberIdError" in str(result.get("unknown_member_error")), result
    assert result["after_current"] == 11


async def stable_offsets_run(settings: Settings) -> dict[str, object]:
    """A transaction commits offsets of the group; while it is open, the stable fetch waits (aiokafka's own
    ``committed`` answers from before it), and it returns the offset once the transaction commits or aborts."""
    topic = create_topic(settings)
    group_id = f"eosv2-stable-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.broker_bootstrap
    consumer = StableOffsetsConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    producer = GroupFencedProducer(bootstrap_servers=bootstrap, transactional_id=f"eosv2-{uuid.uuid4().hex[:8]}")
    tp = TopicPartition(topic, 0)
    result: dict[str, object] = {}
    await consumer.start()
    await producer.start()
    try:
        group = await joined(consumer)
        await producer.begin_transaction()
        await producer.send(topic, b"first", partition=0)
        await producer.send_offsets_to_transaction({tp: 4}, group)
        try:
            await consumer.stable_committed([tp], timeout_s=2.0)
        except UnstableOffsetsError as exc:
            result["while_open"] = str(exc)
        result["unstable_answer"] = await consumer.committed(tp)
        waiting = asyncio.create_task(consumer.stable_committed([tp], timeout_s=60.0))
        await asyncio.sleep(0.5)
        result["waited"] = not waiting.done()
        await producer.commit_transaction()
        result["after_commit"] = await waiting

        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({tp: 9}, group_metadata(consumer))
        waiting = asyncio.create_task(consumer.stable_committed([tp], timeout_s=60.0))
        await asyncio.sleep(0.5)
        await producer.abort_transaction()
        result["after_abort"] = await waiting
    finally:
        await producer.stop()
        await consumer.stop()
    return result


def test_stable_offsets_wait_for_the_transaction_that_commits_them(kafka_settings: Settings) -> None:
    result = asyncio.run(stable_offsets_run(kafka_settings))
    assert "still not stable" in str(result.get("while_open")), result
    assert result["unstable_answer"] is None  # aiokafka's OffsetFetch v1-v3: the offset from before it
    assert result["waited"] is True
    tp = next(iter(result["after_commit"]))  # type: ignore[call-overload]
    assert result["after_commit"] == {tp: 4}
    assert result["after_abort"] == {tp: 4}  # the aborted transaction's offset never counts
