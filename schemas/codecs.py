"""Byte encodings of table values and outbound records.

Tables hold msgpack (msgspec) bytes: compact, fast, and tolerant of added fields, so a profile written
by an older worker decodes in a newer one. Outbound topics carry JSON for consumers in any language.
The tables that use these codecs are declared in ``agents.tables``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

_msgpack_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()


def encode_msgpack(record: object) -> bytes:
    """Any msgspec Struct / builtin → msgpack bytes for a table value."""
    return _msgpack_encoder.encode(record)


def msgpack_decoder(record_type: type) -> Callable[[bytes], Any]:
    """msgpack bytes → a ``record_type`` (one decoder built per type, reused for every value)."""
    return msgspec.msgpack.Decoder(record_type).decode


def encode_json(record: object) -> bytes:
    """Any msgspec Struct / builtin → JSON bytes for an outbound topic or an HTTP answer."""
    return _json_encoder.encode(record)


def encode_float(value: float) -> bytes:
    return repr(float(value)).encode()


def decode_float(raw: bytes) -> float:
    return float(raw)
