"""The state restore against the real broker: a changelog written in transactions — committed ones with
updates and tombstones, an aborted one in between — read back by ``streams.recovery`` (its librdkafka
reader, ``streams.changelog_reader``) onto an empty disk in many small fetches and chunks, then its tail
onto the warm disk. The store must hold the committed records' last value per key and nothing of the
aborted transaction, with the offset of the last committed data record. A changelog that ends in an
aborted transaction, or with one still open, is read to its last stable offset and no further."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import rocksdict
from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from streams import recovery
from streams.recovery import StoreRecovery, restore_consumer
from streams.settings import Settings
from streams.state_store import StoreOptions

PARTITIONS = 2
OPTIONS = StoreOptions(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20, cache_bytes=1 << 20)
OFFSET_KEY = b"\xff changelog offset"


def create_changelog(settings: Settings) -> str:
    topic = f"restore-{uuid.uuid4().hex[:8]}.state-changelog"
    admin = KafkaAdminClient(bootstrap_servers=settings.broker_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    return topic


class Changelog:
    """Writes transactions to the changelog and keeps what a restore must leave of the committed ones."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.broker_bootstrap, transactional_id=f"{topic}-writer", max_batch_size=16384
        )
        self.expected: dict[int, dict[bytes, bytes | None]] = {p: {} for p in range(PARTITIONS)}
        self.last_offset = dict.fromkeys(range(PARTITIONS), -1)

    async def transaction(self, records: list[tuple[int, bytes, bytes | None]], *, commit: bool = True) -> None:
        async with self.producer.transaction() if commit else Aborting(self.producer):
            sent = [await self.producer.send(self.topic, value, key=key, partition=p) for p, key, value in records]
            delivered = [await future for future in sent]
        if commit:
            for (partition, key, value), metadata in zip(records, delivered, strict=True):
                self.expected[partition][key] = value
                self.last_offset[partition] = max(self.last_offset[partition], metadata.offset)

    def live(self, partition: int) -> dict[bytes, bytes]:
        return {key: value for key, value in self.expected[partition].items() if value is not None}


class Aborting:
    """Like the producer's own ``transaction()``, but aborted at the end."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def __aenter__(self) -> None:
        await self.producer.begin_transaction()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.producer.abort_transaction()


def stored(path: Path) -> dict[bytes, bytes]:
    db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
    try:
        return dict(db.items())
    finally:
        db.close()


async def restore(settings: Settings, topic: str, data_dir: Path) -> tuple[dict[int, int], int]:
    consumer = restore_consumer(settings, client_id="restore-test")
    await consumer.start()
    try:
        store_recovery = StoreRecovery(consumer, changelog_topic=topic, data_dir=data_dir, options=OPTIONS)
        stores, restored = await asyncio.wait_for(store_recovery.open_stores(range(PARTITIONS)), timeout=60)
    finally:
        await consumer.stop()
    offsets = {partition: store.changelog_offset for partition, store in stores.items()}
    for store in stores.values():
        store.close()
    return offsets, restored


def updates(partition: int, count: int, version: str) -> list[tuple[int, bytes, bytes | None]]:
    """``count`` records over 500 keys of ``partition``: each key several times, every 7th a tombstone."""
    return [
        (partition, f"pk{i % 500}".encode(), None if i % 7 == 0 else f"{version}-{i}".encode() * 20)
        for i in range(count)
    ]


async def test_a_restore_reads_committed_records_only_and_keeps_the_last_value_of_each_key(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(recovery, "RESTORE_CHUNK", 700)  # many chunks, a key's records spread over them
    settings = kafka_settings.model_copy(update={"restore_fetch_bytes": 1024 * 1024})
    topic = create_changelog(settings)
    changelog = Changelog(settings, topic)
    await changelog.producer.start()
    try:
        await changelog.transaction(updates(0, 6000, "a") + updates(1, 3000, "a"))
        await changelog.transaction(updates(0, 2000, "aborted") + updates(1, 2000, "aborted"), commit=False)
        await changelog.transaction(updates(0, 1500, "b")[::-1] + [(1, b"pk1", None)])

        offsets, restored = await restore(settings, topic, tmp_path)
        assert restored == 6000 + 3000 + 1500 + 1  # none of the aborted transaction
        for partition in range(PARTITIONS):
            content = stored(tmp_path / "state" / f"partition-{partition}")
            assert int(content.pop(OFFSET_KEY)) == offsets[partition] == changelog.last_offset[partition]
            assert content == changelog.live(partition)

        # Warm: only what came after is read back.
        await changelog.transaction([(0, b"pk3", b"late"), (0, b"pk4", None)])
        offsets, restored = await restore(settings, topic, tmp_path)
        assert restored == 2 and offsets[0] == changelog.last_offset[0]
        content = stored(tmp_path / "state" / "partition-0")
        content.pop(OFFSET_KEY)
        assert content == changelog.live(0)
    finally:
        await changelog.producer.stop()


async def test_a_restore_ends_at_the_last_stable_offset_past_aborted_and_open_transactions(
    kafka_settings: Settings, tmp_path: Path
):
    topic = create_changelog(kafka_settings)
    changelog = Changelog(kafka_settings, topic)
    await changelog.producer.start()
    other = AIOKafkaProducer(bootstrap_servers=kafka_settings.broker_bootstrap, transactional_id=f"{topic}-other")
    await other.start()
    try:
        await changelog.transaction(updates(0, 300, "a") + updates(1, 200, "a"))
        # Partition 0 ends in an aborted transaction (its records and marker take the last offsets).
        await changelog.transaction(updates(0, 100, "aborted"), commit=False)
        # Partition 1 has a transaction still open: its last stable offset stays before it.
        await other.begin_transaction()
        await asyncio.gather(*[await other.send(topic, b"open", key=b"pk1", partition=1) for _ in range(50)])

        offsets, restored = await restore(kafka_settings, topic, tmp_path)
        assert restored == 300 + 200
        for partition in range(PARTITIONS):
            content = stored(tmp_path / "state" / f"partition-{partition}")
            assert int(content.pop(OFFSET_KEY)) == offsets[partition] == changelog.last_offset[partition]
            assert content == changelog.live(partition)

        # Once committed, the open transaction is the tail a warm restore reads.
        await other.commit_transaction()
        offsets, restored = await restore(kafka_settings, topic, tmp_path)
        assert restored == 50
        content = stored(tmp_path / "state" / "partition-1")
        assert content[b"pk1"] == b"open" and int(content[OFFSET_KEY]) == offsets[1] > changelog.last_offset[1]
    finally:
        await other.stop()
        await changelog.producer.stop()
