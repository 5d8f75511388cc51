"""``merge_profiles``: one profile of a customer holding what two profiles of that customer know.

Called by the profile stage when identity resolution hands an alias's profile to its canonical key
(``core.identity``, ``AbsorbProfile``). Pure: returns a new profile, reads no clock.
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.groups import merge_groups
from core.profile.affinity import decay
from core.profile.bounded import is_newer
from core.profile.orders import order_contribution
from core.profile.policy import (
    DEFAULT_POLICY,
    MAX_ABSORBED_IDS,
    MAX_AFFINITIES,
    MAX_ANONYMOUS_IDS,
    MAX_APPLIED_IDS,
    MAX_CART_ITEMS,
    MAX_CATEGORY_VIEWS,
    MAX_CHANNELS,
    MAX_CUSTOM_TRAITS,
    MAX_DEVICES,
    MAX_EVENT_NAMES,
    MAX_LEDGER_ORDERS,
    MAX_LINKED_IDS,
    MAX_ORDER_TIMES,
    MAX_PAYMENT_METHODS,
    MAX_PRODUCT_VIEWS,
    MAX_PURCHASED_PRODUCTS,
    MAX_PURCHASES_PER_PRODUCT,
    MAX_RECENTLY_VIEWED,
    MAX_SIZE_CATEGORIES,
    MAX_SIZES_PER_CATEGORY,
    MAX_STORES,
    MAX_TRIGGER_HISTORY,
    MAX_TRIGGERS_REMEMBERED,
    ProfilePolicy,
)
from core.triggers.pending import merge_trigger_state
from schemas.profile import Affinity, CartItem, OrderRecord, Profile

_LWW_FIELDS = (
    "email_hash",
    "phone_hash",
    "age_band",
    "gender",
    "city",
    "country",
    "timezone",
    "loyalty_tier",
    "preferred_channel",
)


def _union(first: tuple, second: tuple, cap: int) -> tuple:
    return tuple(dict.fromkeys((*first, *second)))[-cap:]


def _top(counts: dict[str, Any], cap: int, weight=None) -> dict[str, Any]:
    if len(counts) <= cap:
        return counts
    weigh = weight or (lambda k: counts[k])
    kept = sorted(counts, key=lambda k: (-weigh(k), k))[:cap]
    return {k: counts[k] for k in kept}


def _add_counts(a: dict[str, int], b: dict[str, int], cap: int) -> dict[str, int]:
    summed = dict(a)
    for key, value in b.items():
        summed[key] = summed.get(key, 0) + value
    return _top(summed, cap)


def _merge_times(a: tuple[float, ...], b: tuple[float, ...], cap: int) -> tuple[float, ...]:
    return tuple(sorted((*a, *b)))[-cap:]


def _merge_affinity(a: dict[str, Affinity], b: dict[str, Affinity], half_life_s: float) -> dict[str, Affinity]:
    merged = dict(a)
    for category, other in b.items():
        mine = merged.get(category)
        if mine is None:
            merged[category] = other
            continue
        at = max(mine.at, other.at)
        merged[category] = Affinity(
            decay(mine.value, mine.at, at, half_life_s) + decay(other.value, other.at, at, half_life_s), at
        )
    if len(merged) <= MAX_AFFINITIES:
        return merged
    newest = max(x.at for x in merged.values())
    return _top(merged, MAX_AFFINITIES, lambda k: decay(merged[k].value, merged[k].at, newest, half_life_s))


def _merge_cart(a: Profile, b: Profile, last_order_at: float) -> tuple[CartItem, ...]:
    items: dict[str, CartItem] = {}
    for item in (*a.cart, *b.cart):
        current = items.get(item.product_id)
        if current is None or (item.added_at, item.quantity, item.price) > (
            current.added_at,
            current.quantity,
            current.price,
        ):
            items[item.product_id] = item
    kept = sorted((i for i in items.values() if i.added_at > last_order_at), key=lambda i: (i.added_at, i.product_id))
    return tuple(kept)[-MAX_CART_ITEMS:]


def _merge_traits(a: Profile, b: Profile) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    times: dict[str, float] = {}
    for field in _LWW_FIELDS:
        a_at, b_at = a.trait_times.get(field), b.trait_times.get(field)
        a_value, b_value = getattr(a, field), getattr(b, field)
        if b_at is not None and is_newer(b_at, b_value, a_at, a_value):
            changes[field], times[field] = b_value, b_at
        else:
            changes[field] = a_value if a_value is not None else b_value
            if a_at is not None:
                times[field] = a_at
    custom: dict[str, Any] = {}
    for name in (*a.custom_traits, *b.custom_traits):
        slot = f"t.{name}"
        candidates = [(p.trait_times.get(slot, 0.0), p.custom_traits[name]) for p in (a, b) if name in p.custom_traits]
        at, value = max(candidates, key=lambda c: (c[0], str(c[1])))
        custom[name], times[slot] = value, at
    if len(custom) > MAX_CUSTOM_TRAITS:
        kept = _top(custom, MAX_CUSTOM_TRAITS, lambda k: times[f"t.{k}"])
        for name in set(custom) - set(kept):
            del times[f"t.{name}"]
        custom = kept
    changes["custom_traits"] = custom
    changes["trait_times"] = times
    return changes


def _merge_ledgers(a: Profile, b: Profile) -> tuple[dict[str, OrderRecord], list[OrderRecord], int]:
    """Union of the order ledgers, the records counted twice by the summed counters, and the refunds
    counted twice (an order refunded in both)."""
    ledger = dict(a.order_ledger)
    double_counted: list[OrderRecord] = []
    double_refunds = 0
    for order_id, theirs in b.order_ledger.items():
        mine = ledger.get(order_id)
        if mine is None:
            ledger[order_id] = theirs
            continue
        counted = sorted((r for r in (mine, theirs) if r.known and not r.refunded), key=_record_order)
        refunded = mine.refunded or theirs.refunded
        known = sorted((r for r in (mine, theirs) if r.known), key=_record_order)
        base = known[0] if known else min(mine, theirs, key=_record_order)
        ledger[order_id] = msgspec.structs.replace(base, refunded=refunded)
        double_counted.extend(counted if refunded else counted[1:])
        double_refunds += mine.refunded and theirs.refunded
    if len(ledger) > MAX_LEDGER_ORDERS:
        ledger = _top(ledger, MAX_LEDGER_ORDERS, lambda k: ledger[k].at)
    return ledger, double_counted, double_refunds


def _record_order(record: OrderRecord) -> tuple:
    return (record.at, record.revenue, record.payment_method, record.product_ids, record.coupon)


def _merge_nested(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]], outer: int, inner: int) -> dict:
    merged = {k: dict(v) for k, v in a.items()}
    for key, counts in b.items():
        merged[key] = _add_counts(merged.get(key, {}), counts, inner)
    return _top(merged, outer, lambda k: sum(merged[k].values()))


def _merge_purchases(a: dict[str, tuple[float, ...]], b: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    merged = dict(a)
    for product_id, times in b.items():
        merged[product_id] = _merge_times(merged.get(product_id, ()), times, MAX_PURCHASES_PER_PRODUCT)
    return _top(merged, MAX_PURCHASED_PRODUCTS, lambda k: merged[k][-1])


def _merge_consent(a: Profile, b: Profile) -> dict[str, Any]:
    consent, times = dict(a.consent), dict(a.consent_updated_at)
    for channel, granted in b.consent.items():
        at = b.consent_updated_at.get(channel, 0.0)
        if is_newer(at, granted, times.get(channel) if channel in consent else None, consent.get(channel)):
            consent[channel], times[channel] = granted, at
    consent = _top(consent, MAX_CHANNELS, lambda k: times.get(k, 0.0))
    return {"consent": consent, "consent_updated_at": {k: v for k, v in times.items() if k in consent}}


def holds_every_event_of(into: Profile, absorbed: Profile) -> bool:
    """True when ``into`` has already applied every event ``absorbed`` applied (by message id): merging it
    again would count them twice (issue 10). It happens when a crash rolled back the alias's key but not
    the customer's merge: a replayed event that links the alias again at another time (so another
    ``absorb_id``) makes the alias send its old profile once more. A profile with any event the customer
    lacks is still merged (its data would be lost otherwise), as is one the customer's capped
    ``applied_ids`` no longer covers."""
    return bool(absorbed.applied_ids) and set(absorbed.applied_ids) <= set(into.applied_ids)


def merge_profiles(into: Profile, absorbed: Profile, *, policy: ProfilePolicy = DEFAULT_POLICY) -> Profile:
    """One profile of the customer ``into.customer_id`` holding what both profiles know.

    Counters add; first_seen is the earliest, last_seen (and every other "latest time") the latest;
    lists and sets are unions within their caps; applied message ids are united (a replayed event is
    still deduplicated); count dicts add; traits and consent are last-write-wins by event time; the cart
    merges per product keeping the latest change (and drops what the latest order bought); orders known
    to both ledgers are counted once. ``user_id``, ``segments`` and ``scores`` are ``into``'s when set.

    Counters, min/max times and set unions are commutative and associative (below the caps, where
    eviction keeps the top entries by a deterministic order). Affinities decay with
    ``policy.affinity_half_life_s``, the half-life they were added with.
    """
    a, b = into, absorbed
    last_order_at = max(a.last_order_at, b.last_order_at)
    ledger, double_counted, double_refunds = _merge_ledgers(a, b)
    last_active = max((a.last_active_at, a.last_session_id), (b.last_active_at, b.last_session_id))
    counts = _add_counts(a.event_counts, b.event_counts, 10**9)
    last_at = {k: max(a.event_last_at.get(k, 0.0), b.event_last_at.get(k, 0.0)) for k in counts}
    counts = _top(counts, MAX_EVENT_NAMES, lambda k: last_at[k])
    viewed: dict[str, float] = {}
    for product_id, at in (*a.recently_viewed, *b.recently_viewed):
        viewed[product_id] = max(at, viewed.get(product_id, at))
    groups, group_times = merge_groups(a.groups, a.group_times, b.groups, b.group_times)
    merged = msgspec.structs.replace(
        a,
        first_seen=min((x for x in (a.first_seen, b.first_seen) if x), default=0.0),
        last_seen=max(a.last_seen, b.last_seen),
        event_count=a.event_count + b.event_count,
        cart=_merge_cart(a, b, last_order_at),
        cart_updated_at=max(a.cart_updated_at, b.cart_updated_at),
        last_checkout_at=max(a.last_checkout_at, b.last_checkout_at),
        orders=a.orders + b.orders,
        revenue=a.revenue + b.revenue,
        last_order_at=last_order_at,
        triggers_sent=_union(b.triggers_sent, a.triggers_sent, MAX_TRIGGERS_REMEMBERED),
        applied_ids=_union(b.applied_ids, a.applied_ids, MAX_APPLIED_IDS),
        user_id=a.user_id or b.user_id,
        anonymous_ids=_union(b.anonymous_ids, a.anonymous_ids, MAX_ANONYMOUS_IDS),
        linked_ids=tuple(
            i for i in _union(b.linked_ids, (*a.linked_ids, b.customer_id), MAX_LINKED_IDS + 1) if i != a.customer_id
        )[-MAX_LINKED_IDS:],
        absorbed_ids=_union(b.absorbed_ids, a.absorbed_ids, MAX_ABSORBED_IDS),
        **_merge_traits(a, b),
        groups=groups,
        group_times=group_times,
        sessions=a.sessions + b.sessions,
        last_session_id=last_active[1],
        last_active_at=last_active[0],
        devices=_union(b.devices, a.devices, MAX_DEVICES),
        product_views=_add_counts(a.product_views, b.product_views, MAX_PRODUCT_VIEWS),
        category_views=_add_counts(a.category_views, b.category_views, MAX_CATEGORY_VIEWS),
        category_affinity=_merge_affinity(a.category_affinity, b.category_affinity, policy.affinity_half_life_s),
        recently_viewed=tuple(sorted(viewed.items(), key=lambda e: (e[1], e[0])))[-MAX_RECENTLY_VIEWED:],
        event_counts=counts,
        event_last_at={k: last_at[k] for k in counts},
        order_times=_merge_times(a.order_times, b.order_times, MAX_ORDER_TIMES),
        product_purchases=_merge_purchases(a.product_purchases, b.product_purchases),
        orders_with_coupon=a.orders_with_coupon + b.orders_with_coupon,
        payment_methods=_add_counts(a.payment_methods, b.payment_methods, MAX_PAYMENT_METHODS),
        size_counts=_merge_nested(a.size_counts, b.size_counts, MAX_SIZE_CATEGORIES, MAX_SIZES_PER_CATEGORY),
        stores_visited=_union(b.stores_visited, a.stores_visited, MAX_STORES),
        order_ledger=ledger,
        refunds=a.refunds + b.refunds - double_refunds,
        engagement=_merge_nested(a.engagement, b.engagement, MAX_CHANNELS, 10**9),
        **_merge_consent(a, b),
        **merge_trigger_state(a, b, MAX_TRIGGER_HISTORY),
    )
    for record in double_counted:
        merged = msgspec.structs.replace(merged, **order_contribution(merged, record, -1))
    return merged
