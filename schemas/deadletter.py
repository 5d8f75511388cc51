"""The record written to ``events.deadletter`` for every inbound message that breaks the contract.

``reason`` is one of ``schemas.validation.REASONS`` (the table in ``schemas/CONTRACT.md``).
"""

from __future__ import annotations

import msgspec

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
