"""The per-customer profile and the pure function that applies one event to it.

``apply_event(profile, event, now=...)`` returns a new profile; it never mutates its input and never
reads the clock. Replays are harmless: an event whose ``message_id`` the profile has already applied
returns the profile unchanged (this is what makes at-least-once delivery apply each update once).
"""

from __future__ import annotations

import msgspec

from schemas.events import Event


class CartItem(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str
    quantity: int
    price: int  # minor units
    added_at: float
    name: str = ""
    category: str = ""


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Everything streamcdp knows about one customer (keyed by canonical customer id)."""

    customer_id: str
    first_seen: float = 0.0
    last_seen: float = 0.0
    event_count: int = 0
    cart: tuple[CartItem, ...] = ()
    cart_updated_at: float = 0.0
    last_checkout_at: float = 0.0
    orders: int = 0
    revenue: int = 0  # minor units
    last_order_at: float = 0.0
    triggers_sent: tuple[str, ...] = ()  # recent trigger ids, newest last (capped)
    applied_ids: tuple[str, ...] = ()  # recent message ids, newest last (capped): replay guard


MAX_APPLIED_IDS = 256
MAX_TRIGGERS_REMEMBERED = 32
MAX_CART_ITEMS = 50


def new_profile(customer_id: str) -> Profile:
    return Profile(customer_id=customer_id)


def capped_append(items: tuple, item: object, cap: int) -> tuple:
    return (*items, item)[-cap:]


def _apply_cart(profile: Profile, event: Event) -> Profile:
    props = event.properties
    name = event.event
    at = event.timestamp
    if name in ("Product Added", "Product Removed"):
        if at <= profile.last_order_at:
            # Older than the last order (arrived late from another topic): already bought or gone.
            return profile
        product_id = str(props.get("product_id") or props.get("sku") or "")
        if not product_id:
            return profile
        others = tuple(item for item in profile.cart if item.product_id != product_id)
        current = next((item for item in profile.cart if item.product_id == product_id), None)
        quantity = int(props.get("quantity") or 1)
        if name == "Product Added":
            total = quantity + (current.quantity if current else 0)
            item = CartItem(
                product_id=product_id, quantity=total, price=int(props.get("price") or 0), added_at=at,
                name=str(props.get("name") or ""), category=str(props.get("category") or ""),
            )
            cart = (*others, item)[-MAX_CART_ITEMS:]
        else:
            remaining = (current.quantity if current else 0) - quantity
            cart = others if remaining <= 0 or current is None else (
                *others, msgspec.structs.replace(current, quantity=remaining))
        return msgspec.structs.replace(profile, cart=cart, cart_updated_at=max(profile.cart_updated_at, at))
    if name == "Checkout Started":
        return msgspec.structs.replace(profile, last_checkout_at=max(profile.last_checkout_at, at))
    if name == "Order Completed":
        # Items added to the cart up to the order are considered bought.
        cart = tuple(item for item in profile.cart if item.added_at > at)
        return msgspec.structs.replace(
            profile,
            cart=cart,
            orders=profile.orders + 1,
            revenue=profile.revenue + int(props.get("total") or props.get("revenue") or 0),
            last_order_at=max(profile.last_order_at, at),
        )
    return profile


def apply_event(profile: Profile | None, event: Event, *, now: float) -> Profile:
    """Return ``profile`` with ``event`` applied (a new profile for an unknown customer)."""
    del now  # the event time drives every field here; ``now`` is for time-decayed traits
    current = profile or new_profile(event.routing_id)
    if event.message_id in current.applied_ids:
        return current
    updated = _apply_cart(current, event)
    return msgspec.structs.replace(
        updated,
        first_seen=min(current.first_seen or event.timestamp, event.timestamp),
        last_seen=max(current.last_seen, event.timestamp),
        event_count=current.event_count + 1,
        applied_ids=capped_append(current.applied_ids, event.message_id, MAX_APPLIED_IDS),
    )
