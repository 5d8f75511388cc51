"""Entry facts: the one small function a trigger kind may add, found by the name its definition gives.

A definition's ``entry.facts: NAME`` names one of ``FACTS`` below. It is called when an entry event (or,
for rule-only entries, a refresh) may start the trigger and answers the facts of the entry, or None
(no entry). The facts travel with the pending trigger into the payload (the product viewed, the date a
consumable runs out); ``episode`` in them tells two entries apart (a new episode is a new trigger id).
``still_valid`` is asked again when the trigger is due: a consumable bought meanwhile (on any linked
device, web or in-store) cancels its reminder.

Adding a kind: a definition in ``config/triggers.yaml``, and, only if the profile alone cannot say what
the message is about, one function here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.profile.bounded import clipped_id, clipped_text, product_id_of
from core.profile.policy import MAX_TEXT_BYTES, MAX_URL_BYTES
from core.replenishment import ConsumableCatalog, soonest_replenishment
from schemas.events import Event
from schemas.profile import Profile
from schemas.triggers import Fact, PendingTrigger

Facts = dict[str, Fact]
Params = Mapping[str, Fact]
ITEM_PROPERTIES = ("name", "category", "image_url", "url", "currency")


def _always(profile: Profile, pending: PendingTrigger, params: Params) -> bool:
    return True


@dataclass(frozen=True)
class EntryFacts:
    """``enter(profile, event, params, consumables)`` → facts or None; ``still_valid`` when due.

    ``params``: the parameters a definition may set under ``entry.params``, with their defaults.
    ``provides``: the time facts a ``wait: {before: FACT}`` may count back from.
    ``selective``: it answers None for most events, cheaply, so it is asked before the entry rule.
    """

    enter: Callable[[Profile, Event | None, Params, ConsumableCatalog | None], Facts | None]
    doc: str
    still_valid: Callable[[Profile, PendingTrigger, Params], bool] = _always
    params: Mapping[str, Fact] = field(default_factory=dict)
    provides: frozenset[str] = frozenset()
    selective: bool = True


def _product_facts(props: Mapping[str, Any], product_id: str) -> Facts:
    """The entry's product (``product_id``: ``product_id_of(props)``, which the caller has found already)."""
    facts: Facts = {"product_id": product_id}
    for name in ITEM_PROPERTIES:
        value = props.get(name)
        if isinstance(value, str) and value:
            facts[name] = clipped_text(value, MAX_URL_BYTES if name.endswith("url") else MAX_TEXT_BYTES)
    price = props.get("price")
    if isinstance(price, int) and not isinstance(price, bool):
        facts["price"] = price
    return facts


def _event_product(profile: Profile, event: Event | None, params: Params, consumables: Any) -> Facts | None:
    if event is None:
        return None
    product_id = product_id_of(event.properties)
    return _product_facts(event.properties, product_id) if product_id else None


def _bought_since(profile: Profile, product_id: str, since: float) -> bool:
    times = profile.product_purchases.get(product_id, ())
    return bool(times) and times[-1] >= since


def _repeated_views(profile: Profile, event: Event | None, params: Params, consumables: Any) -> Facts | None:
    if event is None or event.event != "Product Viewed":
        return None
    props = event.properties
    product_id = product_id_of(props)
    category = clipped_id(props.get("category") or "")  # as apply_event keys category_views
    views = profile.product_views.get(product_id, 0)
    category_views = profile.category_views.get(category, 0) if category else 0
    if views < float(params["min_views"]) and category_views < float(params["min_category_views"]):
        return None  # the common case, decided before building any facts
    if not product_id or any(item.product_id == product_id for item in profile.cart):
        return None
    facts = _product_facts(props, product_id)
    facts["views"] = views
    facts["category_views"] = category_views
    facts["episode"] = product_id if views >= float(params["min_views"]) else f"category:{category}"
    return facts


def _not_added_nor_bought(profile: Profile, pending: PendingTrigger, params: Params) -> bool:
    product_id = str(pending.facts.get("product_id", ""))
    return not any(item.product_id == product_id for item in profile.cart) and not _bought_since(
        profile, product_id, pending.entered_at
    )


def _soonest_replenishment(profile: Profile, consumables: ConsumableCatalog | None) -> Facts | None:
    if consumables is None or not profile.product_purchases:
        return None
    soonest = soonest_replenishment(profile.product_purchases, consumables)
    if soonest is None:
        return None
    return {
        "product_id": soonest.product_id,
        "category": soonest.category,
        "expected_at": soonest.expected_at,
        "last_purchase_at": soonest.last_purchase_at,
        "interval_days": round(soonest.interval_days, 2),
        "episode": f"{soonest.product_id}@{soonest.last_purchase_at:.3f}",
    }


def _predicted_replenishment(profile: Profile, event: Event | None, params: Params, consumables: Any) -> Facts | None:
    return _soonest_replenishment(profile, consumables)


def _not_bought_again(profile: Profile, pending: PendingTrigger, params: Params) -> bool:
    product_id = str(pending.facts.get("product_id", ""))
    last = float(pending.facts.get("last_purchase_at", 0.0))
    return not _bought_since(profile, product_id, last + 1e-6)


def _ordered_products(profile: Profile, event: Event | None, params: Params, consumables: Any) -> Facts | None:
    if event is None:
        return None
    props = event.properties
    products = [p for p in props.get("products") or () if isinstance(p, dict) and product_id_of(p)]
    if not products:
        return None  # an order without products: nothing to cross-sell from
    categories = sorted({clipped_id(p.get("category")) for p in products if p.get("category")})
    order_id = clipped_id(props.get("order_id") or event.message_id)
    return {
        "order_id": order_id,
        "product_ids": ",".join(product_id_of(p) for p in products[:20]),
        "categories": ",".join(categories[:10]),
        "episode": order_id,
    }


FACTS: Mapping[str, EntryFacts] = {
    "event_product": EntryFacts(
        _event_product, "the product of the entry event (name, price, image, URL)", selective=False
    ),
    "repeated_views": EntryFacts(
        _repeated_views,
        "a product viewed at least min_views times (or its category min_category_views times), not in the cart; "
        "cancelled when it is added or bought",
        still_valid=_not_added_nor_bought,
        params={"min_views": 3, "min_category_views": 5},
    ),
    "predicted_replenishment": EntryFacts(
        _predicted_replenishment,
        "the consumable the customer is expected to buy next (core.replenishment); cancelled when bought again",
        still_valid=_not_bought_again,
        provides=frozenset({"expected_at"}),
    ),
    "ordered_products": EntryFacts(_ordered_products, "the order's products and categories (orders without any: none)"),
}
