"""Messages on the internal ``profile-commands`` topic, keyed by the id whose partition must act.

The profile stage is the only writer of per-customer state; everything that must change that state
(a new event, a time-based check, an identity link, a merge, a deletion) reaches it as one of these,
so that each change happens in the partition that owns the key, in order, inside a stream event.
Encoded with msgpack (msgspec): compact and several times faster than JSON for this hot path.
"""

from __future__ import annotations

import msgspec

from schemas.events import Event


class ApplyEvent(msgspec.Struct, frozen=True, tag="event"):
    """Apply a validated event to the profile of the key (or forward it if the key was linked away)."""

    event: Event
    hops: int = 0  # how often identity redirects forwarded it already (loop guard)


class CheckTriggers(msgspec.Struct, frozen=True, tag="check"):
    """Decide due triggers for the key at wall-clock time ``now`` (sent by the trigger timer)."""

    now: float


ProfileCommand = ApplyEvent | CheckTriggers

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ProfileCommand)


def encode_command(command: ProfileCommand) -> bytes:
    return _encoder.encode(command)


def decode_command(raw: bytes) -> ProfileCommand:
    return _decoder.decode(raw)
