"""The compiled evaluator (closures) answers exactly as the reference interpreter, on views built for the rules.

``compile_node`` is what ``evaluate_segments`` runs; ``evaluate_node`` stays the readable reference. Both
are checked on the default ``config/segments.yaml`` rules and on rules covering every node type, over
generated profiles and times (including the instants where time-driven atoms flip), on the full profile
view and on the partial view ``profile_view(fields=...)`` that ``refresh_audiences`` builds.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.rules.analysis import referenced_fields
from core.rules.compiler import compile_breakpoints, compile_node
from core.rules.context import Context
from core.rules.definitions import load_definitions, parse_definitions
from core.rules.parser import compile_rule
from core.scoring import load_models, score_profile
from core.segment_eval import evaluate_segments, explain_segments
from core.segment_fields import build_catalog, profile_view
from schemas.profile import Affinity, CartItem, Profile
from tests.unit.test_segments.rule_oracle import breakpoints, evaluate_node

DAY = 86400.0
T0 = 1_700_000_000.0
CATALOG = build_catalog()
DEFAULTS = load_definitions()
MODELS = load_models()

# Rules reaching every node type and fast lane of the compiler (and the document-only fields).
EXTRA_RULES = [
    'country in ["DE", "AT", "CH"]',
    "country not in ['NL', 'BE']",
    "traits.country == 'DE'",
    'scores["churn_60d"] < 0.2',
    'event_counts["Order Completed"] >= 2',
    "consent.email == true",
    "consent.email != false",
    'cart.category contains "tents"',
    "cart.product_id contains 'pet-dogfood-puppy-4kg'",
    "devices contains 'web'",
    "product_views contains 'p1'",
    "city contains 'er'",
    "exists(email_hash) or exists(country) or exists(cart)",
    "count(cart) >= 2 or count(category_affinity) == 1",
    "60 <= days_since_last_order",
    "days_since_last_order == 3 or days_since_last_order != 10",
    "days_since(last_seen) < 30 and days_since(first_seen) > 2",
    'days_since_event("Product Viewed") <= 7',
    'viewed_category(category="dog-food", within="12h")',
    'viewed_product("p1", within=3d)',
    'no_event("Order Completed", for=60d)',
    'event_within("Checkout Started", within=2w)',
    'purchased_product("out-gas-230g", within=90d)',
    'replenishment_due(within=5d, category="dog-food")',
    "replenishment_due(5d)",
    'affinity("tents") >= 2.5 or 1 > affinity("socks")',
    'affinity("tents") == 0',
    'event_count("Product Viewed") > 10 or orders > 1',
    "aov > 1500 or cart_value >= 2000 or cart_size == 2",
    'lifecycle_stage == "active"',
    "rfm.recency >= 3",
    "loyalty_tier == null",
    "loyalty_tier < 'h' and loyalty_tier >= 'g'",
    "not (orders == 0) and not not true",
    "(orders > 1) == (revenue > 1000)",
    "orders > -1 and false or true",
    'score("purchase_7d") > 0.3 and scores.purchase_7d <= 0.9',
]
EXTRA_CONDITIONS = [compile_rule(rule, CATALOG) for rule in EXTRA_RULES]
ALL_CONDITIONS = [rule.condition for rule in DEFAULTS.rules] + EXTRA_CONDITIONS
COMPILED = [compile_node(condition) for condition in ALL_CONDITIONS]
FIELDS = [referenced_fields(condition) for condition in ALL_CONDITIONS]

CATEGORIES = ["dog-food", "puppy-toys", "climbing-rope", "tents", "hiking-boots", "socks", "jackets"]
PRODUCTS = ["pet-dogfood-adult-12kg", "pet-dogfood-puppy-4kg", "out-gas-230g", "p1", "p2"]
EVENTS = ["Order Completed", "Checkout Started", "Product Viewed"]

times = st.floats(min_value=T0 - 200 * DAY, max_value=T0 + 5 * DAY, allow_nan=False)
maybe_time = st.one_of(st.just(0.0), times)
small = st.integers(min_value=0, max_value=6)


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    cart = tuple(
        CartItem(
            product_id=draw(st.sampled_from(PRODUCTS)),
            quantity=draw(st.integers(1, 3)),
            price=draw(st.integers(0, 5000)),
            added_at=draw(times),
            category=draw(st.sampled_from(CATEGORIES)),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    orders = draw(small)
    order_times = tuple(sorted(draw(st.lists(times, max_size=4))))
    return Profile(
        customer_id="c",
        first_seen=draw(maybe_time),
        last_seen=draw(maybe_time),
        orders=orders,
        revenue=draw(st.integers(0, 80_000)),
        last_order_at=draw(maybe_time),
        order_times=order_times,
        cart=cart,
        cart_updated_at=draw(maybe_time),
        last_checkout_at=draw(maybe_time),
        country=draw(st.sampled_from([None, "DE", "FR", "NL", "AT"])),
        city=draw(st.sampled_from([None, "Berlin", "Paris"])),
        loyalty_tier=draw(st.sampled_from([None, "gold", "silver"])),
        email_hash=draw(st.sampled_from([None, "", "h1"])),
        devices=tuple(draw(st.lists(st.sampled_from(["web", "ios"]), max_size=2, unique=True))),
        product_views=draw(st.dictionaries(st.sampled_from(PRODUCTS), st.integers(1, 9), max_size=3)),
        category_affinity=draw(
            st.dictionaries(
                st.sampled_from(CATEGORIES),
                st.builds(Affinity, st.floats(min_value=0.0, max_value=12.0), times),
                max_size=4,
            )
        ),
        recently_viewed=tuple(draw(st.lists(st.tuples(st.sampled_from(PRODUCTS), times), max_size=4))),
        event_counts=draw(st.dictionaries(st.sampled_from(EVENTS), st.integers(1, 20), max_size=3)),
        event_last_at=draw(st.dictionaries(st.sampled_from(EVENTS), times, max_size=3)),
        product_purchases=draw(
            st.dictionaries(
                st.sampled_from(PRODUCTS),
                st.lists(times, min_size=1, max_size=3).map(lambda t: tuple(sorted(t))),
                max_size=3,
            )
        ),
        consent=draw(st.dictionaries(st.sampled_from(["email", "sms"]), st.booleans(), max_size=2)),
        scores=draw(
            st.dictionaries(
                st.sampled_from(["purchase_7d", "churn_60d"]), st.floats(min_value=0.0, max_value=1.0), max_size=2
            )
        ),
    )


def _instants(profile_view_: dict, now: float, limit: int = 12) -> list[float]:
    """``now`` and instants where conditions may flip (and just before them): ``limit`` of them, spread out."""
    ctx = Context(profile_view_, now, DEFAULTS.consumables)
    found = set()
    for condition in ALL_CONDITIONS:
        for at in breakpoints(condition, ctx):
            if math.isfinite(at):
                found.update((at, math.nextafter(at, -math.inf)))
    ordered = sorted(found)
    step = max(1, len(ordered) // limit)
    return [now, *ordered[::step]]


@settings(max_examples=150, deadline=None)
@given(profile=profiles(), now=st.floats(min_value=T0 - 10 * DAY, max_value=T0 + 100 * DAY, allow_nan=False))
def test_compiled_rules_agree_with_the_reference_on_full_and_partial_views(profile: Profile, now: float) -> None:
    full = profile_view(profile, now=now)
    for at in _instants(full, now):
        full_ctx = Context(profile_view(profile, now=at), at, DEFAULTS.consumables)
        for condition, evaluate, fields in zip(ALL_CONDITIONS, COMPILED, FIELDS, strict=True):
            expected = evaluate_node(condition, full_ctx)
            partial_ctx = Context(profile_view(profile, now=at, fields=fields), at, DEFAULTS.consumables)
            assert evaluate(full_ctx) == expected
            assert evaluate(partial_ctx) == expected
            assert evaluate_node(condition, partial_ctx) == expected


@settings(max_examples=100, deadline=None)
@given(profile=profiles(), now=st.floats(min_value=T0 - 10 * DAY, max_value=T0 + 100 * DAY, allow_nan=False))
def test_default_memberships_match_the_reference_interpreter(profile: Profile, now: float) -> None:
    full = profile_view(profile, now=now)
    for at in _instants(full, now):
        ctx = Context(profile_view(profile, now=at), at, DEFAULTS.consumables)
        expected = {rule.name for rule in DEFAULTS.independent if evaluate_node(rule.condition, ctx)}
        for group in DEFAULTS.groups:
            pick = next((rule.name for rule in group.segments if evaluate_node(rule.condition, ctx)), None)
            expected |= {pick} if pick is not None else set()
        assert evaluate_segments(DEFAULTS, profile, now=at) == expected
        assert explain_segments(DEFAULTS, profile, now=at) == {
            rule.name: evaluate_node(rule.condition, ctx) for rule in DEFAULTS.rules
        }


AFFINITY_CONDITIONS = [condition for condition in ALL_CONDITIONS if "affinity" in repr(condition).lower()]


@settings(max_examples=100, deadline=None)
@given(
    profile=profiles(),
    now=st.floats(min_value=T0 - 10 * DAY, max_value=T0 + 100 * DAY, allow_nan=False),
    half_life_days=st.sampled_from([0.5, 3.0, 30.0]),
)
def test_compiled_rules_and_breakpoints_agree_with_the_reference_at_another_half_life(
    profile: Profile, now: float, half_life_days: float
) -> None:
    half_life = half_life_days * DAY
    view = profile_view(profile, now=now)
    for condition in AFFINITY_CONDITIONS:
        evaluate, instants = compile_node(condition, half_life), compile_breakpoints(condition, half_life)
        ctx = Context(view, now, DEFAULTS.consumables)
        assert sorted(instants(ctx)) == sorted(breakpoints(condition, ctx, half_life))
        for at in [now, *(t for t in breakpoints(condition, ctx, half_life) if math.isfinite(t))]:
            assert evaluate(ctx.at(at)) == evaluate_node(condition, ctx.at(at), half_life)


@settings(max_examples=200, deadline=None)
@given(profile=profiles(), now=st.floats(min_value=T0 - 10 * DAY, max_value=T0 + 100 * DAY, allow_nan=False))
def test_scores_of_the_record_equal_scores_of_its_view(profile: Profile, now: float) -> None:
    assert score_profile(MODELS, profile, now=now) == score_profile(MODELS, profile_view(profile, now=now), now=now)


@pytest.mark.parametrize("rule", EXTRA_RULES)
def test_partial_view_holds_the_full_views_values_of_the_fields_a_rule_reads(rule: str) -> None:
    profile = Profile(
        customer_id="c",
        orders=2,
        revenue=4000,
        first_seen=T0 - 9 * DAY,
        last_order_at=T0 - DAY,
        category_affinity={"tents": Affinity(3.0, T0)},
        cart=(CartItem(product_id="p1", quantity=2, price=900, added_at=T0, category="tents"),),
    )
    fields = referenced_fields(compile_rule(rule, CATALOG))
    assert fields is not None
    full, partial = profile_view(profile, now=T0), profile_view(profile, now=T0, fields=fields)
    assert {key: partial[key] for key in fields if key in partial} == {key: full[key] for key in fields if key in full}
    assert all(key in partial for key in fields if key in full)


def test_definitions_list_the_fields_their_rules_read() -> None:
    definitions = parse_definitions(
        "segments:\n"
        "  - {name: a, when: 'orders >= 1 and viewed_category(\"dog-food\", within=7d)'}\n"
        "  - {name: b, when: 'cart_value > 10 and days_since_last_seen < 3'}\n",
        source="t.yaml",
    )
    assert definitions.view_fields == {
        "orders",
        "category_affinity",
        "category_last_viewed_at",
        "cart_value",
        "cart",
        "last_seen",
    }


def test_compiled_condition_rejects_a_non_condition_like_the_reference() -> None:
    with pytest.raises(TypeError, match="not a condition"):
        compile_node(object())
