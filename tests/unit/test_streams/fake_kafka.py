"""Stand-ins for the runtime's three Kafka clients: they record what is sent and committed, in order.

The runtime, its checkpoint and its recovery take their clients as arguments (``streams.worker`` builds
the real ones), so these drive them without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from streams.changelog_reader import ChangelogChunk


def consumer_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    *,
    timestamp: int = 0,
    headers: list[tuple[str, bytes]] | None = None,
) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=headers or [],
    )


class Acked:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def resolved(result) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future


class RecordingBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def append(self, *, key, value, timestamp, headers=()):
        self.records.append((key, value))
        return object()


def is_changelog(topic: str) -> bool:
    """Whether a batch goes to the state changelog (``TopicNames.state_changelog``) or is outputs."""
    return topic.endswith(".state-changelog")


class FakeProducer:
    """Outputs acknowledged at once (or failed with ``fail_outputs``); changelog batches get offsets from 100.
    Outputs come as batches (``streams.batched_send``) or one by one (``send``); either is recorded per record,
    ``"send <topic>"``, in ``sent``. Every topic has ``partitions`` partitions."""

    def __init__(self, calls: list[str], *, fail_outputs: bool = False, partitions: int = 4) -> None:
        self.calls = calls
        self.fail_outputs = fail_outputs
        self.partitions = partitions
        self.next_offset = 100
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.changelog: dict[int, list[tuple[bytes, bytes | None]]] = {}

    async def start(self) -> None:
        self.calls.append("producer start")

    async def stop(self) -> None:
        self.calls.append("producer stop")

    async def send(self, topic, value, *, key=None, headers=None):
        self.calls.append(f"send {topic}")
        if self.fail_outputs:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(KafkaError("broker gone"))
            return future
        self.sent.append((topic, key, value))
        return resolved(Acked(0))

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> RecordingBatch:
        return RecordingBatch()

    async def send_batch(self, batch, topic, *, partition):
        if not is_changelog(topic):
            acks = [await self.send(topic, value, key=key) for key, value in batch.records]
            return acks[0]  # a batch's future: its first record's (failed with it)
        return await self._changelog_batch(batch, partition)

    async def _changelog_batch(self, batch, partition):
        self.calls.append(f"changelog p{partition} x{len(batch.records)}")
        self.changelog.setdefault(partition, []).extend(batch.records)
        offset, self.next_offset = self.next_offset, self.next_offset + len(batch.records)
        return resolved(Acked(offset))


class FakeTransactionalProducer(FakeProducer):
    """The worker's transactional producer (one transaction over all its partitions). What a transaction
    sends becomes visible (``sent``, ``changelog``, ``offsets``) only when it commits; the commit marker
    takes an offset in every changelog partition the transaction wrote (``None`` in ``changelog_log``: a
    control record), as do the records of an aborted one. ``fail_at`` names the step that raises: ``send``,
    ``changelog``, ``offsets`` or ``commit``. Every call is recorded as ``"txn <step>"``; ``groups`` holds
    the group metadata each offset commit carried."""

    def __init__(self, calls: list[str], *, fail_at: str | None = None) -> None:
        super().__init__(calls)
        self.fail_at = fail_at
        self.changelog_log: dict[int, list[tuple[bytes, bytes | None] | None]] = {}  # per partition, markers too
        self.offsets: dict[TopicPartition, int] = {}
        self.groups: list = []
        self.in_transaction = False
        self._pending: tuple[list, dict[int, list], dict] = ([], {}, {})

    def _step(self, step: str) -> None:
        self.calls.append(f"txn {step}")
        if step.split(maxsplit=1)[0] == self.fail_at:
            msg = f"{step} failed"
            raise KafkaError(msg)

    async def start(self) -> None:
        self.calls.append("txn start")

    async def stop(self) -> None:
        self.calls.append("txn stop")

    async def begin_transaction(self) -> None:
        assert not self.in_transaction
        self.calls.append("txn begin")
        self.in_transaction = True
        self._pending = ([], {}, {})

    async def send(self, topic, value, *, key=None, headers=None):
        assert self.in_transaction
        self._step(f"send {topic}")
        self._pending[0].append((topic, key, value))
        return resolved(Acked(0))

    async def _changelog_batch(self, batch, partition):
        assert self.in_transaction
        self._step(f"changelog p{partition} x{len(batch.records)}")
        pending = self._pending[1].setdefault(partition, [])
        offset = len(self.changelog_log.get(partition, [])) + len(pending)
        pending.extend(batch.records)
        return resolved(Acked(offset))

    async def send_offsets_to_transaction(self, offsets, group):
        assert self.in_transaction
        self._step(f"offsets {sorted((tp.topic, tp.partition, offset) for tp, offset in offsets.items())}")
        self.groups.append(group)
        self._pending[2].update(offsets)

    async def commit_transaction(self) -> None:
        self._step("commit")
        outputs, changelog, offsets = self._pending
        self.sent.extend(outputs)
        for partition, records in changelog.items():
            self.changelog_log.setdefault(partition, []).extend([*records, None])
            self.changelog.setdefault(partition, []).extend(records)
        self.offsets.update(offsets)
        self.in_transaction = False

    async def abort_transaction(self) -> None:
        self.calls.append("txn abort")
        for partition, records in self._pending[1].items():  # aborted records keep their offsets
            self.changelog_log.setdefault(partition, []).extend([None] * (len(records) + 1))
        self.in_transaction = False


class FakeGroupCoordinator:
    """What ``streams.eos_v2.group_metadata`` reads of an aiokafka consumer's group coordinator."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.generation = 1
        self.member_id = "fake-member"
        self._group_instance_id = None


class FakeConsumer:
    """The group consumer: hands out ``batches`` one per ``getmany``, then calls ``when_drained``."""

    def __init__(self, calls: list[str], partitions: int) -> None:
        self.calls = calls
        self.partitions = partitions
        self.batches: list[dict[TopicPartition, list[ConsumerRecord]]] = []
        self.when_drained: Callable[[], None] = lambda: None
        self.committed: dict[TopicPartition, int] = {}
        self.listener = None
        self.highwaters: dict[TopicPartition, int] = {}  # preset one ahead of what is handed out: "not caught up"
        self.positions: dict[TopicPartition, int] = {}
        self._coordinator = FakeGroupCoordinator("unit")
        self.stable_offsets: dict[TopicPartition, int] = {}  # what ``stable_committed`` answers
        self.paused_partitions: set[TopicPartition] = set()
        # Records of a batch for a paused partition: handed out, before anything later of it, once resumed.
        self.withheld: dict[TopicPartition, list[ConsumerRecord]] = {}
        self._idle_fetches = 0  # fetches in a row that returned nothing while records were withheld
        self.withheld_records = 0  # how many records a pause held back, in all

    async def stable_committed(self, partitions, *, timeout_s: float) -> dict[TopicPartition, int]:
        self.calls.append("stable offsets")
        return {tp: self.stable_offsets[tp] for tp in partitions if tp in self.stable_offsets}

    def subscribe(self, *, topics, listener) -> None:
        self.calls.append("subscribe")
        self.listener = listener

    async def start(self) -> None:
        self.calls.append("consumer start")

    async def stop(self) -> None:
        self.calls.append("consumer stop")

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def assignment(self) -> set[TopicPartition]:
        """What the lag gauges read: the partitions of the batches handed out (a real consumer: its assignment)."""
        return set(self.highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return -1  # read_uncommitted, as aiokafka reports it

    def pause(self, *tps: TopicPartition) -> None:
        self.calls.append("pause " + " ".join(sorted(f"{tp.topic}-{tp.partition}" for tp in tps)))
        self.paused_partitions.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.calls.append("resume " + " ".join(sorted(f"{tp.topic}-{tp.partition}" for tp in tps)))
        self.paused_partitions.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_partitions)

    async def getmany(self, *, timeout_ms: int, max_records: int):
        await asyncio.sleep(0)
        if self.batches or self.withheld:
            batch = self._unpaused(self.batches.pop(0) if self.batches else {})
            for tp, records in batch.items():
                if records:
                    self.highwaters[tp] = max(self.highwaters.get(tp, 0), records[-1].offset + 1)
                    # A preset position past what is handed out stands for control records after it.
                    self.positions[tp] = max(self.positions.get(tp, 0), records[-1].offset + 1)
            return batch
        self.when_drained()
        return {}

    def _unpaused(self, scripted: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, list]:
        """The records a fetch returns: what was withheld for partitions resumed since, then the scripted batch
        without its paused partitions' records (withheld in order). A run that withholds records for good (its
        loop never resumes a partition) fails here instead of spinning."""
        batch = {tp: self.withheld.pop(tp) for tp in list(self.withheld) if tp not in self.paused_partitions}
        for tp, records in scripted.items():
            if tp in self.paused_partitions or tp in self.withheld:
                self.withheld.setdefault(tp, []).extend(records)
                self.withheld_records += len(records)
            else:
                batch.setdefault(tp, []).extend(records)
        self._idle_fetches = 0 if any(batch.values()) else self._idle_fetches + 1
        assert self._idle_fetches < 1000, f"records withheld for good: {sorted(self.withheld)}"
        return batch

    async def end_offsets(self, tps) -> dict[TopicPartition, int]:
        """A ``ListOffsets`` answer: the preset high watermark (nothing on the broker without one)."""
        return {tp: self.highwaters.get(tp, 0) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        """Where the next fetch starts: past the control records after the last record (``positions``)."""
        return self.positions.get(tp, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(f"seek {tp.topic} {tp.partition} {offset}")
        self.positions[tp] = offset

    async def commit(self, offsets) -> None:
        self.calls.append("commit")
        self.committed.update(offsets)


class FakeRestoreConsumer:
    """The restore's changelog reader (``streams.recovery.RestoreConsumer``) over ``changelog`` (partition →
    records; ``None``: a control record or an aborted one, which takes an offset but is never returned),
    read from the assigned positions, at most ``max_records`` records of each partition per chunk."""

    def __init__(self, calls: list[str], topic: str) -> None:
        self.calls = calls
        self.topic = topic
        self.changelog: dict[int, list[tuple[bytes, bytes | None] | None]] = {}
        self.positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        self.calls.append("restore start")

    async def stop(self) -> None:
        self.calls.append("restore stop")

    async def end_offsets(self, tps):
        return {tp: len(self.changelog.get(tp.partition, [])) for tp in tps}

    def assign(self, starts) -> None:
        self.positions = dict(starts)

    def unassign(self) -> None:
        self.positions = {}

    async def read_chunk(self, max_records: int):
        read = {}
        for tp, start in self.positions.items():
            rows = self.changelog.get(tp.partition, [])[start : start + max_records]
            data = [(start + i, row) for i, row in enumerate(rows) if row is not None]
            if data:
                latest = {key: value for _, (key, value) in data}
                read[tp] = ChangelogChunk(latest=latest, last_offset=data[-1][0], records=len(data))
            self.positions[tp] = start + len(rows)
        return read

    def position(self, tp) -> int:
        return self.positions[tp]
