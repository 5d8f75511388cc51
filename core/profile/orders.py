"""Orders and refunds: what an order adds to the profile, recorded in the order ledger so that a refund
(or a merge that counted an order twice) removes exactly that."""

from __future__ import annotations

from typing import Any

import msgspec

from core.profile.affinity import with_affinity
from core.profile.bounded import bump, clipped_id, decrement, insert_sorted, product_id_of, remember, without_one
from core.profile.policy import (
    MAX_LEDGER_ORDERS,
    MAX_ORDER_TIMES,
    MAX_PAYMENT_METHODS,
    MAX_PRODUCTS_PER_ORDER,
    MAX_PURCHASED_PRODUCTS,
    MAX_PURCHASES_PER_PRODUCT,
    MAX_SIZE_CATEGORIES,
    MAX_SIZES_PER_CATEGORY,
    MAX_STORES,
    ProfilePolicy,
)
from schemas.events import Event
from schemas.profile import OrderRecord, Profile


def order_contribution(profile: Profile, record: OrderRecord, sign: int) -> dict[str, Any]:
    """The fields ``record`` changes when it is added (``sign=1``) to or removed (``sign=-1``) from ``profile``.

    Exactly what a refund reverses: orders, revenue, order times, product purchase times, coupon use
    and the payment method count. Removal never drives a counter below zero.
    """
    changes: dict[str, Any] = {
        "orders": max(0, profile.orders + sign),
        "revenue": max(0, profile.revenue + sign * record.revenue),
    }
    purchases = dict(profile.product_purchases)
    if sign > 0:
        changes["order_times"] = insert_sorted(profile.order_times, record.at, MAX_ORDER_TIMES)
        for product_id in record.product_ids:
            purchases[product_id] = insert_sorted(purchases.get(product_id, ()), record.at, MAX_PURCHASES_PER_PRODUCT)
        while len(purchases) > MAX_PURCHASED_PRODUCTS:
            del purchases[min(purchases, key=lambda k: (purchases[k][-1], k))]
        if record.payment_method:
            changes["payment_methods"] = bump(profile.payment_methods, record.payment_method, 1, MAX_PAYMENT_METHODS)
    else:
        changes["order_times"] = without_one(profile.order_times, record.at)
        for product_id in record.product_ids:
            remaining = without_one(purchases.get(product_id, ()), record.at)
            if remaining:
                purchases[product_id] = remaining
            else:
                purchases.pop(product_id, None)
        if record.payment_method:
            changes["payment_methods"] = decrement(profile.payment_methods, record.payment_method)
    changes["product_purchases"] = purchases
    if record.coupon:
        changes["orders_with_coupon"] = max(0, profile.orders_with_coupon + sign)
    return changes


def with_ledger_entry(ledger: dict[str, OrderRecord], order_id: str, record: OrderRecord) -> dict[str, OrderRecord]:
    """A copy of ``ledger`` holding ``record`` for ``order_id``; past the cap the oldest order is forgotten."""
    updated = dict(ledger)
    updated[order_id] = record
    while len(updated) > MAX_LEDGER_ORDERS:
        del updated[min((k for k in updated if k != order_id), key=lambda k: (updated[k].at, k))]
    return updated


def order_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    props = event.properties
    at = event.timestamp
    # Items added to the cart up to the order are considered bought.
    changes: dict[str, Any] = {
        "cart": tuple(item for item in profile.cart if item.added_at > at),
        "last_order_at": max(profile.last_order_at, at),
    }
    products = [item for item in props.get("products") or () if isinstance(item, dict)]
    order_id = clipped_id(props.get("order_id") or event.message_id)
    existing = profile.order_ledger.get(order_id)
    if existing is not None and existing.known:
        return changes  # the same order sent twice (other message id): counted once
    record = OrderRecord(
        at=at,
        revenue=int(props.get("total") or props.get("revenue") or 0),
        coupon=bool(props.get("coupon")),
        payment_method=clipped_id(props.get("payment_method") or props.get("paymentMethod") or "")[:40],
        product_ids=tuple(dict.fromkeys(p for p in map(product_id_of, products) if p))[:MAX_PRODUCTS_PER_ORDER],
    )
    if existing is not None:
        # Its refund came first: the order is recorded as refunded and adds nothing.
        changes["order_ledger"] = with_ledger_entry(
            profile.order_ledger, order_id, msgspec.structs.replace(record, refunded=True)
        )
        return changes
    changes.update(order_contribution(profile, record, 1))
    changes["order_ledger"] = with_ledger_entry(profile.order_ledger, order_id, record)
    store_id = props.get("store_id")
    if store_id:
        changes["stores_visited"] = remember(profile.stores_visited, clipped_id(store_id), MAX_STORES)
    affinities = profile.category_affinity
    sizes = profile.size_counts
    for item in products:
        category = clipped_id(item.get("category") or "")
        if category:
            affinities = with_affinity(affinities, category, policy.affinity_purchase, at, policy)
        size = item.get("size")
        if size not in (None, ""):
            per_category = bump(sizes.get(category or "_", {}), clipped_id(size), 1, MAX_SIZES_PER_CATEGORY)
            sizes = _bump_nested(sizes, category or "_", per_category)
    if affinities is not profile.category_affinity:
        changes["category_affinity"] = affinities
    if sizes is not profile.size_counts:
        changes["size_counts"] = sizes
    return changes


def _bump_nested(outer: dict[str, dict[str, int]], key: str, inner: dict[str, int]) -> dict[str, dict[str, int]]:
    updated = dict(outer)
    updated[key] = inner
    if len(updated) > MAX_SIZE_CATEGORIES:
        del updated[min((k for k in updated if k != key), key=lambda k: (sum(updated[k].values()), k))]
    return updated


def refund_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    order_id = event.properties.get("order_id")
    if not order_id:
        return {}
    order_id = clipped_id(order_id)
    existing = profile.order_ledger.get(order_id)
    if existing is not None and existing.refunded:
        return {}  # refunded already: a second refund changes nothing
    if existing is None:
        # Unknown order (not seen yet, or older than the ledger): remember the refund, change nothing else.
        record = OrderRecord(at=event.timestamp, known=False, refunded=True)
        return {
            "order_ledger": with_ledger_entry(profile.order_ledger, order_id, record),
            "refunds": profile.refunds + 1,
        }
    changes = order_contribution(profile, existing, -1)
    changes["order_ledger"] = with_ledger_entry(
        profile.order_ledger, order_id, msgspec.structs.replace(existing, refunded=True)
    )
    changes["refunds"] = profile.refunds + 1
    return changes
