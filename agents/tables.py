"""The tables of the profile stage's per-partition store, each with its key tag and value codec.

Keys are customer / alias ids (bytes) except ``SEGMENT_SIZES``, keyed by segment name: each partition
counts the members it owns, so ``/segments`` sums the partitions a worker holds.
"""

from __future__ import annotations

from agents.store import Table
from core.identity import NO_IDENTITY, KeyIdentity
from schemas.codecs import decode_float, encode_float, encode_msgpack, msgpack_decoder
from schemas.profile import Profile

_decode_profile = msgpack_decoder(Profile)
_decode_identity = msgpack_decoder(KeyIdentity)


def decode_profile(raw: bytes | None) -> Profile | None:
    return None if raw is None else _decode_profile(raw)


def decode_identity(raw: bytes | None) -> KeyIdentity:
    """A missing entry is the default identity (no redirect, never forgotten)."""
    return NO_IDENTITY if raw is None else _decode_identity(raw)


# msgpack Profile per canonical customer id (or per alias before it is linked).
PROFILES = Table(b"p", encode_msgpack, decode_profile)
# msgpack KeyIdentity per id: redirect to the canonical customer, linked ids, forgotten_at.
IDENTITIES = Table(b"i", encode_msgpack, decode_identity)
# Epoch seconds at which the key must next be woken: its earliest pending trigger or time-driven segment change.
WAKE_UPS = Table(b"d", encode_float, decode_float)
# Members of a segment within the partition.
SEGMENT_SIZES = Table(b"s", lambda count: str(int(count)).encode(), int)

ALL_TABLES = (PROFILES, IDENTITIES, WAKE_UPS, SEGMENT_SIZES)
