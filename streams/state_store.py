"""The profile stage's state for one partition: RocksDB (rocksdict) behind a write-back cache of decoded
values, with a compacted changelog topic as the truth.

Every key of every table lives under a one-byte table tag (``b"p" + customer id`` …), the same bytes in
RocksDB and as the changelog key, so one changelog partition restores one store. Reads return decoded
values from the cache (RocksDB is read and decoded once per key, not once per event); writes change only
the cache and mark the key dirty. The checkpoint (``streams.checkpoint``) then asks for ``pending_records``
(each dirty key encoded once, however many events changed it), sends them to the changelog, and only after
the broker acknowledged them calls ``persist`` to write them and the changelog offset to RocksDB in one batch. So
the local store is never ahead of the changelog: a crash at any point restores to a state the changelog
holds, and the consumer offsets (committed after ``persist``) replay whatever came after it.

Memory is bounded per worker, not per partition (a worker holds as many partitions as the group gives it):
every store opened with one ``StoreOptions`` shares its RocksDB block cache, which the memtables are
charged to as well (RocksDB's write buffer manager, as Kafka Streams' bounded-memory configuration does),
and its budget of clean decoded values, counted by their encoded size and split evenly among the stores
that are open.

It has what the agents use (``agents.store.StageStore``: ``get``, ``put``, ``items``, ``due_index``);
the tables are declared in ``agents.tables``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import rocksdict

from agents.store import Table
from core.due_index import DueIndex

_OFFSET_KEY = b"\xff changelog offset"  # tag 0xff: no table uses it
_WITHOUT_LOG = rocksdict.WriteOptions()
_WITHOUT_LOG.disable_wal = True


# What a cached entry costs beyond its key and encoded value (the dict slots, the decoded object's header):
# it keeps a cache of many tiny or missing values bounded too.
ENTRY_OVERHEAD_BYTES = 100


class DecodedBudget:
    """The clean decoded values all stores of a worker may keep, by encoded bytes, shared evenly among
    the stores that are open (a worker taking over partitions keeps the same total)."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.open_stores = 0

    def share(self) -> int:
        return self.total_bytes // max(1, self.open_stores)


@dataclass(frozen=True)
class StoreOptions:
    """The memory limits of one worker's partition stores, all together: the stores opened with one
    instance share them (see the module docstring)."""

    block_cache_bytes: int  # RocksDB: one block cache (data, index and filter blocks) with the memtables charged
    write_buffer_bytes: int  # RocksDB: the memtables of every store together (part of ``block_cache_bytes``)
    cache_bytes: int  # clean decoded values kept in memory, by encoded size; dirty ones stay until written

    @cached_property
    def block_cache(self) -> rocksdict.Cache:
        return rocksdict.Cache(self.block_cache_bytes)

    @cached_property
    def write_buffers(self) -> rocksdict.WriteBufferManager:
        # Charged to the block cache, so blocks and memtables together stay within ``block_cache_bytes``.
        return rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            self.write_buffer_bytes, False, self.block_cache
        )

    @cached_property
    def decoded_budget(self) -> DecodedBudget:
        return DecodedBudget(self.cache_bytes)


def _rocksdb_options(options: StoreOptions) -> rocksdict.Options:
    db_options = rocksdict.Options(raw_mode=True)
    db_options.create_if_missing(True)
    # One store's memtable may take the whole budget while the others are idle; the manager flushes the
    # largest when all of them together reach it.
    db_options.set_write_buffer_size(options.write_buffer_bytes)
    db_options.set_max_write_buffer_number(2)
    db_options.set_write_buffer_manager(options.write_buffers)
    table_options = rocksdict.BlockBasedOptions()
    table_options.set_block_cache(options.block_cache)
    # Index and filter blocks in the cache too (else they grow with the data outside any limit); those of
    # level 0 pinned, since every read consults them.
    table_options.set_cache_index_and_filter_blocks(True)
    table_options.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table_options.set_bloom_filter(10, False)
    db_options.set_block_based_table_factory(table_options)
    return db_options


_MISSING = object()


class PartitionStore:
    """State of one partition of the profile stage (see the module docstring)."""

    def __init__(self, partition: int, path: Path, options: StoreOptions) -> None:
        self.partition = partition
        self.path = path
        self._options = options
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = rocksdict.Rdict(str(path), _rocksdb_options(options))
        # storage key → decoded value (None: deleted); the dirty ones are written at the next flush.
        self._cache: dict[bytes, Any] = {}
        self._dirty: dict[bytes, Table] = {}
        # The clean cached keys, oldest first (loaded or written longest ago), with what each counts
        # against the budget; ``_clean_bytes`` is their sum.
        self._clean: dict[bytes, int] = {}
        self._clean_bytes = 0
        self._budget = options.decoded_budget
        self._budget.open_stores += 1
        self.due_index = DueIndex()

    # --- reads and writes of the processing path --------------------------------------------------------

    def get(self, table: Table, key: bytes) -> Any:
        storage_key = table.tag + key
        value = self._cache.get(storage_key, _MISSING)
        if value is _MISSING:
            raw = self._db.get(storage_key)
            value = None if raw is None else table.decode(raw)
            self._cache[storage_key] = value
            self._count_clean(storage_key, raw)
        return value

    def put(self, table: Table, key: bytes, value: Any) -> None:
        storage_key = table.tag + key
        self._cache[storage_key] = value
        self._dirty[storage_key] = table
        size = self._clean.pop(storage_key, None)
        if size is not None:  # dirty from now on: counted again once written
            self._clean_bytes -= size

    def _count_clean(self, storage_key: bytes, raw: bytes | None) -> None:
        size = len(storage_key) + ENTRY_OVERHEAD_BYTES + (0 if raw is None else len(raw))
        self._clean[storage_key] = size
        self._clean_bytes += size

    def delete(self, table: Table, key: bytes) -> None:
        self.put(table, key, None)

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    # --- flush: changelog first, then RocksDB -----------------------------------------------------------

    def pending_records(self) -> list[tuple[bytes, bytes | None]]:
        """Every dirty key with its encoded value (None: tombstone), for the changelog."""
        return [
            (storage_key, None if (value := self._cache[storage_key]) is None else table.encode(value))
            for storage_key, table in self._dirty.items()
        ]

    def persist(self, records: list[tuple[bytes, bytes | None]], changelog_offset: int) -> None:
        """Write records the changelog acknowledged (up to ``changelog_offset``) to RocksDB, atomically."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for storage_key, raw in records:
            if raw is None:
                batch.delete(storage_key)
            else:
                batch.put(storage_key, raw)
        batch.put(_OFFSET_KEY, str(changelog_offset).encode())
        self._db.write(batch)
        for storage_key, raw in records:
            if self._dirty.pop(storage_key, None) is not None:
                self._count_clean(storage_key, raw)
        self.evict()

    @property
    def cached_bytes(self) -> int:
        """What the clean cached values count against the budget (their keys, encoded sizes and overhead)."""
        return self._clean_bytes

    def evict(self) -> None:
        """Drop the oldest clean cached values until they fit this store's share of the worker's budget
        (reads alone fill the cache too); dirty values stay until they are written."""
        excess = self._clean_bytes - self._budget.share()
        if excess <= 0:
            return
        victims = []
        freed = 0
        for storage_key, size in self._clean.items():  # oldest first: stops as soon as enough is freed
            if freed >= excess:
                break
            victims.append(storage_key)
            freed += size
        for storage_key in victims:
            del self._clean[storage_key]
            del self._cache[storage_key]
        self._clean_bytes -= freed

    # --- restore from the changelog ---------------------------------------------------------------------

    @property
    def changelog_offset(self) -> int:
        """Offset of the last changelog record in RocksDB (-1: none)."""
        raw = self._db.get(_OFFSET_KEY)
        return -1 if raw is None else int(raw)

    def apply_changelog(
        self, records: Mapping[bytes, bytes | None] | Iterable[tuple[bytes, bytes | None]], last_offset: int
    ) -> None:
        """Write changelog records read back from Kafka (restore) straight to RocksDB, raw: of several
        records of a key only the last counts (a mapping already holds one value per key); ``None`` deletes.

        Written without RocksDB's write-ahead log, which a restore does not need: RocksDB flushes its
        memtables whole and in order, so after a crash the store holds a prefix of these batches, each with
        its changelog offset, and the restore goes on from there. ``finish_restore`` then flushes them to
        disk before the first write of the processing path (which goes through the log) can land on top.
        """
        if self._dirty:
            msg = f"partition {self.partition}: restore into a store with {len(self._dirty)} unflushed write(s)"
            raise RuntimeError(msg)
        latest = records if isinstance(records, Mapping) else dict(records)
        batch = rocksdict.WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for storage_key, raw in latest.items():
            if raw is None:
                delete(storage_key)
            else:
                put(storage_key, raw)
        batch.put(_OFFSET_KEY, str(last_offset).encode())
        self._db.write(batch, _WITHOUT_LOG)
        self._cache.clear()
        self._clean.clear()
        self._clean_bytes = 0

    def finish_restore(self) -> None:
        """Flush what ``apply_changelog`` wrote (it bypassed the write-ahead log) to RocksDB's files."""
        self._db.flush(True)

    def items(self, table: Table) -> Iterator[tuple[bytes, Any]]:
        """Every ``(key, value)`` of ``table``, the cached (newer) values over the written ones."""
        seen: set[bytes] = set()
        for storage_key, value in self._cache.items():
            if storage_key[:1] == table.tag:
                seen.add(storage_key)
                if value is not None:
                    yield storage_key[1:], value
        for storage_key, raw in self._db.items(from_key=table.tag):
            if storage_key[:1] != table.tag:
                break
            if storage_key not in seen:
                yield storage_key[1:], table.decode(raw)

    def close(self) -> None:
        self._db.close()
        self._budget.open_stores -= 1  # its share goes back to the stores still open

    @staticmethod
    def wipe(path: Path) -> None:
        """Delete a store whose changelog was lost (its offset is past the changelog's end)."""
        shutil.rmtree(path, ignore_errors=True)
