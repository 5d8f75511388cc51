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
record, always below the end, so a marker never makes it look ahead of its changelog. The end offset is
the last stable offset, which a transaction still open holds back: before the restore the runtime waits
until the group's offsets of the assigned inputs are stable (``StableOffsetsConsumer.stable_committed``),
that is until the previous owner's last transaction has committed or aborted, and on a single broker its
changelog markers are written in the same request as its offsets' (across brokers they can land a moment
apart, which this wait does not cover).

Speed: a cold restore reads the whole changelog, so its per-record work is kept to the minimum. The
changelog is read by librdkafka (``streams.changelog_reader``: fetching and record decoding in C, in a
thread of its own), which hands over each chunk already reduced to the last value of each key (an
uncompacted changelog holds several updates of a key). Reading and writing overlap: one task takes the
chunks out of the reader, the other writes each to RocksDB raw, never decoded, in one batch with the
changelog offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from aiokafka.structs import TopicPartition

from streams import metrics
from streams.changelog_reader import ChangelogChunk, ChangelogReader
from streams.settings import Settings
from streams.state_store import PartitionStore, StoreOptions

log = logging.getLogger(__name__)

# Most changelog records taken from the reader at a time (one RocksDB batch per partition): 10,000 took the
# same CPU as 50,000 and peaked 50-70 MiB lower (1,000,000 records of 200-1,200 bytes, 4 partitions).
RESTORE_CHUNK = 10_000
CHUNKS_AHEAD = 2  # chunks read but not yet written: bounds the restore's memory


class RestoreConsumer(Protocol):
    """What the recovery needs of the changelog reader (``ChangelogReader``; the unit tests' fake)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    def assign(self, starts: dict[TopicPartition, int]) -> None: ...

    def unassign(self) -> None: ...

    def position(self, tp: TopicPartition) -> int: ...

    async def read_chunk(self, max_records: int) -> dict[TopicPartition, ChangelogChunk]: ...


def restore_consumer(settings: Settings, *, client_id: str) -> ChangelogReader:
    """The reader of changelogs: committed records only (never the state of an aborted transaction),
    partitions assigned by hand and nothing committed, fetches of ``restore_fetch_bytes``.

    librdkafka fetches ahead into a queue per partition (by default up to 64 MiB each) and, once a queue
    is full, waits ``fetch.queue.backoff.ms`` (1 s by default) before fetching that partition again: with
    the defaults a restore's wall time was three times its CPU time (measured: 16-18 s for 1,000,000
    records, 3.5 CPU-s). A quarter of ``restore_fetch_bytes`` per partition and a 10 ms backoff keep the
    broker busy and the memory bounded (1,000,000 records, 4 partitions: 4-6 s, peak RSS ~340 MiB)."""
    return ChangelogReader(
        {
            "bootstrap.servers": settings.broker_bootstrap,
            # confluent-kafka requires a group id; it is never joined (no subscribe) nor committed to.
            "group.id": client_id,
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,  # how the reader sees a partition's end past its last markers
            "fetch.max.bytes": settings.restore_fetch_bytes,
            "max.partition.fetch.bytes": settings.restore_fetch_bytes,
            "queued.max.messages.kbytes": settings.restore_fetch_bytes // 4 // 1024,
            "fetch.queue.backoff.ms": 10,
        }
    )


class StoreRecovery:
    """Opens partition stores under ``data_dir`` and brings each up to the end of its changelog partition."""

    def __init__(
        self, restore_consumer: RestoreConsumer, *, changelog_topic: str, data_dir: Path, options: StoreOptions
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
        consumer.assign({tp: store.changelog_offset + 1 for tp, store in behind.items()})
        chunks: asyncio.Queue[dict[TopicPartition, ChangelogChunk] | Exception | None] = asyncio.Queue(CHUNKS_AHEAD)
        reader = asyncio.create_task(self._read(chunks, set(behind), ends))
        restored = 0
        try:
            while (read := await chunks.get()) is not None:
                if isinstance(read, Exception):
                    raise read
                for tp, chunk in read.items():
                    behind[tp].apply_changelog(chunk.latest, chunk.last_offset)
                    restored += chunk.records
        finally:
            if not reader.done():  # the writes failed: stop reading
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            for store in behind.values():
                store.finish_restore()
            consumer.unassign()
        return restored

    async def _read(self, chunks: asyncio.Queue, pending: set[TopicPartition], ends: dict[TopicPartition, int]) -> None:
        """Put the chunks read into ``chunks`` until each partition of ``pending`` is read to its end, then
        ``None``; a failed read puts its exception instead, for the writer to raise (the writer always drains)."""
        consumer = self.consumer
        try:
            while pending:
                read = await consumer.read_chunk(RESTORE_CHUNK)
                if read:
                    await chunks.put(read)
                pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
        except Exception as exc:  # noqa: BLE001  (raised by the writer, in the restore's own task)
            await chunks.put(exc)
            return
        await chunks.put(None)
