"""Ingestion hands on no raw personal data: the command it routes and the dead letter it writes carry the
PII fields hashed or dropped (``core.privacy``), whatever topic the event goes to next."""

from __future__ import annotations

import base64
import time

import orjson
from aiokafka.structs import ConsumerRecord

from agents.ingest import ingest_record
from core.privacy import PiiPolicy, hash_identifier
from schemas.validation import ContractLimits
from streams.outbox import Outbox
from streams.topics import TopicNames

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
    routed = ingest_record(record(payload), limits=ContractLimits(), privacy=PRIVACY, topics=TOPICS, outbox=Outbox())
    assert routed is not None
    traits = routed[1].event.traits
    assert traits == {
        "email_hash": hash_identifier("ann@example.com", KEY),
        "phone_hash": hash_identifier("+4915100000042", KEY),
    }


def test_a_dead_letter_keeps_the_original_without_its_pii_fields() -> None:
    payload = {"type": "identify", "messageId": "m-1", "userId": "u-1", "timestamp": "never", "traits": TRAITS}
    outbox = Outbox()
    assert (
        ingest_record(record(payload), limits=ContractLimits(), privacy=PRIVACY, topics=TOPICS, outbox=outbox) is None
    )
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
