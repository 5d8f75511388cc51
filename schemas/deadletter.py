"""The record written to ``events.deadletter`` for every inbound message that breaks the contract.

``reason`` is one of ``schemas.validation.REASONS`` (the table in ``schemas/CONTRACT.md``).
"""

from __future__ import annotations

import msgspec

from core.privacy import PiiPolicy, redact_payload
from schemas.events import CONTRACT_VERSION


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


# Not a contract violation: the event was valid but applying it raised (a bug). The worker parks the input
# here with the error and goes on, so one bad record never stalls its partition; replay it after a fix.
PROCESSING_FAILED = "processing_failed"


def processing_failure(record, error: BaseException, *, failed_at: float, privacy: PiiPolicy) -> DeadLetter:
    """The dead letter for an input (``topic``, ``partition``, ``offset``, ``value``) whose processing raised."""
    raw = record.value if isinstance(record.value, bytes) else bytes(record.value or b"")
    return DeadLetter(
        reason=PROCESSING_FAILED,
        detail=f"{type(error).__name__}: {error}"[:500],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        failed_at=failed_at,
        original=redact_payload(raw, privacy),
    )
