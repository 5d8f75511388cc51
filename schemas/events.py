"""The normalised event that flows between streamcdp's stages, and the names of the event families.

Producers send Segment Spec JSON (track, identify, page, screen, alias, group; the JSON Schema files in
``schemas/json/`` and ``schemas/CONTRACT.md`` describe it); ingestion validates and normalises it with
``schemas.validation.decode_event`` into an ``Event``: snake_case envelope fields, timestamps as UTC
epoch seconds, ids as strings, money as integer minor units (cents), currency upper-cased, quantities
as ints, and Segment's email event names ("Email Opened") mapped to the canonical messaging names
("Message Opened", channel "email"). Stages after ingestion only ever see ``Event``. Which track names
belong to which family is listed once, in ``schemas.catalog``.

Contract version: ``CONTRACT_VERSION`` (carried by dead letters). Fields are only ever added, with
defaults, and new event names or optional properties keep the version; a change that makes a valid
message invalid or changes a field's meaning is a new version, never a rename.
"""

from __future__ import annotations

from typing import Any

import msgspec

CONTRACT_VERSION = 1

SEGMENT_TYPES = ("track", "identify", "page", "screen", "alias", "group")

# Families, one inbound topic each (events.<family>); "other" is a track event of a name we do not model.
CLICKSTREAM = "clickstream"
PURCHASE = "purchase"
MESSAGING = "messaging"
CUSTOMER = "customer"
OTHER = "other"
FAMILIES = (CLICKSTREAM, PURCHASE, MESSAGING, CUSTOMER)


class Event(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """One validated, normalised Segment Spec call.

    ``properties`` keeps the producer's property names; monetary values in it (``price``, ``total``,
    ``revenue``, ``value``, ``discount``, ``shipping``, ``tax``, item prices) are integer minor units.
    """

    type: str
    message_id: str
    timestamp: float
    family: str
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    previous_id: str | None = None
    group_id: str | None = None  # group calls: the account or household the customer belongs to
    context: dict[str, Any] = {}

    @property
    def routing_id(self) -> str:
        """The id the pipeline partitions on before identity resolution: userId, else anonymousId."""
        return self.user_id or self.anonymous_id  # type: ignore[return-value]  # validation guarantees one
