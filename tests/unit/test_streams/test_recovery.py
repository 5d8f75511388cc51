"""StoreRecovery: a restored store equals its changelog's last value per key (tombstones delete), with the
offset of the changelog's last data record, however the records are split into chunks; only the tail is
read into a warm store; a store ahead of its changelog is rebuilt; a failed read fails the restore."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import rocksdict
from confluent_kafka import KafkaException
from fake_kafka import FakeRestoreConsumer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import recovery
from streams.recovery import StoreRecovery, restore_consumer
from streams.settings import Settings
from streams.state_store import PartitionStore, StoreOptions

TOPIC = "app.state-changelog"
OPTIONS = StoreOptions(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20, cache_bytes=1 << 20)
OFFSET_KEY = b"\xff changelog offset"

Changelog = list[tuple[bytes, bytes | None] | None]  # None: a transaction marker or an aborted record


def make_recovery(data_dir: Path, changelog: dict[int, Changelog]) -> StoreRecovery:
    consumer = FakeRestoreConsumer([], TOPIC)
    consumer.changelog = changelog
    return StoreRecovery(consumer, changelog_topic=TOPIC, data_dir=data_dir, options=OPTIONS)  # type: ignore[arg-type]


def stored(path: Path) -> dict[bytes, bytes]:
    """Everything in a closed store's RocksDB, as bytes."""
    db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
    try:
        return dict(db.items())
    finally:
        db.close()


def last_values(changelog: Changelog) -> tuple[dict[bytes, bytes], int]:
    """What a restore of ``changelog`` must leave: the live keys' last values, and the last data offset."""
    latest: dict[bytes, bytes | None] = {}
    last_offset = -1
    for offset, record in enumerate(changelog):
        if record is not None:
            latest[record[0]] = record[1]
            last_offset = offset
    return {key: value for key, value in latest.items() if value is not None}, last_offset


async def restore_and_close(data_dir: Path, changelog: dict[int, Changelog]) -> tuple[dict[int, int], int]:
    stores, restored = await make_recovery(data_dir, changelog).open_stores(sorted(changelog))
    offsets = {partition: store.changelog_offset for partition, store in stores.items()}
    for store in stores.values():
        store.close()
    return offsets, restored


records = st.one_of(
    st.none(),
    st.tuples(st.sampled_from([b"pa", b"pb", b"pc", b"ia", b"sx"]), st.one_of(st.none(), st.binary(max_size=8))),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changelogs=st.lists(st.lists(records, max_size=40), min_size=1, max_size=3), chunk=st.integers(1, 7))
async def test_a_restore_leaves_the_last_value_of_each_key_and_the_last_offset(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, changelogs: list[Changelog], chunk: int
):
    monkeypatch.setattr(recovery, "RESTORE_CHUNK", chunk)  # a key's records spread over several chunks
    data_dir = tmp_path_factory.mktemp("data")
    changelog = dict(enumerate(changelogs))
    offsets, restored = await restore_and_close(data_dir, changelog)
    assert restored == sum(record is not None for part in changelogs for record in part)
    for partition, part in changelog.items():
        expected, last_offset = last_values(part)
        content = stored(data_dir / "state" / f"partition-{partition}")
        assert int(content.pop(OFFSET_KEY, b"-1")) == last_offset == offsets[partition]
        assert content == expected


async def test_a_warm_store_reads_only_the_tail_of_its_changelog(tmp_path: Path):
    changelog: Changelog = [(b"pa", b"1"), (b"pb", b"2"), (b"pa", None)]
    await restore_and_close(tmp_path, {0: changelog})
    changelog += [(b"pb", b"3"), None, (b"pc", b"4")]
    offsets, restored = await restore_and_close(tmp_path, {0: changelog})
    assert restored == 2 and offsets == {0: 5}
    assert stored(tmp_path / "state" / "partition-0") == {b"pb": b"3", b"pc": b"4", OFFSET_KEY: b"5"}


async def test_a_store_ahead_of_its_changelog_is_rebuilt_from_it(tmp_path: Path):
    await restore_and_close(tmp_path, {0: [(b"pa", b"old")] * 5})
    offsets, restored = await restore_and_close(tmp_path, {0: [(b"pb", b"new")]})  # the topic was recreated
    assert restored == 1 and offsets == {0: 0}
    assert stored(tmp_path / "state" / "partition-0") == {b"pb": b"new", OFFSET_KEY: b"0"}


async def test_what_a_restore_wrote_is_on_disk_although_it_bypassed_the_write_ahead_log(tmp_path: Path):
    stores, _ = await make_recovery(tmp_path, {0: [(b"pa", b"1"), (b"pb", b"2")]}).open_stores([0])
    try:
        # A read-only open sees the flushed files (and the log): the restore's batches are in the files.
        read_only = rocksdict.Rdict(
            str(stores[0].path), rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only()
        )
        try:
            assert dict(read_only.items()) == {b"pa": b"1", b"pb": b"2", OFFSET_KEY: b"1"}
        finally:
            read_only.close()
    finally:
        stores[0].close()


class FailingConsumer(FakeRestoreConsumer):
    async def read_chunk(self, max_records: int):
        read = await super().read_chunk(max_records)
        if all(position >= 2 for position in self.positions.values()):
            message = "broker gone"
            raise KafkaException(message)
        return read


async def test_a_failed_read_fails_the_restore_and_closes_the_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recovery, "RESTORE_CHUNK", 2)
    consumer = FailingConsumer([], TOPIC)
    consumer.changelog = {0: [(b"pa", b"1"), (b"pb", b"2"), (b"pc", b"3")]}
    store_recovery = StoreRecovery(consumer, changelog_topic=TOPIC, data_dir=tmp_path, options=OPTIONS)  # type: ignore[arg-type]
    with pytest.raises(KafkaException, match="broker gone"):
        await store_recovery.open_stores([0])
    # Closed (RocksDB's lock released) and consistent: the batch it wrote, with that batch's offset.
    assert stored(tmp_path / "state" / "partition-0") in (
        {OFFSET_KEY: b"1", b"pa": b"1", b"pb": b"2"},
        {},
    )


async def test_the_restore_consumer_reads_committed_records_in_fetches_of_the_configured_size():
    config = restore_consumer(Settings(restore_fetch_bytes=4 << 20), client_id="app-restore").config
    assert config["isolation.level"] == "read_committed"
    assert config["enable.auto.commit"] is False and config["enable.auto.offset.store"] is False
    assert (config["fetch.max.bytes"], config["max.partition.fetch.bytes"]) == (4 << 20, 4 << 20)
    assert config["queued.max.messages.kbytes"] == 1 << 10  # fetched ahead per partition: bounded too


async def test_a_failed_write_stops_the_reading_and_fails_the_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recovery, "RESTORE_CHUNK", 1)  # the reader fills its queue while the first write fails

    def failing_write(self, records, last_offset):
        message = "disk full"
        raise OSError(message)

    monkeypatch.setattr(PartitionStore, "apply_changelog", failing_write)
    store_recovery = make_recovery(tmp_path, {0: [(b"pa", b"1")] * 10})
    with pytest.raises(OSError, match="disk full"):
        await asyncio.wait_for(store_recovery.open_stores([0]), timeout=10)
