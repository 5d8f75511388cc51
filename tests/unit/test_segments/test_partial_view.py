"""A partial view (``profile_view(fields=...)``) holds, for every field it is asked for, the full view's value.

The partial view takes scalars and dicts of numbers as stored and renders only the rest through the JSON
round trip; the full view renders everything. These check the two agree on generated records, including
values the round trip does not give back (a NaN or an infinity comes back None) and values a record built
without the decoder's checks may hold (a string where a number is declared).
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from core.rules.definitions import load_definitions
from core.segment_fields import profile_view
from schemas.profile import Affinity, CartItem, Profile

T0 = 1_700_000_000.0
DEFAULTS = load_definitions()
ODD_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, 5e-324])
floats = st.one_of(st.floats(min_value=T0 - 1e7, max_value=T0 + 1e7), ODD_FLOATS)
names = st.sampled_from(["Order Completed", "Product Viewed", "Checkout Started", "a"])
# What a record built in code may hold where a number is declared.
odd_values = st.one_of(floats, st.integers(-5, 5), st.booleans(), st.none(), st.just("0.9"))

records = st.builds(
    Profile,
    customer_id=st.just("c"),
    first_seen=floats,
    last_order_at=odd_values,
    cart_updated_at=floats,
    orders=st.one_of(st.integers(0, 5), st.just(2.5)),
    revenue=st.integers(0, 80_000),
    country=st.sampled_from([None, "DE", "FR"]),
    loyalty_tier=st.sampled_from([None, "gold"]),
    order_times=st.lists(floats, max_size=3).map(tuple),
    cart=st.lists(
        st.builds(
            CartItem, product_id=st.just("p1"), quantity=st.integers(1, 3), price=st.integers(0, 900), added_at=floats
        ),
        max_size=2,
    ).map(tuple),
    category_affinity=st.dictionaries(names, st.builds(Affinity, floats, floats), max_size=2),
    event_counts=st.dictionaries(names, st.one_of(st.integers(0, 9), st.just("x")), max_size=3),
    event_last_at=st.dictionaries(names, odd_values, max_size=3),
    product_purchases=st.dictionaries(names, st.lists(floats, max_size=2).map(tuple), max_size=2),
    consent=st.dictionaries(st.sampled_from(["email", "sms"]), st.booleans(), max_size=2),
    scores=st.dictionaries(st.sampled_from(["purchase_7d", "churn_60d"]), odd_values, max_size=2),
)
field_sets = st.sets(st.sampled_from(sorted({*(DEFAULTS.view_fields or ()), "scores", "engagement"})), min_size=1)


def same(left: object, right: object) -> bool:
    """Equal, a NaN equal to a NaN (at any depth): what the view holds, compared."""
    return repr(left) == repr(right) and type(left) is type(right)


@settings(max_examples=300, deadline=None)
@given(profile=records, fields=field_sets)
def test_the_partial_view_holds_the_full_views_values(profile: Profile, fields: set[str]) -> None:
    full = profile_view(profile, now=T0)
    partial = profile_view(profile, now=T0, fields=fields)
    for name in fields:
        assert (name in partial) == (name in full)
        if name in full:
            assert same(partial[name], full[name]), name


@settings(max_examples=100, deadline=None)
@given(profile=records)
def test_the_rules_view_holds_the_full_views_values(profile: Profile) -> None:
    fields = DEFAULTS.view_fields
    assert fields is not None
    full, partial = profile_view(profile, now=T0), profile_view(profile, now=T0, fields=fields)
    assert all(same(partial[name], full[name]) for name in fields if name in full)
