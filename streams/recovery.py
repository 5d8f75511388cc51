"""State recovery: open the stores of newly assigned partitions and restore each from its changelog tail.

RocksDB remembers the offset of the last changelog record it holds, so a restart with a warm disk reads
only the tail; a store that is ahead of its changelog (the topic was deleted or recreated) is wiped and
rebuilt from it. The restore consumer (no group, manual assignment) is passed in, so a test drives the
recovery with a fake.

With exactly-once processing the changelog also holds transaction markers (control records) and the
records of aborted transactions: the restore consumer reads committed records only, so it never returns
either, but both take offsets. The checks below stay right: the end offset counts them, so a store whose
last record is followed by a marker looks one behind and is "restored" by a read that returns nothing
(its position still moves past the marker, so the loop ends); and the store's offset is that of a data
record, always below the end, so a marker never makes it look ahead of its changelog. The worker starts
a partition's transactional producer before the restore, which aborts the previous owner's open
transaction, so the end offset (the last stable offset) is not held back by it.

Speed: a cold restore reads the whole changelog, so its per-record work is kept to the minimum. Reading
and writing overlap: one task takes the fetched records out of the consumer (so the client sends the
next fetch request at once, and the broker prepares it while this process writes), the other writes
them. Each chunk is reduced to the last value of each key (an uncompacted changelog holds several
updates of a key) and written to RocksDB raw, never decoded, in one batch with the changelog offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams import metrics
from streams.settings import Settings
from streams.state_store import PartitionStore, StoreOptions

log = logging.getLogger(__name__)

RESTORE_CHUNK = 50_000  # changelog records taken from the consumer at a time (one RocksDB batch per partition)
CHUNKS_AHEAD = 2  # chunks read but not yet written: bounds the restore's memory


def restore_consumer(settings: Settings, *, client_id: str) -> AIOKafkaConsumer:
    """The consumer that reads changelogs back: no group (partitions are assigned by hand), committed
    records only (never the state of an aborted transaction), fetches of ``restore_fetch_bytes``."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.broker_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=client_id,
        fetch_max_bytes=settings.restore_fetch_bytes,
        max_partition_fetch_bytes=settings.restore_fetch_bytes,
        isolation_level="read_committed",
    )


class StoreRecovery:
    """Opens partition stores under ``data_dir`` and brings each up to the end of its changelog partition."""

    def __init__(
        self, restore_consumer: AIOKafkaConsumer, *, changelog_topic: str, data_dir: Path, options: StoreOptions
    ) -> None:
        self.consumer = restore_consumer
        self.changelog_topic = changelog_topic
        self.data_dir = data_dir
        self.options = options

    def store_path(self, partition: int) -> Path:
        return self.data_dir / "state" / f"partition-{partition}"

    async def open_stores(self, partitions: Iterable[int]) -> tuple[dict[int, PartitionStore], int]:
        """The restored stores of ``partitions`` and the number of changelog records read back."""
        tps = [TopicPartition(self.changelog_topic, partition) for partition in partitions]
        if not tps:
            return {}, 0
        ends = await self.consumer.end_offsets(tps)
        stores: dict[int, PartitionStore] = {}
        try:
            behind: dict[TopicPartition, PartitionStore] = {}
            for tp in tps:
                store = stores[tp.partition] = self._open(tp.partition, ends[tp])
                if store.changelog_offset + 1 < ends[tp]:
                    behind[tp] = store
            restored = await self._restore(behind, ends) if behind else 0
        except BaseException:
            for store in stores.values():
                store.close()
            raise
        metrics.restored_records.inc(restored)
        return stores, restored

    def _open(self, partition: int, changelog_end: int) -> PartitionStore:
        path = self.store_path(partition)
        store = PartitionStore(partition, path, self.options)
        if store.changelog_offset >= changelog_end:
            # The changelog ends before what we wrote: it was deleted or recreated. Start over from it.
            log.warning(
                "store of partition %d is ahead of its changelog (%d ≥ %d): rebuilt from the changelog",
                partition,
                store.changelog_offset,
                changelog_end,
            )
            store.close()
            PartitionStore.wipe(path)
            store = PartitionStore(partition, path, self.options)
        return store

    async def _restore(self, behind: dict[TopicPartition, PartitionStore], ends: dict[TopicPartition, int]) -> int:
        consumer = self.consumer
        consumer.assign(list(behind))
        for tp, store in behind.items():
            consumer.seek(tp, store.changelog_offset + 1)
        chunks: asyncio.Queue[dict[TopicPartition, list] | Exception | None] = asyncio.Queue(CHUNKS_AHEAD)
        reader = asyncio.create_task(self._read(chunks, set(behind), ends))
        restored = 0
        try:
            while (chunk := await chunks.get()) is not None:
                if isinstance(chunk, Exception):
                    raise chunk
                for tp, records in chunk.items():
                    # A dict keeps one entry per key, with the value of the key's last record.
                    behind[tp].apply_changelog({record.key: record.value for record in records}, records[-1].offset)
                    restored += len(records)
        finally:
            if not reader.done():  # the writes failed: stop reading
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            for store in behind.values():
                store.finish_restore()
            consumer.assign([])
        return restored

    async def _read(self, chunks: asyncio.Queue, pending: set[TopicPartition], ends: dict[TopicPartition, int]) -> None:
        """Put the records of ``pending`` into ``chunks`` until each is read to its end, then ``None``; a
        failed read puts its exception instead, for the writer to raise (the writer always drains)."""
        consumer = self.consumer
        try:
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=500, max_records=RESTORE_CHUNK)
                chunk = {tp: records for tp, records in batch.items() if records}
                if chunk:
                    await chunks.put(chunk)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        except Exception as exc:  # noqa: BLE001  (raised by the writer, in the restore's own task)
            await chunks.put(exc)
            return
        await chunks.put(None)
