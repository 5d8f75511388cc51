"""The restore's changelog reader: confluent-kafka (librdkafka), whose fetching and record decoding run in C.

aiokafka, which the rest of the runtime uses, decodes every record in Python: in a profile of a restore
it was ~78 % of the restore's CPU. This reader is used for the restore only, and gives ``StoreRecovery``
each chunk already reduced to the last value of each key, so no per-record Python object is kept.

Same semantics as the aiokafka restore consumer before it: no group (partitions assigned by hand, nothing
committed), committed records only (``isolation.level=read_committed``: librdkafka drops the records of
aborted transactions and the transaction markers, which still take offsets), and ends at the last stable
offset. librdkafka's blocking calls run in a worker thread, so the event loop (heartbeats of the group
consumer, the web server) keeps running during a restore.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka.structs import TopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as RdTopicPartition

log = logging.getLogger(__name__)

END_OFFSETS_TIMEOUT_S = 30.0
END_OFFSETS_RETRY_S = 0.1
# What a broker answers for a partition whose leader is not there yet: worth asking again.
NOT_READY_YET = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TRANSPORT,
    }
)
WAIT_S = 0.5  # longest wait for the first record of a chunk (then it takes what librdkafka has fetched)


@dataclass(slots=True)
class ChangelogChunk:
    """Consecutive changelog records of one partition: the last value of each key (``None``: deleted), the
    offset of the last one, and how many records there were."""

    latest: dict[bytes, bytes | None] = field(default_factory=dict)
    last_offset: int = -1
    records: int = 0


class ChangelogReader:
    """Reads changelog partitions from given offsets, in chunks (``read_chunk``), up to their ends."""

    def __init__(self, config: dict[str, object]) -> None:
        self.config = config
        self._consumer: Consumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._assigned: dict[int, TopicPartition] = {}  # partition number → its topic partition

    async def start(self) -> None:
        self._consumer = Consumer(self.config, logger=log)

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.to_thread(consumer.close)

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            message = "the changelog reader is not started"
            raise RuntimeError(message)
        return self._consumer

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end: its last stable offset (the reader reads committed records only)."""
        return await asyncio.to_thread(self._end_offsets, tps)

    def _end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        deadline = time.monotonic() + END_OFFSETS_TIMEOUT_S
        return {tp: self._end_offset(tp, deadline) for tp in tps}

    def _end_offset(self, tp: TopicPartition, deadline: float) -> int:
        """``tp``'s end, asked again while the broker answers that it is not ready for it yet (a topic just
        created, a leader moving): librdkafka does not retry this request itself, aiokafka did."""
        while True:
            try:
                watermarks = self.consumer.get_watermark_offsets(
                    RdTopicPartition(tp.topic, tp.partition), timeout=max(deadline - time.monotonic(), 0.1)
                )
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() not in NOT_READY_YET or time.monotonic() + END_OFFSETS_RETRY_S > deadline:
                    raise
                time.sleep(END_OFFSETS_RETRY_S)
                continue
            if watermarks is None:
                message = f"no end offset of {tp.topic}[{tp.partition}] within {END_OFFSETS_TIMEOUT_S:.0f} s"
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, message))
            return watermarks[1]

    def assign(self, starts: dict[TopicPartition, int]) -> None:
        """Read each partition of ``starts`` (partitions of one topic) from its offset, instead of what was
        assigned before."""
        if len({tp.topic for tp in starts}) > 1:
            message = f"a changelog reader reads one topic at a time, not {sorted({tp.topic for tp in starts})}"
            raise ValueError(message)
        self.consumer.assign([RdTopicPartition(tp.topic, tp.partition, offset) for tp, offset in starts.items()])
        self._positions = dict(starts)
        self._assigned = {tp.partition: tp for tp in starts}

    def unassign(self) -> None:
        self.consumer.unassign()
        self._positions = {}
        self._assigned = {}

    def position(self, tp: TopicPartition) -> int:
        """The offset after what was read of ``tp``: past the transaction markers too once its end is reached."""
        return self._positions[tp]

    async def read_chunk(self, max_records: int) -> dict[TopicPartition, ChangelogChunk]:
        """Up to ``max_records`` records of the assigned partitions, as far as fetched: waits ``WAIT_S`` at
        most for the first one (an empty result then), takes the rest of what librdkafka holds."""
        return await asyncio.to_thread(self._read_chunk, max_records)

    def _read_chunk(self, max_records: int) -> dict[TopicPartition, ChangelogChunk]:
        consumer = self.consumer
        first = consumer.poll(WAIT_S)
        if first is None:
            return {}
        messages = [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
        by_partition: dict[int, list[Message]] = {}
        for message in messages:
            error = message.error()
            if error is None:
                partition = message.partition()
                records = by_partition.get(partition)
                if records is None:
                    records = by_partition[partition] = []
                records.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                # At its end (the last stable offset): past any markers and aborted records before it.
                tp = self._assigned.get(message.partition())
                if tp is not None:
                    self._positions[tp] = max(self._positions[tp], message.offset())
            else:
                raise KafkaException(error)
        read = {}
        for partition, records in by_partition.items():
            tp = self._assigned.get(partition)
            if tp is None:  # fetched before an earlier restore unassigned it: not this restore's
                continue
            # A dict keeps one entry per key, with the value of the key's last record.
            chunk = ChangelogChunk(
                {record.key(): record.value() for record in records}, records[-1].offset(), len(records)
            )
            self._positions[tp] = max(self._positions[tp], chunk.last_offset + 1)
            read[tp] = chunk
        return read
