"""Ingestion: inbound Segment Spec bytes → validated events for the profile stage, or dead letters.

Thin shell around ``schemas.validation.decode_event``: it reads the clock, sends, and counts. A valid
event goes to ``profile-commands`` keyed by its routing id, unless the producer already keyed and
partitioned it that way (``streamcdp produce`` does, as do forwarders that key by userId with the Java
partitioner): then it is applied in place, in the partition that owns it, saving a produce, a consume
and a second pass through faust per event (``STREAMCDP_INGEST_IN_PLACE``).
"""

from __future__ import annotations

import logging
import time

from agents.profiles import handle_command
from core.errors import InvalidEvent
from schemas.commands import ApplyEvent, encode_command
from schemas.deadletter import DeadLetter
from schemas.events import OTHER
from schemas.validation import decode_event
from streams import metrics
from streams.app import app, deadletter_topic, inbound_topic, profile_commands_topic, settings
from streams.codecs import encode_json
from streams.partitioning import InPlaceRouting
from streams.produce import contract_limits

log = logging.getLogger(__name__)

limits = contract_limits(settings)
in_place = (
    InPlaceRouting(settings.topic_partitions, lambda topic: app.consumer.topic_partitions(topic))
    if settings.ingest_in_place else None
)


@app.agent(inbound_topic)
async def ingest_events(stream):
    async for event in stream.events():
        message = event.message
        raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        try:
            validated = decode_event(raw, now=time.time(), limits=limits)
        except InvalidEvent as exc:
            record = DeadLetter(
                reason=exc.reason, detail=exc.detail, source_topic=message.topic,
                source_partition=message.partition, source_offset=message.offset,
                failed_at=time.time(), original=raw,
            )
            await deadletter_topic.send(key=message.key, value=encode_json(record),
                                        headers={"reason": exc.reason.encode()})
            metrics.events_deadlettered.labels(exc.reason).inc()
            log.debug("dead-lettered %s:%s@%s: %s", message.topic, message.partition, message.offset, exc)
            continue
        metrics.events_ingested.labels(validated.family).inc()
        if validated.family == OTHER:
            metrics.events_unknown.inc()
        key = validated.routing_id.encode()
        command = ApplyEvent(event=validated)
        if in_place is not None and in_place.applies(message.topic, message.partition, message.key, key):
            await handle_command(key, command, message.partition)
        else:
            await profile_commands_topic.send(key=key, value=encode_command(command))
