"""The tables of the profile stage's per-partition store (``streams.state_store``), each with its key tag.

Keys are customer / alias ids (bytes) except ``SEGMENT_SIZES``, keyed by segment name: each partition
counts the members it owns, so ``/segments`` sums the partitions a worker holds.
"""

from __future__ import annotations

from streams.codecs import (
    decode_float,
    decode_identity,
    decode_profile,
    encode_float,
    encode_identity,
    encode_profile,
)
from streams.state_store import Table

# msgpack Profile per canonical customer id (or per alias before it is linked).
PROFILES = Table(b"p", encode_profile, decode_profile)
# msgpack KeyIdentity per id: redirect to the canonical customer, linked ids, forgotten_at.
IDENTITIES = Table(b"i", encode_identity, decode_identity)
# Epoch seconds at which the key must next be woken: its earliest pending trigger or time-driven segment change.
WAKE_UPS = Table(b"d", encode_float, decode_float)
# Members of a segment within the partition.
SEGMENT_SIZES = Table(b"s", lambda count: str(int(count)).encode(), lambda raw: int(raw))

ALL_TABLES = (PROFILES, IDENTITIES, WAKE_UPS, SEGMENT_SIZES)
