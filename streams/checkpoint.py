"""The checkpoint: what the worker processed since its last commit, made durable in ordered steps.

Like Quix Streams' ``Checkpoint.commit``, each step is a line, and the Kafka clients are passed in, so a
test drives it with fakes. Two guarantees (``STREAMCDP_PROCESSING_GUARANTEE``) share the bookkeeping.

**At least once** (``Checkpoint``), five steps whose order makes a crash safe:

1. send the outbox (triggers, segment changes, dead letters, re-keyed commands) as whole producer batches per
   topic partition (``streams.batched_send``) and wait for the acks;
2. send each dirty key of every partition store once to the changelog (whole producer batches);
3. wait for the changelog acks, then write those values and the changelog offset to RocksDB in one batch;
4. evict the stores' caches down to their size;
5. commit the input offsets.

A crash anywhere leaves: outputs sent but no state (the inputs replay, the same decisions are made again
with the same ids, and ``applied_ids`` / ``absorb_id`` dedupe the state updates), or state in the changelog
but not committed (same), never state that claims an output that was not sent. But outputs can be sent
twice, and a replay that decides differently (a clock tick, another interleaving) sends a second, different
output beside the first.

**Exactly once** (``TransactionalCheckpoint``), EOS v2 (KIP-447): ONE transaction per worker covering every
partition it holds: 1. begin; 2. send the outbox; 3. send every partition store's dirty keys to its changelog
partition; 4. add the next offsets of every input partition to the transaction for the consumer group, with
the group's generation and member id (``streams.eos_v2``); 5. commit; 6. only then write each store's
records and changelog offset to RocksDB; 7. evict the caches. Readers with ``isolation.level=read_committed``
(downstream consumers, the restore consumer, the group's committed offsets) see all of the worker's outputs,
state and progress since its last checkpoint, or none of it.

Why one transaction and not one per partition: a command the stage forwards to a key of another partition
held here is applied in memory there (``streams.forwarding``), so the receiving partition's state derives
from the sending partition's uncommitted state. With a transaction per partition (EOS v1, this module's
previous design) a crash between the two commits could leave the receiver committed and the sender not;
the sender's replay could then decide differently (records in another order), and the second decision,
carrying the same ``absorb_id``, was dropped as a duplicate (issue 10). In one transaction both commit or
neither does.

Why fencing still holds with one ``transactional.id`` per worker (``transactional_id``): a zombie, a worker
that lost partitions in a rebalance and has not noticed, commits its offsets with its old group generation;
the group coordinator refuses them (``ILLEGAL_GENERATION``), the zombie's transaction is aborted, and
nothing of it becomes visible. The id only has to be unique among live workers and stable across a
worker's restarts, so that the restarted worker's ``init_transactions`` aborts its previous incarnation's
open transaction at once (else it would hold the last stable offset of its partitions, and every
read-committed reader, until ``transaction.timeout.ms``). A new owner of a partition waits for the previous
owner's last transaction to end before it restores and reads (``Runtime.on_partitions_assigned``: the
group's offsets fetched with ``require_stable``), since until its markers are written both the offsets and
the changelog answer from before it.

Why a command forwarded to a key of another partition *q* is still written to ``profile-commands``: when
*q* is not held here it is how the command gets there; when it is, the copy commits with *q*'s state and
is skipped when read back (``streams.forwarding``): redundant in one transaction, and left for now.

A crash (or a failed call) before the commit leaves an open transaction that the broker aborts (at the
latest when the worker's next incarnation starts its producer), so nothing of it is visible, and the inputs
replay from the last committed offsets onto the state of the last committed changelog; after the commit but
before RocksDB, a disk behind its changelog: the restore reads the tail. A failed or aborted transaction
poisons the checkpoint like a failed at-least-once flush (the cache holds the state of the aborted
transaction): nothing more is written and the worker stops; its restart restores from the changelog and
replays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from agents.outbox import Outbox
from streams import metrics
from streams.batched_send import Owner, send_batches, send_outputs
from streams.eos_v2 import GroupMetadata
from streams.partitioning import owning_partition
from streams.state_store import PartitionStore

log = logging.getLogger(__name__)

ChangelogRecords = list[tuple[bytes, bytes | None]]


def transactional_id(app_id: str, worker: str) -> str:
    """The transactional id of worker ``worker``'s producer: one per worker process (see the module docstring)."""
    return f"{app_id}-{worker}"


class Checkpoint:
    """Input offsets and outputs since the last commit, and at-least-once ``commit`` (see the module docstring)."""

    def __init__(
        self,
        *,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        outbox: Outbox,
        changelog_topic: str,
        owner: Owner = owning_partition,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.outbox = outbox
        self.changelog_topic = changelog_topic
        self.owner = owner  # places an output's key (``streams.batched_send``)
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
        changelog = sum(store.dirty_count for store in stores)  # one changelog record per dirty key
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
        metrics.flush_records.labels("outputs").observe(outputs)
        metrics.flush_records.labels("changelog").observe(changelog)

    async def _commit(self, stores: Collection[PartitionStore]) -> int:
        # 1. Outputs, acknowledged.
        outputs = self.outbox.take()
        acks = await send_outputs(self.producer, outputs, self.owner)
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
        return await send_batches(
            producer, self.changelog_topic, partition, ((key, value, None) for key, value in records)
        )


class TransactionalCheckpoint(Checkpoint):
    """Exactly-once ``commit``: one transaction per worker over all its partitions (see the module docstring).

    ``producer`` is the worker's started transactional producer (``streams.eos_v2.GroupFencedProducer``);
    ``group`` returns the consumer's group metadata at commit time, which fences a zombie's offsets."""

    def __init__(
        self,
        *,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        outbox: Outbox,
        changelog_topic: str,
        group: Callable[[], GroupMetadata],
        buffered: Callable[[], Collection[TopicPartition]] = frozenset,
        owner: Owner = owning_partition,
    ) -> None:
        super().__init__(
            producer=producer, consumer=consumer, outbox=outbox, changelog_topic=changelog_topic, owner=owner
        )
        self.group = group
        self.buffered = buffered  # input partitions with records fetched but not yet processed
        self.committed: dict[TopicPartition, int] = {}  # what this process's transactions committed

    @property
    def empty(self) -> bool:
        return super().empty and not self._skipped_ahead()

    def _skipped_ahead(self) -> bool:
        """Whether an assigned input partition may have been read past its committed offset without a record
        to process: an aborted transaction's records and its marker are skipped by a read-committed fetch,
        and unless its offset is committed the group shows that lag forever (the last transaction a killed
        worker left open is aborted so). Also true before this process committed a partition at all."""
        buffered = self.buffered()
        for tp in self.consumer.assignment():
            done = self.committed.get(tp)
            stable = self.consumer.last_stable_offset(tp)  # None until a fetch response for ``tp``
            if tp not in buffered and (done is None or (stable is not None and stable > done)):
                return True
        return False

    async def _skipped_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """Add to ``offsets`` the position of every assigned input partition read past its commit without a
        record processed (see ``_skipped_ahead``); not those with records held back (``buffered``)."""
        buffered = self.buffered()
        for tp in self.consumer.assignment():
            if tp in offsets or tp in buffered:
                continue
            try:
                position = await self.consumer.position(tp)
            except KafkaError as exc:  # revoked meanwhile
                log.debug("no position of %s (%s)", tp, exc)
                continue
            if position > self.committed.get(tp, -1):
                offsets[tp] = position

    async def _commit(self, stores: Collection[PartitionStore]) -> int:
        outputs = self.outbox.take()
        buffered = self.buffered()
        offsets = {
            tp: offset if tp in buffered else await self._past_control_records(tp, offset)
            for tp, offset in self.offsets.items()
        }
        self.offsets = {}
        await self._skipped_offsets(offsets)
        dirty = [(store, store.pending_records()) for store in stores if store.dirty_count]
        if not outputs and not offsets and not dirty:
            return 0  # no empty transactions
        producer = self.producer
        await producer.begin_transaction()
        try:
            acks = await send_outputs(producer, outputs, self.owner)
            changelog = [
                (store, records, await self._send_changelog(producer, store.partition, records))
                for store, records in dirty
                if records
            ]
            # Every send acknowledged before the commit: a failed one fails the transaction, not silently.
            await asyncio.gather(*acks, *(future for _, _, batches in changelog for future, _ in batches))
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group())
            await producer.commit_transaction()
        except BaseException:
            await _abort(producer)
            raise
        self.committed.update(offsets)
        for store, records, batches in changelog:
            await _persist(store, records, batches)
        for store in stores:
            store.evict()
        return len(outputs)

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


async def _persist(store: PartitionStore, records: ChangelogRecords, batches: list[tuple[asyncio.Future, int]]) -> None:
    """Write ``records`` to RocksDB with the offset of the last one: a batch's future gives its base offset,
    so the last record of the last batch is base + count - 1."""
    last_offset = max([(await future).offset + count - 1 for future, count in batches])
    store.persist(records, last_offset)
    metrics.changelog_records.inc(len(records))


async def _abort(producer: AIOKafkaProducer) -> None:
    """Abort ``producer``'s open transaction if it can; if not (fenced, broker gone), the broker aborts it."""
    try:
        await producer.abort_transaction()
    except Exception as exc:  # noqa: BLE001  (the original failure is what is raised)
        log.warning("abort of the worker's transaction failed (%s); the broker aborts it", exc)
