"""What the trigger engine stores per customer and what it publishes on ``triggers.<channel>``.

- ``PendingTrigger``: one kind waiting for its due time in a customer's profile (entered at, due at, the
  entry's facts, the deterministic ``trigger_id`` it will be sent with).
- ``TriggerOutcome``: what became of a trigger (sent, cancelled, expired, blocked), the recent ones kept in
  the profile so ``GET /profiles/{id}`` shows them.
- ``Trigger``: the message payload (JSON, ``schemas/json/trigger.json``): everything a sender needs to
  render the message without calling back.

Fields are added with defaults only; a breaking change is a new record, never a rename.
"""

from __future__ import annotations

import msgspec

Fact = str | float | int | bool


class PendingTrigger(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A trigger of ``kind`` a customer entered and that waits (one per kind and customer).

    ``entered_at``: the entry that started the episode (the ``trigger_id`` is derived from it, so it stays
    the same across merges); ``last_entry_at``: the latest entry event of the episode (``wait: after``
    counts from it: a cart changed again stays idle for the whole delay); ``due_at``: when it may be
    decided; ``facts``: what the entry knew (the product viewed, the predicted date, ...).
    """

    kind: str
    trigger_id: str
    entered_at: float
    last_entry_at: float
    due_at: float
    facts: dict[str, Fact] = {}
    deferred_until: float = 0.0  # quiet hours: not before this time (the guard chain moved it)


class TriggerOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What became of one trigger: ``outcome`` is a guard outcome name (``core.triggers.guards.OUTCOMES``)."""

    trigger_id: str
    kind: str
    outcome: str
    at: float
    channel: str = ""


class TriggerSend(msgspec.Struct, frozen=True, array_like=True):
    """One message that counts against the frequency caps: sent, or decided for the holdout arm."""

    kind: str
    channel: str
    at: float


class TriggerItem(msgspec.Struct, frozen=True, kw_only=True):
    """A product the message is about, with what the events carried about it."""

    product_id: str
    name: str = ""
    category: str = ""
    price: int = 0  # minor units
    quantity: int = 1
    image_url: str = ""
    url: str = ""


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """A message an outbound sender should deliver, published as JSON on ``triggers.<channel>``.

    ``trigger_id`` is deterministic (same customer episode → same id, also across an anonymous → known
    merge); senders deduplicate on it. ``customer_id`` is the canonical id, ``user_id`` the id the
    sender's address book knows. Money is in minor units of ``currency``.

    ``treatment``: ``treatment`` when sent, ``holdout`` for the control arm (published on
    ``triggers.holdout`` only, nothing is delivered). ``channel_reason``: why ``channel`` was chosen
    (``core.triggers.channels.REASONS``).
    """

    trigger_id: str
    kind: str
    customer_id: str
    user_id: str | None
    channel: str
    channels: tuple[str, ...]  # the definition's allowed channels, in order of preference
    decided_at: float
    send_at: float
    reason: str
    priority: int
    timezone: str | None = None
    locale: str | None = None
    items: tuple[TriggerItem, ...] = ()
    value: int = 0
    currency: str | None = None
    recommendations: tuple[str, ...] = ()
    offer: dict[str, Fact] = {}
    content: dict[str, Fact] = {}
    segments: tuple[str, ...] = ()
    treatment: str = "treatment"
    channel_reason: str = ""


SCHEMA_ID = "https://streamcdp.dev/schemas/v1/trigger.json"


def trigger_json_schema() -> dict:
    """The JSON Schema of the ``triggers.<channel>`` payload (``schemas/json/trigger.json``), from ``Trigger``."""
    schema = msgspec.json.decode(msgspec.json.encode(msgspec.json.schema(Trigger)))  # as the file holds it
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Trigger messages (topics triggers.<channel>)",
        "description": "Generated from schemas/triggers.py::Trigger by `streamcdp triggers schema`; "
        "a unit test keeps this file equal to it.",
        **schema,
    }
