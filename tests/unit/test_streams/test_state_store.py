"""PartitionStore: the write-back cache over RocksDB, the flush protocol, restore, iteration and eviction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.store import Table
from agents.tables import ALL_TABLES, IDENTITIES, PROFILES, SEGMENT_SIZES, WAKE_UPS
from core.identity import KeyIdentity
from schemas.profile import Profile
from streams.state_store import ENTRY_OVERHEAD_BYTES, PartitionStore, StoreOptions


class CountingCodec:
    """A text codec that counts how often each value is encoded and each raw value decoded."""

    def __init__(self) -> None:
        self.encoded: Counter[str] = Counter()
        self.decoded: Counter[bytes] = Counter()

    def encode(self, value: str) -> bytes:
        self.encoded[value] += 1
        return value.encode()

    def decode(self, raw: bytes) -> str:
        self.decoded[raw] += 1
        return raw.decode()


def text_table(tag: bytes) -> Table:
    return Table(tag, str.encode, bytes.decode)


class Stores:
    """Opens partition stores on one path and closes whichever are still open when the test ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: list[PartitionStore] = []

    def open(
        self, *, cache_bytes: int = 1 << 20, options: StoreOptions | None = None, partition: int = 3
    ) -> PartitionStore:
        if options is None:
            options = StoreOptions(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20, cache_bytes=cache_bytes)
        path = self.path if partition == 3 else self.path.with_name(f"{self.path.name}-{partition}")
        store = PartitionStore(partition, path, options)
        self._open.append(store)
        return store

    def close(self, store: PartitionStore) -> None:
        self._open.remove(store)
        store.close()

    def reopen(self, store: PartitionStore) -> PartitionStore:
        """Close ``store`` (dropping its cache) and open its RocksDB again, as a restarted worker does."""
        self.close(store)
        return self.open()

    def reopen_with(self, store: PartitionStore, *, cache_bytes: int) -> PartitionStore:
        self.close(store)
        return self.open(cache_bytes=cache_bytes)

    def close_all(self) -> None:
        while self._open:
            self.close(self._open[-1])


@pytest.fixture
def codec() -> CountingCodec:
    return CountingCodec()


@pytest.fixture
def text(codec: CountingCodec) -> Table:
    return Table(b"t", codec.encode, codec.decode)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = Stores(tmp_path / "state" / "partition-3")
    yield opened
    opened.close_all()


@pytest.fixture
def store(stores: Stores) -> PartitionStore:
    return stores.open()


def flush(store: PartitionStore, offset: int) -> list[tuple[bytes, bytes | None]]:
    """What ``Runtime.flush`` does once the changelog acknowledged the records up to ``offset``."""
    records = store.pending_records()
    store.persist(records, offset)
    return records


# --- reads and writes through the cache -------------------------------------------------------------


def test_get_of_an_unknown_key_is_none(store: PartitionStore, text: Table):
    assert store.get(text, b"nobody") is None
    assert store.dirty_count == 0


def test_put_then_get_returns_the_value_without_encoding_it(store: PartitionStore, text: Table, codec):
    store.put(text, b"k1", "one")
    assert store.get(text, b"k1") == "one"
    assert store.dirty_count == 1
    assert not codec.encoded  # writes stay decoded in the cache until a flush


def test_delete_hides_the_value_and_marks_the_key_dirty(store: PartitionStore, text: Table):
    store.put(text, b"k1", "one")
    flush(store, 0)
    store.delete(text, b"k1")
    assert store.get(text, b"k1") is None
    assert store.dirty_count == 1


def test_tables_with_different_tags_do_not_share_keys(store: PartitionStore, text: Table):
    other = text_table(b"u")
    store.put(text, b"k", "text value")
    store.put(other, b"k", "other value")
    assert store.get(text, b"k") == "text value"
    assert store.get(other, b"k") == "other value"
    assert sorted(key for key, _ in store.pending_records()) == [b"tk", b"uk"]


def test_a_persisted_value_is_decoded_once_however_often_it_is_read(stores: Stores, store, text: Table, codec):
    store.put(text, b"k1", "one")
    flush(store, 0)
    store = stores.reopen(store)
    assert [store.get(text, b"k1") for _ in range(5)] == ["one"] * 5
    assert codec.decoded == {b"one": 1}


# --- pending_records ---------------------------------------------------------------------------------


def test_pending_records_encode_each_dirty_key_once_with_its_latest_value(store: PartitionStore, text: Table, codec):
    for value in ("v1", "v2", "v3"):
        store.put(text, b"k1", value)
    store.put(text, b"k2", "x")
    store.put(text, b"k3", "doomed")
    store.delete(text, b"k3")
    records = store.pending_records()
    assert sorted(records, key=lambda record: record[0]) == [(b"tk1", b"v3"), (b"tk2", b"x"), (b"tk3", None)]
    assert codec.encoded == {"v3": 1, "x": 1}  # neither the overwritten nor the deleted values are encoded


def test_pending_records_are_empty_without_writes(store: PartitionStore, text: Table):
    store.get(text, b"k1")  # a read caches but does not dirty
    assert store.pending_records() == []


def test_pending_records_do_not_clear_dirtiness(store: PartitionStore, text: Table):
    store.put(text, b"k1", "one")
    assert store.pending_records() == store.pending_records() == [(b"tk1", b"one")]
    assert store.dirty_count == 1


# --- persist -----------------------------------------------------------------------------------------


def test_a_fresh_store_has_no_changelog_offset(store: PartitionStore):
    assert store.changelog_offset == -1


def test_persist_clears_dirtiness_and_records_the_changelog_offset(store: PartitionStore, text: Table):
    store.put(text, b"k1", "one")
    store.put(text, b"k2", "two")
    flush(store, 41)
    assert store.dirty_count == 0
    assert store.pending_records() == []
    assert store.changelog_offset == 41
    assert store.get(text, b"k1") == "one"


def test_persist_clears_only_the_keys_it_wrote(store: PartitionStore, text: Table):
    store.put(text, b"k1", "one")
    store.put(text, b"k2", "two")
    store.persist([(b"tk1", b"one")], 7)
    assert store.pending_records() == [(b"tk2", b"two")]
    assert store.dirty_count == 1


def test_a_reopened_store_sees_persisted_values_but_not_cached_ones(stores: Stores, store, text: Table):
    store.put(text, b"persisted", "on disk")
    flush(store, 5)
    store.put(text, b"cached", "only in memory")
    store.put(text, b"persisted", "newer, only in memory")
    store = stores.reopen(store)
    assert store.get(text, b"persisted") == "on disk"
    assert store.get(text, b"cached") is None
    assert store.changelog_offset == 5
    assert store.dirty_count == 0


def test_a_persisted_tombstone_deletes_from_rocksdb(stores: Stores, store, text: Table):
    store.put(text, b"k1", "one")
    store.put(text, b"k2", "two")
    flush(store, 1)
    store.delete(text, b"k1")
    assert flush(store, 2) == [(b"tk1", None)]
    store = stores.reopen(store)
    assert store.get(text, b"k1") is None
    assert store.get(text, b"k2") == "two"
    assert store.changelog_offset == 2


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        (PROFILES, b"c1", Profile(customer_id="c1", event_count=3, segments=("vip",), scores={"purchase_7d": 0.25})),
        (IDENTITIES, b"a1", KeyIdentity(redirect_to="c1", link_kind="identify", linked_at=1.5, linked_users=("c1",))),
        (WAKE_UPS, b"c1", 1_700_000_000.123456789),
        (SEGMENT_SIZES, b"vip", 12),
    ],
    ids=["profiles", "identities", "trigger_due", "segment_sizes"],
)
def test_every_table_round_trips_through_persist_and_reopen(stores: Stores, store, table: Table, key: bytes, value):
    store.put(table, key, value)
    flush(store, 0)
    store = stores.reopen(store)
    assert store.get(table, key) == value
    assert list(store.items(table)) == [(key, value)]


def test_tags_of_all_tables_are_distinct_single_bytes():
    tags = [table.tag for table in ALL_TABLES]
    assert len(set(tags)) == len(tags)
    assert all(len(tag) == 1 for tag in tags)


# --- restore from the changelog ----------------------------------------------------------------------


def test_apply_changelog_writes_the_latest_record_of_each_key_and_the_offset(store: PartitionStore, text: Table):
    records = [(b"tk1", b"a"), (b"tk2", b"b"), (b"tk1", b"c")]
    store.apply_changelog((record for record in records), 12)  # the runtime passes a generator
    assert store.get(text, b"k1") == "c"
    assert store.get(text, b"k2") == "b"
    assert store.changelog_offset == 12
    assert store.dirty_count == 0


def test_apply_changelog_tombstones_delete_restored_and_earlier_values(store: PartitionStore, text: Table):
    store.apply_changelog([(b"tk1", b"one"), (b"tk2", b"two")], 3)
    store.apply_changelog([(b"tk1", None), (b"tk3", b"three"), (b"tk3", None)], 6)
    assert store.get(text, b"k1") is None
    assert store.get(text, b"k2") == "two"
    assert store.get(text, b"k3") is None
    assert sorted(store.items(text)) == [(b"k2", "two")]
    assert store.changelog_offset == 6


def test_apply_changelog_replaces_values_cached_before_it(store: PartitionStore, text: Table):
    store.apply_changelog([(b"tk1", b"old")], 0)
    assert store.get(text, b"k1") == "old"  # now cached
    store.apply_changelog([(b"tk1", b"new")], 1)
    assert store.get(text, b"k1") == "new"


def test_a_restored_store_survives_reopening(stores: Stores, store, text: Table):
    store.apply_changelog([(b"tk1", b"one"), (b"tk2", b"two"), (b"tk2", None)], 99)
    store = stores.reopen(store)
    assert store.get(text, b"k1") == "one"
    assert store.get(text, b"k2") is None
    assert store.changelog_offset == 99


# --- items -------------------------------------------------------------------------------------------


def test_items_overlay_the_cache_over_disk_and_hide_deleted_keys(stores: Stores, store, text: Table):
    other = text_table(b"u")
    for key, value in ((b"k1", "disk 1"), (b"k2", "disk 2"), (b"k3", "disk 3")):
        store.put(text, key, value)
    store.put(other, b"k1", "other table")
    flush(store, 0)
    store = stores.reopen(store)  # nothing cached: the disk values come from RocksDB
    store.put(text, b"k2", "cached 2")
    store.delete(text, b"k3")
    store.put(text, b"k4", "cached 4")
    store.get(text, b"k5")  # a cached miss
    items = list(store.items(text))
    assert sorted(items) == [(b"k1", "disk 1"), (b"k2", "cached 2"), (b"k4", "cached 4")]
    assert len(items) == len(dict(items))  # each key once
    assert list(store.items(other)) == [(b"k1", "other table")]


def test_items_stay_within_the_table_tag(store: PartitionStore):
    """Neighbouring tags on both sides, and the changelog offset (tag 0xff), never leak into a table's items."""
    low, middle, high = (text_table(tag) for tag in (b"a", b"b", b"c"))
    for table in (low, middle, high):
        store.put(table, b"x", table.tag.decode())
    flush(store, 4)
    store.put(high, b"y", "cached c")
    assert list(store.items(middle)) == [(b"x", "b")]
    assert sorted(store.items(high)) == [(b"x", "c"), (b"y", "cached c")]
    assert list(store.items(text_table(b"\xfe"))) == []


def test_items_of_an_empty_table_are_empty(store: PartitionStore, text: Table):
    store.get(text, b"k1")
    assert list(store.items(text)) == []


def test_items_after_a_persisted_delete(store: PartitionStore, text: Table):
    store.put(text, b"k1", "one")
    store.put(text, b"k2", "two")
    flush(store, 0)
    store.delete(text, b"k1")
    flush(store, 1)
    assert list(store.items(text)) == [(b"k2", "two")]


# --- eviction ----------------------------------------------------------------------------------------


def entry_bytes(key: bytes, value: str) -> int:
    """What a clean cached text value counts against the budget (tag + key, overhead, encoded value)."""
    return 1 + len(key) + ENTRY_OVERHEAD_BYTES + len(value.encode())


def test_persist_evicts_the_oldest_clean_values_down_to_the_budget(stores: Stores, text: Table, codec):
    store = stores.open(cache_bytes=3 * entry_bytes(b"k0", "k0"))
    keys = [f"k{i}".encode() for i in range(10)]
    for key in keys:
        store.put(text, key, key.decode())
    flush(store, 0)
    assert store.cached_bytes == 3 * entry_bytes(b"k0", "k0")
    assert [store.get(text, key) for key in keys[7:]] == ["k7", "k8", "k9"]
    assert not codec.decoded  # the three newest stayed cached
    assert [store.get(text, key) for key in keys[:7]] == [key.decode() for key in keys[:7]]
    assert sum(codec.decoded.values()) == 7  # the evicted ones were read back from RocksDB


def test_reads_count_against_the_budget_and_a_flush_drops_the_oldest(stores: Stores, text: Table, codec):
    store = stores.open()
    keys = [f"k{i}".encode() for i in range(6)]
    for key in keys:
        store.put(text, key, key.decode())
    flush(store, 0)
    budget = 2 * entry_bytes(b"k0", "k0")
    reader = stores.reopen_with(store, cache_bytes=budget)  # an empty cache over the same RocksDB
    assert [reader.get(text, key) for key in keys] == [key.decode() for key in keys]
    assert reader.get(text, b"missing") is None  # a missing value is cached (and counted) too
    assert reader.cached_bytes == 6 * entry_bytes(b"k0", "k0") + 1 + len(b"missing") + ENTRY_OVERHEAD_BYTES
    flush(reader, 1)
    assert reader.cached_bytes <= budget
    codec.decoded.clear()
    assert [reader.get(text, key) for key in keys[:4]] == ["k0", "k1", "k2", "k3"]
    assert sum(codec.decoded.values()) == 4  # the oldest reads were dropped


def test_stores_of_one_worker_share_its_budget(stores: Stores, text: Table):
    entry = entry_bytes(b"k0", "k0")
    options = StoreOptions(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20, cache_bytes=4 * entry)
    first = stores.open(options=options, partition=3)
    second = stores.open(options=options, partition=4)
    for store in (first, second):
        for i in range(5):
            store.put(text, f"k{i}".encode(), f"k{i}")
        flush(store, 0)
    assert first.cached_bytes == second.cached_bytes == 2 * entry  # half of the budget each
    stores.close(second)  # a partition revoked: its share goes to the store still open
    for i in range(5, 9):
        first.put(text, f"k{i}".encode(), f"k{i}")
    flush(first, 1)
    assert first.cached_bytes == 4 * entry
    assert options.decoded_budget.open_stores == 1
    stores.close(first)
    assert options.decoded_budget.open_stores == 0


def test_eviction_keeps_dirty_values(stores: Stores, text: Table):
    store = stores.open(cache_bytes=1)
    for i in range(6):
        store.put(text, f"k{i}".encode(), f"v{i}")
    records = sorted(store.pending_records())
    store.persist(records[:2], 1)  # only k0 and k1 were acknowledged
    assert store.dirty_count == 4
    assert sorted(store.pending_records()) == records[2:]
    # Not in RocksDB yet: had they been evicted, these reads would return None.
    assert [store.get(text, f"k{i}".encode()) for i in range(2, 6)] == ["v2", "v3", "v4", "v5"]
    assert [store.get(text, f"k{i}".encode()) for i in range(2)] == ["v0", "v1"]


def test_eviction_never_resurrects_a_deleted_value(stores: Stores, text: Table):
    store = stores.open(cache_bytes=1)
    store.put(text, b"k1", "one")
    flush(store, 0)
    store.delete(text, b"k1")
    for i in range(5):
        store.put(text, f"filler{i}".encode(), "x")
    flush(store, 1)
    assert store.get(text, b"k1") is None
    assert b"k1" not in dict(store.items(text))


# --- wipe --------------------------------------------------------------------------------------------


def test_wipe_deletes_the_store(stores: Stores, store, text: Table):
    store.put(text, b"k1", "one")
    flush(store, 8)
    stores.close(store)
    PartitionStore.wipe(stores.path)
    assert not stores.path.exists()
    fresh = stores.open()
    assert fresh.get(text, b"k1") is None
    assert fresh.changelog_offset == -1
    assert list(fresh.items(text)) == []


def test_wipe_of_a_missing_store_is_harmless(tmp_path: Path):
    PartitionStore.wipe(tmp_path / "never-created")
    assert not (tmp_path / "never-created").exists()


def test_restore_refuses_a_store_with_unflushed_writes(store: PartitionStore, text: Table):
    """Restoring over pending writes would drop them silently: the runtime only restores fresh stores."""
    store.put(text, b"k", "dirty")
    with pytest.raises(RuntimeError, match="unflushed"):
        store.apply_changelog([(text.storage_key(b"x"), b"1")], 0)
