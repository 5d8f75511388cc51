"""The checkpoint: what the worker processed since its last commit, made durable in five ordered steps.

Like Quix Streams' ``Checkpoint.commit``, each step is a line, and the Kafka clients are passed in, so a
test drives it with fakes. The order is what makes a crash safe:

1. send the outbox (triggers, segment changes, dead letters, re-keyed commands) and wait for the acks;
2. send each dirty key of every partition store once to the changelog (whole producer batches);
3. wait for the changelog acks, then write those values and the changelog offset to RocksDB in one batch;
4. evict the stores' caches down to their size;
5. commit the input offsets.

A crash anywhere leaves: outputs sent but no state (the inputs replay, the same decisions are made again
with the same ids, and ``applied_ids`` / ``absorb_id`` dedupe the state updates), or state in the changelog
but not committed (same), never state that claims an output that was not sent. So a checkpoint that
fails poisons every later one: nothing more is written, and the worker stops (``streams.error_policy``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from agents.outbox import Outbox
from streams import metrics
from streams.state_store import PartitionStore

log = logging.getLogger(__name__)


class Checkpoint:
    """Input offsets and outputs since the last commit, and ``commit`` (see the module docstring)."""

    def __init__(
        self, *, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, outbox: Outbox, changelog_topic: str
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.outbox = outbox
        self.changelog_topic = changelog_topic
        self.offsets: dict[TopicPartition, int] = {}  # next offset to read, per input partition
        self.inputs = 0  # records processed since the last commit
        self.failed: BaseException | None = None

    def store_offset(self, tp: TopicPartition, next_offset: int, records: int) -> None:
        self.offsets[tp] = next_offset
        self.inputs += records

    @property
    def empty(self) -> bool:
        return not self.inputs and not self.outbox

    async def commit(self, stores: Collection[PartitionStore]) -> None:
        """Make everything processed durable, in order; after a failure, refuse (see the module docstring)."""
        if self.failed is not None:
            msg = "an earlier flush failed; nothing more is written"
            raise RuntimeError(msg) from self.failed
        try:
            await self._commit(stores)
        except BaseException as exc:
            # Outputs may be lost while the cache holds state that assumes them sent: never persist that
            # state; the inputs since the last commit replay after a restart.
            self.failed = exc
            metrics.flush_failures.inc()
            raise

    async def _commit(self, stores: Collection[PartitionStore]) -> None:
        started = time.perf_counter()
        # 1. Outputs, acknowledged.
        outputs = self.outbox.take()
        send = self.producer.send
        acks = [await send(topic, value, key=key, headers=headers) for topic, key, value, headers in outputs]
        if acks:
            await asyncio.gather(*acks)
        # 2. The changelog of every dirty key.
        changelog = []
        for store in stores:
            records = store.pending_records()
            if records:
                changelog.append((store, records, await self._send_changelog(store.partition, records)))
        # 3. RocksDB, once the changelog holds it. A batch's future gives its base offset; the last record
        #    of the last batch is base + count - 1.
        for store, records, batches in changelog:
            last_offset = max([(await future).offset + count - 1 for future, count in batches])
            store.persist(records, last_offset)
            metrics.changelog_records.inc(len(records))
        # 4. Caches.
        for store in stores:
            store.evict()
        # 5. Input offsets.
        if self.offsets:
            offsets, self.offsets = self.offsets, {}
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions: their new owner replays from the last commit (deduplicated).
                log.warning("offset commit failed (%s); the inputs since the last commit will be replayed", exc)
        self.inputs = 0
        metrics.tally.publish()
        metrics.flush_seconds.observe(time.perf_counter() - started)
        metrics.outputs_sent.inc(len(outputs))

    async def _send_changelog(
        self, partition: int, records: list[tuple[bytes, bytes | None]]
    ) -> list[tuple[asyncio.Future, int]]:
        """Changelog records as whole producer batches (one future per batch, not per record)."""
        sent: list[tuple[asyncio.Future, int]] = []
        batch, count = self.producer.create_batch(), 0
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append((await self.producer.send_batch(batch, self.changelog_topic, partition=partition), count))
                batch, count = self.producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    msg = f"changelog record of {len(value or b'')} bytes does not fit in a producer batch"
                    raise ValueError(msg)
            count += 1
        if count:
            sent.append((await self.producer.send_batch(batch, self.changelog_topic, partition=partition), count))
        return sent
