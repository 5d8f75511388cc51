"""Group calls (accounts, households) in the profile, and Order Cancelled reversing its order like a refund."""

from __future__ import annotations

from core_event_factory import T0, track

from core.groups import MAX_GROUP_TRAITS, MAX_GROUPS, apply_group_call, merge_groups
from core.profile.apply import apply_event, new_profile
from core.profile.document import profile_document
from core.profile.merge import merge_profiles
from schemas.events import CUSTOMER, Event

ORDER = {"order_id": "o1", "total": 5000, "coupon": "X", "payment_method": "card", "products": [{"product_id": "p1"}]}


def group(group_id: str, at: float = T0, *, user: str = "u1", message_id: str | None = None, **traits) -> Event:
    return Event(
        type="group",
        message_id=message_id or f"g-{group_id}-{at}-{sorted(traits.items())}",
        timestamp=at,
        family=CUSTOMER,
        user_id=user,
        group_id=group_id,
        traits=traits,
    )


def run(*events: Event, profile=None):
    for event in events:
        profile = apply_event(profile, event, now=event.timestamp)
    return profile


def test_a_group_call_records_the_group_and_its_traits():
    profile = run(group("acme", industry="retail", plan="enterprise", employees=120))
    assert profile.groups == {"acme": {"industry": "retail", "plan": "enterprise", "employees": 120}}
    assert profile.group_times == {"acme": T0}
    assert profile_document(profile, now=T0)["groups"] == {
        "acme": {"industry": "retail", "plan": "enterprise", "employees": 120}
    }
    assert profile.event_count == 1 and profile.sessions == 0  # describes the customer: no session opened


def test_later_calls_win_per_trait_whatever_the_arrival_order():
    first = group("h1", T0, size=2, city="Lyon")
    second = group("h1", T0 + 10, size=3, pets=1)
    in_order = run(first, second)
    reversed_order = run(second, first)
    assert in_order.groups == reversed_order.groups == {"h1": {"size": 3, "pets": 1, "city": "Lyon"}}
    assert in_order.group_times == reversed_order.group_times == {"h1": T0 + 10}


def test_identifiers_contact_details_and_non_scalars_are_not_kept():
    # A household's "name" is a family name: an identifier like a person's, kept out as for custom traits.
    profile = run(group("h1", email="billing@acme.test", phone="+49151000000", name="Doe", tags=["a"], ok=True))
    assert profile.groups == {"h1": {"ok": True}}


def test_groups_and_their_traits_are_capped():
    groups, times = {}, {}
    for index in range(MAX_GROUPS + 3):
        groups, times = apply_group_call(groups, times, f"g{index}", {"n": index}, T0 + index)
    assert len(groups) == MAX_GROUPS and "g0" not in groups and f"g{MAX_GROUPS + 2}" in groups
    many = {f"t{index:02d}": index for index in range(MAX_GROUP_TRAITS + 5)}
    groups, _ = apply_group_call({}, {}, "big", many, T0)
    assert len(groups["big"]) == MAX_GROUP_TRAITS


def test_a_replayed_group_call_changes_nothing():
    call = group("acme", plan="gold", message_id="m-g")
    once = run(call)
    assert run(call, profile=once) == once


def test_merging_profiles_keeps_both_sides_groups():
    anonymous = run(group("h1", T0 + 5, user="anon", size=4))
    known = run(group("acme", T0, plan="gold"), group("h1", T0, size=2, city="Lyon"))
    merged = merge_profiles(known, anonymous)
    assert merged.groups == {"acme": {"plan": "gold"}, "h1": {"size": 4, "city": "Lyon"}}
    assert merge_groups(known.groups, known.group_times, anonymous.groups, anonymous.group_times) == (
        merged.groups,
        merged.group_times,
    )


def test_order_cancelled_reverses_the_order_like_a_refund():
    before = run(track("Order Completed", T0, order_id="o0", total=700, products=[{"product_id": "p2"}]))
    ordered = run(track("Order Completed", T0 + 5, **ORDER), profile=before)
    cancelled = run(track("Order Cancelled", T0 + 9, order_id="o1"), profile=ordered)
    for field in ("orders", "revenue", "orders_with_coupon", "payment_methods", "product_purchases", "order_times"):
        assert getattr(cancelled, field) == getattr(before, field), field
    assert cancelled.order_ledger["o1"].refunded and cancelled.event_counts["Order Cancelled"] == 1


def test_order_cancelled_before_its_order_makes_it_count_for_nothing():
    profile = run(track("Order Cancelled", T0 + 1, order_id="o1"), track("Order Completed", T0, **ORDER))
    assert (profile.orders, profile.revenue, profile.orders_with_coupon) == (0, 0, 0)


def test_order_cancelled_without_order_id_is_only_counted():
    profile = run(track("Order Completed", **ORDER), track("Order Cancelled", T0 + 1))
    assert (profile.orders, profile.revenue, profile.event_counts["Order Cancelled"]) == (1, 5000, 1)


def test_new_profile_has_no_groups():
    assert new_profile("x").groups == {} and new_profile("x").group_times == {}
