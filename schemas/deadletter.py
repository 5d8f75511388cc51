"""The record written to ``events.deadletter`` for every input record the worker cannot take, and its builder.

``reason`` is one of ``schemas.validation.REASONS`` (the table in ``schemas/CONTRACT.md``), or one of the
two reasons below that are not contract violations. ``streams.error_policy`` decides when to build one.

A dead letter always fits the producer's request limit, whatever its input was: it keeps a prefix of at
most ``MAX_ORIGINAL_BYTES`` of the original value and ``MAX_KEY_BYTES`` of its key, with the whole
value's size and SHA-256 and ``truncated`` set when something was cut, and its other strings are clipped.
The whole Kafka record (key, JSON value with the prefix in base64, ``reason`` header, framing) is then at
most ``MAX_DEADLETTER_RECORD_BYTES``, about two thirds of ``PRODUCER_MAX_REQUEST_BYTES``. Before, a message
between ~786 KB and 1 MiB grew past 1 MiB in base64 and its dead letter could not be produced (issue 10).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

import msgspec

from schemas.events import CONTRACT_VERSION

# The record was read, but a step of its processing raised (a bug). The worker parks the input here with
# the error and goes on, so one bad record never stalls its partition; replay it after a fix.
PROCESSING_FAILED = "processing_failed"
# A ``profile-commands`` record that does not decode (``schemas.errors.UndecodableCommand``).
UNDECODABLE_COMMAND = "undecodable_command"

# aiokafka's default ``max_request_size``, which the worker's and the collector's producers keep: a record
# larger than this (key, value, headers and framing) is refused by ``send``.
PRODUCER_MAX_REQUEST_BYTES = 1_048_576
MAX_ORIGINAL_BYTES = 512 * 1024  # 699,052 bytes of base64; every event within the contract is kept whole
MAX_KEY_BYTES = 1024
MAX_DETAIL_CHARS = 500
MAX_REASON_CHARS = 64
MAX_TOPIC_CHARS = 255  # Kafka allows 249
_JSON_CHAR_BYTES = 6  # the most one character can take in JSON (a control character as \u00XX)
# Field names, quotes, numbers (at most 24 characters each) and the SHA-256 of the value, with room to spare.
_FIXED_JSON_BYTES = 1024
# The ``reason`` header's name and value, and the record's own framing in its batch (a few varints).
_FRAMING_BYTES = 256


def _base64_bytes(size: int) -> int:
    return 4 * ((size + 2) // 3)


MAX_DEADLETTER_VALUE_BYTES = (
    _base64_bytes(MAX_ORIGINAL_BYTES)
    + _base64_bytes(MAX_KEY_BYTES)
    + _JSON_CHAR_BYTES * (MAX_DETAIL_CHARS + MAX_REASON_CHARS + MAX_TOPIC_CHARS)
    + _FIXED_JSON_BYTES
)
MAX_DEADLETTER_RECORD_BYTES = MAX_DEADLETTER_VALUE_BYTES + MAX_KEY_BYTES + 4 * MAX_REASON_CHARS + _FRAMING_BYTES


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Why a message was rejected and where it came from.

    ``original`` holds the message's bytes (base64 in JSON; PII redacted unless configured otherwise), cut
    to ``MAX_ORIGINAL_BYTES``; ``original_size`` and ``original_sha256`` are those of the whole message it
    is a prefix of, so ``truncated`` is ``original_size > len(original)`` (or the key was cut). ``original_key``
    is the message's key (cut to ``MAX_KEY_BYTES``), also the dead letter's own key. Letters written before
    these fields existed decode with their defaults (their ``original`` was whole).
    """

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: float
    original: bytes
    contract_version: int = CONTRACT_VERSION
    original_size: int | None = None
    original_sha256: str = ""
    original_key: bytes | None = None
    original_key_size: int = 0
    truncated: bool = False


class SourceRecord(Protocol):
    """Where a dead letter's input came from (an aiokafka ``ConsumerRecord`` has these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _clipped(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` and made encodable (a lone surrogate, e.g. from an error message about
    undecodable bytes, would make the JSON encoder raise)."""
    return text[:max_chars].encode("utf-8", "backslashreplace").decode("utf-8")[:max_chars]


def clipped_dead_letter(
    *,
    reason: str,
    detail: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    failed_at: float,
    original: bytes,
    key: bytes | None = None,
) -> DeadLetter:
    """The dead letter of the message ``original`` (already redacted if it must be) with key ``key``: every
    field clipped so that its record is at most ``MAX_DEADLETTER_RECORD_BYTES`` (see the module docstring)."""
    kept = original[:MAX_ORIGINAL_BYTES]
    kept_key = None if key is None else key[:MAX_KEY_BYTES]
    return DeadLetter(
        reason=_clipped(reason, MAX_REASON_CHARS),
        detail=_clipped(detail, MAX_DETAIL_CHARS),
        source_topic=_clipped(source_topic, MAX_TOPIC_CHARS),
        source_partition=source_partition,
        source_offset=source_offset,
        failed_at=failed_at,
        original=kept,
        original_size=len(original),
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_key=kept_key,
        original_key_size=0 if key is None else len(key),
        truncated=len(kept) < len(original) or (key is not None and len(key) > MAX_KEY_BYTES),
    )


def dead_letter(
    record: SourceRecord,
    reason: str,
    detail: str,
    *,
    failed_at: float,
    redact: Callable[[bytes], bytes] | None = None,
) -> DeadLetter:
    """The dead letter of ``record``: its bytes (through ``redact`` when given: PII removed) and key, where it
    came from, why and when it was parked, clipped to fit (``clipped_dead_letter``).

    Should ``redact`` itself fail, the original is withheld (empty, ``truncated``, only its size kept) rather
    than kept unredacted, and the failure is appended to ``detail``: parking a record never raises.
    """
    raw = record.value if isinstance(record.value, bytes) else bytes(record.value or b"")
    key = record.key if record.key is None or isinstance(record.key, bytes) else bytes(record.key)
    withheld_size = None
    if redact is not None:
        try:
            raw = redact(raw)
        except Exception as error:  # noqa: BLE001 - any failure of redaction withholds the original
            detail = f"{detail} (original withheld: redaction failed: {type(error).__name__})"
            raw, withheld_size = b"", len(raw)
    letter = clipped_dead_letter(
        reason=reason,
        detail=detail,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        failed_at=failed_at,
        original=raw,
        key=key,
    )
    if withheld_size is not None:
        return msgspec.structs.replace(letter, original_size=withheld_size, original_sha256="", truncated=True)
    return letter


def deadletter_json_schema() -> dict:
    """The JSON Schema of an ``events.deadletter`` record (``schemas/json/deadletter.json``), from ``DeadLetter``."""
    schema = msgspec.json.decode(msgspec.json.encode(msgspec.json.schema(DeadLetter)))  # as the file holds it
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://streamcdp.dev/schemas/v{CONTRACT_VERSION}/deadletter.json",
        "title": "Dead letters (topic events.deadletter)",
        "description": "Generated from schemas/deadletter.py::DeadLetter (deadletter_json_schema); "
        "a unit test keeps this file equal to it.",
        **schema,
    }
