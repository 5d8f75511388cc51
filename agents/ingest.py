"""Ingestion: one inbound Segment Spec message → a command for the profile stage.

Thin shell around ``schemas.validation.decode_event``: it reads the clock and counts. A valid event
becomes ``ApplyEvent`` keyed by its routing id (userId, else anonymousId). The runtime applies it in
place when the producer already keyed and partitioned it that way (``streamcdp produce`` does, as do
forwarders that key by userId with the Java partitioner), else sends it through ``profile-commands``
(``STREAMCDP_INGEST_IN_PLACE``). An invalid message raises ``InvalidEvent``; the runtime's error policy
(``streams.error_policy``) sends it to the dead-letter topic with its reason, its exact bytes and where
it came from, and the stream goes on.
"""

from __future__ import annotations

import time

from agents.tally import EVENTS_INGESTED, EVENTS_UNKNOWN, Tally
from core.privacy import PiiPolicy, redact_event
from schemas.commands import ApplyEvent
from schemas.deadletter import SourceRecord
from schemas.events import OTHER
from schemas.validation import ContractLimits, decode_event


def ingest_record(
    record: SourceRecord, *, limits: ContractLimits, privacy: PiiPolicy, tally: Tally
) -> tuple[bytes, ApplyEvent]:
    """``(routing key, ApplyEvent)`` for a valid event; raises ``InvalidEvent`` for an invalid one."""
    raw = record.value if isinstance(record.value, bytes) else bytes(record.value or b"")
    # PII is hashed or dropped before the event is routed, re-keyed or stored (core.privacy).
    validated = redact_event(decode_event(raw, now=time.time(), limits=limits), privacy)
    tally.add(EVENTS_INGESTED, validated.family)
    if validated.family == OTHER:
        tally.add(EVENTS_UNKNOWN)
    return validated.routing_id.encode(), ApplyEvent(event=validated)
