"""How simulated customers answer a trigger: the pure response model of the sender simulator.

``streams.senders`` consumes ``triggers.*`` as a real email / SMS / push sender would and asks
``respond(trigger, model, now=...)`` what happens next; the answer is a list of Segment track payloads to
produce to the inbound topics:

- a sent trigger (``treatment``): ``Message Delivered``, then perhaps ``Message Opened`` and ``Message
  Clicked`` (each carrying ``trigger_id`` and ``channel``), drawn from the customer's engagement habit on
  that channel (``engagement_habit``: the same customer has the same habits in every run and in
  ``streamcdp generate``'s workload);
- either arm: an ``Order Completed`` with the kind's true conversion probability of that arm
  (``TrueEffect``), so that the measured uplift can be checked against ``treatment - holdout``.

Every draw comes from a generator seeded by ``(seed, customer, kind)``, not by the ``trigger_id`` (which
depends on event times): the same customer answers a kind the same way in every run, whatever the order or
the number of times the simulator sees the trigger, so a measurement over fixed customers is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.errors import ConfigError

CHANNELS = ("email", "sms", "whatsapp", "webpush", "apppush")
HOLDOUT = "holdout"
DEFAULT_ORDER_VALUE = 4990  # minor units, for a trigger whose payload carries no value
# Typical rates per channel (delivered, opened | delivered, clicked | opened); a customer's habit scatters
# around them, some customers are much more responsive on one channel than on the others.
CHANNEL_BASE_RATES: dict[str, tuple[float, float, float]] = {
    "email": (0.96, 0.35, 0.20),
    "sms": (0.98, 0.60, 0.15),
    "whatsapp": (0.97, 0.70, 0.25),
    "webpush": (0.90, 0.25, 0.30),
    "apppush": (0.92, 0.40, 0.30),
}


@dataclass(frozen=True)
class ChannelHabit:
    """One customer's probabilities on one channel: delivered, opened once delivered, clicked once opened."""

    delivered: float
    opened: float
    clicked: float


@dataclass(frozen=True)
class TrueEffect:
    """A kind's conversion probability (an order within the attribution window) with and without the message."""

    treatment: float
    holdout: float

    @property
    def uplift(self) -> float:
        return self.treatment - self.holdout


DEFAULT_EFFECT = TrueEffect(treatment=0.25, holdout=0.15)


@dataclass(frozen=True)
class ResponseModel:
    """The simulator's world: the seed, each kind's true effect (``default_effect`` for the others)."""

    seed: int = 1
    effects: Mapping[str, TrueEffect] = field(default_factory=dict)
    default_effect: TrueEffect = DEFAULT_EFFECT

    def effect(self, kind: str) -> TrueEffect:
        return self.effects.get(kind, self.default_effect)


def engagement_habit(customer_id: str, seed: int = 1) -> dict[str, ChannelHabit]:
    """The customer's habit on every channel (deterministic in ``customer_id`` and ``seed``)."""
    rng = random.Random(f"streamcdp-habit:{seed}:{customer_id}")
    favourite = rng.choice(CHANNELS)
    habits = {}
    for channel in CHANNELS:
        delivered, opened, clicked = CHANNEL_BASE_RATES[channel]
        lift = 1.6 if channel == favourite else rng.uniform(0.4, 1.2)
        habits[channel] = ChannelHabit(
            delivered=delivered,
            opened=min(0.95, opened * lift),
            clicked=min(0.9, clicked * lift),
        )
    return habits


def favourite_channel(customer_id: str, seed: int = 1) -> str:
    """The channel the customer opens most (what the generator's ``preferred_channel`` trait can say)."""
    habits = engagement_habit(customer_id, seed)
    return max(CHANNELS, key=lambda channel: (habits[channel].opened, channel))


def parse_effects(text: str) -> dict[str, TrueEffect]:
    """``kind=treatment:holdout[,kind=...]`` (probabilities in [0, 1]) → effects by kind."""
    effects = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        kind, _, rates = part.partition("=")
        treatment, _, holdout = rates.partition(":")
        try:
            effect = TrueEffect(treatment=float(treatment), holdout=float(holdout))
        except ValueError:
            effect = None
        if not kind or effect is None or not (0 <= effect.treatment <= 1 and 0 <= effect.holdout <= 1):
            message = f"bad effect {part!r}: expected kind=treatment:holdout with probabilities in [0, 1]"
            raise ConfigError(message)
        effects[kind.strip()] = effect
    return effects


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _track(name: str, identity: dict[str, str], at: float, message_id: str, properties: dict[str, Any]) -> dict:
    return {
        "type": "track",
        "event": name,
        "messageId": message_id,
        "timestamp": _iso(at),
        **identity,
        "properties": properties,
    }


def respond(trigger: Mapping[str, Any], model: ResponseModel, *, now: float) -> list[dict]:
    """What the customer does about ``trigger`` (a ``triggers.*`` payload), as track payloads stamped from
    ``now`` on (a few seconds apart, so they stay inside any attribution window and the contract's skew)."""
    trigger_id = str(trigger["trigger_id"])
    kind = str(trigger["kind"])
    customer_id = str(trigger["customer_id"])
    user_id = trigger.get("user_id") or customer_id
    identity = {"userId": str(user_id)}
    channel = str(trigger.get("channel") or "email")
    arm = HOLDOUT if trigger.get("treatment") == HOLDOUT else "treatment"
    rng = random.Random(f"streamcdp-response:{model.seed}:{customer_id}:{kind}")
    answers: list[dict] = []
    at = now
    if arm != HOLDOUT:
        habit = engagement_habit(customer_id, model.seed)[channel] if channel in CHANNELS else None
        message = {"channel": channel, "trigger_id": trigger_id, "campaign_id": kind}
        steps = (
            ("Message Delivered", habit.delivered if habit else 1.0),
            ("Message Opened", habit.opened if habit else 0.0),
            ("Message Clicked", habit.clicked if habit else 0.0),
        )
        for name, chance in steps:
            if rng.random() >= chance:
                break
            at += rng.uniform(0.05, 1.0)
            answers.append(_track(name, identity, at, f"sim-{trigger_id}-{name.split()[1].lower()}", message))
    effect = model.effect(kind)
    if rng.random() < (effect.holdout if arm == HOLDOUT else effect.treatment):
        at += rng.uniform(0.05, 1.0)
        value = int(trigger.get("value") or 0) or DEFAULT_ORDER_VALUE
        # The trigger carries minor units; Segment events carry decimal amounts (the contract converts them back).
        products = [
            {
                "product_id": item["product_id"],
                "price": item.get("price", 0) / 100,
                "quantity": item.get("quantity", 1),
            }
            for item in trigger.get("items") or ()
            if isinstance(item, dict) and item.get("product_id")
        ]
        order = {
            "order_id": f"sim-order-{trigger_id}",
            "total": value / 100,
            "currency": trigger.get("currency") or "EUR",
            "products": products,
        }
        answers.append(_track("Order Completed", identity, at, f"sim-{trigger_id}-order", order))
    return answers
