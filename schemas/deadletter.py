"""The record written to ``events.deadletter`` for every inbound message that breaks the contract."""

from __future__ import annotations

import msgspec


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Why a message was rejected and where it came from; ``original`` holds its exact bytes (base64 in JSON)."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: float
    original: bytes
    contract_version: int = 1
