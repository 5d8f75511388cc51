"""The profile's limits and policy: every cap on a stored collection, and the one ``ProfilePolicy``.

Every collection in a profile is capped (``MAX_*``) and every string taken from an event is clipped to a
number of UTF-8 bytes (``MAX_*_BYTES``, ``core.profile.bounded``'s ``clipped_id`` and ``clipped_text``), so a
stored profile has a bounded size in bytes however many events a customer sends and whatever they carry
(``tests/unit/test_bounds_records.py`` builds the largest one and checks it against the changelog's limit).

``ProfilePolicy`` carries every parameter the profile and its computed traits decide by — the session
timeout, the affinity weights and its one half-life, the RFM and lifecycle thresholds — so that applying
events, merging profiles, the API document, the rule view and the scores all read the same value. Its
defaults are defined here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_APPLIED_IDS = 256
MAX_TRIGGERS_REMEMBERED = 32
MAX_TRIGGER_HISTORY = 16
MAX_CART_ITEMS = 50
MAX_ANONYMOUS_IDS = 20
MAX_LINKED_IDS = 256
MAX_ABSORBED_IDS = 64
MAX_CUSTOM_TRAITS = 32
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
MAX_LINKED_USERS = 16  # most customers one id's over-merge guard remembers (max_users_per_anonymous_id)
# An id the profile derives from an event (product, category, order, store, device, size, session, event
# name, group, message id) is kept whole up to this many UTF-8 bytes, which every ASCII id the contract
# accepts fits (schemas.validation's MAX_ID_CHARS characters; a character may take 4 bytes); a longer one
# becomes a prefix and a digest of the whole id (``clipped_id``), so two ids still differ.
MAX_ID_BYTES = 128
MAX_TEXT_BYTES = 200  # free text kept from an event: trait values, product names
MAX_URL_BYTES = 500  # product image and page URLs
MAX_TRAIT_NAME_BYTES = 64  # names of custom and group traits
MAX_HASH_CHARS = 64  # a keyed hash of email or phone (hex SHA-256)

DAY_S = 86400.0


@dataclass(frozen=True)
class ProfilePolicy:
    """What the profile and its traits decide by; built once from ``Settings`` and passed in (never a global).

    ``pii_hash_key`` is ``Settings.pii_hash_key``; with None, email and phone are dropped, not hashed.
    ``affinity_half_life_s`` is how fast category affinity decays: when it is added to (``apply_event``),
    merged (``merge_profiles``), read (``core.traits``' ``affinity``) and scored (``core.scoring``).
    The RFM thresholds are documented in ``core.traits.rfm_scores``, the lifecycle ones in
    ``core.traits.lifecycle_stage``.
    """

    pii_hash_key: str | bytes | None = None
    max_applied_ids: int = MAX_APPLIED_IDS  # replay guard: how many recent message ids each profile keeps
    session_timeout_s: float = 1800.0
    affinity_half_life_s: float = 14 * DAY_S
    affinity_view: float = 1.0
    affinity_list_view: float = 0.5
    affinity_add: float = 3.0
    affinity_purchase: float = 5.0
    recency_days: tuple[float, ...] = (7, 30, 90, 180)  # ≤7 days → 5, ≤30 → 4, ≤90 → 3, ≤180 → 2, else 1
    frequency_orders: tuple[int, ...] = (20, 10, 5, 2)  # ≥20 orders → 5, ≥10 → 4, ≥5 → 3, ≥2 → 2, else 1
    monetary_minor: tuple[int, ...] = (100_000, 50_000, 20_000, 5_000)  # ≥1000.00 → 5, ≥500 → 4, ≥200 → 3, ≥50 → 2
    new_days: float = 30.0
    at_risk_days: float = 90.0
    lapsed_days: float = 180.0
    churned_days: float = 365.0


DEFAULT_POLICY = ProfilePolicy()
