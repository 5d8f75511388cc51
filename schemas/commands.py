"""Messages on the internal ``profile-commands`` topic, keyed by the id whose partition must act.

The profile stage is the only writer of per-customer state; everything that must change that state
(a new event, a time-based check, an identity link, a merge, a deletion) reaches it as one of these,
so that each change happens in the partition that owns the key, in order, inside a stream event.
Encoded with msgpack (msgspec): compact and several times faster than JSON for this hot path.

Who sends what (all keyed by the id named first):

- ``ApplyEvent``      ingestion → key ``event.routing_id``; a redirected key forwards it (``hops`` + 1).
- ``WakeUp``          the stage's clock → key with a due wake-up (pending trigger, time-driven segment).
- ``LinkIdentity``    profile stage of ``customer_id`` → key ``alias``: "this id belongs to that customer".
- ``AbsorbProfile``   profile stage of the alias → key ``customer_id``: merge the alias's profile.
- ``ForgetCustomer``  "Deletion Requested" event or the API → key ``customer_id`` (redirects forward it).
- ``UnlinkIdentity``  profile stage of a forgotten customer → key ``alias``: drop the redirect.
"""

from __future__ import annotations

import msgspec

from schemas.events import Event
from schemas.profile import Profile


class ApplyEvent(msgspec.Struct, frozen=True, tag="event"):
    """Apply a validated event to the profile of the key (or forward it if the key was linked away)."""

    event: Event
    hops: int = 0  # how often identity redirects forwarded it already (loop guard)


class WakeUp(msgspec.Struct, frozen=True, tag="check"):
    """Wake the key at wall-clock time ``now``: decide due triggers, refresh segments and scores.

    Sent by the clock for a key whose wake-up time has come (and after a definitions change). The tag
    stays ``"check"`` (its name before it also woke audiences) so queued commands still decode.
    """

    now: float


class LinkIdentity(msgspec.Struct, frozen=True, kw_only=True, tag="link"):
    """Key ``alias``: redirect this id to ``customer_id`` and hand its profile over (see ``core.identity``).

    ``kind`` is ``"identify"`` (userId + anonymousId seen together: never merges two user ids) or
    ``"alias"`` (an explicit Segment alias call: may merge a user id into another). ``at`` is the time of
    the event that revealed the link; ``link_id`` is deterministic (``core.identity.link_id_for``).
    ``via`` (set only after a merge) re-points an alias that redirects to ``via`` straight to ``customer_id``.
    """

    alias: str
    customer_id: str
    at: float
    link_id: str
    kind: str = "identify"
    via: str = ""


class AbsorbProfile(msgspec.Struct, frozen=True, kw_only=True, tag="absorb"):
    """Key ``customer_id``: merge ``absorbed`` (the alias's former profile) into the customer's profile.

    ``absorb_id`` is deterministic, so a replayed absorb is merged once; ``linked_at`` is the link's time
    (an absorb of a link older than the customer's deletion is dropped).
    """

    customer_id: str
    absorbed: Profile
    absorb_id: str
    linked_at: float
    hops: int = 0


class ForgetCustomer(msgspec.Struct, frozen=True, kw_only=True, tag="forget"):
    """Key ``customer_id``: delete the profile, unlink every linked id, block replays older than ``at``."""

    customer_id: str
    at: float
    request_id: str = ""
    hops: int = 0


class UnlinkIdentity(msgspec.Struct, frozen=True, kw_only=True, tag="unlink"):
    """Key ``alias``: the customer it redirected to was forgotten at ``at``; drop the redirect."""

    alias: str
    customer_id: str
    at: float


ProfileCommand = ApplyEvent | WakeUp | LinkIdentity | AbsorbProfile | ForgetCustomer | UnlinkIdentity

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ProfileCommand)


def encode_command(command: ProfileCommand) -> bytes:
    return _encoder.encode(command)


def decode_command(raw: bytes) -> ProfileCommand:
    return _decoder.decode(raw)
