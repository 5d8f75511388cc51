"""``streams.error_policy``: every failing record becomes one dead letter counted by reason, or stops the worker."""

from __future__ import annotations

import base64
import time

import msgspec
import orjson
import pytest
from fake_kafka import consumer_record

from agents.ingest import ingest_record
from agents.outbox import Outbox
from agents.tally import EVENTS_DEADLETTERED, Tally
from core.privacy import PiiPolicy
from schemas.deadletter import PROCESSING_FAILED, UNDECODABLE_COMMAND, DeadLetter
from schemas.errors import InvalidEvent, UndecodableCommand
from schemas.validation import REASONS, ContractLimits
from streams.error_policy import ProcessingErrors

DEADLETTER = "t1.events.deadletter"
NOW = 1_764_000_000.0


def policy() -> ProcessingErrors:
    return ProcessingErrors(DEADLETTER, Outbox(), Tally(), clock=lambda: NOW)


def payload(**fields: object) -> bytes:
    base = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": time.time() - 60,
        "properties": {"product_id": "p-1", "price": 10.5},
    }
    base.update(fields)
    return orjson.dumps({key: value for key, value in base.items() if value is not ...})


INVALID = [
    ("not_json", b"{not json"),
    ("not_utf8", b"\xff\xfe"),
    ("not_an_object", b"[]"),
    ("not_json", None),  # a tombstone on an inbound topic
    ("missing_field", payload(messageId=...)),
    ("missing_identity", payload(userId=...)),
    ("timestamp_skew", payload(timestamp=time.time() - 1000 * 86400)),
]


@pytest.mark.parametrize(("reason", "raw"), INVALID, ids=[f"{case[0]}-{i}" for i, case in enumerate(INVALID)])
def test_an_invalid_message_is_dead_lettered_with_its_reason_bytes_and_origin(reason: str, raw: bytes | None):
    errors = policy()
    record = consumer_record("t1.events.purchase", 3, 1234, b"k-1", raw)
    with pytest.raises(InvalidEvent) as raised:
        ingest_record(record, limits=ContractLimits(), privacy=PiiPolicy(hash_key=b"unit"), tally=Tally())
    errors.on_processing_error(raised.value, record)
    [(topic, key, value, headers)] = errors.outbox.records
    assert (topic, key, headers) == (DEADLETTER, b"k-1", [("reason", reason.encode())])
    dead = orjson.loads(value)
    assert dead["reason"] == reason and reason in REASONS
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == ("t1.events.purchase", 3, 1234)
    assert base64.b64decode(dead["original"]) == (raw or b"")
    assert dead["failed_at"] == NOW
    assert isinstance(dead["detail"], str)
    assert msgspec.json.decode(value, type=DeadLetter).original == (raw or b"")  # the schema reads it back
    counts, _ = errors.tally.take()
    assert counts == {(EVENTS_DEADLETTERED, (reason,)): 1}


def test_an_undecodable_command_is_parked_under_its_own_reason():
    errors = policy()
    record = consumer_record("t1.streamcdp.profile-commands", 0, 5, b"u-1", b"\x93junk")
    errors.on_processing_error(UndecodableCommand("expected a tagged struct"), record)
    [letter] = [orjson.loads(value) for _, _, value, _ in errors.outbox.records]
    assert (letter["reason"], letter["detail"]) == (UNDECODABLE_COMMAND, "expected a tagged struct")
    assert errors.tally.take()[0] == {(EVENTS_DEADLETTERED, (UNDECODABLE_COMMAND,)): 1}


def test_any_other_exception_is_parked_as_processing_failed_with_the_error_in_the_detail():
    errors = policy()
    record = consumer_record("t1.events.clickstream", 1, 9, b"u-1", payload())
    errors.on_processing_error(TypeError("unhashable type: 'list'" + "x" * 1000), record)
    [letter] = [orjson.loads(value) for _, _, value, _ in errors.outbox.records]
    assert letter["reason"] == PROCESSING_FAILED
    assert letter["detail"].startswith("TypeError: unhashable type") and len(letter["detail"]) == 500


def test_a_failure_without_a_record_is_counted_and_nothing_is_sent():
    errors = policy()
    errors.on_processing_error(ValueError("boom"), None, b"u-1")
    assert len(errors.outbox) == 0
    assert errors.tally.take()[0] == {(EVENTS_DEADLETTERED, (PROCESSING_FAILED,)): 1}


def test_a_memory_error_stops_instead_of_parking():
    errors = policy()
    record = consumer_record("t1.events.clickstream", 1, 9, b"u-1", payload())
    with pytest.raises(MemoryError):
        errors.on_processing_error(MemoryError(), record)
    assert len(errors.outbox) == 0 and errors.tally.take()[0] == {}
