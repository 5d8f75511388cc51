"""Ingestion: one inbound Segment Spec message → a command for the profile stage, or a dead letter.

Thin shell around ``schemas.validation.decode_event``: it reads the clock and counts. A valid event
becomes ``ApplyEvent`` keyed by its routing id (userId, else anonymousId). The runtime applies it in
place when the producer already keyed and partitioned it that way (``streamcdp produce`` does, as do
forwarders that key by userId with the Java partitioner), else sends it through ``profile-commands``
(``STREAMCDP_INGEST_IN_PLACE``). An invalid message goes to the dead-letter topic with its reason, its
exact bytes and where it came from; the stream goes on.
"""

from __future__ import annotations

import logging
import time

from aiokafka.structs import ConsumerRecord

from core.errors import InvalidEvent
from core.privacy import PiiPolicy, redact_event, redact_payload
from schemas.commands import ApplyEvent
from schemas.deadletter import DeadLetter
from schemas.events import OTHER
from schemas.validation import ContractLimits, decode_event
from streams import metrics
from streams.codecs import encode_json
from streams.outbox import Outbox
from streams.topics import TopicNames

log = logging.getLogger(__name__)


def ingest_record(
    record: ConsumerRecord, *, limits: ContractLimits, privacy: PiiPolicy, topics: TopicNames, outbox: Outbox
) -> tuple[bytes, ApplyEvent] | None:
    """``(routing key, ApplyEvent)`` for a valid event; None after dead-lettering an invalid one."""
    raw = record.value if isinstance(record.value, bytes) else bytes(record.value or b"")
    try:
        validated = decode_event(raw, now=time.time(), limits=limits)
    except InvalidEvent as exc:
        dead = DeadLetter(
            reason=exc.reason,
            detail=exc.detail,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            failed_at=time.time(),
            original=redact_payload(raw, privacy),
        )
        outbox.send(topics.deadletter, record.key, encode_json(dead), [("reason", exc.reason.encode())])
        metrics.tally.add(metrics.events_deadlettered, exc.reason)
        log.debug("dead-lettered %s:%s@%s: %s", record.topic, record.partition, record.offset, exc)
        return None
    validated = redact_event(validated, privacy)
    metrics.tally.add(metrics.events_ingested, validated.family)
    if validated.family == OTHER:
        metrics.tally.add(metrics.events_unknown)
    return validated.routing_id.encode(), ApplyEvent(event=validated)
