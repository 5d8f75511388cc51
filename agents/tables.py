"""The tables of the profile stage's per-partition store, each with its key tag and value codec.

Keys are customer / alias ids (bytes) except ``SEGMENT_SIZES``, keyed by segment name, and
``TRIGGER_STATS``, keyed by trigger kind: each partition counts what it owns, so ``/segments`` and
``/triggers/stats`` sum the partitions; and ``STREAM_TIMES`` and ``CHECKED_AUDIENCES``, one entry per
partition (``PARTITION_KEY``).
"""

from __future__ import annotations

from agents.store import Table
from core.identity import NO_IDENTITY, KeyIdentity
from schemas.codecs import decode_float, encode_float, encode_msgpack, msgpack_decoder
from schemas.conversions import KindStats
from schemas.profile import Profile

_decode_profile = msgpack_decoder(Profile)
_decode_identity = msgpack_decoder(KeyIdentity)
decode_kind_stats = msgpack_decoder(KindStats)


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
# Per trigger kind, within the partition: sends, holdouts, attributed responses and revenue (KindStats).
TRIGGER_STATS = Table(b"t", encode_msgpack, decode_kind_stats)

PARTITION_KEY = b"partition"  # the key of the tables with one entry per partition
# The partition's stream time (epoch milliseconds): stored with the state it decided, so a restart goes on
# from the same clock (Kafka Streams keeps it in the offset metadata).
STREAM_TIMES = Table(b"w", lambda ms: str(int(ms)).encode(), int)

# The audience definitions version (``AudiencePolicy.version``) every profile of the partition was last
# checked against: a takeover with the same definitions skips reading them all.
CHECKED_AUDIENCES = Table(b"v", str.encode, bytes.decode)

ALL_TABLES = (PROFILES, IDENTITIES, WAKE_UPS, SEGMENT_SIZES, TRIGGER_STATS, STREAM_TIMES, CHECKED_AUDIENCES)
