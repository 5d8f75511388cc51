"""Hypothesis invariants: merges are order-independent, counters never go negative, RFM stays in 1..5,
affinity is non-negative and only decays with time."""

from __future__ import annotations

import msgspec
from core_event_factory import POLICY, T0, identify, page, track
from hypothesis import given, settings
from hypothesis import strategies as st

from core.profile.apply import apply_event, new_profile
from core.profile.merge import merge_profiles
from core.traits import decayed_affinity, lifecycle_stage, rfm_scores
from schemas.profile import Profile

PRODUCTS = ["p0", "p1", "p2", "p3"]
CATEGORIES = ["c0", "c1", "c2"]
ORDER_IDS = ["o0", "o1", "o2", "o3", "o4"]

offsets = st.integers(min_value=0, max_value=40 * 86400)
event_specs = st.one_of(
    st.tuples(st.just("view"), offsets, st.sampled_from(PRODUCTS), st.sampled_from(CATEGORIES)),
    st.tuples(st.just("add"), offsets, st.sampled_from(PRODUCTS), st.integers(1, 3)),
    st.tuples(st.just("remove"), offsets, st.sampled_from(PRODUCTS), st.integers(1, 3)),
    st.tuples(
        st.just("order"),
        offsets,
        st.sampled_from(ORDER_IDS),
        st.integers(0, 20000),
        st.booleans(),
        st.sampled_from(["card", "paypal", ""]),
        st.lists(st.sampled_from(PRODUCTS), max_size=3),
    ),
    st.tuples(st.just("refund"), offsets, st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("identify"), offsets, st.sampled_from(["Rome", "Oslo", None]), st.sampled_from(["a", "b"])),
    st.tuples(st.just("consent"), offsets, st.sampled_from(["email", "sms"]), st.booleans()),
    st.tuples(st.just("message"), offsets, st.sampled_from(["Message Opened", "Message Sent", "Unsubscribed"])),
    st.tuples(st.just("page"), offsets, st.sampled_from(["s1", "s2", None])),
    st.tuples(st.just("other"), offsets, st.sampled_from(["Wishlist Shared", "Review Written"])),
)


def to_event(spec: tuple, message_id: str):
    kind, offset, *rest = spec
    at = T0 + offset
    if kind == "view":
        return track("Product Viewed", at, message_id=message_id, product_id=rest[0], category=rest[1])
    if kind in ("add", "remove"):
        name = "Product Added" if kind == "add" else "Product Removed"
        return track(name, at, message_id=message_id, product_id=rest[0], quantity=rest[1], price=100, category="c0")
    if kind == "order":
        order_id, total, coupon, method, products = rest
        return track(
            "Order Completed",
            at,
            message_id=message_id,
            order_id=order_id,
            total=total,
            coupon="C" if coupon else None,
            payment_method=method,
            products=[{"product_id": p, "category": "c1", "size": "M"} for p in products],
        )
    if kind == "refund":
        return track("Order Refunded", at, message_id=message_id, order_id=rest[0])
    if kind == "identify":
        traits = {"plan": rest[1]} | ({"city": rest[0]} if rest[0] else {})
        return identify(at, message_id=message_id, **traits)
    if kind == "consent":
        return track("Consent Updated", at, message_id=message_id, channel=rest[0], granted=rest[1])
    if kind == "message":
        return track(rest[0], at, message_id=message_id, channel="email")
    if kind == "page":
        event = page(at, context={"session_id": rest[0]} if rest[0] else None)
        return msgspec.structs.replace(event, message_id=message_id)
    return track(rest[0], at, message_id=message_id)


def build(specs: list, tag: str) -> Profile:
    profile = new_profile(tag)
    for i, spec in enumerate(specs):
        profile = apply_event(profile, to_event(spec, f"{tag}-{i}"), now=T0, policy=POLICY)
    return profile


histories = st.lists(event_specs, max_size=12)


def comparable(profile: Profile) -> dict:
    """The fields a merge must agree on whatever the order (ids of the profile itself left out)."""
    data = msgspec.to_builtins(profile)
    for field in ("customer_id", "user_id", "linked_ids", "segments", "scores", "triggers_sent", "absorbed_ids"):
        data.pop(field)
    for field in ("applied_ids", "anonymous_ids", "devices", "stores_visited"):
        data[field] = sorted(data[field])
    data["cart"] = sorted(map(str, data["cart"]))
    data["order_ledger"] = {k: (v[5], v[6]) for k, v in data["order_ledger"].items()}  # known, refunded
    data["category_affinity"] = {k: (round(v[0], 6), v[1]) for k, v in data["category_affinity"].items()}
    return data


@settings(max_examples=150, deadline=None)
@given(histories, histories)
def test_merge_is_commutative(first, second):
    a, b = build(first, "a"), build(second, "b")
    assert comparable(merge_profiles(a, b)) == comparable(merge_profiles(b, a))


@settings(max_examples=150, deadline=None)
@given(histories, histories, histories)
def test_merge_is_associative(first, second, third):
    a, b, c = build(first, "a"), build(second, "b"), build(third, "c")
    left = merge_profiles(merge_profiles(a, b), c)
    right = merge_profiles(a, merge_profiles(b, c))
    assert comparable(left) == comparable(right)


@settings(max_examples=100, deadline=None)
@given(histories)
def test_merging_an_empty_profile_changes_nothing(history):
    a = build(history, "a")
    assert comparable(merge_profiles(a, new_profile("x"))) == comparable(a)


def _all_counts(profile: Profile):
    yield from (
        profile.event_count,
        profile.orders,
        profile.revenue,
        profile.sessions,
        profile.orders_with_coupon,
        profile.refunds,
    )
    for counts in (profile.product_views, profile.category_views, profile.event_counts, profile.payment_methods):
        yield from counts.values()
    for nested in (profile.size_counts, profile.engagement):
        for counts in nested.values():
            yield from counts.values()
    yield from (item.quantity for item in profile.cart)


@settings(max_examples=150, deadline=None)
@given(histories, histories)
def test_counters_never_negative(first, second):
    a, b = build(first, "a"), build(second, "b")
    for profile in (a, b, merge_profiles(a, b)):
        assert all(value >= 0 for value in _all_counts(profile))
        assert profile.orders_with_coupon <= profile.orders
        assert len(profile.order_times) <= profile.orders


@settings(max_examples=150, deadline=None)
@given(histories, st.floats(min_value=-10 * 86400, max_value=3000 * 86400))
def test_rfm_scores_stay_in_1_to_5(history, later):
    profile = build(history, "a")
    scores = rfm_scores(profile, T0 + later)
    assert all(1 <= score <= 5 for score in scores)
    assert lifecycle_stage(profile, T0 + later) in {"new", "active", "at_risk", "lapsed", "churned", "prospect"}


@settings(max_examples=150, deadline=None)
@given(histories, st.floats(min_value=0, max_value=400 * 86400), st.floats(min_value=0, max_value=400 * 86400))
def test_affinity_is_non_negative_and_decays_monotonically(history, first, second):
    profile = build(history, "a")
    early, late = sorted((T0 + first, T0 + second))
    at_early, at_late = decayed_affinity(profile, early), decayed_affinity(profile, late)
    for category, value in at_late.items():
        assert 0.0 <= value <= at_early[category] + 1e-9
