"""apply_event per event kind, out-of-order events, refunds, replays and never mutating its input."""

from __future__ import annotations

import copy

import msgspec
import pytest
from core_event_factory import POLICY, T0, identify, page, track

from core.profile.apply import apply_event, new_profile
from core.profile.policy import MAX_APPLIED_IDS
from core.traits import average_order_value, coupon_use_rate
from schemas.profile import CartItem, Profile


def run(*events, profile: Profile | None = None) -> Profile:
    for event in events:
        profile = apply_event(profile, event, now=T0, policy=POLICY)
    assert profile is not None
    return profile


ORDER = dict(
    order_id="o1",
    total=5000,
    coupon="SPRING",
    payment_method="card",
    products=[{"product_id": "p1", "category": "shoes", "size": "42", "price": 5000}],
)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            track("Product Viewed", product_id="p1", category="shoes"),
            {
                "product_views": {"p1": 1},
                "category_views": {"shoes": 1},
                "recently_viewed": (("p1", T0),),
                "sessions": 1,
            },
        ),
        (track("Product List Viewed", category="shoes"), {"category_views": {"shoes": 1}, "product_views": {}}),
        (
            track("Product Added", product_id="p1", price=1999, quantity=2, category="shoes"),
            {
                "cart": (CartItem(product_id="p1", quantity=2, price=1999, added_at=T0, category="shoes"),),
                "cart_updated_at": T0,
            },
        ),
        (track("Product Removed", product_id="p1"), {"cart": (), "cart_updated_at": T0}),
        (track("Checkout Started"), {"last_checkout_at": T0}),
        (
            track("Order Completed", **ORDER),
            {
                "orders": 1,
                "revenue": 5000,
                "orders_with_coupon": 1,
                "payment_methods": {"card": 1},
                "product_purchases": {"p1": (T0,)},
                "order_times": (T0,),
                "size_counts": {"shoes": {"42": 1}},
                "last_order_at": T0,
            },
        ),
        (track("Order Completed", order_id="o2", total=100, store_id="s-9"), {"stores_visited": ("s-9",)}),
        (track("Order Refunded", order_id="unknown"), {"orders": 0, "revenue": 0, "refunds": 1}),
        (track("Message Opened", channel="sms"), {"engagement": {"sms": {"opened": 1}}, "sessions": 0}),
        (track("Message Sent"), {"engagement": {"email": {"sent": 1}}}),
        (
            track("Unsubscribed", channel="email"),
            {
                "engagement": {"email": {"unsubscribed": 1}},
                "consent": {"email": False},
                "consent_updated_at": {"email": T0},
            },
        ),
        (track("Consent Updated", channel="whatsapp", granted=True), {"consent": {"whatsapp": True}}),
        (
            track("Wishlist Shared", list_id="l1"),
            {"event_counts": {"Wishlist Shared": 1}, "event_last_at": {"Wishlist Shared": T0}},
        ),
        (
            identify(
                city="Berlin",
                country="DE",
                gender="F",
                timezone="Europe/Berlin",
                loyalty_tier="gold",
                preferred_channel="sms",
                age=31,
                plan="pro",
            ),
            {
                "city": "Berlin",
                "country": "DE",
                "gender": "f",
                "timezone": "Europe/Berlin",
                "loyalty_tier": "gold",
                "preferred_channel": "sms",
                "age_band": "25-34",
                "custom_traits": {"plan": "pro"},
                "user_id": "u1",
            },
        ),
        (
            identify(loyaltyTier="silver", preferredChannel="email", address={"city": "Paris", "street": "x"}),
            {"loyalty_tier": "silver", "preferred_channel": "email", "city": "Paris", "custom_traits": {}},
        ),
        (identify(birthday="2000-06-15"), {"age_band": "18-24"}),  # 23 at T0 (Nov 2023)
        (page(context={"device": {"id": "dev-1"}}), {"devices": ("dev-1",), "sessions": 1}),
    ],
    ids=lambda value: (
        getattr(value, "event", None) or getattr(value, "type", None) if not isinstance(value, dict) else ""
    ),
)
def test_apply_event_per_kind(event, expected):
    profile = run(event)
    for field, value in expected.items():
        assert getattr(profile, field) == value, field
    assert profile.event_count == 1
    assert profile.first_seen == profile.last_seen == T0


def test_apply_event_does_not_mutate_its_input():
    profile = run(
        track("Product Added", product_id="p1", price=100),
        track("Product Viewed", product_id="p1"),
        identify(city="Rome"),
        track("Order Completed", **ORDER),
    )
    snapshot = copy.deepcopy(msgspec.to_builtins(profile))
    for event in (
        track("Product Viewed", product_id="p2", category="c"),
        track("Order Refunded", order_id="o1"),
        identify(city="Oslo", plan="x"),
        track("Message Clicked"),
        track("Product Added", product_id="p3"),
    ):
        apply_event(profile, event, now=T0, policy=POLICY)
    assert msgspec.to_builtins(profile) == snapshot


def test_replayed_message_changes_nothing():
    event = track("Order Completed", T0, **ORDER)
    once = run(event)
    assert apply_event(once, event, now=T0, policy=POLICY) is once


def test_applied_ids_are_capped():
    profile = run(*(track("Product Viewed", T0 + i, product_id=f"p{i}") for i in range(MAX_APPLIED_IDS + 10)))
    assert len(profile.applied_ids) == MAX_APPLIED_IDS


def test_order_before_its_product_added_leaves_the_cart_empty():
    order = track("Order Completed", T0 + 10, order_id="o1", total=1000, products=[{"product_id": "p1"}])
    late_add = track("Product Added", T0 + 5, product_id="p1", price=1000)
    profile = run(order, late_add)
    assert profile.cart == () and profile.orders == 1
    assert run(late_add, order).cart == ()


def test_product_added_after_order_stays_in_cart():
    profile = run(track("Order Completed", T0, order_id="o1", total=1), track("Product Added", T0 + 1, product_id="p2"))
    assert [item.product_id for item in profile.cart] == ["p2"]


def test_late_view_lands_in_time_order():
    profile = run(track("Product Viewed", T0 + 10, product_id="new"), track("Product Viewed", T0, product_id="old"))
    assert [p for p, _ in profile.recently_viewed] == ["old", "new"]


@pytest.mark.parametrize(
    ("gaps", "context", "sessions"),
    [
        ((0, 60, 120), None, 1),
        ((0, 1801), None, 2),
        ((0, 1801, 3700), None, 3),
        ((0, 10, 20), [{"session_id": "a"}, {"session_id": "b"}, {"session_id": "b"}], 2),
    ],
)
def test_sessions(gaps, context, sessions):
    events = [page(T0 + gap, context=(context[i] if context else None)) for i, gap in enumerate(gaps)]
    assert run(*events).sessions == sessions


def test_messaging_and_identify_do_not_open_sessions():
    assert (
        run(track("Message Sent"), identify(city="x"), track("Consent Updated", channel="sms", granted=True)).sessions
        == 0
    )


class TestRefunds:
    def test_refund_reverses_the_order_exactly(self):
        before = run(
            track(
                "Order Completed", T0, order_id="o0", total=700, payment_method="card", products=[{"product_id": "p1"}]
            )
        )
        after_order = run(track("Order Completed", T0 + 5, **ORDER), profile=before)
        refunded = run(track("Order Refunded", T0 + 9, order_id="o1"), profile=after_order)
        for field in ("orders", "revenue", "orders_with_coupon", "payment_methods", "product_purchases", "order_times"):
            assert getattr(refunded, field) == getattr(before, field), field
        assert refunded.refunds == 1 and refunded.order_ledger["o1"].refunded

    def test_second_refund_changes_nothing_more(self):
        once = run(track("Order Completed", **ORDER), track("Order Refunded", T0 + 1, order_id="o1"))
        twice = run(track("Order Refunded", T0 + 2, order_id="o1"), profile=once)
        assert (twice.orders, twice.revenue, twice.refunds) == (once.orders, once.revenue, once.refunds) == (0, 0, 1)

    def test_refund_of_unknown_order_is_recorded_only(self):
        profile = run(track("Order Completed", **ORDER), track("Order Refunded", T0 + 1, order_id="nope"))
        assert (profile.orders, profile.revenue, profile.refunds) == (1, 5000, 1)
        assert "nope" in profile.order_ledger

    def test_refund_before_its_order_cancels_it(self):
        profile = run(track("Order Refunded", T0 + 1, order_id="o1"), track("Order Completed", T0, **ORDER))
        assert (profile.orders, profile.revenue, profile.orders_with_coupon, profile.product_purchases) == (0, 0, 0, {})

    def test_same_order_twice_counts_once(self):
        profile = run(track("Order Completed", **ORDER), track("Order Completed", T0 + 1, **ORDER))
        assert (profile.orders, profile.revenue) == (1, 5000)


def test_derived_purchase_traits():
    profile = run(
        track("Order Completed", T0, order_id="a", total=1000, coupon="X"),
        track("Order Completed", T0 + 1, order_id="b", total=3000),
    )
    assert average_order_value(profile) == 2000.0
    assert coupon_use_rate(profile) == 0.5
    assert average_order_value(new_profile("x")) == 0.0 and coupon_use_rate(new_profile("x")) == 0.0


def test_traits_last_write_wins_by_event_time():
    profile = run(identify(T0 + 10, city="Newer"), identify(T0, city="Older", country="IT"))
    assert (profile.city, profile.country) == ("Newer", "IT")


def test_product_purchase_times_are_kept_per_product():
    events = [
        track("Order Completed", T0 + i * 86400, order_id=f"o{i}", total=100, products=[{"product_id": "coffee"}])
        for i in range(15)
    ]
    profile = run(*events)
    assert len(profile.product_purchases["coffee"]) == 10
    assert profile.product_purchases["coffee"][-1] == T0 + 14 * 86400


def test_segments_and_scores_are_left_alone():
    start = msgspec.structs.replace(new_profile("u1"), segments=("vip",), scores={"churn": 0.2})
    profile = run(track("Order Completed", **ORDER), identify(city="x"), profile=start)
    assert profile.segments == ("vip",) and profile.scores == {"churn": 0.2}
