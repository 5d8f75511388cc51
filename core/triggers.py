"""Trigger decisions: pure functions of (profile, now, policy) that say which message is due.

The worker keeps, per customer, the time at which a trigger may become due (``cart_reminder_due_at``);
a timer sends a check for each due customer through the profile stage, where
``decide_cart_abandonment`` looks at the current profile and answers with a ``Trigger`` or None.
Trigger ids are deterministic, so a replayed check can never produce a second, different message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from core.profile.bounded import capped_append
from core.profile.policy import MAX_TRIGGERS_REMEMBERED
from core.traits import cart_value
from schemas.profile import Profile

CART_ABANDONMENT = "cart_abandonment"


@dataclass(frozen=True)
class CartAbandonmentPolicy:
    """When an idle cart earns a reminder."""

    delay_s: float = 1800.0
    max_age_s: float = 3 * 86400.0
    channel: str = "email"


class TriggerItem(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str
    quantity: int
    price: int
    name: str = ""


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """A message the outbound senders should deliver (published as JSON on ``triggers.<channel>``)."""

    trigger_id: str
    kind: str
    customer_id: str
    channel: str
    created_at: float
    reason: str
    items: tuple[TriggerItem, ...] = ()
    cart_value: int = 0  # minor units


def trigger_id_for(customer_id: str, kind: str, version: float) -> str:
    """Same customer, kind and state version → same id; senders deduplicate on it."""
    digest = hashlib.sha256(f"{customer_id}|{kind}|{version:.6f}".encode()).hexdigest()
    return f"{kind}:{digest[:24]}"


def cart_reminder_due_at(profile: Profile, policy: CartAbandonmentPolicy) -> float | None:
    """When the cart of ``profile`` would become abandoned, or None if it cannot."""
    if not profile.cart:
        return None
    if profile.last_checkout_at >= profile.cart_updated_at or profile.last_order_at >= profile.cart_updated_at:
        return None
    # Most profiles were never sent a trigger: then there is no id to compute (a hash, on every event).
    sent = profile.triggers_sent
    if sent and trigger_id_for(profile.customer_id, CART_ABANDONMENT, profile.cart_updated_at) in sent:
        return None
    return profile.cart_updated_at + policy.delay_s


def decide_cart_abandonment(profile: Profile, now: float, policy: CartAbandonmentPolicy) -> Trigger | None:
    """A cart-abandonment trigger if the cart has been idle ``delay_s`` and is not stale, else None."""
    due_at = cart_reminder_due_at(profile, policy)
    if due_at is None or now < due_at:
        return None
    if now - profile.cart_updated_at > policy.max_age_s:
        return None
    return Trigger(
        trigger_id=trigger_id_for(profile.customer_id, CART_ABANDONMENT, profile.cart_updated_at),
        kind=CART_ABANDONMENT,
        customer_id=profile.customer_id,
        channel=policy.channel,
        created_at=now,
        reason=f"cart idle for {now - profile.cart_updated_at:.0f}s with {len(profile.cart)} item(s)",
        items=tuple(
            TriggerItem(product_id=i.product_id, quantity=i.quantity, price=i.price, name=i.name) for i in profile.cart
        ),
        cart_value=cart_value(profile, now),
    )


def record_trigger(profile: Profile, trigger: Trigger) -> Profile:
    """The profile after ``trigger`` was sent: remembered, so it is never decided again."""
    return msgspec.structs.replace(
        profile, triggers_sent=capped_append(profile.triggers_sent, trigger.trigger_id, MAX_TRIGGERS_REMEMBERED)
    )
