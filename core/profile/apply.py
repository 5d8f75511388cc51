"""``apply_event``: the pure function that applies one event to a customer's profile.

``apply_event(profile, event, now=..., policy=...)`` returns a new profile; it never mutates its input
(nor the dicts and tuples inside it: every change builds a new container) and never reads the clock.
Replays are harmless: an event whose ``message_id`` the profile has already applied returns the profile
unchanged (this is what makes at-least-once delivery apply each update once). Times stored in the profile
are event times, never processing times: applying the same events in another order, or replaying them,
gives the same profile wherever that is possible.

Identify traits are handled in ``core.profile.identify``, orders and refunds in ``core.profile.orders``;
the rest (identity ids, sessions, clickstream, cart, messaging, consent) here.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from core.groups import apply_group_call
from core.profile.affinity import with_affinity
from core.profile.applied import AppliedIds
from core.profile.bounded import bump, clipped_id, clipped_text, is_newer, product_id_of, remember
from core.profile.identify import trait_changes
from core.profile.orders import order_changes, refund_changes
from core.profile.policy import (
    DEFAULT_POLICY,
    MAX_ANONYMOUS_IDS,
    MAX_CART_ITEMS,
    MAX_CATEGORY_VIEWS,
    MAX_CHANNELS,
    MAX_DEVICES,
    MAX_EVENT_NAMES,
    MAX_PRODUCT_VIEWS,
    MAX_RECENTLY_VIEWED,
    MAX_TEXT_BYTES,
    MAX_URL_BYTES,
    ProfilePolicy,
)
from core.triggers.contact import (
    HARD_BOUNCE,
    HARD_BOUNCE_TYPES,
    SPAM_COMPLAINT,
    SPAM_REASONS,
    UNSUBSCRIBED,
    WEBPUSH_EVENTS,
)
from schemas.events import MESSAGING, Event
from schemas.profile import CartItem, Profile

ENGAGEMENT_METRICS = {
    "Message Sent": "sent",
    "Message Delivered": "delivered",
    "Message Opened": "opened",
    "Message Clicked": "clicked",
    "Message Bounced": "bounced",
    "Message Replied": "replied",
    "Unsubscribed": "unsubscribed",
}
# Events that are not the customer's own activity: they never open a session.
PASSIVE_EVENTS = frozenset(
    {*ENGAGEMENT_METRICS, *WEBPUSH_EVENTS, "Consent Updated", "Deletion Requested", "Order Refunded", "Order Cancelled"}
)
MAX_PUSH_TOKEN_CHARS = 4096  # longer is not a push token: ignored
# Calls that describe the customer rather than record an action: they never open a session either.
PASSIVE_TYPES = frozenset({"identify", "alias", "group"})
# The replay guard's sets of recent message ids (a memo: answers are the tuples', see core.profile.applied).
APPLIED_IDS = AppliedIds()


def new_profile(customer_id: str) -> Profile:
    return Profile(customer_id=customer_id)


# --- identity and activity (every event) ---------------------------------------------------------


def _identity_changes(profile: Profile, event: Event) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if profile.user_id is None and event.user_id is not None and event.user_id == profile.customer_id:
        changes["user_id"] = event.user_id
    anonymous_id = event.anonymous_id
    if anonymous_id and anonymous_id != profile.customer_id:
        anonymous_ids = remember(profile.anonymous_ids, clipped_id(anonymous_id), MAX_ANONYMOUS_IDS)
        if anonymous_ids is not profile.anonymous_ids:
            changes["anonymous_ids"] = anonymous_ids
    device = event.context.get("device")
    device_id = device.get("id") if isinstance(device, dict) else None
    device_id = device_id or anonymous_id
    if device_id:
        devices = remember(profile.devices, clipped_id(device_id), MAX_DEVICES)
        if devices is not profile.devices:
            changes["devices"] = devices
    token = device.get("token") if isinstance(device, dict) else None
    if token and isinstance(token, str) and len(token) <= MAX_PUSH_TOKEN_CHARS:
        changes.update(_push_token_changes(profile, token, event.timestamp))
    return changes


def _push_token_changes(profile: Profile, token: str, at: float) -> dict[str, Any]:
    """The app push token (Segment ``context.device.token``), kept as a short hash: latest wins."""
    if at < profile.push_token_at:
        return {}
    token_hash = hashlib.blake2b(token.encode(), digest_size=12).hexdigest()
    if token_hash == profile.push_token_hash:
        return {}
    return {"push_token_hash": token_hash, "push_token_at": at}


def _activity_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    """Sessions (a gap over ``session_timeout_s`` or a new ``context.session_id``) and track-event counts."""
    changes: dict[str, Any] = {}
    at = event.timestamp
    name = event.event
    if event.type == "track" and name:
        name = clipped_id(name)
        counts = dict(profile.event_counts)
        last_at = dict(profile.event_last_at)
        counts[name] = counts.get(name, 0) + 1
        last_at[name] = max(last_at.get(name, at), at)
        if len(counts) > MAX_EVENT_NAMES:
            stalest = min((k for k in counts if k != name), key=lambda k: (last_at.get(k, 0.0), k))
            del counts[stalest]
            last_at.pop(stalest, None)
        changes["event_counts"] = counts
        changes["event_last_at"] = last_at
    is_activity = event.type not in PASSIVE_TYPES and event.family != MESSAGING and name not in PASSIVE_EVENTS
    if not is_activity:
        return changes
    session_id = event.context.get("session_id") or event.context.get("sessionId")
    latest = at >= profile.last_active_at
    if session_id:
        session_id = clipped_id(session_id)
        opens = latest and session_id != profile.last_session_id
        if latest:
            changes["last_session_id"] = session_id
    else:
        opens = profile.last_active_at == 0.0 or at - profile.last_active_at > policy.session_timeout_s
    if opens:
        changes["sessions"] = profile.sessions + 1
    if latest:
        changes["last_active_at"] = at
    return changes


# --- clickstream -------------------------------------------------------------------------------


def _view_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    props = event.properties
    at = event.timestamp
    changes: dict[str, Any] = {}
    category = clipped_id(props.get("category") or "")
    if event.event == "Product Viewed":
        product_id = product_id_of(props)
        if product_id:
            changes["product_views"] = bump(profile.product_views, product_id, 1, MAX_PRODUCT_VIEWS)
            seen_at = at
            seen = []
            for entry in profile.recently_viewed:
                if entry[0] == product_id:
                    seen_at = max(seen_at, entry[1])
                else:
                    seen.append(entry)
            entry = (product_id, seen_at)
            # Ordered by (time, product id), the order merge_profiles keeps too.
            viewed = (
                (*seen, entry)
                if not seen or (entry[1], entry[0]) >= (seen[-1][1], seen[-1][0])
                else tuple(sorted((*seen, entry), key=lambda e: (e[1], e[0])))
            )
            changes["recently_viewed"] = viewed[-MAX_RECENTLY_VIEWED:]
        weight = policy.affinity_view
    else:
        weight = policy.affinity_list_view
    if category:
        changes["category_views"] = bump(profile.category_views, category, 1, MAX_CATEGORY_VIEWS)
        changes["category_affinity"] = with_affinity(profile.category_affinity, category, weight, at, policy)
    return changes


def _cart_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    props = event.properties
    name = event.event
    at = event.timestamp
    if name == "Checkout Started":
        return {"last_checkout_at": max(profile.last_checkout_at, at)}
    if at <= profile.last_order_at:
        # Older than the last order (arrived late from another topic): already bought or gone.
        return {}
    product_id = product_id_of(props)
    if not product_id:
        return {}
    others = tuple(item for item in profile.cart if item.product_id != product_id)
    current = next((item for item in profile.cart if item.product_id == product_id), None)
    quantity = int(props.get("quantity") or 1)
    changes: dict[str, Any] = {}
    if name == "Product Added":
        total = quantity + (current.quantity if current else 0)
        category = clipped_id(props.get("category") or "")
        item = CartItem(
            product_id=product_id,
            quantity=total,
            price=int(props.get("price") or 0),
            added_at=at,
            name=clipped_text(str(props.get("name") or ""), MAX_TEXT_BYTES),
            category=category,
            image_url=clipped_text(str(props.get("image_url") or ""), MAX_URL_BYTES),
            url=clipped_text(str(props.get("url") or ""), MAX_URL_BYTES),
            currency=str(props.get("currency") or "")[:3],
        )
        changes["cart"] = (*others, item)[-MAX_CART_ITEMS:]
        if category:
            changes["category_affinity"] = with_affinity(
                profile.category_affinity, category, policy.affinity_add, at, policy
            )
    else:
        remaining = (current.quantity if current else 0) - quantity
        changes["cart"] = (
            others
            if remaining <= 0 or current is None
            else (*others, msgspec.structs.replace(current, quantity=remaining))
        )
    changes["cart_updated_at"] = max(profile.cart_updated_at, at)
    return changes


# --- messaging and consent -------------------------------------------------------------------------


def _with_consent(profile: Profile, channel: str, granted: bool, at: float) -> dict[str, Any]:
    if not is_newer(at, granted, profile.consent_updated_at.get(channel), profile.consent.get(channel)):
        return {}
    consent = {**profile.consent, channel: granted}
    times = {**profile.consent_updated_at, channel: at}
    if len(consent) > MAX_CHANNELS:
        stalest = min((k for k in consent if k != channel), key=lambda k: (times.get(k, 0.0), k))
        del consent[stalest]
        times.pop(stalest, None)
    return {"consent": consent, "consent_updated_at": times}


def _with_suppression(profile: Profile, channel: str, why: str | None, at: float) -> dict[str, Any]:
    """``channel`` suppressed for ``why`` (None: lifted) as of ``at``, unless a later change is known."""
    if at < profile.suppressed_at.get(channel, float("-inf")) or profile.suppressed.get(channel) == why:
        return {}
    suppressed = {k: v for k, v in profile.suppressed.items() if k != channel}
    times = {k: v for k, v in profile.suppressed_at.items() if k != channel}
    if why is not None:
        suppressed[channel], times[channel] = why, at
        if len(suppressed) > MAX_CHANNELS:
            stalest = min((k for k in suppressed if k != channel), key=lambda k: (times.get(k, 0.0), k))
            del suppressed[stalest]
            times.pop(stalest, None)
    return {"suppressed": suppressed, "suppressed_at": times}


def _message_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    channel = clipped_id(event.properties.get("channel") or "email")[:32]
    metric = ENGAGEMENT_METRICS[event.event or ""]
    counts = profile.engagement.get(channel, {})
    engagement = dict(profile.engagement)
    engagement[channel] = {**counts, metric: counts.get(metric, 0) + 1}
    if len(engagement) > MAX_CHANNELS:
        del engagement[min((k for k in engagement if k != channel), key=lambda k: (sum(engagement[k].values()), k))]
    changes: dict[str, Any] = {"engagement": engagement}
    at = event.timestamp
    if metric == "unsubscribed":
        changes.update(_with_consent(profile, channel, False, at))
        spam = str(event.properties.get("reason") or "").lower() in SPAM_REASONS
        changes.update(_with_suppression(profile, channel, SPAM_COMPLAINT if spam else UNSUBSCRIBED, at))
    elif metric == "bounced" and str(event.properties.get("bounce_type") or "").lower() in HARD_BOUNCE_TYPES:
        changes.update(_with_suppression(profile, channel, HARD_BOUNCE, at))
    return changes


def _consent_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    channel = event.properties.get("channel")
    granted = event.properties.get("granted")
    if not channel or not isinstance(granted, bool):
        return {}
    channel = clipped_id(channel)[:32]
    changes = _with_consent(profile, channel, granted, event.timestamp)
    if granted and changes and profile.suppressed.get(channel) == UNSUBSCRIBED:
        changes.update(_with_suppression(profile, channel, None, event.timestamp))  # opted in again
    return changes


def _webpush_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    """``Push Subscribed`` / ``Push Unsubscribed``: the browser's web push subscription, latest wins."""
    subscribed = WEBPUSH_EVENTS[event.event or ""]
    at = event.timestamp
    if (at, subscribed) <= (profile.webpush_at, profile.webpush_subscribed):
        return {}
    return {"webpush_subscribed": subscribed, "webpush_at": at}


def _contact_lifts(before: Profile, changes: dict[str, Any]) -> dict[str, Any]:
    """A new email (phone) lifts a hard bounce of email (sms, whatsapp): the old address bounced."""
    lifted: dict[str, Any] = {}
    for field, channels in (("email_hash", ("email",)), ("phone_hash", ("sms", "whatsapp"))):
        new = changes.get(field)
        if new is None or new == getattr(before, field):
            continue
        for channel in channels:
            if before.suppressed.get(channel) == HARD_BOUNCE:
                current = msgspec.structs.replace(before, **lifted) if lifted else before
                lifted.update(_with_suppression(current, channel, None, before.suppressed_at[channel]))
    return lifted


_TRACK_HANDLERS = {
    "Product Viewed": _view_changes,
    "Product List Viewed": _view_changes,
    "Product Added": _cart_changes,
    "Product Removed": _cart_changes,
    "Checkout Started": _cart_changes,
    "Order Completed": order_changes,
    "Order Refunded": refund_changes,
    "Order Cancelled": refund_changes,  # a cancelled order is reversed exactly like a refunded one
    "Consent Updated": _consent_changes,
    **dict.fromkeys(WEBPUSH_EVENTS, _webpush_changes),
    **{name: _message_changes for name in ENGAGEMENT_METRICS},
}


def apply_event(profile: Profile | None, event: Event, *, now: float, policy: ProfilePolicy | None = None) -> Profile:
    """Return ``profile`` with ``event`` applied (a new profile keyed by ``event.routing_id`` if None).

    ``now`` is accepted for the stage's signature but unused: every stored time is the event's time,
    so replays and reordering give the same profile. ``policy`` carries the PII hash key and the
    session/affinity parameters; without it email and phone are dropped rather than hashed.
    Track events by name: Product Viewed / Product List Viewed, Product Added / Removed, Checkout
    Started, Order Completed, Order Refunded, Message *, Unsubscribed, Consent Updated; identify updates
    traits; every track name is counted in ``event_counts``.
    """
    del now
    policy = policy or DEFAULT_POLICY
    current = profile or new_profile(event.routing_id)
    applied_id = clipped_id(event.message_id)  # as remembered: a long non-ASCII id is clipped like any id
    if APPLIED_IDS.contains(current.applied_ids, applied_id):
        return current
    changes = _identity_changes(current, event)
    changes.update(_activity_changes(current, event, policy))
    if event.type == "identify":
        changes.update(trait_changes(current, event, policy))
        if current.suppressed:
            changes.update(_contact_lifts(current, changes))
    elif event.type == "group" and event.group_id:
        changes["groups"], changes["group_times"] = apply_group_call(
            current.groups, current.group_times, event.group_id, event.traits, event.timestamp
        )
    elif event.type == "track":
        handler = _TRACK_HANDLERS.get(event.event or "")
        if handler is not None:
            changes.update(handler(current, event, policy))
    at = event.timestamp
    changes["first_seen"] = min(current.first_seen or at, at)
    changes["last_seen"] = max(current.last_seen, at)
    changes["event_count"] = current.event_count + 1
    changes["applied_ids"] = APPLIED_IDS.appended(current.applied_ids, applied_id, policy.max_applied_ids)
    return msgspec.structs.replace(current, **changes)
