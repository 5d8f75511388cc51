"""The registry of computed traits: one definition, one name and one place for each.

A trait is a function of a profile, ``now`` and the ``ProfilePolicy``. ``TRAITS`` (name → ``Trait``)
is read by everything that shows or uses them:

- the API document (``core.profile.document.profile_document``: ``Trait.document`` says where);
- the rule language (``core.segment_fields``: its field catalog, the view rules read, the age fields
  ``days_since_*`` and the stored fields each trait reads);
- the scoring features (``core.scoring.compute_features``);
- the README's list of traits (``streamcdp traits`` prints it; a unit test keeps the README current).

Every function accepts the stored ``Profile`` record or its dict view (the JSON form rules read, where
records are lists or dicts), so rules, scores and the API compute the same value from either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.field_types import ANY_TYPE, MAP, NUMBER_TYPE, STRING_TYPE, FieldType
from core.profile.affinity import decay
from core.profile.policy import DAY_S, DEFAULT_POLICY, ProfilePolicy
from schemas.profile import CartItem, Profile

# Where ``profile_document`` shows a trait.
COMPUTED = "computed"  # in the document's "computed" section
TOP = "top"  # a section of its own at the document's top level

TraitFunction = Callable[[Any, float, ProfilePolicy], Any]


@dataclass(frozen=True)
class Trait:
    """One computed trait.

    ``type``: its type in the rule language. ``inputs``: the stored profile fields ``fn`` reads (a view
    built for a set of rules includes them). ``age_of``: set for an age field, the number of days since
    the time held by that stored field or trait: it grows with the clock alone, and rules compile it to
    ``days_since(<age_of>)`` so that its flips can be scheduled. ``uses_now``: its value depends on
    ``now`` (computed when a view is built for an instant, never from a bare view). ``document``: where
    the API document shows it (``COMPUTED``, ``TOP``, or None: rules and scores only), under
    ``document_key`` when the API's key differs from the trait's name.
    """

    name: str
    type: FieldType
    inputs: tuple[str, ...]
    fn: TraitFunction
    description: str
    age_of: str | None = None
    uses_now: bool = False
    document: str | None = COMPUTED
    document_key: str | None = None

    @property
    def time_driven(self) -> bool:
        """True for an age field (``days_since_*``)."""
        return self.age_of is not None


# Old names rule files may still use: each resolves to the registry entry named here.
DEPRECATED_NAMES: Mapping[str, str] = {"aov": "average_order_value"}


_MAPPING_TYPES: dict[type, bool] = {}


def is_mapping_type(cls: type) -> bool:
    """Whether ``cls`` is a mapping (a view) rather than a record; memoised per type: an ABC subclass check
    per field read would cost more than the trait itself."""
    known = _MAPPING_TYPES.get(cls)
    if known is None:
        known = _MAPPING_TYPES[cls] = issubclass(cls, Mapping)
    return known


_RECORD_TYPES = frozenset({Profile, CartItem})  # checked first: these reads are on the hot path


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a record (``Profile``, ``CartItem``) or of its dict view: the one reader for both."""
    cls = obj.__class__
    if cls in _RECORD_TYPES:
        return getattr(obj, name, default)
    if cls is dict or is_mapping_type(cls):
        return obj.get(name, default)
    return getattr(obj, name, default)


def days_between(at: Any, now: float) -> float | None:
    """Days from time ``at`` to ``now`` (never negative); None when ``at`` is missing, 0 or not a number."""
    if at.__class__ is float and at > 0:  # a stored time: the common case first
        return max(0.0, (now - at) / DAY_S)
    if at is None or isinstance(at, bool) or not isinstance(at, (int, float)) or at <= 0:
        return None
    return max(0.0, (now - at) / DAY_S)


# --- the trait functions -----------------------------------------------------------------------------


def average_order_value(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> float:
    """Net revenue per net order, in minor units (0.0 without orders)."""
    orders = field_of(profile, "orders", 0) or 0
    return (field_of(profile, "revenue", 0) or 0) / orders if orders > 0 else 0.0


def last_unrefunded_order_at(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> float | None:
    """Time of the latest order that still counts, i.e. was not refunded (None if there is none).

    Not ``last_order_at``: that is the latest order placed, which a refund does not move back.
    """
    if (field_of(profile, "orders", 0) or 0) <= 0:
        return None
    times = field_of(profile, "order_times", ())
    return times[-1] if times else field_of(profile, "last_order_at", 0.0)


def days_since_last_order(profile: Any, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> float | None:
    """Days since the latest order that was not refunded (None without one)."""
    return days_between(last_unrefunded_order_at(profile), now)


def coupon_use_rate(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> float:
    """Share of (net) orders that used a coupon, in [0, 1]."""
    orders = field_of(profile, "orders", 0) or 0
    return min(1.0, (field_of(profile, "orders_with_coupon", 0) or 0) / orders) if orders > 0 else 0.0


def _score_at_least(value: float, thresholds: tuple[float, ...]) -> int:
    for index, threshold in enumerate(thresholds):
        if value >= threshold:
            return 5 - index
    return 1


def rfm_scores(profile: Any, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> tuple[int, int, int]:
    """(recency, frequency, monetary), each 1–5, 5 best; thresholds in ``ProfilePolicy`` (no orders → 1, 1, 1)."""
    days = days_since_last_order(profile, now)
    recency = 1 if days is None else next((5 - i for i, limit in enumerate(policy.recency_days) if days <= limit), 1)
    return (
        recency,
        _score_at_least(field_of(profile, "orders", 0) or 0, policy.frequency_orders),
        _score_at_least(field_of(profile, "revenue", 0) or 0, policy.monetary_minor),
    )


def rfm(profile: Any, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> dict[str, int]:
    """``rfm_scores`` by name."""
    recency, frequency, monetary = rfm_scores(profile, now, policy)
    return {"recency": recency, "frequency": frequency, "monetary": monetary}


def lifecycle_stage(profile: Any, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> str:
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
    if field_of(profile, "orders", 0) == 1 and days <= policy.new_days:
        return "new"
    return "active"


def stored_affinities(profile: Any) -> Iterator[tuple[str, float, float]]:
    """``(category, value, at)`` of each stored affinity: an ``Affinity`` record, its view ``[value, at]``
    or a ``{"value", "at"}`` dict; entries that are none of these are skipped."""
    stored = field_of(profile, "category_affinity", None) or {}
    for category, entry in stored.items():
        if isinstance(entry, (list, tuple)):
            value, at = (entry[0], entry[1]) if len(entry) == 2 else (None, None)
        elif is_mapping_type(type(entry)):
            value, at = entry.get("value"), entry.get("at")
        else:
            value, at = getattr(entry, "value", None), getattr(entry, "at", None)
        if isinstance(value, (int, float)) and isinstance(at, (int, float)):
            yield category, value, at


def decayed_affinity(profile: Any, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> dict[str, float]:
    """Category affinity as of ``now`` (≥ 0, never growing with time), strongest first."""
    half_life_s = policy.affinity_half_life_s
    values = {category: decay(value, at, now, half_life_s) for category, value, at in stored_affinities(profile)}
    return dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))


def preferred_sizes(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> dict[str, str]:
    """Per category, the size bought most often (ties: the smaller size name)."""
    size_counts = field_of(profile, "size_counts", None) or {}
    return {
        category: min(counts, key=lambda size: (-counts[size], size))
        for category, counts in size_counts.items()
        if counts
    }


# Cart items count with their quantity and price, negatives (bad input) as 0.


def cart_value(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> int:
    """What the cart is worth: Σ quantity × price, in minor units."""
    return sum(
        max(0, int(field_of(item, "quantity", 0) or 0)) * max(0, int(field_of(item, "price", 0) or 0))
        for item in field_of(profile, "cart", None) or ()
    )


def cart_size(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> int:
    """How many items the cart holds: Σ quantity."""
    return sum(max(0, int(field_of(item, "quantity", 0) or 0)) for item in field_of(profile, "cart", None) or ())


# The identify traits as the API shows them: known traits by name, custom ones as ``custom.<name>``.
KNOWN_TRAIT_FIELDS = ("age_band", "gender", "city", "country", "timezone", "loyalty_tier", "preferred_channel")


def identify_traits(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """The identify traits: known ones by field name, custom ones as ``custom.<name>``."""
    custom = field_of(profile, "custom_traits", None) or {}
    return {
        **{name: field_of(profile, name) for name in KNOWN_TRAIT_FIELDS},
        **{f"custom.{k}": v for k, v in custom.items()},
    }


IDENTITY_FIELDS = ("anonymous_ids", "linked_ids", "devices", "email_hash", "phone_hash")


def identity(profile: Any, now: float = 0.0, policy: ProfilePolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """The ids known for the customer: anonymous ids, linked ids, devices, email and phone hashes."""
    values = {name: field_of(profile, name) for name in IDENTITY_FIELDS}
    return {name: list(value) if isinstance(value, (list, tuple)) else value for name, value in values.items()}


def _days_since_field(name: str) -> TraitFunction:
    """The age function of a stored time field (0 means never: None)."""
    return lambda profile, now, policy: days_between(field_of(profile, name), now)


_MAP_OF_NUMBERS = FieldType(MAP, NUMBER_TYPE)
_MAP_OF_STRINGS = FieldType(MAP, STRING_TYPE)
_MAP_OF_ANY = FieldType(MAP, ANY_TYPE)
_ORDER_INPUTS = ("orders", "order_times", "last_order_at")

_TRAIT_LIST = (
    Trait(
        "identity",
        _MAP_OF_ANY,
        IDENTITY_FIELDS,
        identity,
        "Ids known for the customer: anonymous ids, linked ids, devices, email and phone hashes.",
        document=TOP,
    ),
    Trait(
        "traits",
        _MAP_OF_ANY,
        (*KNOWN_TRAIT_FIELDS, "custom_traits"),
        identify_traits,
        "Identify traits: known ones by name (`traits.country`), custom ones as `custom.<name>`.",
        document=TOP,
    ),
    Trait(
        "affinity",
        _MAP_OF_NUMBERS,
        ("category_affinity",),
        decayed_affinity,
        "Category affinity as of now: views, adds to cart and purchases add weight (`ProfilePolicy.affinity_*`), "
        "halving every `affinity_half_life_s`; strongest first.",
        uses_now=True,
        document_key="category_affinity",
    ),
    Trait(
        "average_order_value",
        NUMBER_TYPE,
        ("orders", "revenue"),
        average_order_value,
        "Net revenue per net order, in minor units (0 without orders). Deprecated rule name: `aov`.",
    ),
    Trait(
        "last_unrefunded_order_at",
        NUMBER_TYPE,
        _ORDER_INPUTS,
        last_unrefunded_order_at,
        "Time of the latest order not refunded (null without one); `last_order_at` is the latest placed.",
        document=None,
    ),
    Trait(
        "days_since_last_order",
        NUMBER_TYPE,
        _ORDER_INPUTS,
        days_since_last_order,
        "Days since the latest order not refunded (null without one).",
        age_of="last_unrefunded_order_at",
        uses_now=True,
    ),
    Trait(
        "rfm",
        _MAP_OF_NUMBERS,
        ("orders", "revenue", *_ORDER_INPUTS[1:]),
        rfm,
        "`recency`, `frequency`, `monetary`: each 1–5, 5 best (thresholds in `ProfilePolicy`).",
        uses_now=True,
    ),
    Trait(
        "lifecycle_stage",
        STRING_TYPE,
        _ORDER_INPUTS,
        lifecycle_stage,
        "`prospect`, `new`, `active`, `at_risk`, `lapsed` or `churned`, by net orders and days since the last.",
        uses_now=True,
    ),
    Trait(
        "coupon_use_rate",
        NUMBER_TYPE,
        ("orders", "orders_with_coupon"),
        coupon_use_rate,
        "Share of net orders that used a coupon, 0–1.",
    ),
    Trait(
        "preferred_sizes",
        _MAP_OF_STRINGS,
        ("size_counts",),
        preferred_sizes,
        "Per category, the size bought most often.",
    ),
    Trait(
        "cart_value",
        NUMBER_TYPE,
        ("cart",),
        cart_value,
        "What the cart is worth: Σ quantity × price, in minor units.",
        document=None,
    ),
    Trait("cart_size", NUMBER_TYPE, ("cart",), cart_size, "Items in the cart: Σ quantity.", document=None),
    *(
        Trait(
            f"days_since_{name}",
            NUMBER_TYPE,
            (field,),
            _days_since_field(field),
            f"Days since `{field}` (null if never).",
            age_of=field,
            uses_now=True,
            document=None,
        )
        for name, field in (
            ("last_seen", "last_seen"),
            ("first_seen", "first_seen"),
            ("cart_update", "cart_updated_at"),
            ("last_checkout", "last_checkout_at"),
        )
    ),
)

TRAITS: Mapping[str, Trait] = {trait.name: trait for trait in _TRAIT_LIST}


def trait_value(name: str, profile: Any, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> Any:
    """The value of the trait ``name`` (or a deprecated name of it) for ``profile`` at ``now``."""
    return TRAITS[DEPRECATED_NAMES.get(name, name)].fn(profile, now, policy)


def traits_table() -> str:
    """The README's list of traits, as a markdown table (``streamcdp traits`` prints it)."""
    rows = ["| Trait | Type | Reads | In the API | Description |", "|---|---|---|---|---|"]
    for trait in _TRAIT_LIST:
        where = {COMPUTED: "`computed`", TOP: "top level", None: "no"}[trait.document]
        if trait.document_key:
            where += f" as `{trait.document_key}`"
        kind = trait.type.describe() + (", age field" if trait.time_driven else "")
        reads = ", ".join(f"`{name}`" for name in trait.inputs)
        rows.append(f"| `{trait.name}` | {kind} | {reads} | {where} | {trait.description} |")
    for old, new in DEPRECATED_NAMES.items():
        rows.append(f"| `{old}` | deprecated | | | Old rule name of `{new}`. |")
    return "\n".join(rows) + "\n"
