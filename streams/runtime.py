"""The worker's stream runtime: consume in batches, apply in place, flush, commit. All its I/O is here.

Why not faust streams: on this project's 2-core machine a faust agent that does *nothing* tops out at
about 4,600 events/s (faust's per-message machinery: a consumer thread, per-message futures, events,
acks), far below the profile stage's target of 25,000 events/s per worker. This runtime reads with
aiokafka's ``getmany`` and pays Kafka's per-message costs once per batch instead:

1. **Fetch** up to ``STREAMCDP_FETCH_MAX_RECORDS`` records of the assigned partitions (co-partitioned by
   ``streams.assignor``: partition *p* of every input topic and the state of partition *p* live together).
2. **Process** them in order, per partition: inbound records are validated (``agents.ingest``) and
   applied in place when keyed and partitioned by their routing id, else re-keyed through
   ``profile-commands``; commands are applied by ``agents.profiles.handle_command`` against the
   partition's ``PartitionStore`` (a write-back cache: each key is read and decoded once). What the agents
   decide to send goes to the ``Outbox``. The clock (``agents.clock``) adds the commands time makes due.
3. **Flush**, every ``STREAMCDP_COMMIT_INTERVAL_S`` or ``STREAMCDP_FLUSH_MAX_RECORDS`` inputs: send the
   outbox and wait for the acks; then send each dirty key once to the changelog and wait; then write those
   values and the changelog offset to RocksDB in one batch; then commit the input offsets.

A crash anywhere in 3 leaves: outputs sent but no state (the inputs replay, the same decisions are made
again with the same ids, and ``applied_ids`` / ``absorb_id`` dedupe the state updates), or state in the
changelog but not committed (same), never state that claims an output that was not sent.

Rebalances: the revoking listener flushes and closes the partitions' stores; the assigning listener
restores each new partition's store from its changelog (from the offset RocksDB last wrote, so a
restart with a warm disk reads only the tail), rebuilds its wake-up index and re-checks profiles whose
segments were computed by other definitions. ``ready`` is false until that is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from agents.clock import due_commands, rebuild_due_index, stale_audience_commands
from agents.ingest import ingest_record
from agents.profiles import handle_command
from core.profile_stage import StagePolicy
from schemas.commands import decode_command, encode_command
from schemas.deadletter import PROCESSING_FAILED, processing_failure
from streams import lag, metrics
from streams.assignor import CoPartitionAssignor
from streams.codecs import encode_json
from streams.logs import record_context
from streams.outbox import Outbox
from streams.partitioning import InPlaceRouting, PartitionOwners
from streams.produce import contract_limits
from streams.settings import Settings
from streams.state_store import PartitionStore, StoreOptions
from streams.topics import topic_names

log = logging.getLogger(__name__)

RESTORE_CHUNK = 10_000  # changelog records written to RocksDB per batch while restoring


class Runtime(ConsumerRebalanceListener):
    """One worker's consumer, producer, partition stores and processing loop (see the module docstring)."""

    def __init__(self, settings: Settings, policy: StagePolicy, web_url: str) -> None:
        self.settings = settings
        self.policy = policy
        self.topics = topic_names(settings)
        self.changelog_topic = self.topics.state_changelog(settings.app_id)
        self.source_topics = (*self.topics.all_inbound, self.topics.profile_commands)
        self.limits = contract_limits(settings)
        self.store_options = StoreOptions(
            block_cache_bytes=settings.rocksdb_block_cache_bytes,
            write_buffer_bytes=settings.rocksdb_write_buffer_bytes,
            max_cached_keys=settings.state_cache_keys,
        )
        self.assignor = CoPartitionAssignor(web_url)
        self.outbox = Outbox()
        self.stores: dict[int, PartitionStore] = {}
        self.ready = False
        self._generation = 0  # bumped by every rebalance: a fetch from an older one is dropped
        self._lock = asyncio.Lock()  # processing, flushing and rebalancing never interleave
        self._positions: dict[TopicPartition, int] = {}
        self._unflushed = 0
        self._stopping = asyncio.Event()
        self._failed: BaseException | None = None  # a flush that failed in a rebalance listener
        self._owners = PartitionOwners(settings.topic_partitions)
        self._in_place = InPlaceRouting(self._owners, self._partition_count) if settings.ingest_in_place else None
        # Commands the profile stage addressed to keys of partitions held here: applied in place, in order.
        self._local: deque[tuple[PartitionStore, bytes, object]] = deque()
        bootstrap = settings.broker_bootstrap
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            client_id=f"{settings.app_id}-worker",
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=settings.app_id,
            client_id=f"{settings.app_id}-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(self.assignor,),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=300_000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.restorer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{settings.app_id}-restore",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )

    def _partition_count(self, topic: str) -> int | None:
        partitions = self.consumer.partitions_for_topic(topic)
        return len(partitions) if partitions else None

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.producer.start()
        await self.restorer.start()
        self.consumer.subscribe(topics=list(self.source_topics), listener=self)
        await self.consumer.start()

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Flush what was processed (unless a flush failed: then nothing more is written, the inputs
        since the last commit replay), leave the group, close the stores."""
        async with self._lock:
            if self._failed is None:
                await self._flush()
        await self.consumer.stop()
        await self.restorer.stop()
        await self.producer.stop()
        for store in self.stores.values():
            store.close()
        self.stores.clear()

    async def run(self) -> None:
        scan_every = self.settings.trigger_scan_interval_s
        last_flush = last_scan = time.monotonic()
        while not self._stopping.is_set():
            generation = self._generation
            batch = await self.consumer.getmany(timeout_ms=100, max_records=self.settings.fetch_max_records)
            async with self._lock:
                if generation == self._generation:
                    for tp, records in batch.items():
                        self._process(tp, records)
                lag.observe_progress(self.consumer, batch, self.stores.values(), time.time())
                monotonic = time.monotonic()
                if self.ready and monotonic - last_scan >= scan_every:
                    last_scan = monotonic
                    self._tick(time.time())
                if self._unflushed >= self.settings.flush_max_records or (
                    monotonic - last_flush >= self.settings.commit_interval_s and (self._unflushed or self.outbox)
                ):
                    await self._flush()
                    last_flush = time.monotonic()
        if self._failed is not None:
            msg = "a flush failed; stopping so that the inputs since the last commit replay"
            raise RuntimeError(msg) from self._failed

    # --- processing (no awaits: a key's read-modify-write is atomic) -------------------------------------

    def _process(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        store = self.stores.get(tp.partition)
        now = time.time()
        if tp.topic == self.topics.profile_commands:
            if store is None:
                log.error("records of %s without its partition store; left for the next owner", tp)
                return
            for record in records:
                try:
                    command = decode_command(record.value)
                except Exception as exc:  # noqa: BLE001  (an internal topic: only a bug writes garbage)
                    log.error("undecodable command skipped: %s", exc, extra=record_context(tp.partition, record))
                    metrics.profile_notes.labels("undecodable_command").inc()
                    continue
                self._apply(store, record.key, command, now, record)
        else:
            for record in records:
                routed = ingest_record(record, limits=self.limits, topics=self.topics, outbox=self.outbox)
                if routed is None:
                    continue
                key, command = routed
                if (
                    store is not None
                    and self._in_place is not None
                    and self._in_place.applies(record.topic, record.partition, record.key, key)
                ):
                    self._apply(store, key, command, now, record)
                else:
                    self.outbox.send(self.topics.profile_commands, key, encode_command(command))
        self._positions[tp] = records[-1].offset + 1
        self._unflushed += len(records)

    def _apply(
        self, store: PartitionStore, key: bytes, command, now: float, record: ConsumerRecord | None = None
    ) -> None:
        """Apply one command, then every command it leads to whose key is held here (links, merges, an
        event of a linked id), before the next input: no round trip through Kafka, and all of it is
        flushed together."""
        local = self._local
        local.append((store, key, command))
        dead_lettered = False
        while local:
            store, key, command = local.popleft()
            try:
                handle_command(
                    store,
                    key,
                    command,
                    now=now,
                    policy=self.policy,
                    topics=self.topics,
                    outbox=self.outbox,
                    forward=self._forward,
                )
            except Exception as exc:
                log.exception(
                    "processing failed for key %r (%s)",
                    key,
                    type(command).__name__,
                    extra=record_context(store.partition, record),
                )
                metrics.child(metrics.events_deadlettered, PROCESSING_FAILED).inc()
                if record is not None and not dead_lettered:
                    dead_lettered = True
                    dead = processing_failure(record, exc, failed_at=time.time())
                    self.outbox.send(
                        self.topics.deadletter, record.key, encode_json(dead), [("reason", PROCESSING_FAILED.encode())]
                    )

    def _forward(self, key: bytes, command) -> None:
        store = self.stores.get(self._owners(key))
        if store is not None:
            self._local.append((store, key, command))
            metrics.tally.add(metrics.forwards, "in_place")
        else:
            self.outbox.send(self.topics.profile_commands, key, encode_command(command))
            metrics.tally.add(metrics.forwards, "kafka")

    def _tick(self, now: float) -> None:
        for store in self.stores.values():
            for key, command in due_commands(store, now):
                self._apply(store, key, command, now)

    # --- flush: outputs, then changelog, then RocksDB, then offsets ---------------------------------------

    async def _flush(self) -> None:
        if self._failed is not None:
            msg = "an earlier flush failed; nothing more is written"
            raise RuntimeError(msg) from self._failed
        try:
            await self._flush_in_order()
        except BaseException as exc:
            # Outputs may be lost while the cache holds state that assumes them sent: never persist that
            # state (close() writes nothing more); the inputs since the last commit replay after a restart.
            self._failed = exc
            metrics.flush_failures.inc()
            raise

    async def _flush_in_order(self) -> None:
        started = time.perf_counter()
        send = self.producer.send
        outputs = self.outbox.take()
        acks = [await send(topic, value, key=key, headers=headers) for topic, key, value, headers in outputs]
        if acks:
            await asyncio.gather(*acks)
        changelog: list[tuple[PartitionStore, list, list]] = []
        for store in self.stores.values():
            records = store.pending_records()
            if records:
                changelog.append((store, records, await self._send_batches(store.partition, records)))
        for store, records, futures in changelog:
            # A batch's future gives its base offset; the last record of the last batch is base + count - 1.
            last_offset = max([(await future).offset + count - 1 for future, count in futures])
            store.persist(records, last_offset)
            metrics.changelog_records.inc(len(records))
        for store in self.stores.values():
            store.evict()
        if self._positions:
            offsets, self._positions = self._positions, {}
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions: their new owner replays from the last commit (deduplicated).
                log.warning("offset commit failed (%s); the inputs since the last commit will be replayed", exc)
        self._unflushed = 0
        metrics.tally.publish()
        metrics.flush_seconds.observe(time.perf_counter() - started)
        metrics.outputs_sent.inc(len(outputs))

    async def _send_batches(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> list:
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

    # --- rebalance listener -----------------------------------------------------------------------------

    def _state_partitions(self, tps) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.topics.profile_commands}

    async def on_partitions_revoked(self, revoked) -> None:
        # Flush and commit what was processed; the stores stay open, since the next assignment usually
        # gives most partitions back (it closes the ones it does not).
        async with self._lock:
            self.ready = False
            self._generation += 1
            try:
                await self._flush()
            except Exception:
                log.exception("flush failed in a rebalance; the worker stops")
                self.stop()
                return
            log.info("partitions revoked: %s", sorted(self._state_partitions(revoked)))

    async def on_partitions_assigned(self, assigned) -> None:
        async with self._lock:
            self._generation += 1
            wanted = self._state_partitions(assigned)
            for partition in set(self.stores) - wanted:
                self.stores.pop(partition).close()
            new = sorted(wanted - set(self.stores))
            started = time.monotonic()
            restored = await self._restore(new)
            now = time.time()
            stale = 0
            for partition in new:
                store = self.stores[partition]
                rebuild_due_index(store)
                for key, command in stale_audience_commands(store, self.policy, now):
                    stale += 1
                    self._apply(store, key, command, now)
            metrics.wakeups_indexed.set(sum(len(store.due_index) for store in self.stores.values()))
            metrics.assigned_partitions.set(len(self.stores))
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

    async def _restore(self, partitions: list[int]) -> int:
        """Open the stores of ``partitions`` and bring each up to the end of its changelog partition."""
        if not partitions:
            return 0
        tps = [TopicPartition(self.changelog_topic, partition) for partition in partitions]
        ends = await self.restorer.end_offsets(tps)
        behind: dict[TopicPartition, PartitionStore] = {}
        for tp in tps:
            path = Path(self.settings.data_dir) / "state" / f"partition-{tp.partition}"
            store = PartitionStore(tp.partition, path, self.store_options)
            if store.changelog_offset >= ends[tp]:
                # The changelog ends before what we wrote: it was deleted or recreated. Start over from it.
                log.warning(
                    "store of partition %d is ahead of its changelog (%d ≥ %d): rebuilt from the changelog",
                    tp.partition,
                    store.changelog_offset,
                    ends[tp],
                )
                store.close()
                PartitionStore.wipe(path)
                store = PartitionStore(tp.partition, path, self.store_options)
            self.stores[tp.partition] = store
            if store.changelog_offset + 1 < ends[tp]:
                behind[tp] = store
        if not behind:
            return 0
        self.restorer.assign(list(behind))
        for tp, store in behind.items():
            self.restorer.seek(tp, store.changelog_offset + 1)
        restored = 0
        pending = dict(behind)
        while pending:
            batch = await self.restorer.getmany(*pending, timeout_ms=500, max_records=RESTORE_CHUNK)
            for tp, records in batch.items():
                if records:
                    pending[tp].apply_changelog(((r.key, r.value) for r in records), records[-1].offset)
                    restored += len(records)
            for tp in list(pending):
                if await self.restorer.position(tp) >= ends[tp]:
                    del pending[tp]
        self.restorer.assign([])
        metrics.restored_records.inc(restored)
        return restored
