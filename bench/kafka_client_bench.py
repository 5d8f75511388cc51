"""aiokafka against confluent-kafka on the worker's fetch and produce paths (issue 15, item 1)::

    .venv/bin/python bench/kafka_client_bench.py [--records 1000000] [--runs 3] [--batch 1000] [--partitions 4]

A private broker (``fleet.start_broker``, stopped by pid at the end) gets an input topic of ``--records``
committed records (the pipeline bench's values and keys, ``pipeline_bench.build_workload``: 165-786 bytes,
keyed by customer), written in transactions of 1,000 records by a transactional producer, every 20th
transaction aborted: a client that reads them (``read_committed`` not honoured) reads too many. Then, for
each client, alternated (aiokafka, confluent-kafka, aiokafka, …) ``--runs`` times, each run in a process of
its own (``--child``) so that its CPU seconds are the client's:

1. **fetch**: a group consumer (``read_committed``, the worker's fetch settings; confluent-kafka with the
   restore reader's, ``streams.recovery.restore_consumer``) reads every committed record of the input and
   touches each one's key, value and timestamp, as the worker's loop does;
2. **produce**: one transactional producer per input partition (the worker's ``transactional.id`` per
   state partition, ``streams.checkpoint``), all partitions' transactions side by side; each transaction
   sends ``--batch`` records (a third to each of two topics by key, as the outbox's ``producer.send``,
   a third to a changelog partition, as ``Checkpoint._send_changelog``: aiokafka's batch API), waits for
   every ack, adds the consumer group's offsets (``send_offsets_to_transaction``) and commits;
3. **loop**: both together, consume-transform-produce with a trivial transform (each input record sent on
   unchanged), flushed like the worker (``--batch`` inputs per partition, or 0.5 s): the floor of each
   client under the worker. A third client, ``hybrid``, runs only this phase: aiokafka's group consumer (so
   ``streams.assignor`` could stay) with confluent-kafka's producers, whose offsets go to the group with the
   metadata of a confluent consumer that never joins (generation -1, fenced by ``transactional.id`` as today).

Measured in the child: its process CPU (``time.process_time``: every thread, librdkafka's too; user and
system from ``getrusage``) from the client's creation (fetch, loop: the group join included) or from the
producers' ``init_transactions`` done (produce) to the last record, the wall time from the first record to
the last, and the broker's CPU (``/proc/<pid>/stat``) and the machine's busy CPU over the same window.
Checked in the parent after each run with a read of its own (confluent-kafka, ``read_committed``): every
record read (fetch: count and bytes equal to the committed input), every record sent (count and bytes of
every output topic), the offsets committed in the transactions (the group's committed offsets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from pipeline_bench import cpu_seconds, machine_busy_seconds  # noqa: E402

log = logging.getLogger("bench.kafka_client")

CLIENTS = ("aiokafka", "confluent", "hybrid")  # hybrid: aiokafka's group consumer, confluent-kafka's producers
HYBRID_PHASES = ("loop",)  # its fetch is aiokafka's, its produce confluent-kafka's
PHASES = ("fetch", "produce", "loop")
FETCH_MAX_RECORDS = 5_000  # Settings.fetch_max_records
FETCH_BYTES = 4 * 1024 * 1024  # the worker's max_partition_fetch_bytes
RESTORE_FETCH_BYTES = 16 * 1024 * 1024  # Settings.restore_fetch_bytes
PRODUCER_BATCH_BYTES = 512 * 1024  # the worker's max_batch_size
LINGER_MS = 5
COMMIT_INTERVAL_S = 0.5  # Settings.commit_interval_s
INPUT_TRANSACTION = 1_000
ABORT_EVERY = 20
OUTPUTS = ("out-a", "out-b", "changelog")  # the third is written to the transaction's own partition
RUN_TIMEOUT_S = 900.0


# --- the measurement window (child) ---------------------------------------------------------------------------


@dataclass
class Meter:
    """CPU of this process, the broker and the machine from ``start`` on; wall time from the first record."""

    broker_pid: int
    cpu: float = 0.0
    user: float = 0.0
    system: float = 0.0
    broker: float = 0.0
    machine: float = 0.0
    load: float = 0.0
    first_record: float | None = None

    def start(self) -> Meter:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu, self.user, self.system = time.process_time(), usage.ru_utime, usage.ru_stime
        self.broker, self.machine, self.load = cpu_seconds(self.broker_pid), machine_busy_seconds(), os.getloadavg()[0]
        return self

    def saw_records(self) -> None:
        if self.first_record is None:
            self.first_record = time.monotonic()

    def stop(self, records: int, value_bytes: int) -> dict:
        ended = time.monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = time.process_time() - self.cpu
        wall = ended - (self.first_record or ended)
        return {
            "records": records,
            "value_bytes": value_bytes,
            "wall_s": wall,
            "records_per_s": records / wall if wall > 0 else 0.0,
            "cpu_s": cpu,
            "user_s": usage.ru_utime - self.user,
            "system_s": usage.ru_stime - self.system,
            "cpu_s_per_1m": cpu / records * 1e6 if records else 0.0,
            "broker_cpu_s": cpu_seconds(self.broker_pid) - self.broker,
            "machine_busy_s": machine_busy_seconds() - self.machine,
            "load_1m_start": self.load,
            "load_1m_end": os.getloadavg()[0],
        }


@dataclass
class Spec:
    """What one child run does (passed as JSON)."""

    client: str
    phase: str
    bootstrap: str
    broker_pid: int
    input_topic: str
    partitions: int
    records: int
    batch: int
    group: str
    app_id: str
    outputs: list[str] = field(default_factory=list)
    input_ends: list[int] = field(default_factory=list)  # committed input end per partition (produce offsets)


def record_pool(count: int = 20_000, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """(key, value) of the pipeline bench's workload (the project's generator), cycled through by every run."""
    from pipeline_bench import build_workload

    from schemas.topics import TopicNames

    workload = build_workload(TopicNames(prefix="bench."), count, None, seed)
    return [(message.key or b"", message.value) for message in workload.messages]


def split_outputs(records: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], ...]:
    """A transaction's records: a third to each output topic (by key), a third to the changelog."""
    return records[0::3], records[1::3], records[2::3]


# --- aiokafka (the worker's client) ----------------------------------------------------------------------------


def aiokafka_consumer(spec: Spec):
    from aiokafka import AIOKafkaConsumer

    # streams.worker.build_runtime's consumer
    return AIOKafkaConsumer(
        spec.input_topic,
        bootstrap_servers=spec.bootstrap,
        group_id=spec.group,
        client_id=f"{spec.app_id}-worker",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
        isolation_level="read_committed",
    )


async def aiokafka_producers(spec: Spec) -> dict:
    from aiokafka import AIOKafkaProducer

    # streams.worker.build_runtime's partition_producer
    producers = {
        p: AIOKafkaProducer(
            bootstrap_servers=spec.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=LINGER_MS,
            max_batch_size=PRODUCER_BATCH_BYTES,
            client_id=f"{spec.app_id}-worker-p{p}",
            transactional_id=f"{spec.app_id}-{p}",
        )
        for p in range(spec.partitions)
    }
    await asyncio.gather(*(producer.start() for producer in producers.values()))
    return producers


async def aiokafka_transaction(spec: Spec, producer, partition: int, records, offset: int | None) -> int:
    """``TransactionalCheckpoint._commit_partition``'s steps; the changelog's last offset."""
    from aiokafka.structs import TopicPartition

    first, second, changelog = split_outputs(records)
    out_a, out_b, changelog_topic = spec.outputs
    await producer.begin_transaction()
    send = producer.send
    acks = [await send(out_a, value, key=key) for key, value in first]
    acks += [await send(out_b, value, key=key) for key, value in second]
    batches = []
    batch, count = producer.create_batch(), 0
    for key, value in changelog:
        if batch.append(key=key, value=value, timestamp=None) is None:
            batches.append((await producer.send_batch(batch, changelog_topic, partition=partition), count))
            batch, count = producer.create_batch(), 0
            batch.append(key=key, value=value, timestamp=None)
        count += 1
    if count:
        batches.append((await producer.send_batch(batch, changelog_topic, partition=partition), count))
    await asyncio.gather(*acks, *(future for future, _ in batches))
    if offset is not None:
        await producer.send_offsets_to_transaction({TopicPartition(spec.input_topic, partition): offset}, spec.group)
    await producer.commit_transaction()
    return max([(await future).offset + count - 1 for future, count in batches], default=-1)


async def aiokafka_fetch(spec: Spec) -> dict:
    meter = Meter(spec.broker_pid).start()
    consumer = aiokafka_consumer(spec)
    await consumer.start()
    count = value_bytes = 0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while count < spec.records and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=FETCH_MAX_RECORDS)
            if batch:
                meter.saw_records()
            for records in batch.values():
                for record in records:
                    count += 1
                    value_bytes += len(record.value)
                    _key, _stamp = record.key, record.timestamp
        return meter.stop(count, value_bytes)
    finally:
        await consumer.stop()


async def produce_rounds(
    spec: Spec,
    pool: list[tuple[bytes, bytes]],
    commit_round: Callable[[dict[int, list[tuple[bytes, bytes]]], list[int]], Awaitable[None]],
    meter: Meter,
) -> dict:
    """The produce phase, the same for both clients: rounds of up to ``spec.batch`` records of ``pool`` per
    partition, each partition's committed (``commit_round``) with the input offsets it carries (at most the
    input's end); the meter's figures and the counts."""
    meter.saw_records()
    sent = value_bytes = transactions = 0
    offsets = [0] * spec.partitions
    while sent < spec.records:
        work = {}
        for p in range(spec.partitions):
            take = min(spec.batch, spec.records - sent)
            if take <= 0:
                break
            work[p] = [pool[(sent + i) % len(pool)] for i in range(take)]
            sent += take
            value_bytes += sum(len(value) for _, value in work[p])
            offsets[p] = min(offsets[p] + take, spec.input_ends[p])
        await commit_round(work, offsets)
        transactions += len(work)
    return {**meter.stop(sent, value_bytes), "transactions": transactions, "offsets": offsets}


async def aiokafka_produce(spec: Spec, pool: list[tuple[bytes, bytes]]) -> dict:
    producers = await aiokafka_producers(spec)

    async def commit_round(work: dict[int, list[tuple[bytes, bytes]]], offsets: list[int]) -> None:
        await asyncio.gather(
            *(aiokafka_transaction(spec, producers[p], p, records, offsets[p]) for p, records in work.items())
        )

    try:
        return await produce_rounds(spec, pool, commit_round, Meter(spec.broker_pid).start())
    finally:
        await asyncio.gather(*(producer.stop() for producer in producers.values()))


class LoopBuffer:
    """The consume-transform-produce loop's state, the same for every client: the records waiting for their
    partition's next transaction, the input offsets they carry, what was committed, and the counts."""

    def __init__(self, spec: Spec) -> None:
        self.pending: dict[int, list[tuple[bytes, bytes]]] = {}
        self.offsets: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.count = self.value_bytes = self.transactions = 0
        self.flush_records = spec.batch * spec.partitions
        self.last_flush = time.monotonic()
        self.partitions = spec.partitions

    def add(self, partition: int, key: bytes, value: bytes, offset: int) -> None:
        """One input record, sent on unchanged (the trivial transform)."""
        self.count += 1
        self.value_bytes += len(value)
        records = self.pending.get(partition)
        if records is None:
            records = self.pending[partition] = []
        records.append((key, value))
        self.offsets[partition] = offset + 1

    def due(self) -> bool:
        inputs = sum(len(records) for records in self.pending.values())
        return inputs >= self.flush_records or (
            bool(self.pending) and time.monotonic() - self.last_flush >= COMMIT_INTERVAL_S
        )

    def take(self) -> dict[int, list[tuple[bytes, bytes]]]:
        """The records of the next transactions, per partition (``committed`` once they are)."""
        work, self.pending = self.pending, {}
        return work

    def committed_work(self, work: dict[int, list[tuple[bytes, bytes]]]) -> None:
        self.committed.update({p: self.offsets[p] for p in work})
        self.transactions += len(work)
        self.last_flush = time.monotonic()

    def figures(self) -> dict:
        return {"transactions": self.transactions, "offsets": [self.committed.get(p) for p in range(self.partitions)]}


async def aiokafka_loop(spec: Spec, *, hybrid: bool = False) -> dict:
    """The loop on aiokafka's consumer, with aiokafka's producers or (``hybrid``) confluent-kafka's, whose
    offsets go to the group like aiokafka's: by a consumer of the group that has not joined (generation -1,
    accepted from a transaction while the group has members; fencing by ``transactional.id`` as today)."""
    meter = Meter(spec.broker_pid).start()
    producers = await (confluent_producers(spec) if hybrid else aiokafka_producers(spec))
    metadata_consumer = confluent_consumer(spec, subscribe=False) if hybrid else None
    group_metadata = metadata_consumer.consumer_group_metadata() if metadata_consumer is not None else None
    consumer = aiokafka_consumer(spec)
    await consumer.start()
    loop = LoopBuffer(spec)
    deadline = time.monotonic() + RUN_TIMEOUT_S

    async def flush() -> None:
        work = loop.take()
        if hybrid:
            await confluent_transactions(spec, producers, work, loop.offsets, group_metadata)
        else:
            await asyncio.gather(
                *(aiokafka_transaction(spec, producers[p], p, records, loop.offsets[p]) for p, records in work.items())
            )
        loop.committed_work(work)

    try:
        while loop.count < spec.records and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=FETCH_MAX_RECORDS)
            if batch:
                meter.saw_records()
            for tp, records in batch.items():
                for record in records:
                    _stamp = record.timestamp
                    loop.add(tp.partition, record.key, record.value, record.offset)
            if loop.due():
                await flush()
        if loop.pending:
            await flush()
        figures = meter.stop(loop.count, loop.value_bytes)
    finally:
        await consumer.stop()
        if metadata_consumer is not None:
            await asyncio.to_thread(metadata_consumer.close)
        else:
            await asyncio.gather(*(producer.stop() for producer in producers.values()))
    return {**figures, **loop.figures()}


# --- confluent-kafka (librdkafka) ------------------------------------------------------------------------------


def confluent_consumer(spec: Spec, *, subscribe: bool = True):
    from confluent_kafka import Consumer

    # The restore reader's settings (streams.recovery.restore_consumer), in a group.
    consumer = Consumer(
        {
            "bootstrap.servers": spec.bootstrap,
            "group.id": spec.group,
            "client.id": f"{spec.app_id}-worker",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.max.bytes": RESTORE_FETCH_BYTES,
            "max.partition.fetch.bytes": FETCH_BYTES,
            "queued.max.messages.kbytes": RESTORE_FETCH_BYTES // 4 // 1024,
            "fetch.queue.backoff.ms": 10,
        }
    )
    if subscribe:
        consumer.subscribe([spec.input_topic])
    return consumer


def confluent_take(consumer, max_records: int) -> list:
    """What ``ChangelogReader._read_chunk`` does: wait for one record, then take what librdkafka holds."""
    from confluent_kafka import KafkaException

    first = consumer.poll(0.1)
    if first is None:
        return []
    messages = [first, *consumer.consume(max_records - 1, 0)]
    for message in messages:
        error = message.error()
        if error is not None:
            raise KafkaException(error)
    return messages


async def confluent_producers(spec: Spec) -> dict:
    from confluent_kafka import Producer

    producers = {
        p: Producer(
            {
                "bootstrap.servers": spec.bootstrap,
                "client.id": f"{spec.app_id}-worker-p{p}",
                "transactional.id": f"{spec.app_id}-{p}",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": LINGER_MS,
                "batch.size": PRODUCER_BATCH_BYTES,
                "partitioner": "murmur2_random",  # the Java client's and aiokafka's: keys stay co-partitioned
            }
        )
        for p in range(spec.partitions)
    }
    await asyncio.gather(*(asyncio.to_thread(producer.init_transactions, 30) for producer in producers.values()))
    return producers


def confluent_send(spec: Spec, producer, partition: int, records, last_offset: list[int]) -> None:
    """Begin ``producer``'s transaction and queue ``records`` (no wait: librdkafka sends them)."""
    first, second, changelog = split_outputs(records)
    out_a, out_b, changelog_topic = spec.outputs
    producer.begin_transaction()
    produce = producer.produce
    for topic, part in ((out_a, first), (out_b, second)):
        for key, value in part:
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
    for index, (key, value) in enumerate(changelog):
        # The worker needs the changelog's last offset (RocksDB keeps it): a delivery report for that one.
        report = _keep_offset(last_offset) if index == len(changelog) - 1 else None
        while True:
            try:
                produce(changelog_topic, value, key, partition, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)


def _keep_offset(last_offset: list[int]):
    def report(error, message) -> None:
        if error is None:
            last_offset.append(message.offset())

    return report


def confluent_commit(spec: Spec, producer, partition: int, offset: int | None, group_metadata) -> None:
    """The transaction's blocking end: offsets to the group (KIP-447 metadata), commit (flushes, acks)."""
    from confluent_kafka import TopicPartition

    if offset is not None:
        producer.send_offsets_to_transaction([TopicPartition(spec.input_topic, partition, offset)], group_metadata, 30)
    producer.commit_transaction(30)


async def confluent_transactions(spec: Spec, producers: dict, work: dict, offsets, group_metadata) -> None:
    """Every partition's transaction, queued in this thread, committed side by side (librdkafka blocks)."""
    reported: dict[int, list[int]] = {p: [] for p in work}
    for p, records in work.items():
        confluent_send(spec, producers[p], p, records, reported[p])
    await asyncio.gather(
        *(asyncio.to_thread(confluent_commit, spec, producers[p], p, offsets[p], group_metadata) for p in work)
    )
    missing = [p for p, records in work.items() if len(records) >= 3 and not reported[p]]
    if missing:
        message = f"no delivery report of the changelog's last record of partitions {missing}"
        raise RuntimeError(message)


async def confluent_fetch(spec: Spec) -> dict:
    meter = Meter(spec.broker_pid).start()
    consumer = confluent_consumer(spec)
    count = value_bytes = 0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while count < spec.records and time.monotonic() < deadline:
            messages = await asyncio.to_thread(confluent_take, consumer, FETCH_MAX_RECORDS)
            if messages:
                meter.saw_records()
            for message in messages:
                count += 1
                value_bytes += len(message.value())
                _key, _stamp = message.key(), message.timestamp()
        return meter.stop(count, value_bytes)
    finally:
        await asyncio.to_thread(consumer.close)


async def confluent_produce(spec: Spec, pool: list[tuple[bytes, bytes]]) -> dict:
    producers = await confluent_producers(spec)
    # The group's metadata: a consumer of the group that has not joined (generation -1) commits like aiokafka's.
    consumer = confluent_consumer(spec, subscribe=False)
    group_metadata = consumer.consumer_group_metadata()

    async def commit_round(work: dict[int, list[tuple[bytes, bytes]]], offsets: list[int]) -> None:
        await confluent_transactions(spec, producers, work, offsets, group_metadata)

    try:
        return await produce_rounds(spec, pool, commit_round, Meter(spec.broker_pid).start())
    finally:
        await asyncio.to_thread(consumer.close)


async def confluent_loop(spec: Spec) -> dict:
    meter = Meter(spec.broker_pid).start()
    producers = await confluent_producers(spec)
    consumer = confluent_consumer(spec)
    loop = LoopBuffer(spec)
    deadline = time.monotonic() + RUN_TIMEOUT_S

    async def flush() -> None:
        work = loop.take()
        # KIP-447: the metadata carries the member's generation, so the broker refuses a zombie's offsets.
        await confluent_transactions(spec, producers, work, loop.offsets, consumer.consumer_group_metadata())
        loop.committed_work(work)

    try:
        while loop.count < spec.records and time.monotonic() < deadline:
            messages = await asyncio.to_thread(confluent_take, consumer, FETCH_MAX_RECORDS)
            if messages:
                meter.saw_records()
            for message in messages:
                _stamp = message.timestamp()
                loop.add(message.partition(), message.key(), message.value(), message.offset())
            if loop.due():
                await flush()
        if loop.pending:
            await flush()
        figures = meter.stop(loop.count, loop.value_bytes)
    finally:
        await asyncio.to_thread(consumer.close)
    return {**figures, **loop.figures()}


def run_child(spec: Spec) -> dict:
    pool = record_pool() if spec.phase == "produce" else []
    runs = {
        ("aiokafka", "fetch"): lambda: aiokafka_fetch(spec),
        ("aiokafka", "produce"): lambda: aiokafka_produce(spec, pool),
        ("aiokafka", "loop"): lambda: aiokafka_loop(spec),
        ("confluent", "fetch"): lambda: confluent_fetch(spec),
        ("confluent", "produce"): lambda: confluent_produce(spec, pool),
        ("confluent", "loop"): lambda: confluent_loop(spec),
        ("hybrid", "loop"): lambda: aiokafka_loop(spec, hybrid=True),
    }
    return asyncio.run(runs[spec.client, spec.phase]())


# --- the parent ---------------------------------------------------------------------------------------------------


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    client = admin(bootstrap)  # kept until the answers: a collected client cancels its requests
    for future in client.create_topics([NewTopic(name, partitions, 1) for name in names]).values():
        future.result(30)


def delete_topics(bootstrap: str, names: list[str]) -> None:
    client = admin(bootstrap)
    for future in client.delete_topics(names).values():
        future.result(30)


def write_input(bootstrap: str, topic: str, records: int, pool: list[tuple[bytes, bytes]]) -> dict:
    """``records`` committed records (and every ``ABORT_EVERY``-th transaction's aborted) in ``topic``."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"input-{uuid.uuid4().hex[:8]}",
            "linger.ms": LINGER_MS,
            "partitioner": "murmur2_random",
        }
    )
    producer.init_transactions(30)
    committed = aborted = value_bytes = transactions = 0
    began = time.perf_counter()
    while committed < records:
        abort = transactions % ABORT_EVERY == ABORT_EVERY - 1
        take = INPUT_TRANSACTION if abort else min(INPUT_TRANSACTION, records - committed)
        producer.begin_transaction()
        for i in range(take):
            key, value = pool[(committed + aborted + i) % len(pool)]
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
            if not abort:
                value_bytes += len(value)
        if abort:
            producer.flush(30)  # sent, then aborted: the records take offsets and must be skipped
            producer.abort_transaction(30)
            aborted += take
        else:
            producer.commit_transaction(30)
            committed += take
        transactions += 1
    return {
        "committed": committed,
        "aborted": aborted,
        "value_bytes": value_bytes,
        "transactions": transactions,
        "seconds": time.perf_counter() - began,
    }


def read_back(bootstrap: str, topics: list[str], partitions: int) -> dict[str, dict]:
    """Every committed record of ``topics`` (``read_committed``): count and value bytes per topic."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for topic in topics for p in range(partitions)]
    consumer.assign(tps)
    counts = {topic: {"records": 0, "value_bytes": 0} for topic in topics}
    at_end: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 300.0
    try:
        while len(at_end) < len(tps) and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 0.5):
                error = message.error()
                if error is None:
                    counts[message.topic()]["records"] += 1
                    counts[message.topic()]["value_bytes"] += len(message.value())
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add((message.topic(), message.partition()))
                else:
                    raise RuntimeError(str(error))
    finally:
        consumer.close()
    return counts


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends", "isolation.level": "read_committed"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)]
    finally:
        consumer.close()


def check(spec: Spec, result: dict, expected: dict, input_ends: list[int]) -> dict:
    """The run's outputs, read back; raises when a figure is not what the run claims or the input holds."""
    problems = []
    read = (result["records"], result["value_bytes"])
    if spec.phase in ("fetch", "loop") and read != (expected["committed"], expected["value_bytes"]):
        problems.append(f"read {result['records']} records / {result['value_bytes']} bytes, expected {expected}")
    readback: dict = {}
    if spec.phase in ("produce", "loop"):
        readback = read_back(spec.bootstrap, spec.outputs, spec.partitions)
        records = sum(topic["records"] for topic in readback.values())
        value_bytes = sum(topic["value_bytes"] for topic in readback.values())
        if (records, value_bytes) != (result["records"], result["value_bytes"]):
            problems.append(f"read back {records} records / {value_bytes} bytes, sent {result}")
        committed = committed_offsets(spec.bootstrap, spec.group, spec.input_topic, spec.partitions)
        if committed != result["offsets"]:
            problems.append(f"committed offsets {committed}, the transactions carried {result['offsets']}")
        if spec.phase == "loop" and any(c < end - 1 for c, end in zip(committed, input_ends, strict=True)):
            problems.append(f"committed offsets {committed} short of the input's ends {input_ends}")
        readback["committed_offsets"] = committed
    if problems:
        message = f"{spec.client} {spec.phase}: " + "; ".join(problems)
        raise RuntimeError(message)
    return readback


@dataclass
class Run:
    """What the bench started: its broker (stopped by pid in ``cleanup``)."""

    run_dir: Path
    broker: object | None = None
    results: dict = field(default_factory=dict)

    def cleanup(self) -> None:
        from streams import kafka_local

        if self.broker is not None:
            kafka_local.stop(self.broker)


def child_run(spec: Spec) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec.__dict__)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO, timeout=RUN_TIMEOUT_S + 120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        message = f"{spec.client} {spec.phase} exited with {done.returncode}:\n{done.stderr[-3000:]}"
        raise RuntimeError(message)
    return json.loads(lines[-1])


def run_benchmark(args: argparse.Namespace, run: Run) -> dict:
    from fleet import start_broker
    from pipeline_bench import machine_info

    from streams import kafka_local

    results = run.results
    results["machine"] = machine_info()
    results["machine"]["packages"]["confluent-kafka"] = version("confluent-kafka")
    results["machine"]["librdkafka"] = __import__("confluent_kafka").libversion()[0]
    run.broker = start_broker(run.run_dir, args.partitions, args.kafka_heap)
    bootstrap = run.broker.broker_bootstrap
    broker_pid = kafka_local.running_pid(run.broker)
    results["config"] = {
        "records": args.records,
        "runs": args.runs,
        "batch": args.batch,
        "partitions": args.partitions,
        "phases": args.phases,
        "clients": args.clients,
        "kafka_heap": args.kafka_heap,
    }
    tag = uuid.uuid4().hex[:8]
    input_topic = f"kclient{tag}.input"
    create_topics(bootstrap, [input_topic], args.partitions)
    pool = record_pool()
    results["input"] = written = write_input(bootstrap, input_topic, args.records, pool)
    input_ends = end_offsets(bootstrap, input_topic, args.partitions)
    written["ends"] = input_ends
    log.info("input: %s", written)
    runs: dict[str, dict[str, list[dict]]] = {
        phase: {client: [] for client in args.clients if client != "hybrid" or phase in HYBRID_PHASES}
        for phase in args.phases
    }
    results["runs"] = runs
    index = 0
    for round_number in range(args.runs):
        for phase in args.phases:
            for client in runs[phase]:
                index += 1
                name = f"kclient{tag}.r{index}"
                spec = Spec(
                    client=client,
                    phase=phase,
                    bootstrap=bootstrap,
                    broker_pid=broker_pid,
                    input_topic=input_topic,
                    partitions=args.partitions,
                    records=args.records,
                    batch=args.batch,
                    group=f"{name}.group",
                    app_id=name,
                    input_ends=input_ends,
                )
                if phase != "fetch":
                    spec.outputs = [f"{name}.{output}" for output in OUTPUTS]
                    create_topics(bootstrap, spec.outputs, args.partitions)
                result = child_run(spec)
                result["round"] = round_number
                result["readback"] = check(spec, result, written, input_ends)
                if spec.outputs:
                    delete_topics(bootstrap, spec.outputs)  # 300 MB per run otherwise
                runs[phase][client].append(result)
                log.info(
                    "round %d %s %s: %.0f records/s, %.2f CPU-s per 1M, broker %.1f CPU-s, load %.1f",
                    round_number + 1,
                    phase,
                    client,
                    result["records_per_s"],
                    result["cpu_s_per_1m"],
                    result["broker_cpu_s"],
                    result["load_1m_end"],
                )
    results["summary"] = {
        phase: {client: summarize(done) for client, done in by_client.items()} for phase, by_client in runs.items()
    }
    return results


def summarize(done: list[dict]) -> dict:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in done)

    million = 1e6
    return {
        "median_records_per_s": median("records_per_s"),
        "median_cpu_s_per_1m": median("cpu_s_per_1m"),
        "median_user_s_per_1m": statistics.median(r["user_s"] / r["records"] * million for r in done),
        "median_system_s_per_1m": statistics.median(r["system_s"] / r["records"] * million for r in done),
        "median_broker_cpu_s_per_1m": statistics.median(r["broker_cpu_s"] / r["records"] * million for r in done),
        "cpu_s_per_1m_each": [round(r["cpu_s_per_1m"], 2) for r in done],
        "records_per_s_each": [round(r["records_per_s"]) for r in done],
        "load_1m_each": [round(r["load_1m_end"], 1) for r in done],
    }


def table(results: dict) -> str:
    rows = [("phase", "client", "records/s", "CPU-s / 1M", "user / sys", "broker CPU-s / 1M", "CPU-s / 1M, each")]
    for phase, by_client in results["summary"].items():
        for client, s in by_client.items():
            rows.append(
                (
                    phase,
                    client,
                    f"{s['median_records_per_s']:,.0f}",
                    f"{s['median_cpu_s_per_1m']:.2f}",
                    f"{s['median_user_s_per_1m']:.2f} / {s['median_system_s_per_1m']:.2f}",
                    f"{s['median_broker_cpu_s_per_1m']:.2f}",
                    ", ".join(f"{v:.2f}" for v in s["cpu_s_per_1m_each"]),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records per run (and committed input)")
    parser.add_argument("--runs", type=int, default=3, help="runs per client and phase, alternated")
    parser.add_argument("--batch", type=int, default=1_000, help="records per partition's transaction")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument(
        "--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS), help="alternated in this order (hybrid: loop)"
    )
    parser.add_argument("--kafka-heap", default="1g", help="JVM heap of the run's broker (default 1g)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "kclient.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temp run dir (broker logs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        result = run_child(Spec(**json.loads(args.child)))
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    from fleet import bench_main

    return bench_main(args, "kclient", lambda run_dir: Run(run_dir=run_dir), run_benchmark, table)


if __name__ == "__main__":
    sys.exit(main())
