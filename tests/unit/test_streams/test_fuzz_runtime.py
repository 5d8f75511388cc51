"""Fuzz: no record stops the stream (issue 10, "no record able to stop it").

Seeded random and mutated records — random bytes, truncated JSON, a wrong type in every field, deep nesting,
900 KB values, huge arrays, unknown types, bytes that are not UTF-8, tombstones, megabyte keys — interleaved
with valid events of a few customers are pushed through the real runtime and ``ProfilePipeline`` (with the
default segment and trigger definitions) over the fakes of ``fake_kafka``. The validator is the oracle of
what is valid (and of each reason); the test asserts what the stream does with it:

- the run ends only because the input is drained, every input offset is committed to the end;
- every invalid record is on the dead-letter topic once, with the validator's reason, and nothing else is;
- every valid event is applied exactly once (``event_count`` per customer is the number of its valid events);
- every record sent (dead letters, triggers, commands, changelog) fits the producer's request limit.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import msgspec
import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord, TopicPartition
from fake_kafka import FakeConsumer, FakeProducer, FakeRestoreConsumer, consumer_record

from agents.outbox import Outbox
from agents.pipeline import ProfilePipeline
from agents.tables import PROFILES
from agents.tally import Tally
from core.privacy import PiiPolicy
from schemas.deadletter import MAX_DEADLETTER_RECORD_BYTES, PRODUCER_MAX_REQUEST_BYTES, DeadLetter
from schemas.errors import InvalidEvent
from schemas.validation import REASONS, ContractLimits, decode_event
from streams.assignor import CoPartitionAssignor
from streams.partitioning import owning_partition
from streams.runtime import Runtime
from streams.settings import Settings
from streams.stage_config import stage_policy
from streams.topics import topic_names

PARTITIONS = 4
SEED = 20_261_202
VALID_EVENTS = 300
BAD_RECORDS = 220
CUSTOMERS = [f"user-{n}" for n in range(12)] + [
    "ünïcode-ü",
    "x" * 128,
    "".join(chr(0x1F600 + i % 64) for i in range(128)),
]
WRONG_VALUES = [None, True, 0, -1, 1.5, 10**30, "", "s", [], [1, [2]], {}, {"a": {"b": []}}]


def hostile(rng: random.Random, chars: int) -> str:
    """A string of ``chars`` characters of 4 UTF-8 bytes each (valid, but as large as the contract allows)."""
    return "".join(chr(rng.randrange(0x10000, 0x10FFFF)) for _ in range(chars))


def valid_event(rng: random.Random, n: int, user: str, now: float) -> dict:
    """A valid message of one of the kinds the profile stores something of (only a userId: no links); one in
    five carries the longest ids (128 characters of 4 bytes) and texts of 10,000 such characters."""
    product = {"product_id": f"p-{rng.randrange(40)}", "category": rng.choice(["boots", "tents", "ropes"])}
    if rng.random() < 0.2:
        product = {"product_id": hostile(rng, 128), "category": hostile(rng, 128), "name": hostile(rng, 10_000)}
    kind = rng.randrange(6)
    message: dict = {"type": "track", "messageId": f"m-{n}", "userId": user, "timestamp": now - rng.uniform(1, 3600)}
    if kind == 0:
        message |= {"event": "Product Viewed", "properties": {**product, "price": 12.5}}
    elif kind == 1:
        message |= {"event": "Product Added", "properties": {"name": "Boot", **product, "price": 9, "quantity": 2}}
    elif kind == 2:
        order = {"order_id": f"o-{n}", "total": 99.5, "currency": "eur", "products": [product]}
        message |= {"event": "Order Completed", "properties": order}
    elif kind == 3:
        message |= {"type": "identify", "traits": {"city": "Berlin", "plan": "pro", "age": 40}}
    elif kind == 4:
        message |= {"type": "page", "name": "Home", "properties": {"path": "/"}}
    else:
        message |= {"event": "Message Opened", "properties": {"channel": "email"}}
    return message


def wrong_type(rng: random.Random, message: dict) -> dict:
    """``message`` with one field (top level, or one of its properties or traits) set to a value of any type."""
    mutated = orjson.loads(orjson.dumps(message))
    inner = [name for name in ("properties", "traits") if isinstance(mutated.get(name), dict) and mutated[name]]
    target = mutated[rng.choice(inner)] if inner and rng.random() < 0.5 else mutated
    target[rng.choice(sorted(target))] = rng.choice(WRONG_VALUES)
    return mutated


def nested(depth: int) -> object:
    value: object = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


def bad_record(rng: random.Random, n: int, now: float) -> tuple[bytes | None, bytes | None]:
    """(key, value) of one damaged or hostile record; some are valid after all (the validator decides)."""
    base = valid_event(rng, n, rng.choice(CUSTOMERS), now)
    key = base["userId"].encode()
    raw = orjson.dumps(base)
    kind = rng.randrange(13)
    if kind == 0:
        return key, rng.randbytes(rng.randrange(0, 3000))
    if kind == 1:
        return key, raw[: rng.randrange(len(raw))]
    if kind in (2, 3, 4):
        return key, json.dumps(wrong_type(rng, base)).encode()  # also integers past 64 bits
    if kind == 5:
        depth = rng.choice([17, 200, 5000])
        if depth > 200:  # past any parser's recursion limit: raw brackets
            return key, raw[:-1] + b',"properties":' + b"[" * depth + b"]" * depth + b"}"
        return key, orjson.dumps(base | {"properties": {"deep": nested(depth)}})
    if kind == 6:
        return key, orjson.dumps(base | {"properties": {"blob": "x" * 900_000}})
    if kind == 7:
        return key, orjson.dumps(base | {"properties": {"products": list(range(rng.choice([1001, 100_000])))}})
    if kind == 8:
        return key, orjson.dumps(base | {"type": rng.choice(["delete", "", "TRACK", 5, None, ["track"]])})
    if kind == 9:
        cut = rng.randrange(1, len(raw))
        return key, raw[:cut] + b"\xff\xfe" + raw[cut:]
    if kind == 10:
        return key, None  # a tombstone on an inbound topic
    if kind == 11:
        return rng.randbytes(1024 * 1024), rng.randbytes(rng.choice([10, 786 * 1000, 5 * 1024 * 1024]))
    return key, orjson.dumps([base, base]) if rng.random() < 0.5 else b'"just a string"'


def build_runtime(tmp_path: Path) -> Runtime:
    settings = Settings(
        topic_prefix="fz.",
        app_id="fuzz",
        data_dir=tmp_path,
        topic_partitions=PARTITIONS,
        flush_max_records=64,  # several checkpoints during the run
        flush_max_dirty_keys=48,  # and some between two runs of a fetch
        # What is checked here is each record's handling, not the commit protocol (one plain producer keeps
        # every output readable; test_runtime_processing.py runs the per-partition transactions).
        processing_guarantee="at_least_once",
    )
    outbox = Outbox()
    stages = ProfilePipeline(
        stage_policy(settings),
        topics=topic_names(settings),
        limits=ContractLimits(),
        privacy=PiiPolicy(hash_key=b"unit"),
        outbox=outbox,
        tally=Tally(),
    )
    calls: list[str] = []
    return Runtime(
        settings,
        stages,
        outbox=outbox,
        producer=FakeProducer(calls),
        consumer=FakeConsumer(calls, PARTITIONS),
        restore_consumer=FakeRestoreConsumer(calls, topic_names(settings).state_changelog(settings.app_id)),
        assignor=CoPartitionAssignor("http://127.0.0.1:1"),
    )


def records_of(rng: random.Random, runtime: Runtime, now: float) -> list[tuple[TopicPartition, ConsumerRecord]]:
    """Valid events keyed and partitioned by their routing id (as ``produce`` sends them) and bad records
    anywhere, shuffled together; offsets counted per partition."""
    inputs: list[tuple[int, bytes | None, bytes | None]] = []
    for n in range(VALID_EVENTS):
        message = valid_event(rng, n, rng.choice(CUSTOMERS), now)
        key = message["userId"].encode()
        inputs.append((owning_partition(key, PARTITIONS), key, orjson.dumps(message)))
    for n in range(VALID_EVENTS, VALID_EVENTS + BAD_RECORDS):
        key, value = bad_record(rng, n, now)
        inputs.append((rng.randrange(PARTITIONS), key, value))
    rng.shuffle(inputs)
    offsets: Counter[TopicPartition] = Counter()
    records = []
    for partition, key, value in inputs:
        tp = TopicPartition(runtime.topics.inbound(rng.choice(["clickstream", "purchase", "customer"])), partition)
        records.append((tp, consumer_record(tp.topic, partition, offsets[tp], key, value)))
        offsets[tp] += 1
    return records


def batches_of(records: list[tuple[TopicPartition, ConsumerRecord]], size: int) -> list[dict]:
    batches = []
    for start in range(0, len(records), size):
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp, record in records[start : start + size]:
            batch.setdefault(tp, []).append(record)
        batches.append(batch)
    return batches


def oracle(record: ConsumerRecord, now: float) -> tuple[str | None, str | None]:
    """(reason, routing id) the contract gives ``record``: a reason when it is invalid, else its customer."""
    try:
        event = decode_event(record.value or b"", now=now, limits=ContractLimits())
    except InvalidEvent as error:
        return error.reason, None
    return None, event.routing_id


def record_size(key: bytes | None, value: bytes | None, headers=()) -> int:
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))


@pytest.mark.parametrize("seed", [SEED, SEED + 1])
async def test_no_record_stops_the_stream_and_each_is_parked_or_applied_once(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    now = time.time()
    runtime = build_runtime(tmp_path)
    consumer, producer = runtime.consumer, runtime.producer
    await runtime.start()
    await runtime.on_partitions_assigned(
        [TopicPartition(topic, p) for topic in runtime.source_topics for p in range(PARTITIONS)]
    )
    records = records_of(rng, runtime, now)
    consumer.batches.extend(batches_of(records, size=25))
    consumer.when_drained = runtime.stop
    await runtime.run()  # raises if any record stopped the stream

    # A valid event keyed by another id than its routing id was re-keyed through profile-commands: apply
    # those too (what the worker holding their partition does), until nothing is forwarded any more.
    forwarded_seen = 0
    command_offsets: Counter[int] = Counter()
    while True:
        await runtime.checkpoint.commit(runtime.stores.values())
        forwarded = [sent for sent in producer.sent if sent[0] == runtime.topics.profile_commands]
        if len(forwarded) == forwarded_seen:
            break
        for topic, key, value in forwarded[forwarded_seen:]:
            partition = owning_partition(key, PARTITIONS)
            command = consumer_record(topic, partition, command_offsets[partition], key, value)
            command_offsets[partition] += 1
            runtime.process(TopicPartition(topic, partition), [command])
        forwarded_seen = len(forwarded)

    expected_reasons: dict[tuple[str, int, int], str] = {}
    applied: Counter[str] = Counter()
    for tp, record in records:
        reason, customer = oracle(record, now)
        if reason is not None:
            expected_reasons[(tp.topic, tp.partition, record.offset)] = reason
        else:
            applied[customer] += 1
    assert len(expected_reasons) > BAD_RECORDS * 3 // 4 and sum(applied.values()) >= VALID_EVENTS

    # Every input offset is committed, to the end of each partition.
    ends: dict[TopicPartition, int] = {}
    for tp, record in records:
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    assert {tp: consumer.committed.get(tp) for tp in ends} == ends

    # Every invalid record is parked once with the contract's reason; nothing else is parked.
    letters = [(key, value) for topic, key, value in producer.sent if topic == runtime.topics.deadletter]
    parked: dict[tuple[str, int, int], str] = {}
    for key, value in letters:
        letter = msgspec.json.decode(value, type=DeadLetter)
        assert record_size(key, value, [("reason", letter.reason.encode())]) <= MAX_DEADLETTER_RECORD_BYTES
        source = (letter.source_topic, letter.source_partition, letter.source_offset)
        assert source not in parked, source
        parked[source] = letter.reason
    assert parked == expected_reasons
    assert set(parked.values()) <= set(REASONS)  # none is processing_failed: no valid record met a bug

    # Every valid event is applied exactly once, to its customer's profile.
    counts = {}
    for customer in applied:
        store = runtime.stores[owning_partition(customer.encode(), PARTITIONS)]
        profile = store.get(PROFILES, customer.encode())
        counts[customer] = 0 if profile is None else profile.event_count
    assert counts == dict(applied)

    # Every changelog record fits the producer's request limit with room to spare.
    changelog = [entry for entries in producer.changelog.values() for entry in entries]
    assert changelog and max(record_size(key, value) for key, value in changelog) < PRODUCER_MAX_REQUEST_BYTES * 3 // 4
    assert max(record_size(key, value) for topic, key, value in producer.sent) < PRODUCER_MAX_REQUEST_BYTES * 3 // 4
    await runtime.close()
