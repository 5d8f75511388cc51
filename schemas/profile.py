"""The stored per-customer profile: the records ``customer_to_profile`` holds and the changelog carries.

Only the shapes live here (``schemas/`` imports nothing from ``core/``); what changes them is
``core.profile`` (``apply`` applies an event, ``merge`` merges two profiles of one customer) and what is
computed from them is ``core.traits``. Add fields with defaults: stored profiles written by an older
version must still decode.
"""

from __future__ import annotations

import msgspec

from schemas.triggers import PendingTrigger, TriggerOutcome, TriggerSend

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
    """A time-decayed score: ``value`` as of time ``at`` (halves every ``ProfilePolicy.affinity_half_life_s``)."""

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

    No raw email or phone number: only keyed hashes (``core.privacy.hash_identifier``). Every collection
    is capped (``core.profile.policy``'s ``MAX_*``), so a profile has a bounded size.
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
    applied_ids: tuple[str, ...] = ()  # recent message ids (clipped_id), newest last (capped): replay guard

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
    groups: dict[str, dict[str, Scalar]] = {}  # group calls: groupId → the group's traits (core.groups)
    group_times: dict[str, float] = {}  # groupId → event time of its latest group call
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
    suppressed: dict[str, str] = {}  # channel → why nothing may be sent on it (hard_bounce, spam_complaint, ...)
    suppressed_at: dict[str, float] = {}  # channel → event time of that suppression
    push_token_hash: str | None = None  # hash of the latest app push token (context.device.token)
    push_token_at: float = 0.0
    webpush_subscribed: bool = False  # the latest Push Subscribed / Push Unsubscribed
    webpush_at: float = 0.0
    # "trigger_id:response" already attributed to a trigger (core.triggers.attribution), newest last (capped)
    trigger_responses: tuple[str, ...] = ()

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
    trigger_sends: tuple[TriggerSend, ...] = ()  # sends and holdouts within the longest cap window (capped)
