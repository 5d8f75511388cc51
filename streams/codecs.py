"""Byte encodings of table values and outbound records.

Tables hold msgpack (msgspec) bytes: compact, fast, and tolerant of added fields, so a profile written
by an older worker decodes in a newer one. Outbound topics carry JSON for consumers in any language.
"""

from __future__ import annotations

import msgspec

from core.identity import NO_IDENTITY, KeyIdentity
from schemas.profile import Profile

_msgpack_encoder = msgspec.msgpack.Encoder()
_profile_decoder = msgspec.msgpack.Decoder(Profile)
_identity_decoder = msgspec.msgpack.Decoder(KeyIdentity)
_json_encoder = msgspec.json.Encoder()


def encode_profile(profile: Profile) -> bytes:
    return _msgpack_encoder.encode(profile)


def decode_profile(raw: bytes | None) -> Profile | None:
    return None if raw is None else _profile_decoder.decode(raw)


def encode_identity(identity: KeyIdentity) -> bytes:
    return _msgpack_encoder.encode(identity)


def decode_identity(raw: bytes | None) -> KeyIdentity:
    """A missing entry is the default identity (no redirect, never forgotten)."""
    return NO_IDENTITY if raw is None else _identity_decoder.decode(raw)


def encode_json(record: object) -> bytes:
    """Any msgspec Struct / builtin → JSON bytes for an outbound topic or an HTTP answer."""
    return _json_encoder.encode(record)


def encode_float(value: float) -> bytes:
    return repr(float(value)).encode()


def decode_float(raw: bytes) -> float:
    return float(raw)
