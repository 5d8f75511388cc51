"""The fast paths of segment and score evaluation give exactly what the plain versions give.

``next_time_change`` tries candidate instants with compiled breakpoints, re-evaluating only the rules
time can change; ``_time_of`` takes ``max`` of a plain list of times. Each is checked against a plain
reference (written here as the code read before) over generated profiles and instants.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.rules.analysis import depends_on_time, time_atoms
from core.rules.compiler import compile_breakpoints
from core.rules.context import Context, _time_of
from core.rules.definitions import load_definitions
from core.rules.parser import compile_rule
from core.segment_eval import evaluate_segments, next_time_change
from core.segment_fields import build_catalog, profile_view
from schemas.profile import Affinity, CartItem, Profile
from tests.unit.test_segments.rule_oracle import breakpoints, evaluate_node

DAY = 86400.0
T0 = 1_700_000_000.0
CATALOG = build_catalog()
DEFAULTS = load_definitions()
TIMED_RULES = [
    "days_since_last_order > 3 or days_since_last_order <= 10 or days_since_first_seen == 2",
    'days_since_event("Product Viewed") != 7 and not viewed_product("p1", within=3d)',
    'affinity("tents") >= 2.5 or 1 > affinity("socks") or affinity("dog-food") > 0',
    'affinity("tents") > affinity("socks")',
    "(days_since_last_order < 5) == true",
    'replenishment_due(5d) or purchased_product("out-gas-230g", within=90d)',
    'no_event("Order Completed", for=60d) and viewed_category("dog-food", within="12h")',
    'orders >= 2 and country in ["DE"] and exists(cart)',
]
CONDITIONS = [rule.condition for rule in DEFAULTS.rules] + [compile_rule(rule, CATALOG) for rule in TIMED_RULES]

CATEGORIES = ["dog-food", "puppy-toys", "climbing-rope", "tents", "hiking-boots", "socks"]
PRODUCTS = ["pet-dogfood-adult-12kg", "pet-dogfood-puppy-4kg", "out-gas-230g", "p1"]
EVENTS = ["Order Completed", "Checkout Started", "Product Viewed"]
times = st.floats(min_value=T0 - 200 * DAY, max_value=T0 + 5 * DAY, allow_nan=False)
maybe_time = st.one_of(st.just(0.0), times)


def sorted_times(values: list[float]) -> tuple[float, ...]:
    return tuple(sorted(values))


# Only the fields the default rules and the ones above read, each with its edge values (0: never).
profiles = st.builds(
    Profile,
    customer_id=st.just("c"),
    first_seen=maybe_time,
    orders=st.integers(0, 5),
    revenue=st.integers(0, 80_000),
    last_order_at=maybe_time,
    cart=st.lists(st.sampled_from(PRODUCTS), max_size=2, unique=True).map(
        lambda ids: tuple(CartItem(product_id=i, quantity=1, price=100, added_at=T0) for i in ids)
    ),
    cart_updated_at=maybe_time,
    country=st.sampled_from([None, "DE", "FR"]),
    loyalty_tier=st.sampled_from([None, "gold"]),
    category_affinity=st.dictionaries(
        st.sampled_from(CATEGORIES), st.builds(Affinity, st.floats(min_value=0.0, max_value=12.0), times), max_size=4
    ),
    recently_viewed=st.lists(st.tuples(st.sampled_from(PRODUCTS), times), max_size=4).map(tuple),
    event_counts=st.dictionaries(st.sampled_from(EVENTS), st.integers(1, 20), max_size=3),
    event_last_at=st.dictionaries(st.sampled_from(EVENTS), times, max_size=3),
    product_purchases=st.dictionaries(
        st.sampled_from(PRODUCTS), st.lists(times, min_size=1, max_size=3).map(sorted_times), max_size=3
    ),
    consent=st.dictionaries(st.just("email"), st.booleans(), max_size=1),
    scores=st.dictionaries(
        st.sampled_from(["purchase_7d", "churn_60d"]), st.floats(min_value=0.0, max_value=1.0), max_size=2
    ),
)
nows = st.floats(min_value=T0 - 10 * DAY, max_value=T0 + 100 * DAY, allow_nan=False)


def reference_memberships(ctx: Context) -> frozenset[str]:
    members = {rule.name for rule in DEFAULTS.independent if evaluate_node(rule.condition, ctx)}
    for group in DEFAULTS.groups:
        members |= {next((r.name for r in group.segments if evaluate_node(r.condition, ctx)), None)} - {None}
    return frozenset(members)


def reference_next_time_change(view: dict, now: float) -> float | None:
    """Every rule's breakpoints tried in order, every rule evaluated at each."""
    ctx = Context(view, now, DEFAULTS.consumables)
    candidates = sorted({t for rule in DEFAULTS.rules for t in breakpoints(rule.condition, ctx) if t > now})
    current = reference_memberships(ctx)
    return next(
        (at for at in candidates if reference_memberships(Context(view, at, DEFAULTS.consumables)) != current), None
    )


@settings(max_examples=150, deadline=None)
@given(profile=profiles, now=nows)
def test_next_time_change_equals_the_reference(profile: Profile, now: float) -> None:
    view = profile_view(profile, now=now, fields=DEFAULTS.view_fields)
    expected = reference_next_time_change(view, now)
    assert next_time_change(DEFAULTS, profile, now=now) == expected
    current = evaluate_segments(DEFAULTS, profile, now=now)
    assert next_time_change(DEFAULTS, view, now=now, current=current) == expected


@settings(max_examples=150, deadline=None)
@given(profile=profiles, now=nows)
def test_compiled_breakpoints_list_the_same_instants(profile: Profile, now: float) -> None:
    ctx = Context(profile_view(profile, now=now), now, DEFAULTS.consumables)
    for condition in CONDITIONS:
        atoms = time_atoms(condition)
        assert sorted(t for atom in atoms for t in breakpoints(atom, ctx)) == sorted(breakpoints(condition, ctx))
        for atom in atoms:
            assert list(compile_breakpoints(atom)(ctx)) == list(breakpoints(atom, ctx))


@settings(max_examples=100, deadline=None)
@given(profile=profiles, now=nows, later=st.floats(min_value=0.0, max_value=400 * DAY))
def test_a_rule_that_does_not_depend_on_time_answers_the_same_at_any_instant(
    profile: Profile, now: float, later: float
) -> None:
    view = profile_view(profile, now=now)
    for condition in CONDITIONS:
        if not depends_on_time(condition):
            assert evaluate_node(condition, Context(view, now)) == evaluate_node(condition, Context(view, now + later))


def test_rules_reading_the_clock_depend_on_time() -> None:
    timed = {rule.name for rule in DEFAULTS.rules if rule.timed}
    assert {"new_visitors", "lapsed", "dog_food_due", "climbers", "cart_abandoners"} <= timed
    assert not timed & {"likely_buyers", "region_dach", "tier_vip", "tier_prospect"}
    assert depends_on_time(compile_rule('affinity("tents") > affinity("socks")', CATALOG))


def reference_time_of(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 1e8 else None
    if isinstance(value, (list, tuple)):
        found = [t for t in map(reference_time_of, value) if t is not None]
        return max(found) if found else None
    if isinstance(value, dict):
        for key in ("last_at", "last_viewed_at", "viewed_at", "at", "timestamp", "last"):
            if key in value:
                return reference_time_of(value[key])
    return None


items = st.one_of(
    times,
    st.integers(min_value=0, max_value=2_000_000_000),
    st.booleans(),
    st.none(),
    st.just(math.nan),
    st.just(math.inf),
    st.floats(min_value=0, max_value=100),
    st.text(max_size=2),
    st.lists(times, max_size=2),
    st.fixed_dictionaries({"at": times}),
)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(items, max_size=5))
def test_time_of_a_list_equals_the_item_by_item_answer(values: list) -> None:
    assert _time_of(values) == reference_time_of(values)


@pytest.mark.parametrize("values", [[], [1.5, T0], [T0, math.nan], [math.nan, T0], [T0, 2_000_000_000], [True, T0]])
def test_time_of_examples(values: list) -> None:
    assert _time_of(values) == reference_time_of(values)


def test_an_affinity_exactly_at_its_threshold_flips_as_soon_as_it_decays() -> None:
    """One view of hiking boots makes the affinity exactly 1, which ``affinity("hiking-boots") >= 1`` (hikers)
    matches only at the view's instant: the segment's next change is then, not at the customer's next event."""
    profile = Profile(
        customer_id="c", first_seen=T0, last_seen=T0, category_affinity={"hiking-boots": Affinity(1.0, T0)}
    )
    assert "hikers" in evaluate_segments(DEFAULTS, profile, now=T0)
    due = next_time_change(DEFAULTS, profile, now=T0)
    assert due is not None
    assert T0 < due <= T0 + 1e-3
    assert "hikers" not in evaluate_segments(DEFAULTS, profile, now=due)
