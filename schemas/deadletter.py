"""The record written to ``events.deadletter`` for every input record the worker cannot take, and its builder.

``reason`` is one of ``schemas.validation.REASONS`` (the table in ``schemas/CONTRACT.md``), or one of the
two reasons below that are not contract violations. ``streams.error_policy`` decides when to build one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from schemas.events import CONTRACT_VERSION

# The record was read, but a step of its processing raised (a bug). The worker parks the input here with
# the error and goes on, so one bad record never stalls its partition; replay it after a fix.
PROCESSING_FAILED = "processing_failed"
# A ``profile-commands`` record that does not decode (``schemas.errors.UndecodableCommand``).
UNDECODABLE_COMMAND = "undecodable_command"

MAX_DETAIL_CHARS = 500


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Why a message was rejected and where it came from; ``original`` holds its exact bytes (base64 in JSON)."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: float
    original: bytes
    contract_version: int = CONTRACT_VERSION


class SourceRecord(Protocol):
    """Where a dead letter's input came from (an aiokafka ``ConsumerRecord`` has these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def dead_letter(
    record: SourceRecord,
    reason: str,
    detail: str,
    *,
    failed_at: float,
    redact: Callable[[bytes], bytes] | None = None,
) -> DeadLetter:
    """The dead letter of ``record``: its bytes (through ``redact`` when given: PII removed), where it came
    from, why and when it was parked."""
    raw = record.value if isinstance(record.value, bytes) else bytes(record.value or b"")
    if redact is not None:
        raw = redact(raw)
    return DeadLetter(
        reason=reason,
        detail=detail[:MAX_DETAIL_CHARS],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        failed_at=failed_at,
        original=raw,
    )
