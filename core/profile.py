"""The per-customer 360° profile and the pure function that applies one event to it.

``apply_event(profile, event, now=..., policy=...)`` returns a new profile; it never mutates its input
(nor the dicts and tuples inside it: every change builds a new container) and never reads the clock.
Replays are harmless: an event whose ``message_id`` the profile has already applied returns the profile
unchanged (this is what makes at-least-once delivery apply each update once).

Every collection in a profile is capped (``MAX_*`` below), so a profile has a bounded size however many
events a customer sends. Times stored in the profile are event times, never processing times: applying
the same events in another order, or replaying them, gives the same profile wherever that is possible.

Derived traits (average order value, days since last order, RFM, lifecycle stage, decayed category
affinity, preferred sizes, coupon use rate) are functions of the profile and ``now`` at the end of
this module, and ``profile_document`` is the JSON view of the API. Merging two profiles of one customer is ``core.identity.merge_profiles``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from core.privacy import hash_identifier, is_pii_trait, looks_like_contact, trait_key
from schemas.events import MESSAGING, Event
from schemas.triggers import PendingTrigger, TriggerOutcome

Scalar = str | int | float | bool


class CartItem(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str
    quantity: int
    price: int  # minor units
    added_at: float
    name: str = ""
    category: str = ""
    image_url: str = ""  # as the Product Added event carried them, for trigger messages
    url: str = ""
    currency: str = ""


class Affinity(msgspec.Struct, frozen=True, array_like=True):
    """A time-decayed score: ``value`` as of time ``at`` (decays with ``ProfilePolicy.affinity_half_life_s``)."""

    value: float
    at: float


class OrderRecord(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """What one order added to the profile, kept so that a refund reverses exactly that.

    ``known`` is False for a refund that arrived before (or without) its order: the order then counts
    for nothing when it arrives. ``refunded`` is set once; a second refund changes nothing.
    """

    at: float
    revenue: int = 0
    coupon: bool = False
    payment_method: str = ""
    product_ids: tuple[str, ...] = ()
    known: bool = True
    refunded: bool = False


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Everything streamcdp knows about one customer (keyed by canonical customer id).

    No raw email or phone number: only keyed hashes (``core.privacy.hash_identifier``).
    """

    customer_id: str
    first_seen: float = 0.0
    last_seen: float = 0.0
    event_count: int = 0
    cart: tuple[CartItem, ...] = ()
    cart_updated_at: float = 0.0
    last_checkout_at: float = 0.0
    orders: int = 0  # orders placed minus orders refunded
    revenue: int = 0  # minor units, net of refunds
    last_order_at: float = 0.0  # latest order placed (a refund does not move it back)
    triggers_sent: tuple[str, ...] = ()  # recent trigger ids, newest last (capped)
    applied_ids: tuple[str, ...] = ()  # recent message ids, newest last (capped): replay guard

    # --- identity ------------------------------------------------------------------------------
    user_id: str | None = None
    anonymous_ids: tuple[str, ...] = ()  # first-seen order (capped)
    linked_ids: tuple[str, ...] = ()  # every id this profile asked to link or absorbed (capped)
    absorbed_ids: tuple[str, ...] = ()  # absorb ids already merged in (capped): absorb replay guard
    email_hash: str | None = None
    phone_hash: str | None = None

    # --- traits from identify (last write wins by event time, see trait_times) -----------------
    age_band: str | None = None
    gender: str | None = None
    city: str | None = None
    country: str | None = None
    timezone: str | None = None
    loyalty_tier: str | None = None
    preferred_channel: str | None = None
    custom_traits: dict[str, Scalar] = {}  # other scalar traits, never PII (capped)
    trait_times: dict[str, float] = {}  # field name (or "t." + custom trait) → event time of its value

    # --- activity ------------------------------------------------------------------------------
    sessions: int = 0
    last_session_id: str = ""
    last_active_at: float = 0.0  # latest user-activity event (sessions are split on its gaps)
    devices: tuple[str, ...] = ()  # first-seen order (capped)
    product_views: dict[str, int] = {}
    category_views: dict[str, int] = {}
    category_affinity: dict[str, Affinity] = {}
    recently_viewed: tuple[tuple[str, float], ...] = ()  # (product_id, viewed_at), oldest first (capped)
    event_counts: dict[str, int] = {}  # per track event name (capped: least recently seen evicted)
    event_last_at: dict[str, float] = {}

    # --- purchases -----------------------------------------------------------------------------
    order_times: tuple[float, ...] = ()  # sorted, most recent MAX_ORDER_TIMES orders
    product_purchases: dict[str, tuple[float, ...]] = {}  # product_id → sorted purchase times (capped)
    orders_with_coupon: int = 0
    payment_methods: dict[str, int] = {}
    size_counts: dict[str, dict[str, int]] = {}  # category → size → times bought
    stores_visited: tuple[str, ...] = ()  # store ids of orders, first-seen order (capped)
    order_ledger: dict[str, OrderRecord] = {}  # recent order_id → what it added (capped)
    refunds: int = 0  # distinct refunded order ids seen

    # --- messaging -----------------------------------------------------------------------------
    engagement: dict[str, dict[str, int]] = {}  # channel → sent/delivered/opened/... → count
    consent: dict[str, bool] = {}  # channel → granted
    consent_updated_at: dict[str, float] = {}

    # --- filled by core.audiences (segments and scores); apply_event leaves them untouched ------
    segments: tuple[str, ...] = ()
    scores: dict[str, float] = {}
    audience_version: str = ""  # which segment definitions + model produced segments/scores
    audience_due_at: float | None = None  # when time alone next changes a membership (None: never)
    audience_refreshed_at: float = 0.0  # when segments/scores were last evaluated

    # --- filled by core.triggers (the trigger engine); apply_event leaves them untouched ---------
    pending_triggers: tuple[PendingTrigger, ...] = ()  # at most one per kind
    trigger_history: tuple[TriggerOutcome, ...] = ()  # recent outcomes, newest last (capped)
    trigger_last_sent: dict[str, float] = {}  # kind → when one was last sent (re_entry)


MAX_APPLIED_IDS = 256
MAX_TRIGGERS_REMEMBERED = 32
MAX_TRIGGER_HISTORY = 16
MAX_CART_ITEMS = 50
MAX_ANONYMOUS_IDS = 20
MAX_LINKED_IDS = 256
MAX_ABSORBED_IDS = 64
MAX_CUSTOM_TRAITS = 32
MAX_TRAIT_CHARS = 200
MAX_DEVICES = 20
MAX_PRODUCT_VIEWS = 100
MAX_CATEGORY_VIEWS = 50
MAX_AFFINITIES = 30
MAX_RECENTLY_VIEWED = 20
MAX_EVENT_NAMES = 50
MAX_ORDER_TIMES = 50
MAX_PURCHASED_PRODUCTS = 200
MAX_PURCHASES_PER_PRODUCT = 10
MAX_PAYMENT_METHODS = 10
MAX_SIZE_CATEGORIES = 20
MAX_SIZES_PER_CATEGORY = 10
MAX_STORES = 20
MAX_LEDGER_ORDERS = 50
MAX_PRODUCTS_PER_ORDER = 20
MAX_CHANNELS = 8
MAX_ID_CHARS = 128

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
PASSIVE_EVENTS = frozenset({*ENGAGEMENT_METRICS, "Consent Updated", "Deletion Requested", "Order Refunded"})
DAY_S = 86400.0


@dataclass(frozen=True)
class ProfilePolicy:
    """What ``apply_event`` decides by; built once from ``Settings`` and passed in (never a global).

    ``pii_hash_key`` is ``Settings.pii_hash_key``; with None, email and phone are dropped, not hashed.
    """

    pii_hash_key: str | bytes | None = None
    max_applied_ids: int = MAX_APPLIED_IDS  # replay guard: how many recent message ids each profile keeps
    session_timeout_s: float = 1800.0
    affinity_half_life_s: float = 14 * DAY_S
    affinity_view: float = 1.0
    affinity_list_view: float = 0.5
    affinity_add: float = 3.0
    affinity_purchase: float = 5.0


NO_KEY_POLICY = ProfilePolicy()


def new_profile(customer_id: str) -> Profile:
    return Profile(customer_id=customer_id)


def capped_append(items: tuple, item: object, cap: int) -> tuple:
    """``items`` with ``item`` appended, the oldest dropped past ``cap``."""
    return items + (item,) if len(items) < cap else items[len(items) - cap + 1 :] + (item,)


# --- small immutable-collection helpers ----------------------------------------------------------


def _remember(items: tuple[str, ...], item: str, cap: int) -> tuple[str, ...]:
    """``items`` with ``item`` added if new (first-seen order), the oldest dropped past ``cap``."""
    if item in items:
        return items
    return capped_append(items, item, cap)


def _bump(counts: dict[str, int], key: str, by: int, cap: int) -> dict[str, int]:
    """A copy of ``counts`` with ``key`` increased.

    Past ``cap`` + a quarter, the dict is trimmed back to ``cap`` entries, dropping the smallest counts
    other than ``key`` (ties: larger key first): one sort per ``cap / 4`` new keys instead of a scan
    per event, so a full dict stays cheap to update. A dict therefore holds at most ``cap * 5 / 4`` keys.
    """
    updated = dict(counts)
    updated[key] = updated.get(key, 0) + by
    if len(updated) > cap + cap // 4:
        ranked = sorted((k for k in updated if k != key), key=lambda k: (-updated[k], k))
        for dropped in ranked[cap - 1 :]:
            del updated[dropped]
    return updated


def _decrement(counts: dict[str, int], key: str) -> dict[str, int]:
    """A copy of ``counts`` with ``key`` decreased by one (never below zero; zero removes the key)."""
    if key not in counts:
        return counts
    updated = dict(counts)
    if updated[key] <= 1:
        del updated[key]
    else:
        updated[key] -= 1
    return updated


def is_newer(at: float, value: object, old_at: float | None, old_value: object) -> bool:
    """Last-write-wins order: later time wins; on a tie the larger ``str(value)`` (so merges commute)."""
    if old_at is None:
        return True
    return (at, str(value)) > (old_at, str(old_value))


def decay(value: float, from_at: float, to_at: float, half_life_s: float) -> float:
    """``value`` decayed from time ``from_at`` to ``to_at`` (no growth when ``to_at`` is earlier)."""
    if to_at <= from_at:
        return value
    return value * math.pow(0.5, (to_at - from_at) / half_life_s)


def add_affinity(affinity: Affinity | None, weight: float, at: float, half_life_s: float) -> Affinity:
    """``affinity`` plus ``weight`` earned at ``at``; late weights are decayed to the stored time.

    The stored value is a sum of decayed weights, so adding in any order gives the same value.
    """
    if affinity is None:
        return Affinity(weight, at)
    if at >= affinity.at:
        return Affinity(decay(affinity.value, affinity.at, at, half_life_s) + weight, at)
    return Affinity(affinity.value + decay(weight, at, affinity.at, half_life_s), affinity.at)


def _with_affinity(
    affinities: dict[str, Affinity], category: str, weight: float, at: float, policy: ProfilePolicy
) -> dict[str, Affinity]:
    updated = dict(affinities)
    updated[category] = add_affinity(updated.get(category), weight, at, policy.affinity_half_life_s)
    if len(updated) > MAX_AFFINITIES:
        newest = max(a.at for a in updated.values())
        weakest = min(
            (k for k in updated if k != category),
            key=lambda k: (decay(updated[k].value, updated[k].at, newest, policy.affinity_half_life_s), k),
        )
        del updated[weakest]
    return updated


def _insert_sorted(times: tuple[float, ...], at: float, cap: int) -> tuple[float, ...]:
    """``times`` (sorted) with ``at`` added, keeping the latest ``cap``."""
    if not times or at >= times[-1]:
        return (*times, at)[-cap:]
    return tuple(sorted((*times, at)))[-cap:]


def _without_one(times: tuple[float, ...], at: float) -> tuple[float, ...]:
    """``times`` with one occurrence of ``at`` removed (unchanged if absent)."""
    if at not in times:
        return times
    index = times.index(at)
    return times[:index] + times[index + 1 :]


def _short(value: Any) -> str:
    if type(value) is str and len(value) <= MAX_ID_CHARS:
        return value
    return str(value)[:MAX_ID_CHARS]


def product_id_of(properties: dict[str, Any]) -> str:
    return _short(properties.get("product_id") or properties.get("sku") or "")


# --- identity and activity (every event) ---------------------------------------------------------


def _identity_changes(profile: Profile, event: Event) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if profile.user_id is None and event.user_id is not None and event.user_id == profile.customer_id:
        changes["user_id"] = event.user_id
    anonymous_id = event.anonymous_id
    if anonymous_id and anonymous_id != profile.customer_id:
        anonymous_ids = _remember(profile.anonymous_ids, _short(anonymous_id), MAX_ANONYMOUS_IDS)
        if anonymous_ids is not profile.anonymous_ids:
            changes["anonymous_ids"] = anonymous_ids
    device = event.context.get("device")
    device_id = device.get("id") if isinstance(device, dict) else None
    device_id = device_id or anonymous_id
    if device_id:
        devices = _remember(profile.devices, _short(device_id), MAX_DEVICES)
        if devices is not profile.devices:
            changes["devices"] = devices
    return changes


def _activity_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    """Sessions (a gap over ``session_timeout_s`` or a new ``context.session_id``) and track-event counts."""
    changes: dict[str, Any] = {}
    at = event.timestamp
    name = event.event
    if event.type == "track" and name:
        name = name[:MAX_ID_CHARS]
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
    is_activity = event.type not in ("identify", "alias") and event.family != MESSAGING and name not in PASSIVE_EVENTS
    if not is_activity:
        return changes
    session_id = event.context.get("session_id") or event.context.get("sessionId")
    latest = at >= profile.last_active_at
    if session_id:
        session_id = _short(session_id)
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


# --- identify traits -------------------------------------------------------------------------------

AGE_BANDS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (65, "55-64"))
_KNOWN_TRAITS = {
    "gender": "gender",
    "city": "city",
    "country": "country",
    "timezone": "timezone",
    "loyaltytier": "loyalty_tier",
    "tier": "loyalty_tier",
    "preferredchannel": "preferred_channel",
}
_BIRTHDAY_KEYS = ("birthday", "birthdate", "dateofbirth", "dob")


def age_band_of(age: int) -> str:
    """``"<18"``, ``"18-24"``, ``"25-34"``, ``"35-44"``, ``"45-54"``, ``"55-64"`` or ``"65+"``."""
    for limit, label in AGE_BANDS:
        if age < limit:
            return label
    return "65+"


def age_at(birthday: str, at: float) -> int | None:
    """Age in whole years on the (UTC) day of ``at`` of someone born on ISO date ``birthday``."""
    try:
        born = date.fromisoformat(birthday.strip()[:10])
    except ValueError:
        return None
    on = datetime.fromtimestamp(at, tz=UTC).date()
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return age if 0 <= age <= 150 else None


def _age_band_from(traits: dict[str, Any], at: float) -> str | None:
    age = traits.get("age")
    if isinstance(age, (int, float)) and not isinstance(age, bool) and 0 <= age <= 150:
        return age_band_of(int(age))
    for key in _BIRTHDAY_KEYS:
        birthday = traits.get(key)
        if isinstance(birthday, str):
            years = age_at(birthday, at)
            if years is not None:
                return age_band_of(years)
    return None


def _trait_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    """Known traits into their fields, email/phone as keyed hashes, other safe scalars as custom traits."""
    at = event.timestamp
    folded = {trait_key(k): v for k, v in event.traits.items() if isinstance(k, str)}
    address = folded.get("address")
    if isinstance(address, dict):
        for part in ("city", "country"):
            if address.get(part) and part not in folded:
                folded[part] = address[part]
    values: dict[str, Any] = {}  # field → new value
    band = _age_band_from(folded, at)
    if band is not None:
        values["age_band"] = band
    for key, field in _KNOWN_TRAITS.items():
        value = folded.get(key)
        if isinstance(value, str) and value.strip():
            values[field] = (
                value.strip()[:MAX_TRAIT_CHARS].lower() if field == "gender" else value.strip()[:MAX_TRAIT_CHARS]
            )
    if policy.pii_hash_key is not None:
        for key, field in (("email", "email_hash"), ("phone", "phone_hash")):
            value = folded.get(key)
            if isinstance(value, str) and value.strip():
                values[field] = hash_identifier(value, policy.pii_hash_key)
    times = profile.trait_times
    changes: dict[str, Any] = {}
    new_times: dict[str, float] | None = None
    for field, value in values.items():
        if is_newer(at, value, times.get(field), getattr(profile, field)):
            changes[field] = value
            new_times = new_times if new_times is not None else dict(times)
            new_times[field] = at
    custom: dict[str, Scalar] | None = None
    for name, value in event.traits.items():
        if not isinstance(name, str) or is_pii_trait(name) or trait_key(name) in _KNOWN_TRAITS:
            continue
        if trait_key(name) in ("age", "company", "traits", "id", "userid", "anonymousid"):
            continue
        if not isinstance(value, (str, int, float, bool)) or looks_like_contact(value):
            continue
        value = value[:MAX_TRAIT_CHARS] if isinstance(value, str) else value
        name = name[:64]
        slot = f"t.{name}"
        if not is_newer(at, value, times.get(slot), profile.custom_traits.get(name)):
            continue
        custom = custom if custom is not None else dict(profile.custom_traits)
        new_times = new_times if new_times is not None else dict(times)
        custom[name] = value
        new_times[slot] = at
        if len(custom) > MAX_CUSTOM_TRAITS:
            oldest = min((k for k in custom if k != name), key=lambda k: (new_times.get(f"t.{k}", 0.0), k))
            del custom[oldest]
            new_times.pop(f"t.{oldest}", None)
    if custom is not None:
        changes["custom_traits"] = custom
    if new_times is not None:
        changes["trait_times"] = new_times
    return changes


# --- clickstream -------------------------------------------------------------------------------


def _view_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    props = event.properties
    at = event.timestamp
    changes: dict[str, Any] = {}
    category = _short(props.get("category") or "")
    if event.event == "Product Viewed":
        product_id = product_id_of(props)
        if product_id:
            changes["product_views"] = _bump(profile.product_views, product_id, 1, MAX_PRODUCT_VIEWS)
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
        changes["category_views"] = _bump(profile.category_views, category, 1, MAX_CATEGORY_VIEWS)
        changes["category_affinity"] = _with_affinity(profile.category_affinity, category, weight, at, policy)
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
        category = _short(props.get("category") or "")
        item = CartItem(
            product_id=product_id,
            quantity=total,
            price=int(props.get("price") or 0),
            added_at=at,
            name=str(props.get("name") or "")[:MAX_TRAIT_CHARS],
            category=category,
            image_url=str(props.get("image_url") or "")[:500],
            url=str(props.get("url") or "")[:500],
            currency=str(props.get("currency") or "")[:3],
        )
        changes["cart"] = (*others, item)[-MAX_CART_ITEMS:]
        if category:
            changes["category_affinity"] = _with_affinity(
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


# --- orders and refunds ----------------------------------------------------------------------------


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
        changes["order_times"] = _insert_sorted(profile.order_times, record.at, MAX_ORDER_TIMES)
        for product_id in record.product_ids:
            purchases[product_id] = _insert_sorted(purchases.get(product_id, ()), record.at, MAX_PURCHASES_PER_PRODUCT)
        while len(purchases) > MAX_PURCHASED_PRODUCTS:
            del purchases[min(purchases, key=lambda k: (purchases[k][-1], k))]
        if record.payment_method:
            changes["payment_methods"] = _bump(profile.payment_methods, record.payment_method, 1, MAX_PAYMENT_METHODS)
    else:
        changes["order_times"] = _without_one(profile.order_times, record.at)
        for product_id in record.product_ids:
            remaining = _without_one(purchases.get(product_id, ()), record.at)
            if remaining:
                purchases[product_id] = remaining
            else:
                purchases.pop(product_id, None)
        if record.payment_method:
            changes["payment_methods"] = _decrement(profile.payment_methods, record.payment_method)
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


def _order_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    props = event.properties
    at = event.timestamp
    # Items added to the cart up to the order are considered bought.
    changes: dict[str, Any] = {
        "cart": tuple(item for item in profile.cart if item.added_at > at),
        "last_order_at": max(profile.last_order_at, at),
    }
    products = [item for item in props.get("products") or () if isinstance(item, dict)]
    order_id = _short(props.get("order_id") or event.message_id)
    existing = profile.order_ledger.get(order_id)
    if existing is not None and existing.known:
        return changes  # the same order sent twice (other message id): counted once
    record = OrderRecord(
        at=at,
        revenue=int(props.get("total") or props.get("revenue") or 0),
        coupon=bool(props.get("coupon")),
        payment_method=_short(props.get("payment_method") or props.get("paymentMethod") or "")[:40],
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
        changes["stores_visited"] = _remember(profile.stores_visited, _short(store_id), MAX_STORES)
    affinities = profile.category_affinity
    sizes = profile.size_counts
    for item in products:
        category = _short(item.get("category") or "")
        if category:
            affinities = _with_affinity(affinities, category, policy.affinity_purchase, at, policy)
        size = item.get("size")
        if size not in (None, ""):
            per_category = _bump(sizes.get(category or "_", {}), _short(size), 1, MAX_SIZES_PER_CATEGORY)
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


def _refund_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    order_id = event.properties.get("order_id")
    if not order_id:
        return {}
    order_id = _short(order_id)
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


def _message_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    channel = _short(event.properties.get("channel") or "email")[:32]
    metric = ENGAGEMENT_METRICS[event.event or ""]
    counts = profile.engagement.get(channel, {})
    engagement = dict(profile.engagement)
    engagement[channel] = {**counts, metric: counts.get(metric, 0) + 1}
    if len(engagement) > MAX_CHANNELS:
        del engagement[min((k for k in engagement if k != channel), key=lambda k: (sum(engagement[k].values()), k))]
    changes: dict[str, Any] = {"engagement": engagement}
    if metric == "unsubscribed":
        changes.update(_with_consent(profile, channel, False, event.timestamp))
    return changes


def _consent_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    channel = event.properties.get("channel")
    granted = event.properties.get("granted")
    if not channel or not isinstance(granted, bool):
        return {}
    return _with_consent(profile, _short(channel)[:32], granted, event.timestamp)


_TRACK_HANDLERS = {
    "Product Viewed": _view_changes,
    "Product List Viewed": _view_changes,
    "Product Added": _cart_changes,
    "Product Removed": _cart_changes,
    "Checkout Started": _cart_changes,
    "Order Completed": _order_changes,
    "Order Refunded": _refund_changes,
    "Consent Updated": _consent_changes,
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
    policy = policy or NO_KEY_POLICY
    current = profile or new_profile(event.routing_id)
    if event.message_id in current.applied_ids:
        return current
    changes = _identity_changes(current, event)
    changes.update(_activity_changes(current, event, policy))
    if event.type == "identify":
        changes.update(_trait_changes(current, event, policy))
    elif event.type == "track":
        handler = _TRACK_HANDLERS.get(event.event or "")
        if handler is not None:
            changes.update(handler(current, event, policy))
    at = event.timestamp
    changes["first_seen"] = min(current.first_seen or at, at)
    changes["last_seen"] = max(current.last_seen, at)
    changes["event_count"] = current.event_count + 1
    changes["applied_ids"] = capped_append(current.applied_ids, event.message_id, policy.max_applied_ids)
    return msgspec.structs.replace(current, **changes)


# --- derived traits: functions of the profile and now ----------------------------------------------


@dataclass(frozen=True)
class TraitPolicy:
    """Thresholds of the derived traits (documented in ``rfm_scores`` and ``lifecycle_stage``)."""

    recency_days: tuple[float, ...] = (7, 30, 90, 180)  # ≤7 days → 5, ≤30 → 4, ≤90 → 3, ≤180 → 2, else 1
    frequency_orders: tuple[int, ...] = (20, 10, 5, 2)  # ≥20 orders → 5, ≥10 → 4, ≥5 → 3, ≥2 → 2, else 1
    monetary_minor: tuple[int, ...] = (100_000, 50_000, 20_000, 5_000)  # ≥1000.00 → 5, ≥500 → 4, ≥200 → 3, ≥50 → 2
    new_days: float = 30.0
    at_risk_days: float = 90.0
    lapsed_days: float = 180.0
    churned_days: float = 365.0
    affinity_half_life_s: float = 14 * DAY_S


DEFAULT_TRAIT_POLICY = TraitPolicy()


def average_order_value(profile: Profile) -> float:
    """Net revenue per net order, in minor units (0.0 without orders)."""
    return profile.revenue / profile.orders if profile.orders > 0 else 0.0


def last_order_time(profile: Profile) -> float | None:
    """Time of the latest order that still counts (None if there is none)."""
    if profile.orders <= 0:
        return None
    return profile.order_times[-1] if profile.order_times else profile.last_order_at


def days_since_last_order(profile: Profile, now: float) -> float | None:
    at = last_order_time(profile)
    return None if at is None else max(0.0, (now - at) / DAY_S)


def coupon_use_rate(profile: Profile) -> float:
    """Share of (net) orders that used a coupon, in [0, 1]."""
    return min(1.0, profile.orders_with_coupon / profile.orders) if profile.orders > 0 else 0.0


def _score_at_least(value: float, thresholds: tuple[float, ...]) -> int:
    for index, threshold in enumerate(thresholds):
        if value >= threshold:
            return 5 - index
    return 1


def rfm_scores(profile: Profile, now: float, policy: TraitPolicy = DEFAULT_TRAIT_POLICY) -> tuple[int, int, int]:
    """(recency, frequency, monetary), each 1–5, 5 best; thresholds in ``TraitPolicy`` (no orders → 1, 1, 1)."""
    days = days_since_last_order(profile, now)
    if days is None:
        recency = 1
    else:
        recency = next((5 - i for i, limit in enumerate(policy.recency_days) if days <= limit), 1)
    return (
        recency,
        _score_at_least(profile.orders, policy.frequency_orders),
        _score_at_least(profile.revenue, policy.monetary_minor),
    )


def lifecycle_stage(profile: Profile, now: float, policy: TraitPolicy = DEFAULT_TRAIT_POLICY) -> str:
    """One of ``prospect`` (no order that counts), ``churned`` (last order over 365 days ago), ``lapsed``
    (over 180), ``at_risk`` (over 90), ``new`` (one order, within 30 days), else ``active``."""
    days = days_since_last_order(profile, now)
    if days is None:
        return "prospect"
    if days > policy.churned_days:
        return "churned"
    if days > policy.lapsed_days:
        return "lapsed"
    if days > policy.at_risk_days:
        return "at_risk"
    if profile.orders == 1 and days <= policy.new_days:
        return "new"
    return "active"


def decayed_affinity(profile: Profile, now: float, half_life_s: float = 14 * DAY_S) -> dict[str, float]:
    """Category affinity as of ``now`` (≥ 0, never growing with time), strongest first."""
    values = {k: decay(a.value, a.at, now, half_life_s) for k, a in profile.category_affinity.items()}
    return dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))


def preferred_sizes(profile: Profile) -> dict[str, str]:
    """Per category, the size bought most often (ties: the smaller size name)."""
    return {
        category: min(counts, key=lambda size: (-counts[size], size))
        for category, counts in profile.size_counts.items()
        if counts
    }


def profile_document(profile: Profile, *, now: float, policy: TraitPolicy = DEFAULT_TRAIT_POLICY) -> dict[str, Any]:
    """The API/JSON view: stored fields the API always had, traits, computed and derived traits,
    consent, segments and scores. Never ``applied_ids`` (nor any raw PII, which the profile lacks)."""
    recency, frequency, monetary = rfm_scores(profile, now, policy)
    return {
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
        "identity": {
            "anonymous_ids": list(profile.anonymous_ids),
            "linked_ids": list(profile.linked_ids),
            "devices": list(profile.devices),
            "email_hash": profile.email_hash,
            "phone_hash": profile.phone_hash,
        },
        "traits": {
            "age_band": profile.age_band,
            "gender": profile.gender,
            "city": profile.city,
            "country": profile.country,
            "timezone": profile.timezone,
            "loyalty_tier": profile.loyalty_tier,
            "preferred_channel": profile.preferred_channel,
            **{f"custom.{k}": v for k, v in profile.custom_traits.items()},
        },
        "computed": {
            "sessions": profile.sessions,
            "devices": len(profile.devices),
            "product_views": dict(profile.product_views),
            "category_views": dict(profile.category_views),
            "category_affinity": decayed_affinity(profile, now, policy.affinity_half_life_s),
            "recently_viewed": [product_id for product_id, _ in profile.recently_viewed],
            "average_order_value": average_order_value(profile),
            "days_since_last_order": days_since_last_order(profile, now),
            "rfm": {"recency": recency, "frequency": frequency, "monetary": monetary},
            "lifecycle_stage": lifecycle_stage(profile, now, policy),
            "coupon_use_rate": coupon_use_rate(profile),
            "payment_methods": dict(profile.payment_methods),
            "preferred_sizes": preferred_sizes(profile),
            "stores_visited": list(profile.stores_visited),
            "product_purchases": {k: list(v) for k, v in profile.product_purchases.items()},
            "refunds": profile.refunds,
            "event_counts": dict(profile.event_counts),
            "event_last_at": dict(profile.event_last_at),
        },
        "engagement": {channel: dict(counts) for channel, counts in profile.engagement.items()},
        "consent": {
            channel: {"granted": granted, "updated_at": profile.consent_updated_at.get(channel)}
            for channel, granted in profile.consent.items()
        },
        "segments": list(profile.segments),
        "scores": dict(profile.scores),
        "triggers": {
            "pending": [
                {**msgspec.to_builtins(p), "state": "waiting" if p.due_at > now else "held"}
                for p in profile.pending_triggers
            ],
            "recent": [msgspec.to_builtins(outcome) for outcome in profile.trigger_history],
        },
    }
