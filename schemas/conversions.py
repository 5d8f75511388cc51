"""What attribution publishes on ``trigger-conversions`` and the per-kind counters it keeps.

- ``TriggerConversion``: one response attributed to one trigger — a delivery, an open or a click that
  carried the trigger's ``trigger_id``, or an order within the attribution window after the send or the
  holdout decision (JSON, ``schemas/json/trigger-conversion.json``). Each ``(trigger_id, response)`` is
  published once; ``conversion_id`` names it for consumers that deduplicate.
- ``KindStats`` / ``ChannelStats``: the counters of one trigger kind in one partition (the profile stage's
  ``TRIGGER_STATS`` table); ``GET /triggers/stats`` sums them over every partition.

Fields are added with defaults only; a breaking change is a new record, never a rename.
"""

from __future__ import annotations

import msgspec

TREATMENT = "treatment"  # the trigger was sent
HOLDOUT = "holdout"  # the control arm: decided, deliberately not sent
ARMS = (TREATMENT, HOLDOUT)

DELIVERED = "delivered"
OPENED = "opened"
CLICKED = "clicked"
CONVERTED = "converted"
RESPONSES = (DELIVERED, OPENED, CLICKED, CONVERTED)


class TriggerConversion(msgspec.Struct, frozen=True, kw_only=True):
    """A response attributed to a trigger, published as JSON on ``trigger-conversions``.

    ``response``: ``delivered``, ``opened``, ``clicked`` (a messaging event carrying ``trigger_id``) or
    ``converted`` (an order within the attribution window). ``treatment``: ``treatment`` (sent) or
    ``holdout`` (the control arm: only orders are attributed to it). ``decided_at``: when the trigger was
    sent or held out; ``at``: the response's event time. Money in minor units of ``currency``.
    """

    conversion_id: str  # "<trigger_id>:<response>": the same attribution always has the same id
    trigger_id: str
    kind: str
    customer_id: str
    treatment: str
    channel: str
    response: str
    decided_at: float
    at: float
    message_id: str  # the attributed event's messageId
    order_id: str = ""
    revenue: int = 0
    currency: str | None = None


class ChannelStats(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Sends on one channel and the responses attributed to them (each counted once per trigger)."""

    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0


class KindStats(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The counters of one trigger kind: both arms, their conversions and attributed revenue, per channel."""

    sent: int = 0
    holdout: int = 0
    converted_treatment: int = 0
    converted_holdout: int = 0
    revenue_treatment: int = 0  # minor units
    revenue_holdout: int = 0
    channels: dict[str, ChannelStats] = {}


SCHEMA_ID = "https://streamcdp.dev/schemas/v1/trigger-conversion.json"


def conversion_json_schema() -> dict:
    """The JSON Schema of the ``trigger-conversions`` payload (``schemas/json/trigger-conversion.json``)."""
    schema = msgspec.json.decode(msgspec.json.encode(msgspec.json.schema(TriggerConversion)))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Trigger conversions (topic trigger-conversions)",
        "description": "Generated from schemas/conversions.py::TriggerConversion by `streamcdp report "
        "conversion-schema`; a unit test keeps this file equal to it.",
        **schema,
    }
