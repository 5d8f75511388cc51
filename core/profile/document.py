"""``profile_document``: the API's JSON view of a profile.

Stored fields as the API always showed them, then the computed traits of ``core.traits`` where their
``Trait.document`` places them (a section of their own, or the ``computed`` section). Never
``applied_ids`` (nor any raw PII, which the profile lacks).
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.profile.policy import DEFAULT_POLICY, ProfilePolicy
from core.traits import COMPUTED, TOP, TRAITS
from schemas.profile import Profile

_TOP_TRAITS = tuple(trait for trait in TRAITS.values() if trait.document == TOP)
_COMPUTED_TRAITS = tuple(trait for trait in TRAITS.values() if trait.document == COMPUTED)


def _stored_in_computed(profile: Profile) -> dict[str, Any]:
    """Stored fields the API shows in its ``computed`` section (``devices`` as a count, ``recently_viewed``
    as product ids: the API's shapes of those fields)."""
    return {
        "sessions": profile.sessions,
        "devices": len(profile.devices),
        "product_views": dict(profile.product_views),
        "category_views": dict(profile.category_views),
        "recently_viewed": [product_id for product_id, _ in profile.recently_viewed],
        "payment_methods": dict(profile.payment_methods),
        "stores_visited": list(profile.stores_visited),
        "product_purchases": {k: list(v) for k, v in profile.product_purchases.items()},
        "refunds": profile.refunds,
        "event_counts": dict(profile.event_counts),
        "event_last_at": dict(profile.event_last_at),
    }


def profile_document(profile: Profile, *, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """The API/JSON view at ``now``: stored fields, identity, traits, computed traits, consent, segments, scores,
    and the triggers pending and recently decided."""
    document: dict[str, Any] = {
        "customer_id": profile.customer_id,
        "user_id": profile.user_id,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "event_count": profile.event_count,
        "cart": [msgspec.to_builtins(item) for item in profile.cart],
        "cart_updated_at": profile.cart_updated_at,
        "last_checkout_at": profile.last_checkout_at,
        "orders": profile.orders,
        "revenue": profile.revenue,
        "last_order_at": profile.last_order_at,
        "triggers_sent": list(profile.triggers_sent),
    }
    for trait in _TOP_TRAITS:
        document[trait.document_key or trait.name] = trait.fn(profile, now, policy)
    computed = _stored_in_computed(profile)
    for trait in _COMPUTED_TRAITS:
        computed[trait.document_key or trait.name] = trait.fn(profile, now, policy)
    document["computed"] = computed
    document["groups"] = {group_id: dict(traits) for group_id, traits in profile.groups.items()}
    document["engagement"] = {channel: dict(counts) for channel, counts in profile.engagement.items()}
    document["consent"] = {
        channel: {"granted": granted, "updated_at": profile.consent_updated_at.get(channel)}
        for channel, granted in profile.consent.items()
    }
    document["segments"] = list(profile.segments)
    document["scores"] = dict(profile.scores)
    document["triggers"] = {
        "pending": [
            {**msgspec.to_builtins(p), "state": "waiting" if p.due_at > now else "held"}
            for p in profile.pending_triggers
        ],
        "recent": [msgspec.to_builtins(outcome) for outcome in profile.trigger_history],
    }
    return document
