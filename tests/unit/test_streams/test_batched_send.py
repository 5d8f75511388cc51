"""Outputs queued as whole batches per topic partition, placed as aiokafka's default partitioner places them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.batched_send import send_batches, send_outputs
from streams.partitioning import PartitionOwners


class SmallBatch:
    """A producer batch that holds ``capacity`` records (``append`` answers None when full, as aiokafka's)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple] = []

    def append(self, *, key, value, timestamp, headers):
        if len(self.records) >= self.capacity or len(value or b"") > 100:
            return None
        self.records.append((key, value, list(headers)))
        return object()


class BatchingProducer:
    def __init__(self, partitions: dict[str, int], capacity: int = 1_000) -> None:
        self.partitions = partitions
        self.capacity = capacity
        self.batches: list[tuple[str, int, list[tuple]]] = []  # in the order they were queued

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions[topic]))

    def create_batch(self) -> SmallBatch:
        return SmallBatch(self.capacity)

    async def send_batch(self, batch: SmallBatch, topic: str, *, partition: int) -> asyncio.Future:
        self.batches.append((topic, partition, batch.records))
        future = asyncio.get_running_loop().create_future()
        future.set_result(len(self.batches))
        return future


def keys(count: int) -> list[bytes]:
    return [f"customer-{n}".encode() for n in range(count)]


@pytest.mark.parametrize("partitions", [1, 3, 4, 12])
async def test_a_keyed_output_goes_where_the_default_partitioner_puts_it(partitions: int) -> None:
    producer = BatchingProducer({"segments": partitions})
    outputs = [("segments", key, b"v", None) for key in keys(300)]
    await send_outputs(producer, outputs)
    placed = {record[0]: partition for _, partition, records in producer.batches for record in records}
    every = list(range(partitions))
    assert placed == {key: DefaultPartitioner()(key, every, every) for key in keys(300)}


async def test_the_runtime_memo_places_a_key_as_the_partitioner_does() -> None:
    owners = PartitionOwners(4)
    producer = BatchingProducer({"commands": 4, "triggers": 3})
    outputs = [(topic, key, b"v", None) for key in keys(100) for topic in ("commands", "triggers")]
    await send_outputs(producer, outputs, owners.place)
    for topic, partition, records in producer.batches:
        every = list(range(producer.partitions[topic]))
        assert all(DefaultPartitioner()(key, every, every) == partition for key, _, _ in records)


async def test_each_partition_keeps_the_order_of_its_records_with_their_headers() -> None:
    producer = BatchingProducer({"a": 2, "b": 2})
    outputs = [
        (topic, b"same-key", f"{topic}{n}".encode(), [("origin", bytes([n]))]) for n in range(5) for topic in "ab"
    ]
    acks = await send_outputs(producer, outputs)
    assert len(acks) == 2  # one batch per topic partition
    by_topic = {topic: records for topic, _, records in producer.batches}
    assert [value for _, value, _ in by_topic["a"]] == [b"a0", b"a1", b"a2", b"a3", b"a4"]
    assert [headers for _, _, headers in by_topic["b"]] == [[("origin", bytes([n]))] for n in range(5)]


async def test_a_full_batch_is_queued_and_the_next_one_started_in_order() -> None:
    producer = BatchingProducer({"changelog": 1}, capacity=3)
    sent = await send_batches(producer, "changelog", 0, [(bytes([n]), b"v", None) for n in range(7)])
    assert [count for _, count in sent] == [3, 3, 1]
    assert [[key for key, _, _ in records] for _, _, records in producer.batches] == [
        [b"\x00", b"\x01", b"\x02"],
        [b"\x03", b"\x04", b"\x05"],
        [b"\x06"],
    ]


async def test_a_record_larger_than_an_empty_batch_is_refused_with_its_topic() -> None:
    producer = BatchingProducer({"t": 1})
    with pytest.raises(ValueError, match=r"a record of 101 bytes does not fit in a producer batch \(t\)"):
        await send_batches(producer, "t", 0, [(b"k", b"x" * 101, None)])
    assert producer.batches == []  # no empty batch queued before the refusal


async def test_a_record_without_a_key_goes_to_one_of_the_topics_partitions() -> None:
    producer = BatchingProducer({"deadletter": 3})
    await send_outputs(producer, [("deadletter", None, b"v", None) for _ in range(50)])
    assert {partition for _, partition, _ in producer.batches} <= {0, 1, 2}
    assert sum(len(records) for _, _, records in producer.batches) == 50
