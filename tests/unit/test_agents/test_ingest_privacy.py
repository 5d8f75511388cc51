"""Ingestion hands on no raw personal data: the command it routes and the dead letter it writes carry the
PII fields hashed or dropped (``core.privacy``), whatever topic the event goes to next."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from agents.ingest import ingest_record
from agents.outbox import Outbox
from agents.tally import Tally
from core.privacy import PiiPolicy, hash_identifier, redact_payload
from schemas.errors import InvalidEvent
from schemas.topics import TopicNames
from schemas.validation import ContractLimits
from streams.error_policy import ProcessingErrors

KEY = b"test-secret"
PRIVACY = PiiPolicy(hash_key=KEY)
TOPICS = TopicNames(prefix="t1.")
TRAITS = {"email": "ann@example.com", "phone": "+4915100000042", "given_name": "Ann", "postcode": "10115"}


def record(payload: dict) -> ConsumerRecord:
    value = orjson.dumps(payload)
    return ConsumerRecord(
        topic="t1.events.customer",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"anything",
        value=value,
        checksum=None,
        serialized_key_size=8,
        serialized_value_size=len(value),
        headers=(),
    )


def test_the_routed_event_carries_hashes_only() -> None:
    payload = {"type": "identify", "messageId": "m-1", "userId": "u-1", "timestamp": time.time(), "traits": TRAITS}
    _, command = ingest_record(record(payload), limits=ContractLimits(), privacy=PRIVACY, tally=Tally())
    traits = command.event.traits
    assert traits == {
        "email_hash": hash_identifier("ann@example.com", KEY),
        "phone_hash": hash_identifier("+4915100000042", KEY),
    }


def test_a_dead_letter_keeps_the_original_without_its_pii_fields() -> None:
    payload = {"type": "identify", "messageId": "m-1", "userId": "u-1", "timestamp": "never", "traits": TRAITS}
    outbox = Outbox()
    errors = ProcessingErrors(TOPICS.deadletter, outbox, Tally(), redact=lambda raw: redact_payload(raw, PRIVACY))
    bad = record(payload)
    with pytest.raises(InvalidEvent) as raised:
        ingest_record(bad, limits=ContractLimits(), privacy=PRIVACY, tally=Tally())
    errors.on_processing_error(raised.value, bad)
    dead = orjson.loads(outbox.records[0][2])
    assert dead["reason"] == "bad_timestamp"
    original = orjson.loads(base64.b64decode(dead["original"]))
    assert original["traits"] == {
        "email_hash": hash_identifier("ann@example.com", KEY),
        "phone_hash": hash_identifier("+4915100000042", KEY),
    }
    assert {key: original[key] for key in ("type", "messageId", "userId", "timestamp")} == {
        "type": "identify",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": "never",
    }
