"""Dead letters always fit the producer's request limit (issue 10), whatever the record they park.

Each letter is built by the real error policy (``streams.error_policy``) and measured the way aiokafka's
``send`` measures it before refusing a record: key, value and headers in a record batch.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import random
from pathlib import Path

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord

from agents.outbox import Outbox
from agents.tally import Tally
from core.privacy import PiiPolicy, redact_payload
from schemas.deadletter import (
    MAX_DEADLETTER_RECORD_BYTES,
    MAX_DETAIL_CHARS,
    MAX_KEY_BYTES,
    MAX_ORIGINAL_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    DeadLetter,
    clipped_dead_letter,
    dead_letter,
    deadletter_json_schema,
)
from schemas.errors import InvalidEvent
from streams.error_policy import ProcessingErrors

DEADLETTER = "t1.events.deadletter"
NOW = 1_764_000_000.0
KIB = 1024
MIB = 1024 * KIB
JSON_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"


def consumer_record(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> ConsumerRecord:
    size = len(value or b"")
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, len(key or b""), size, [])


def garbage(size: int, seed: int) -> bytes:
    """``size`` random bytes that are neither UTF-8 nor JSON (a 0xff byte every 100)."""
    data = bytearray(random.Random(seed).randbytes(size))
    data[::100] = b"\xff" * len(data[::100])
    return bytes(data)


def park(value: bytes | None, key: bytes | None = b"k-1", detail: str = "bad", *, redact=None) -> tuple:
    """The (key, value, headers) the error policy sends for ``value`` and its record size as aiokafka counts it."""
    errors = ProcessingErrors(DEADLETTER, Outbox(), Tally(), clock=lambda: NOW, redact=redact)
    record = consumer_record("t1.events.purchase", 3, 1234, key, value)
    errors.on_processing_error(InvalidEvent("not_json", detail), record)
    [(topic, letter_key, letter_value, headers)] = errors.outbox.records
    assert topic == DEADLETTER
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(letter_key, letter_value, headers)
    return letter_key, letter_value, headers, size


def test_the_bound_is_the_producers_limit_with_a_margin_and_aiokafkas_default():
    # The workers' and the collector's producers leave max_request_size at aiokafka's default.
    default = inspect.signature(AIOKafkaProducer.__init__).parameters["max_request_size"].default
    assert default == PRODUCER_MAX_REQUEST_BYTES
    assert MAX_DEADLETTER_RECORD_BYTES <= 0.7 * PRODUCER_MAX_REQUEST_BYTES


SIZES = {"0 B": 0, "1 KB": 1000, "786 KB": 786 * 1000, "1 MiB": MIB, "5 MiB": 5 * MIB}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_a_letter_of_any_original_fits_and_says_what_it_cut(size: int):
    original = garbage(size, seed=size)
    key, value, headers, record_size = park(original)
    assert record_size <= MAX_DEADLETTER_RECORD_BYTES
    letter = msgspec.json.decode(value, type=DeadLetter)
    assert letter.original == original[:MAX_ORIGINAL_BYTES]
    assert letter.original_size == size
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert letter.truncated is (size > MAX_ORIGINAL_BYTES)
    assert (key, letter.original_key, letter.original_key_size) == (b"k-1", b"k-1", 3)
    assert headers == [("reason", b"not_json")]


def test_the_largest_letter_fits_huge_key_detail_and_control_characters():
    """Every clipped field at its worst: each detail character escaped to six bytes, a 5 MiB key."""
    key, value, headers, record_size = park(garbage(5 * MIB, 1), key=garbage(5 * MIB, 2), detail="\x01" * 10**6)
    assert record_size <= MAX_DEADLETTER_RECORD_BYTES < PRODUCER_MAX_REQUEST_BYTES
    letter = msgspec.json.decode(value, type=DeadLetter)
    assert len(key) == len(letter.original_key) == MAX_KEY_BYTES and letter.original_key_size == 5 * MIB
    assert letter.detail == "\x01" * MAX_DETAIL_CHARS and letter.truncated


def test_a_letter_built_directly_is_bounded_in_every_field():
    letter = clipped_dead_letter(
        reason="r" * 10_000,
        detail="\ud800" * 10_000,  # a lone surrogate (an error message about undecodable bytes) must not raise
        source_topic="\x02" * 10_000,
        source_partition=2**31 - 1,
        source_offset=2**63 - 1,
        failed_at=-1.7976931348623157e308,
        original=garbage(2 * MIB, 3),
        key=b"k" * 10_000,
    )
    value = orjson.dumps(msgspec.to_builtins(letter))
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(letter.original_key, value, [("reason", b"r" * 64)])
    assert size <= MAX_DEADLETTER_RECORD_BYTES


def test_a_small_letter_keeps_the_whole_message_and_a_tombstone_an_empty_one():
    _, value, _, _ = park(b"{not json", key=None)
    letter = orjson.loads(value)
    assert base64.b64decode(letter["original"]) == b"{not json" and letter["truncated"] is False
    assert letter["original_key"] is None and letter["original_key_size"] == 0
    _, value, _, _ = park(None)
    assert orjson.loads(value)["original_size"] == 0


def test_a_redacted_original_is_clipped_after_redaction():
    policy = PiiPolicy(hash_key=b"unit")
    message = orjson.dumps({"type": "identify", "traits": {"email": "a@b.example", "note": "x" * (MIB)}})
    _, value, _, record_size = park(message, redact=lambda raw: redact_payload(raw, policy))
    letter = msgspec.json.decode(value, type=DeadLetter)
    redacted = redact_payload(message, policy)
    assert b"a@b.example" not in letter.original and letter.original == redacted[:MAX_ORIGINAL_BYTES]
    assert letter.original_size == len(redacted) and letter.truncated
    assert record_size <= MAX_DEADLETTER_RECORD_BYTES


def test_a_failing_redaction_withholds_the_original_instead_of_raising():
    def broken(raw: bytes) -> bytes:
        message = "too deep"
        raise RecursionError(message)

    letter = dead_letter(
        consumer_record("t", 0, 1, None, b'{"email": "a@b.example"}'), "not_json", "d", failed_at=NOW, redact=broken
    )
    assert (letter.original, letter.original_size, letter.truncated) == (b"", 24, True)
    assert "redaction failed: RecursionError" in letter.detail


def test_the_schema_file_is_the_generated_schema_and_a_letter_written_before_decodes():
    assert orjson.loads((JSON_DIR / "deadletter.json").read_bytes()) == deadletter_json_schema(), (
        "regenerate: schemas/json/deadletter.json from schemas.deadletter.deadletter_json_schema()"
    )
    older = {
        "reason": "not_json",
        "detail": "d",
        "source_topic": "t",
        "source_partition": 0,
        "source_offset": 1,
        "failed_at": NOW,
        "original": base64.b64encode(b"x").decode(),
        "contract_version": 1,
    }
    letter = msgspec.json.decode(orjson.dumps(older), type=DeadLetter)
    assert (letter.original, letter.truncated, letter.original_size) == (b"x", False, None)
