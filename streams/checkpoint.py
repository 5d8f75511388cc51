"""The checkpoint: what the worker processed since its last commit, made durable in ordered steps.

Like Quix Streams' ``Checkpoint.commit``, each step is a line, and the Kafka clients are passed in, so a
test drives it with fakes. Two guarantees (``STREAMCDP_PROCESSING_GUARANTEE``) share the bookkeeping.

**At least once** (``Checkpoint``), five steps whose order makes a crash safe:

1. send the outbox (triggers, segment changes, dead letters, re-keyed commands) and wait for the acks;
2. send each dirty key of every partition store once to the changelog (whole producer batches);
3. wait for the changelog acks, then write those values and the changelog offset to RocksDB in one batch;
4. evict the stores' caches down to their size;
5. commit the input offsets.

A crash anywhere leaves: outputs sent but no state (the inputs replay, the same decisions are made again
with the same ids, and ``applied_ids`` / ``absorb_id`` dedupe the state updates), or state in the changelog
but not committed (same), never state that claims an output that was not sent. But outputs can be sent
twice, and a replay that decides differently (a clock tick, another interleaving) sends a second, different
output beside the first.

**Exactly once** (``TransactionalCheckpoint``), per state partition *p* with work, in *p*'s own transaction:

1. begin; 2. send *p*'s outbox records; 3. send *p*'s dirty keys to its changelog partition; 4. add the next
offsets of *p*'s input partitions (partition *p* of every input topic, co-partitioned) to the transaction
for the consumer group; 5. commit; 6. only then write *p*'s records and changelog offset to RocksDB; 7.
evict the caches. Readers with ``isolation.level=read_committed`` (downstream consumers, the restore
consumer, the group's committed offsets) see all of *p*'s outputs, state and progress, or none of it.

Why one transactional producer per partition (``transactional.id = f"{app_id}-{partition}"``, Kafka
Streams' EOS-v1): aiokafka's ``TxnOffsetCommit`` carries no group generation (no KIP-447), so the broker
cannot tell a zombie, a worker that lost *p* in a rebalance but has not noticed yet, from the owner by its
offset commit. Fencing comes from the id instead: the new owner starts *p*'s producer (``init_transactions``)
before it restores or processes *p*; that bumps the id's epoch, aborts the zombie's open transaction and
makes every later call of the zombie's producer fail with ``ProducerFenced``. One id per worker could not
do that: ids would have to follow partitions, not processes.

Why a command forwarded to a key of another partition *q* is also written to ``profile-commands`` (see
``streams.forwarding``): *q*'s state changes are committed by *q*'s transaction, its cause by *p*'s, and a
crash can commit one and not the other. The copy in *p*'s transaction is the command's durable record,
and the commands are idempotent: committed by *p* and not by *q*, *q* reads the copy after its restore and
applies it; committed by *q* and not by *p*, *p* replays and forwards it again, and *q* finds it applied.
Applied in memory as well when this worker holds *q*, it is decided at the same point of event time in
every run; the process that applied it skips its copy when it reads it back.

A crash (or a failed call) leaves, per partition: before the commit, an open transaction that the broker
aborts (at the latest when the next owner starts *p*'s producer), so nothing of it is visible, and the
inputs replay from the last committed offsets onto the state of the last committed changelog; after the
commit but before RocksDB, a disk that is behind its changelog: the restore reads the tail. Other
partitions' transactions of the same checkpoint are independent. A failed or aborted transaction poisons
the checkpoint like a failed at-least-once flush (the cache holds the state of the aborted transaction):
nothing more is written and the worker stops; its restart restores from the changelog and replays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from agents.outbox import OutboundRecord, Outbox
from streams import metrics
from streams.state_store import PartitionStore

log = logging.getLogger(__name__)

ChangelogRecords = list[tuple[bytes, bytes | None]]


def transactional_id(app_id: str, partition: int) -> str:
    """The transactional id of state partition ``partition``'s producer: one per partition, whoever holds it."""
    return f"{app_id}-{partition}"


class Checkpoint:
    """Input offsets and outputs since the last commit, and at-least-once ``commit`` (see the module docstring)."""

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
        started = time.perf_counter()
        try:
            outputs = await self._commit(stores)
        except BaseException as exc:
            # Outputs may be lost while the cache holds state that assumes them sent: never persist that
            # state; the inputs since the last commit replay after a restart.
            self.failed = exc
            metrics.flush_failures.inc()
            raise
        self.inputs = 0
        metrics.tally.publish()
        metrics.flush_seconds.observe(time.perf_counter() - started)
        metrics.outputs_sent.inc(outputs)

    async def _commit(self, stores: Collection[PartitionStore]) -> int:
        # 1. Outputs, acknowledged.
        outputs = self.outbox.take()
        acks = await _send_outputs(self.producer, outputs)
        if acks:
            await asyncio.gather(*acks)
        # 2. The changelog of every dirty key.
        changelog = []
        for store in stores:
            records = store.pending_records()
            if records:
                changelog.append((store, records, await self._send_changelog(self.producer, store.partition, records)))
        # 3. RocksDB, once the changelog holds it.
        for store, records, batches in changelog:
            await _persist(store, records, batches)
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
        return len(outputs)

    async def _send_changelog(
        self, producer: AIOKafkaProducer, partition: int, records: ChangelogRecords
    ) -> list[tuple[asyncio.Future, int]]:
        """Changelog records as whole producer batches (one future per batch, not per record)."""
        sent: list[tuple[asyncio.Future, int]] = []
        batch, count = producer.create_batch(), 0
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append((await producer.send_batch(batch, self.changelog_topic, partition=partition), count))
                batch, count = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    msg = f"changelog record of {len(value or b'')} bytes does not fit in a producer batch"
                    raise ValueError(msg)
            count += 1
        if count:
            sent.append((await producer.send_batch(batch, self.changelog_topic, partition=partition), count))
        return sent


class TransactionalCheckpoint(Checkpoint):
    """Exactly-once ``commit``: one transaction per state partition (see the module docstring).

    ``producers`` maps each state partition held here to its started transactional producer; the runtime
    keeps it up to date in its rebalance listener."""

    def __init__(
        self,
        *,
        producers: Mapping[int, AIOKafkaProducer],
        consumer: AIOKafkaConsumer,
        outbox: Outbox,
        changelog_topic: str,
        group_id: str,
        buffered: Callable[[], Collection[TopicPartition]] = frozenset,
    ) -> None:
        super().__init__(producer=None, consumer=consumer, outbox=outbox, changelog_topic=changelog_topic)  # type: ignore[arg-type]
        self.producers = producers
        self.group_id = group_id
        self.buffered = buffered  # input partitions with records fetched but not yet processed

    async def _commit(self, stores: Collection[PartitionStore]) -> int:
        outputs = self.outbox.take_by_partition()
        offsets: dict[int, dict[TopicPartition, int]] = {}
        buffered = self.buffered()
        for tp, offset in self.offsets.items():
            if tp not in buffered:
                offset = await self._past_control_records(tp, offset)  # noqa: PLW2901
            offsets.setdefault(tp.partition, {})[tp] = offset
        self.offsets = {}
        by_partition = {store.partition: store for store in stores}
        with_work = set(offsets) | {p for p, store in by_partition.items() if store.dirty_count}
        with_work.update(p for p in outputs if p is not None)
        if None in outputs:
            msg = "outputs produced outside any partition's work cannot join a transaction"
            raise RuntimeError(msg)
        # The partitions' transactions are independent: run them side by side (one producer each).
        results = await asyncio.gather(
            *(
                self._commit_partition(p, outputs.get(p, []), offsets.get(p, {}), by_partition.get(p))
                for p in sorted(with_work)
            ),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]
        for store in stores:
            store.evict()
        return sum(len(records) for records in outputs.values())

    async def _past_control_records(self, tp: TopicPartition, next_offset: int) -> int:
        """The consumer's position when every fetched record of ``tp`` was processed: transactions leave
        commit markers (control records, never returned) after the last record, and committing the offset
        before a marker would show a lag of one record per transaction forever (Kafka Streams commits the
        position for the same reason)."""
        try:
            return max(next_offset, await self.consumer.position(tp))
        except KafkaError as exc:  # not assigned any more: what was processed
            log.debug("no position of %s (%s); committing the processed offset", tp, exc)
            return next_offset

    async def _commit_partition(
        self,
        partition: int,
        outputs: list[OutboundRecord],
        offsets: dict[TopicPartition, int],
        store: PartitionStore | None,
    ) -> None:
        producer = self.producers.get(partition)
        if producer is None:
            msg = f"work of partition {partition} without its transactional producer (partition not held)"
            raise RuntimeError(msg)
        records = store.pending_records() if store is not None else []
        await producer.begin_transaction()
        try:
            acks = await _send_outputs(producer, outputs)
            batches = await self._send_changelog(producer, partition, records) if records else []
            # Every send acknowledged before the commit: a failed one fails the transaction, not silently.
            await asyncio.gather(*acks, *(future for future, _ in batches))
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
        except BaseException:
            await _abort(producer, partition)
            raise
        if store is not None and batches:
            await _persist(store, records, batches)


async def _send_outputs(producer: AIOKafkaProducer, outputs: list[OutboundRecord]) -> list[asyncio.Future]:
    """Queue ``outputs`` on ``producer``; the futures of their acknowledgements."""
    send = producer.send
    return [await send(topic, value, key=key, headers=headers) for topic, key, value, headers in outputs]


async def _persist(store: PartitionStore, records: ChangelogRecords, batches: list[tuple[asyncio.Future, int]]) -> None:
    """Write ``records`` to RocksDB with the offset of the last one: a batch's future gives its base offset,
    so the last record of the last batch is base + count - 1."""
    last_offset = max([(await future).offset + count - 1 for future, count in batches])
    store.persist(records, last_offset)
    metrics.changelog_records.inc(len(records))


async def _abort(producer: AIOKafkaProducer, partition: int) -> None:
    """Abort ``producer``'s open transaction if it can; if not (fenced, broker gone), the broker aborts it."""
    try:
        await producer.abort_transaction()
    except Exception as exc:  # noqa: BLE001  (the original failure is what is raised)
        log.warning("abort of partition %d's transaction failed (%s); the broker aborts it", partition, exc)
