"""The worker's stream loop: fetch a batch, process it, tick the clock, checkpoint; and the rebalance listener.

Why not faust streams: on this project's 2-core machine a faust agent that does *nothing* tops out at
about 4,600 events/s (faust's per-message machinery: a consumer thread, per-message futures, events,
acks), far below the profile stage's target of 25,000 events/s per worker. This runtime reads with
aiokafka's ``getmany`` and pays Kafka's per-message costs once per batch instead:

1. **Fetch** up to ``STREAMCDP_FETCH_MAX_RECORDS`` records of the assigned partitions (co-partitioned by
   ``streams.assignor``: partition *p* of every input topic and the state of partition *p* live together). A
   worker keeping up lets records gather up to ``STREAMCDP_LIVE_FETCH_INTERVAL_S`` between fetches
   (``streams.flush_policy``).
2. **Process** them in one event-time order over all the partitions held here (``streams.alignment.merge``:
   a record may be held until no earlier one of any input can come; a held record is not processed, so
   no checkpoint commits its offset). Inbound records are validated
   (``Stages.ingest``) and applied in place when keyed and partitioned by their routing id, else re-keyed through
   ``profile-commands``; commands are applied by ``Stages.apply`` against the partition's
   ``PartitionStore`` (a write-back cache: each key is read and decoded once). What the stage decides to
   send goes to the ``Outbox``. The clock (``Stages.due_commands``) adds the commands time makes due. A
   record whose processing fails goes to the one error policy (``streams.error_policy``).
3. **Checkpoint**, every ``STREAMCDP_COMMIT_INTERVAL_S`` or ``STREAMCDP_FLUSH_MAX_RECORDS`` inputs, and between
   two slices of a fetch (or two wake-ups the clock or a record makes due) once ``STREAMCDP_FLUSH_MAX_DIRTY_KEYS``
   keys changed: outputs, changelog, RocksDB, offsets, in that order (``streams.checkpoint``); with
   ``STREAMCDP_PROCESSING_GUARANTEE=exactly_once``, one Kafka transaction per worker. A command
   forwarded to a key of another partition held here is applied there at once, in that partition's turn;
   with exactly-once it is also written to ``profile-commands`` in the same transaction, naming its source
   partition (``Outbox.partition``), a copy skipped when read back (``streams.forwarding``).

Rebalances: the revoking listener checkpoints; the stores stay open. The assigning listener closes the
stores of partitions it did not give back, opens and restores the new ones from their changelog
(``streams.recovery``), rebuilds their wake-up index and re-checks profiles whose segments were computed
by other definitions. ``ready`` is false until that is done.

The stage handlers (``Stages``) and the Kafka clients are passed in (``streams.worker`` builds them), so
this module imports no agent and a test drives the loop with fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from agents.outbox import Outbox
from agents.tables import PARTITION_KEY, STREAM_TIMES
from agents.tally import FORWARDS
from core.privacy import redact_payload
from core.profile_stage import StagePolicy
from schemas.commands import encode_command
from streams import lag, metrics
from streams.alignment import NO_TIME, Lag, PartitionGroup, RawKey, merge
from streams.assignor import CoPartitionAssignor
from streams.checkpoint import Checkpoint, TransactionalCheckpoint
from streams.eos_v2 import StableOffsetsConsumer, group_metadata
from streams.error_policy import ProcessingErrors
from streams.flush_policy import fetch_pause_s, fetch_wait_ms, flush_due, flush_due_within_fetch
from streams.forwarding import NO_SOURCE, InMemoryCopies, Origin, origin_headers, record_origin
from streams.heap_trim import HeapTrimmer, glibc_malloc_trim
from streams.partitioning import InPlaceRouting, PartitionOwners
from streams.recovery import RestoreConsumer, StoreRecovery
from streams.security import pii_policy
from streams.settings import Settings
from streams.state_store import PartitionStore, StoreOptions
from streams.topics import topic_names

log = logging.getLogger(__name__)

# How long a new assignment waits for the previous owner's last transaction to end: longer than the
# producers' ``transaction.timeout.ms`` (aiokafka's default, 60 s), after which its coordinator aborts it.
STABLE_OFFSETS_TIMEOUT_S = 90.0
# Records processed between two turns given to the event loop's other tasks (``/readyz``, ``/metrics``, the
# profile reads): a backlog's merge can hand out tens of thousands at once, seconds of work. Measured on
# ``pipeline_bench.py --events 100000``: the longest gap between ``/metrics`` answers (asked every 0.5 s) went
# from 2.5-2.7 s to 0.7-0.85 s, worker CPU 7.8 -> 7.0-7.6 s (no cost resolved).
YIELD_EVERY_RECORDS = 500
# A run's records between two looks at the keys changed (``flush_max_dirty_keys``): a partition whose inputs are
# far ahead of the others' hands out its whole buffer as one run (tens of thousands of records), and a 1M-profile
# drain's flushes between runs then held over 50,000 changelog records (bench README "Round 6").
RUN_SLICE_RECORDS = 500

Command = Any  # a ``schemas.commands.ProfileCommand``; the loop only carries it from a stage to a stage
Forward = Callable[[bytes, Command], None]


class Stages(Protocol):
    """The stage handlers the loop calls (``agents.pipeline.ProfilePipeline``); each may raise for a bad record."""

    policy: StagePolicy

    def ingest(self, record: ConsumerRecord) -> tuple[bytes, Command]:
        """An inbound record → ``(routing key, command)``."""

    def decode(self, record: ConsumerRecord) -> Command:
        """A ``profile-commands`` record → its command."""

    def apply(self, store: PartitionStore, key: bytes, command: Command, now: float, forward: Forward) -> None:
        """Apply one command to ``key``; commands for other keys go to ``forward``."""

    def due_commands(self, store: PartitionStore, now: float) -> Iterable[tuple[bytes, Command]]:
        """Commands the clock makes due in ``store``'s partition."""

    def rebuild_index(self, store: PartitionStore) -> int:
        """Rebuild ``store``'s wake-up index from its table; the number of entries."""

    def stale_commands(self, store: PartitionStore, now: float) -> Iterable[tuple[bytes, Command]]:
        """Commands for keys whose state was computed by other definitions (after a takeover)."""


class Runtime(ConsumerRebalanceListener):
    """One worker's processing loop over its partition stores (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        stages: Stages,
        *,
        outbox: Outbox,
        producer: AIOKafkaProducer,
        consumer: StableOffsetsConsumer,
        restore_consumer: RestoreConsumer,
        assignor: CoPartitionAssignor,
    ) -> None:
        """``producer`` sends at least once, or with ``exactly_once`` is the worker's transactional producer
        whose offset commits carry the group's generation (``streams.worker`` builds either kind)."""
        self.settings = settings
        self.stages = stages
        self.policy = stages.policy
        self.outbox = outbox
        self.producer = producer
        self.consumer = consumer
        self.restore_consumer = restore_consumer
        self.assignor = assignor  # the consumer's assignment strategy; the web API reads the owners from it
        self.topics = topic_names(settings)
        changelog_topic = self.topics.state_changelog(settings.app_id)
        self.source_topics = (*self.topics.all_inbound, self.topics.profile_commands)
        self.store_options = StoreOptions(
            block_cache_bytes=settings.rocksdb_block_cache_bytes,
            write_buffer_bytes=settings.rocksdb_write_buffer_bytes,
            cache_bytes=settings.state_cache_bytes,
        )
        self.transactional = settings.processing_guarantee == "exactly_once"
        self._owners = PartitionOwners(settings.topic_partitions)  # a key's partition, memoised
        self.checkpoint: Checkpoint
        if producer is None:
            msg = f"{settings.processing_guarantee} processing needs a producer"
            raise ValueError(msg)
        if self.transactional:
            self.checkpoint = TransactionalCheckpoint(
                producer=producer,
                consumer=consumer,
                outbox=outbox,
                changelog_topic=changelog_topic,
                group=lambda: group_metadata(consumer),
                buffered=self._buffered_inputs,
                owner=self._owners.place,
            )
        else:
            self.checkpoint = Checkpoint(
                producer=producer,
                consumer=consumer,
                outbox=outbox,
                changelog_topic=changelog_topic,
                owner=self._owners.place,
            )
        self.recovery = StoreRecovery(
            restore_consumer, changelog_topic=changelog_topic, data_dir=settings.data_dir, options=self.store_options
        )
        privacy = pii_policy(settings)
        self.errors = ProcessingErrors(
            self.topics.deadletter, outbox, metrics.tally, redact=lambda raw: redact_payload(raw, privacy)
        )
        self.stores: dict[int, PartitionStore] = {}
        self.heap_trimmer = HeapTrimmer(
            settings.malloc_trim_interval_s, glibc_malloc_trim(), growth_bytes=settings.malloc_trim_growth_bytes
        )
        self._flushed_at = time.monotonic()  # when the loop's last flush ended
        self.ready = False
        self._generation = 0  # bumped by every rebalance: a fetch from an older one is dropped
        self._lock = asyncio.Lock()  # processing, checkpoints and rebalancing never interleave
        self._stopping = asyncio.Event()
        self._in_place = InPlaceRouting(self._owners, self._partition_count) if settings.ingest_in_place else None
        # Commands the profile stage addressed to keys of partitions held here: applied in place, in order
        # (each ``_apply`` has its own queue), with the origin of those decided in another partition's work;
        # and the depth and time of the command being applied (what a command it forwards carries).
        self._local: deque[tuple[PartitionStore, bytes, Command, Origin | None, int]] = deque()
        self._depth = 0
        self._now = 0.0
        self._copies = InMemoryCopies()  # commands applied in memory whose durable copy is still to come back
        # Event-time order: each partition's fetched records, held until their timestamp order is known, and
        # its stream time (epoch ms of the latest inbound record processed, or of the wall clock that fired its
        # timers while it was idle) that drives its clock, stored with its state (``STREAM_TIMES``).
        self._groups: dict[int, PartitionGroup] = {}
        self._groups_generation = 0
        self._stream_ms: dict[int, int] = {}
        # The last fetch, from its return until it is buffered (or rewound) under the lock.
        self._fetched: dict[TopicPartition, list[ConsumerRecord]] = {}
        # Exactly-once: where the current assignment's inputs start (their stable committed offsets).
        self._assigned_starts: dict[TopicPartition, int] = {}

    def _buffered_inputs(self) -> frozenset[TopicPartition]:
        """Input partitions with records fetched but not processed yet: those held in a partition group for
        their timestamp order, and those of a fetch not buffered yet (a rebalance's checkpoint may run
        between ``getmany`` returning it and the loop taking the lock). The checkpoint commits the
        consumer's position of the others (past transaction markers); for these it commits the next offset
        processed, since the position is past the unprocessed records and committing it would skip them."""
        held = {tp for group in self._groups.values() for tp, queue in group.queues.items() if queue}
        # A fetch returned while a rebalance's checkpoint holds the lock is not in any group yet.
        held.update(tp for tp, records in self._fetched.items() if records)
        return frozenset(held)

    def _partition_count(self, topic: str) -> int | None:
        partitions = self.consumer.partitions_for_topic(topic)
        return len(partitions) if partitions else None

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        # Exactly-once: ``start`` runs ``init_transactions``, aborting this worker's previous incarnation's
        # open transaction (same transactional id) before anything is read.
        await self.producer.start()
        await self.restore_consumer.start()
        self.consumer.subscribe(topics=list(self.source_topics), listener=self)
        await self.consumer.start()

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Checkpoint what was processed (unless a checkpoint failed: then nothing more is written, the
        inputs since the last commit replay), leave the group, close the stores."""
        async with self._lock:
            if self.checkpoint.failed is None:
                await self.checkpoint.commit(self.stores.values())
        await self.consumer.stop()
        await self.restore_consumer.stop()
        await self.producer.stop()
        for store in self.stores.values():
            store.close()
        self.stores.clear()

    async def run(self) -> None:
        settings = self.settings
        checkpoint = self.checkpoint
        last_scan = fetched_at = self._flushed_at = time.monotonic()
        fetched = 0
        while not self._stopping.is_set():
            pause = fetch_pause_s(
                settings,
                fetched=fetched,
                held_back=self._groups_buffered(),
                since_fetch_s=time.monotonic() - fetched_at,
                outputs=len(self.outbox),
                since_flush_s=time.monotonic() - self._flushed_at,
            )
            if pause:
                await asyncio.sleep(pause)  # records gather in the consumer (streams.flush_policy)
            generation = self._generation
            timeout_ms = fetch_wait_ms(
                settings,
                held_back=self._groups_buffered(),
                outputs=len(self.outbox),
                since_flush_s=time.monotonic() - self._flushed_at,
            )
            batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=settings.fetch_max_records)
            fetched_at = time.monotonic()
            fetched = sum(map(len, batch.values()))
            if fetched:
                metrics.child(metrics.fetches, "records").inc()
                metrics.fetched_records.inc(fetched)
            else:
                metrics.child(metrics.fetches, "empty").inc()
            self._fetched = batch  # returned (the position is past it), not buffered yet: see _buffered_inputs
            async with self._lock:
                if self._groups_generation != self._generation:
                    self._groups.clear()  # a rebalance: the held-back records are fetched again from the commit
                    self._groups_generation = self._generation
                if generation == self._generation:
                    self._buffer(batch)
                    await self._process_aligned(time.monotonic())
                    self._pause_full_inputs()
                else:
                    self._rewind(batch)
                self._fetched = {}
                lag.observe_progress(self.consumer, batch, self.stores.values(), time.time())
                monotonic = time.monotonic()
                if self.ready and monotonic - last_scan >= settings.trigger_scan_interval_s:
                    last_scan = monotonic
                    await self.tick(time.time(), await self._behind_partitions())
                if flush_due(
                    settings,
                    since_flush_s=monotonic - self._flushed_at,
                    inputs=checkpoint.inputs,
                    empty=checkpoint.empty,
                    outputs=len(self.outbox),
                    caught_up=fetched < settings.fetch_max_records,
                ):
                    await self._flush()
        if checkpoint.failed is not None:
            msg = "a flush failed; stopping so that the inputs since the last commit replay"
            raise RuntimeError(msg) from checkpoint.failed

    async def _flush(self) -> None:
        """The loop's checkpoint (under the lock): outputs, changelog, RocksDB, offsets; then the heap trim."""
        await self.checkpoint.commit(self.stores.values())
        self._flushed_at = time.monotonic()
        if self.heap_trimmer.after_flush(self._flushed_at):
            metrics.heap_trim_seconds.observe(time.monotonic() - self._flushed_at)

    def _rewind(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """A fetch that straddled a rebalance is not processed; seek its partitions back to its first records.

        aiokafka sets the new assignment (positions from the committed offsets) before it calls
        ``on_partitions_assigned``, so a ``getmany`` waiting meanwhile can return records of the new
        assignment. Dropped without a seek, the position would stay past them and the next commit (the
        processed offset of later records, or the position with exactly-once) would skip them for good.
        """
        assigned = self.consumer.assignment()
        starts = self._assigned_starts
        for tp, records in batch.items():
            if records and tp in assigned:
                # Never before the stable committed offset: a fetch from aiokafka's own, earlier one would
                # hold inputs that a transaction of the previous owner has committed.
                self.consumer.seek(tp, max(records[0].offset, starts.get(tp, 0)))

    # --- event-time order and clocks (``streams.alignment``) ---------------------------------------------

    def _groups_buffered(self) -> bool:
        return any(group.buffered for group in self._groups.values())

    def _buffer(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Add a fetch to the partition groups (a group's inputs: partition p of every assigned input topic)."""
        for tp, records in batch.items():
            if not records:
                continue
            group = self._groups.get(tp.partition)
            if group is None:
                group = self._groups[tp.partition] = self._new_group(tp.partition)
            group.add(tp, records)

    def _pause_full_inputs(self) -> None:
        """Pause fetching the inputs holding ``buffered_records_per_input`` records or more, resume the others.

        What is held waits for an input behind it in event time; that input has nothing buffered, so it is
        never paused and its records keep coming: the merge goes on and the paused inputs drain. Asked of the
        consumer each time (a rebalance gives new partition states, unpaused)."""
        limit = self.settings.buffered_records_per_input
        full = {tp for group in self._groups.values() for tp, queue in group.queues.items() if len(queue) >= limit}
        paused = self.consumer.paused()
        if full != paused:
            assigned = self.consumer.assignment()
            if to_pause := (full - paused) & assigned:
                self.consumer.pause(*to_pause)
            if to_resume := (paused - full) & assigned:
                self.consumer.resume(*to_resume)

    def _new_group(self, partition: int) -> PartitionGroup:
        """Partition ``partition``'s group: that partition of every assigned input topic, in topic order."""
        inputs = sorted(
            (tp for tp in self.consumer.assignment() if tp.partition == partition),
            key=lambda tp: self.source_topics.index(tp.topic) if tp.topic in self.source_topics else 0,
        )
        return PartitionGroup(
            inputs,
            ordered_topics=self.source_topics,
            max_idle_s=self.settings.max_task_idle_ms / 1000,
            record_key={self.topics.profile_commands: _command_key},
        )

    def _ensure_groups(self) -> None:
        """A group for every state partition held here, buffered or not: one that is behind holds all back."""
        missing = set(self.stores) - set(self._groups)
        if not missing:
            return
        for partition in sorted(missing):
            self._groups[partition] = self._new_group(partition)

    async def _lags(self, groups: Iterable[PartitionGroup]) -> dict[TopicPartition, int | None]:
        """The lag of each ordered input of ``groups`` (see ``_input_lag``); an input without a fetch response
        yet is asked for its end offset, so that a start or a restart under load does not give up waiting
        for it after the idle time and decide in another order."""
        lags = {
            tp: await self._input_lag(tp) for group in groups for tp in group.queues if tp.topic in group.ordered_topics
        }
        unknown = [tp for tp, known in lags.items() if known is None]
        if unknown:
            lags.update(await self._asked_lags(unknown))
        return lags

    async def _asked_lags(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Lags from a ``ListOffsets`` request (the last stable offsets, read_committed); none when it fails or
        takes longer than the idle wait (at least a second): the idle wait then decides as before."""
        consumer = self.consumer
        try:
            ends = await asyncio.wait_for(
                consumer.end_offsets(tps), timeout=max(self.settings.max_task_idle_ms / 1000, 1.0)
            )
            return {tp: max(end - await consumer.position(tp), 0) for tp, end in ends.items()}
        except (TimeoutError, KafkaError) as exc:
            log.debug("end offsets of %d input(s) not known (%s)", len(tps), exc)
            return {}

    async def _input_lag(self, tp: TopicPartition) -> int | None:
        """Records on the broker past the consumer's position, by the end offset known from the last fetch
        (None: no fetch response yet); 0 for an input no longer assigned (nothing to wait for)."""
        consumer = self.consumer
        stable = consumer.last_stable_offset(tp)  # read_committed: records of open transactions are not "more"
        end = stable if stable is not None and stable >= 0 else consumer.highwater(tp)
        if end is None:
            return None
        try:
            position = await consumer.position(tp)
        except IllegalStateError:  # no longer assigned: nothing to wait for
            return 0
        return max(end - position, 0)

    async def _input_caught_up(self, tp: TopicPartition) -> bool:
        """The consumer's position has reached the end offset known from the last fetch (unknown: no)."""
        return await self._input_lag(tp) == 0

    async def _process_aligned(self, monotonic: float) -> None:
        """Process what the partition groups can hand out in the worker's event-time order (see
        ``streams.alignment.merge``)."""
        if not self._groups_buffered():
            return
        self._ensure_groups()
        lag = (await self._lags(self._groups.values())).get
        since_yield = 0
        for tp, run in merge(self._groups, self._stream_ms, lag, monotonic):
            for start in range(0, len(run), RUN_SLICE_RECORDS):
                records = run[start : start + RUN_SLICE_RECORDS]
                since_yield += len(records)
                while True:
                    await self._fire_due_before(tp, records, lag)
                    processed = self.process(tp, records, until_flush_due=True)
                    if processed == len(records):
                        break
                    # Stopped before a record whose wake-ups reached the bound: flush, fire the rest before it.
                    await self._flush()
                    records = records[processed:]
                if self._dirty_flush_due():
                    # Between two records no key is half-written; the checkpoint commits the offsets processed so
                    # far (the fetch's partitions count as buffered), the rest of the fetch goes on after it.
                    await self._flush()
                    since_yield = 0
                elif since_yield >= YIELD_EVERY_RECORDS:
                    # Between two records no key is half-written, and the lock keeps rebalances and checkpoints
                    # out; the web server and the consumer's heartbeats get their turn.
                    since_yield = 0
                    await asyncio.sleep(0)

    async def _fire_due_before(self, tp: TopicPartition, records: list[ConsumerRecord], lag: Lag) -> None:
        """Fire the wake-ups that the run's first record makes due before the run is processed, flushing between
        two of them once ``flush_max_dirty_keys`` keys changed, and move the partition's stream time to that
        record's (as ``_catch_up`` does). Many wake-ups can come due at one moment of event time (the triggers
        deferred by quiet hours, at their end); fired inside ``process`` they would all wait in memory for one
        flush (a draining worker's RSS jumped by ~300 MB at such bursts, bench README "Round 5"). The stream time
        may be there already: ``process`` stopped before this record, its wake-ups fired only in part.

        Other partitions with wake-ups due by then are brought to that time too: those with records buffered,
        which come no earlier (the merge hands out the smallest first), and those caught up
        (``PartitionGroup.caught_up``: their next record is not written yet). What they fire is what a command
        this run forwards to them (``_catch_up``, inside ``process``, unbounded) or the clock's next tick (``tick``:
        a caught-up partition follows the stream time of those behind) would fire, at the same due times. Each
        store's earliest wake-up is looked at for every run (a heap's head): a horizon kept between runs missed
        the wake-ups written after it was taken, due earlier. Measured: a 1M-profile drain's bursts went that way,
        flushes of over 50,000 records, through partitions with records buffered (bench README "Round 6"), then
        through caught-up ones, and through wake-ups written after the horizon (12,000 in one partition at once,
        "Round 7")."""
        first = records[0]
        at_ms = record_origin(first).at_ms if tp.topic == self.topics.profile_commands else first.timestamp
        groups = self._groups
        for partition in (tp.partition, *(p for p in self.stores if p != tp.partition)):
            store = self.stores.get(partition)
            if store is None:
                continue
            stream_ms = self._stream_ms.get(partition, NO_TIME)
            earliest = store.due_index.earliest()
            if earliest is None or earliest > max(at_ms, stream_ms) / 1000:
                continue
            if partition != tp.partition:
                group = groups.get(partition)
                if group is None or not (group.buffered or group.caught_up(lag)):
                    continue  # its next record may come earlier: it fires its own wake-ups then
            if at_ms > stream_ms:
                self._advance_stream_time(partition, store, at_ms)
            await self._fire_due_in_flushes(store, self._stream_ms[partition] / 1000)
        self.outbox.partition = tp.partition

    def _dirty_flush_due(self) -> bool:
        """Whether the keys changed since the last flush, all stores together, call for a flush now."""
        return flush_due_within_fetch(
            self.settings, dirty_keys=sum(store.dirty_count for store in self.stores.values())
        )

    def stream_time(self, partition: int) -> float | None:
        """The partition's stream time in epoch seconds (the largest event timestamp processed, or the wall
        clock that fired its timers while idle), None: none yet."""
        stream_ms = self._stream_ms.get(partition)
        return None if stream_ms is None else stream_ms / 1000

    def _advance_stream_time(self, partition: int, store: PartitionStore | None, stream_ms: int) -> None:
        """Move the partition's stream time forward and store it with the state it decides (committed with
        it, so a restart or a replay after a crash starts from the clock the committed state was decided at)."""
        self._stream_ms[partition] = stream_ms
        if store is not None:
            store.put(STREAM_TIMES, PARTITION_KEY, stream_ms)

    # --- processing (no awaits: a key's read-modify-write is atomic) -------------------------------------

    def process(self, tp: TopicPartition, records: list[ConsumerRecord], *, until_flush_due: bool = False) -> int:
        """Process one partition's records in order; every per-record step is under the error policy. The
        number processed: all, unless ``until_flush_due`` and the wake-ups a record made due reached
        ``flush_max_dirty_keys`` changed keys (then that record and those after it are left, the partition's
        stream time at it, for the caller to flush and fire the rest first).

        ``now`` is the partition's stream time, not the wall clock: an inbound record advances it to its
        timestamp (the event time), first firing the wake-ups due by then, so a replay decides the same.
        """
        store = self.stores.get(tp.partition)
        self.outbox.partition = tp.partition  # what follows is this partition's work (the source of its forwards)
        started_ms = self._stream_ms.get(tp.partition, NO_TIME)
        if tp.topic == self.topics.profile_commands:
            if store is None:
                log.error("records of %s without its partition store; left for the next owner", tp)
                return len(records)
            stream_ms, processed = self._process_commands(store, records, started_ms, until_flush_due)
        else:
            stream_ms, processed = self._process_inbound(store, tp, records, started_ms, until_flush_due)
        if stream_ms != started_ms:
            self._advance_stream_time(tp.partition, store, stream_ms)
        if processed:
            self.checkpoint.store_offset(tp, records[processed - 1].offset + 1, processed)
        return processed

    def _process_commands(
        self, store: PartitionStore, records: list[ConsumerRecord], stream_ms: int, until_flush_due: bool
    ) -> tuple[int, int]:
        """``profile-commands`` records, each at its origin's stream time or later; the stream time reached and
        the records processed (see ``process``)."""
        on_error = self.errors.on_processing_error
        decode = self.stages.decode
        for index, record in enumerate(records):
            origin = record_origin(record)  # decided at its origin's stream time: applied no earlier
            if origin.at_ms > stream_ms:
                stream_ms = self._stream_ms[store.partition] = origin.at_ms
                if not self._fire_due(store, stream_ms / 1000, until_flush_due=until_flush_due):
                    return stream_ms, index
            if self._copies.take(record.key, record.value):
                metrics.tally.add(FORWARDS, "copy_skipped")
                continue  # applied in memory when it was decided
            try:
                self._apply(store, record.key, decode(record), stream_ms / 1000, record, depth=origin.depth)
            except Exception as exc:  # noqa: BLE001  (the error policy decides: park or stop)
                on_error(exc, record)
        return stream_ms, len(records)

    def _process_inbound(
        self,
        store: PartitionStore | None,
        tp: TopicPartition,
        records: list[ConsumerRecord],
        stream_ms: int,
        until_flush_due: bool,
    ) -> tuple[int, int]:
        """Inbound records, each at its event time (or the stream time, if later); the stream time reached and
        the records processed (see ``process``).

        A record is applied in place when it is keyed and partitioned by its routing id and this worker holds
        that partition, else re-keyed through ``profile-commands``. What holds for the whole run (the topic's
        partition count, the store) is decided once here, so a record costs its own steps only."""
        on_error = self.errors.on_processing_error
        ingest = self.stages.ingest
        apply = self._apply
        partition = tp.partition
        in_place = self._in_place
        in_place_store = store if in_place is not None and in_place.topic_applies(tp.topic) else None
        key_applies = in_place.key_applies if in_place is not None else None
        now = stream_ms / 1000
        for index, record in enumerate(records):
            if record.timestamp > stream_ms:
                stream_ms = self._stream_ms[partition] = record.timestamp
                now = stream_ms / 1000
                if store is not None and not self._fire_due(store, now, until_flush_due=until_flush_due):
                    return stream_ms, index
            try:
                key, command = ingest(record)
                if in_place_store is not None and key_applies is not None and key_applies(partition, record.key, key):
                    apply(in_place_store, key, command, now, record)
                else:
                    self._rekey(store, key, command, now)
            except Exception as exc:  # noqa: BLE001  (the error policy decides: park or stop)
                on_error(exc, record)
        return stream_ms, len(records)

    def _rekey(self, store: PartitionStore | None, key: bytes, command: Command, now: float) -> None:
        """An inbound record not applied in place: its command to ``profile-commands``, keyed by its routing id."""
        origin = Origin(round(now * 1000), 1, NO_SOURCE if store is None else store.partition)
        self.outbox.send(self.topics.profile_commands, key, encode_command(command), origin_headers(origin))

    def _apply(
        self,
        store: PartitionStore,
        key: bytes,
        command: Command,
        now: float,
        record: ConsumerRecord | None = None,
        *,
        depth: int = 0,
    ) -> None:
        """Apply one command, then every command it leads to whose key is held here (links, merges, an
        event of a linked id), before the next input: no round trip through Kafka. A command for another
        partition held here is applied in that partition's turn (its stream time moved to ``now`` first).
        A failing command does not stop the ones after it; the input is parked once, at its first failure.
        Re-entrant: a partition's wake-ups fired on the way apply through their own queue."""
        outer_local, outer_depth, outer_now = self._local, self._depth, self._now
        outbox = self.outbox
        source = outbox.partition
        local = self._local = deque([(store, key, command, None, depth)])
        apply = self.stages.apply
        parked = record
        try:
            while local:
                store, key, command, origin, self._depth = local.popleft()
                at = now
                if origin is not None:  # decided in another partition's work
                    at = self._catch_up(store, now)
                    outbox.partition = store.partition
                self._now = at
                try:
                    apply(store, key, command, at, self._forward)
                except Exception as exc:  # noqa: BLE001  (the error policy decides: park or stop)
                    self.errors.on_processing_error(exc, parked, key)
                    parked = None
                finally:
                    outbox.partition = source
        finally:
            self._local, self._depth, self._now = outer_local, outer_depth, outer_now
            outbox.partition = source

    def _forward(self, key: bytes, command: Command) -> None:
        """A command the stage addressed to ``key``: applied here when its partition is held here; with
        exactly-once, one for another partition is also written to ``profile-commands`` in this
        partition's transaction (its durable copy, skipped when read back by this process: see
        ``streams.checkpoint`` and ``streams.forwarding``)."""
        partition = self._owners(key)
        store = self.stores.get(partition)
        source = self.outbox.partition
        depth = self._depth + 1
        if store is not None and partition == source:
            self._local.append((store, key, command, None, depth))
            metrics.tally.add(FORWARDS, "in_place")
            return
        origin = Origin(round(self._now * 1000), depth, NO_SOURCE if source is None else source)
        if store is None or self.transactional:
            value = encode_command(command)
            self.outbox.send(self.topics.profile_commands, key, value, origin_headers(origin))
            if store is not None:
                self._copies.applied(key, value)
        if store is not None:
            self._local.append((store, key, command, origin, depth))
            metrics.tally.add(FORWARDS, "in_place")
        else:
            metrics.tally.add(FORWARDS, "kafka")

    def _catch_up(self, store: PartitionStore, now: float) -> float:
        """Move ``store``'s partition to ``now`` for a command decided then elsewhere, firing its wake-ups due
        by then first; the time the command is applied at (its stream time, if that is later)."""
        partition = store.partition
        at_ms = round(now * 1000)
        stream_ms = self._stream_ms.get(partition, NO_TIME)
        if at_ms <= stream_ms:
            return stream_ms / 1000
        self.outbox.partition = partition
        self._advance_stream_time(partition, store, at_ms)
        self._fire_due(store, at_ms / 1000)
        return now

    async def tick(self, now: float, behind: Collection[int] = ()) -> None:
        """Apply the commands the clock makes due in every partition held here, each by its own clock, in
        bounded flushes (``_fire_due_in_flushes``: a backlog's last tick, once its inputs are caught up, fires
        what came due up to the wall clock, all at once).

        A partition in ``behind`` (catching up: records held back, or an input short of its end offset) is at
        its stream time: its wake-ups fire as its records pass them, never by the wall clock, so a cart is
        not decided before an order still queued. Any other partition (live, or idle) is at
        ``max(stream time, now)``: its timers fire by the wall clock even when no record comes, and when
        they do, its stream time moves to that clock, so a record stamped earlier that comes later is
        processed at it and cannot undo the decision (a segment exit re-entered at an earlier time). But no
        further than the stream time of any partition behind: that one may still forward commands to it,
        decided at its own stream time or later (``streams.forwarding``), which must not come after the
        clock moved past them.
        """
        frontier_ms = min((self._stream_ms.get(p, NO_TIME) for p in behind if p in self.stores), default=None)
        for partition, store in list(self.stores.items()):  # flushes between: the loop's lock keeps rebalances out
            self.outbox.partition = partition  # this partition's work (the source of its forwards)
            stream_ms = self._stream_ms.get(partition, NO_TIME)
            if partition in behind:
                if stream_ms != NO_TIME:
                    await self._fire_due_in_flushes(store, stream_ms / 1000)
                continue
            at_ms = int(now * 1000) if frontier_ms is None else min(int(now * 1000), frontier_ms)
            at_ms = max(stream_ms, at_ms)
            earliest = store.due_index.earliest()
            if earliest is not None and earliest <= at_ms / 1000:
                if at_ms > stream_ms:
                    self._advance_stream_time(partition, store, at_ms)
                await self._fire_due_in_flushes(store, at_ms / 1000)

    async def _behind_partitions(self) -> set[int]:
        """Partitions with records held back or an input not caught up (end offset unknown: behind).

        ``profile-commands`` counts: a command written there (a durable copy another process applied, a
        re-keyed event) is applied at the time it was decided, which the wall clock must not pass first
        (after a restart, the inbound inputs can be caught up before its records are fetched)."""
        behind = {partition for partition, group in self._groups.items() if group.buffered}
        consumer = self.consumer
        for tp in consumer.assignment():
            if tp.partition in behind or tp.topic not in self.source_topics:
                continue
            if not await self._input_caught_up(tp):
                behind.add(tp.partition)
        return behind

    async def _fire_due_in_flushes(self, store: PartitionStore, now: float) -> None:
        """Apply the wake-ups of ``store`` due at or before ``now``, flushing whenever ``flush_max_dirty_keys``
        keys changed (between two keys' wake-ups: none is half-applied); its partition's work (the outbox's
        source) throughout."""
        self.outbox.partition = store.partition
        while not self._fire_due(store, now, until_flush_due=True):
            await self._flush()
            self.outbox.partition = store.partition

    def _fire_due(self, store: PartitionStore, now: float, *, until_flush_due: bool = False) -> bool:
        """Apply the wake-ups of ``store`` due at or before ``now`` (each decided at its due time); whether all
        were. With ``until_flush_due``, stop once ``flush_max_dirty_keys`` keys changed: the rest stay in the due
        index for the next pass, after a flush."""
        earliest = store.due_index.earliest()
        if earliest is None or earliest > now:
            return True
        for key, command in self.stages.due_commands(store, now):
            self._apply(store, key, command, now)
            if until_flush_due and self._dirty_flush_due():
                return False
        return True

    # --- rebalance listener -----------------------------------------------------------------------------

    def _state_partitions(self, tps: Iterable[TopicPartition]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.topics.profile_commands}

    async def on_partitions_revoked(self, revoked) -> None:
        # Checkpoint what was processed; the stores stay open, since the next assignment usually gives most
        # partitions back (it closes the ones it does not).
        async with self._lock:
            self.ready = False
            self._generation += 1
            try:
                await self.checkpoint.commit(self.stores.values())
            except Exception:
                log.exception("flush failed in a rebalance; the worker stops")
                self.stop()
                return
            log.info("partitions revoked: %s", sorted(self._state_partitions(revoked)))

    async def on_partitions_assigned(self, assigned) -> None:
        async with self._lock:
            self._generation += 1
            starts: dict[TopicPartition, int] = {}
            if self.transactional:
                # Before the restore: the previous owner's last transaction may still be completing (its
                # ``EndTxn`` returned, its markers not all written), and until it is, both the group's offsets
                # and the changelog's last stable offset answer from before it; the restore would then miss
                # its state while the offsets (fetched a moment later) skip its inputs.
                try:
                    starts = await self.consumer.stable_committed(assigned, timeout_s=STABLE_OFFSETS_TIMEOUT_S)
                except Exception:
                    log.exception("no stable committed offsets for the assignment; the worker stops")
                    self.stop()
                    return
            self._assigned_starts = starts
            wanted = self._state_partitions(assigned)
            for partition in set(self.stores) - wanted:
                self.stores.pop(partition).close()
            started = time.monotonic()
            for partition in set(self._stream_ms) - wanted:
                del self._stream_ms[partition]  # its next owner goes on from the stored one
            new, restored = await self.recovery.open_stores(sorted(wanted - set(self.stores)))
            self.stores.update(new)
            for partition, store in new.items():
                stored_ms = store.get(STREAM_TIMES, PARTITION_KEY)
                if stored_ms is not None:
                    self._stream_ms[partition] = max(self._stream_ms.get(partition, NO_TIME), stored_ms)
            now = time.time()
            stale = 0
            for store in new.values():
                self.outbox.partition = store.partition
                self.stages.rebuild_index(store)
                for key, command in self.stages.stale_commands(store, now):
                    stale += 1
                    self._apply(store, key, command, now)
            metrics.wakeups_indexed.set(sum(len(store.due_index) for store in self.stores.values()))
            metrics.assigned_partitions.set(len(self.stores))
            # aiokafka fetched its own copy of the offsets, possibly before they were stable.
            for tp, offset in starts.items():
                self.consumer.seek(tp, offset)
            self.ready = True
            log.info(
                "partitions assigned: %s; %d new, %d changelog records restored in %.1f s; "
                "%d profile(s) re-checked for changed definitions",
                sorted(wanted),
                len(new),
                restored,
                time.monotonic() - started,
                stale,
            )


def _command_key(record: ConsumerRecord) -> RawKey:
    """A ``profile-commands`` record's place in event-time order (``streams.forwarding``)."""
    origin = record_origin(record)
    return (origin.at_ms, origin.depth, record.partition if origin.source == NO_SOURCE else origin.source)
