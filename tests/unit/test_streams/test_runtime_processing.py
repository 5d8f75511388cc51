"""The runtime's processing step without a broker: in-place forwards, dead-lettered failures, positions.

``Runtime._process`` is the synchronous part of the loop (no awaits): it is driven here with real
``PartitionStore``s and ``ConsumerRecord``s; the Kafka clients are built but never started.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

import streams.runtime as runtime_module
from core.profile.policy import ProfilePolicy
from core.profile_stage import StagePolicy
from schemas.deadletter import PROCESSING_FAILED
from streams.partitioning import InPlaceRouting, owning_partition
from streams.runtime import Runtime
from streams.settings import Settings
from streams.state_store import PartitionStore
from streams.tables import IDENTITIES, PROFILES

PARTITIONS = 4
POLICY = StagePolicy(profile=ProfilePolicy(pii_hash_key="test-secret"))


@pytest.fixture
async def runtime(tmp_path: Path):
    settings = Settings(topic_prefix="t1.", app_id="unit", data_dir=tmp_path, topic_partitions=PARTITIONS)
    rt = Runtime(settings, POLICY, "http://127.0.0.1:1")
    # Partition counts come from the consumer's metadata once it runs; here every topic has PARTITIONS.
    rt._in_place = InPlaceRouting(rt._owners, lambda topic: PARTITIONS)
    kafka_clients = (rt.consumer, rt.restorer, rt.producer)
    yield rt
    for store in rt.stores.values():
        store.close()
    for client in kafka_clients:
        await client.stop()


def hold(rt: Runtime, *partitions: int) -> None:
    for partition in partitions:
        rt.stores[partition] = PartitionStore(partition, rt.settings.data_dir / f"p{partition}", rt.store_options)


def record(rt: Runtime, payload: dict, *, offset: int = 0) -> tuple[TopicPartition, ConsumerRecord]:
    """An inbound record keyed by its routing id, in the partition murmur2 gives it (as ``produce`` sends)."""
    key = str(payload.get("userId") or payload["anonymousId"]).encode()
    partition = owning_partition(key, PARTITIONS)
    value = orjson.dumps(payload)
    tp = TopicPartition(rt.topics.inbound("clickstream"), partition)
    return tp, ConsumerRecord(
        topic=tp.topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=[],
    )


def viewed(message_id: str, **ids: str) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": message_id,
        "timestamp": time.time() - 5,
        "properties": {"product_id": "p-1", "price": 10.0},
        **ids,
    }


def ids_in_different_partitions() -> tuple[str, str]:
    user = "u-1"
    anonymous = next(
        f"a-{n}"
        for n in range(100)
        if owning_partition(f"a-{n}".encode(), PARTITIONS) != owning_partition(b"u-1", PARTITIONS)
    )
    return user, anonymous


async def test_a_link_to_a_key_held_here_is_applied_in_place(runtime: Runtime):
    user, anonymous = ids_in_different_partitions()
    hold(runtime, *range(PARTITIONS))
    tp, first = record(runtime, viewed("m1", anonymousId=anonymous))
    runtime._process(tp, [first])
    tp, linking = record(runtime, viewed("m2", userId=user, anonymousId=anonymous))
    runtime._process(tp, [linking])

    alias_store = runtime.stores[owning_partition(anonymous.encode(), PARTITIONS)]
    customer_store = runtime.stores[owning_partition(user.encode(), PARTITIONS)]
    assert alias_store.get(IDENTITIES, anonymous.encode()).redirect_to == user
    assert alias_store.get(PROFILES, anonymous.encode()) is None  # merged into the customer
    assert customer_store.get(PROFILES, user.encode()).event_count == 2
    assert [topic for topic, *_ in runtime.outbox.records if topic == runtime.topics.profile_commands] == []


async def test_a_link_to_a_key_held_elsewhere_goes_through_profile_commands(runtime: Runtime):
    user, anonymous = ids_in_different_partitions()
    hold(runtime, owning_partition(user.encode(), PARTITIONS))  # the alias's partition is another worker's
    tp, linking = record(runtime, viewed("m2", userId=user, anonymousId=anonymous))
    runtime._process(tp, [linking])
    forwarded = [key for topic, key, *_ in runtime.outbox.records if topic == runtime.topics.profile_commands]
    assert forwarded == [anonymous.encode()]


async def test_a_record_whose_processing_raises_is_dead_lettered_and_the_partition_goes_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
):
    hold(runtime, *range(PARTITIONS))
    real_handle_command = runtime_module.handle_command

    def failing_for_bad_user(store, key, command, **kwargs):
        if key == b"bad-user":
            msg = "boom"
            raise ValueError(msg)
        return real_handle_command(store, key, command, **kwargs)

    monkeypatch.setattr(runtime_module, "handle_command", failing_for_bad_user)
    tp_bad, bad = record(runtime, viewed("m1", userId="bad-user"), offset=7)
    runtime._process(tp_bad, [bad])
    assert runtime._positions[tp_bad] == 8  # the failed record is consumed, not retried forever
    tp_good, good = record(runtime, viewed("m2", userId="good-user"), offset=8)
    runtime._process(tp_good, [good])

    [dead] = [value for topic, _, value, _ in runtime.outbox.records if topic == runtime.topics.deadletter]
    letter = orjson.loads(dead)
    assert letter["reason"] == PROCESSING_FAILED and "boom" in letter["detail"]
    source = (letter["source_topic"], letter["source_partition"], letter["source_offset"])
    assert source == (tp_bad.topic, tp_bad.partition, 7)
    good_store = runtime.stores[owning_partition(b"good-user", PARTITIONS)]
    assert good_store.get(PROFILES, b"good-user").event_count == 1


class _Acked:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _RecordingBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def append(self, *, key, value, timestamp, headers=()):
        self.records.append((key, value))
        return object()


class _RecordingKafka:
    """Stands in for the producer and the consumer: records what the flush does, in order."""

    def __init__(self, fail_outputs: bool = False) -> None:
        self.calls: list[str] = []
        self.next_offset = 100
        self.fail_outputs = fail_outputs
        self.committed: dict | None = None

    def _future(self, result) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        future.set_result(result)
        return future

    async def send(self, topic, value, *, key=None, headers=None):
        self.calls.append(f"send {topic}")
        if self.fail_outputs:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(KafkaError("broker gone"))
            return future
        return self._future(_Acked(0))

    def create_batch(self) -> _RecordingBatch:
        return _RecordingBatch()

    async def send_batch(self, batch, topic, *, partition):
        self.calls.append(f"changelog p{partition} x{len(batch.records)}")
        offset, self.next_offset = self.next_offset, self.next_offset + len(batch.records)
        return self._future(_Acked(offset))

    async def commit(self, offsets):
        self.calls.append("commit")
        self.committed = dict(offsets)


def dirty_store_with_an_output(rt: Runtime) -> tuple[PartitionStore, TopicPartition]:
    hold(rt, 0)
    store = rt.stores[0]
    store.put(PROFILES, b"u-9", None)  # any dirty key will do: a tombstone
    rt.outbox.send(rt.topics.triggers("email"), b"u-9", b"{}")
    tp = TopicPartition(rt.topics.inbound("clickstream"), 0)
    rt._positions[tp] = 42
    return store, tp


async def test_a_flush_sends_outputs_then_the_changelog_then_writes_state_then_commits(runtime: Runtime):
    kafka = _RecordingKafka()
    runtime.producer = runtime.consumer = kafka
    store, tp = dirty_store_with_an_output(runtime)
    await runtime._flush()
    assert kafka.calls == [f"send {runtime.topics.triggers('email')}", "changelog p0 x1", "commit"]
    assert store.changelog_offset == 100 and store.dirty_count == 0  # written only after the changelog ack
    assert kafka.committed == {tp: 42}


async def test_a_failed_output_writes_no_state_commits_nothing_and_stops_all_later_flushes(runtime: Runtime):
    kafka = _RecordingKafka(fail_outputs=True)
    runtime.producer = runtime.consumer = kafka
    store, _ = dirty_store_with_an_output(runtime)
    with pytest.raises(KafkaError):
        await runtime._flush()
    assert kafka.calls == [f"send {runtime.topics.triggers('email')}"]
    assert store.changelog_offset == -1 and store.dirty_count == 1
    with pytest.raises(RuntimeError, match="earlier flush failed"):
        await runtime._flush()  # close() and rebalances must not persist state whose outputs were lost
