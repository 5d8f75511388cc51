"""Memberships, waterfall exclusivity, reasons, and time-driven transitions (no event, only time passing)."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from core.rules.definitions import DEFAULT_DEFINITIONS, load_definitions, parse_definitions
from core.segment_eval import (
    SegmentChange,
    diff_memberships,
    evaluate_segments,
    explain_segments,
    next_time_change,
    segment_changes,
)
from schemas.profile import Profile

DAY = 86400.0
T0 = 1_700_000_000.0

DEFINITIONS = parse_definitions(
    """
segments:
  - name: lapsed
    when: orders >= 1 and days_since_last_order >= 60
  - name: dog_browsers
    when: viewed_category("dog-food", within=7d)
  - name: big_spenders
    when: revenue > 10000
groups:
  - name: persona
    segments:
      - {name: climbers, when: 'affinity("climbing-rope") >= 3'}
      - {name: campers, when: 'affinity("tents") >= 2'}
      - {name: hikers, when: 'country in ["DE", "AT"]'}
      - {name: others, when: "true"}
""",
    source="test.yaml",
)


def test_lapsed_is_entered_by_time_alone_at_exactly_the_time_next_time_change_names() -> None:
    profile = Profile(customer_id="c1", orders=1, revenue=500, last_order_at=T0, order_times=(T0,))
    now = T0 + 10 * DAY
    before = evaluate_segments(DEFINITIONS, profile, now=now)
    assert "lapsed" not in before
    due = next_time_change(DEFINITIONS, profile, now=now)
    assert due == T0 + 60 * DAY
    assert "lapsed" not in evaluate_segments(DEFINITIONS, profile, now=math.nextafter(due, 0))
    after = evaluate_segments(DEFINITIONS, profile, now=due)
    assert after - before == {"lapsed"}
    entered, exited = diff_memberships(before, after, DEFINITIONS)
    assert entered == {"lapsed": "matches: orders >= 1 and days_since_last_order >= 60"}
    assert exited == {}
    # Once lapsed, time alone changes nothing more.
    assert next_time_change(DEFINITIONS, profile, now=due) is None


def test_window_exit_is_scheduled_when_the_last_view_falls_out_of_seven_days() -> None:
    viewed_at = T0 + 3600
    view = {"orders": 0, "category_affinity": {"dog-food": [1.0, viewed_at]}}
    assert "dog_browsers" in evaluate_segments(DEFINITIONS, view, now=T0 + DAY)
    due = next_time_change(DEFINITIONS, view, now=T0 + DAY)
    assert due == viewed_at + 7 * DAY
    assert "dog_browsers" not in evaluate_segments(DEFINITIONS, view, now=due)


def test_decaying_affinity_moves_a_customer_down_the_waterfall_at_the_computed_time() -> None:
    view = {"country": "DE", "category_affinity": {"climbing-rope": [6.0, T0]}}
    assert "climbers" in evaluate_segments(DEFINITIONS, view, now=T0)
    due = next_time_change(DEFINITIONS, view, now=T0)
    assert due is not None and abs(due - (T0 + 14 * DAY)) < 1.0  # 6 halves to 3 in one half-life
    after = evaluate_segments(DEFINITIONS, view, now=due)
    assert "climbers" not in after and "hikers" in after
    _, exited = diff_memberships({"climbers", "others"}, after, DEFINITIONS)
    assert exited["climbers"] == "waterfall persona now picks hikers"


def test_affinity_half_life_is_a_parameter_of_the_definitions() -> None:
    """A definitions file loaded with a 7-day half-life decays ``affinity(...)`` twice as fast."""
    text = "segments:\n  - {name: climbers, when: 'affinity(\"climbing-rope\") >= 3'}\n"
    week = parse_definitions(text, affinity_half_life_s=7 * DAY)
    assert week.affinity_half_life_s == 7 * DAY
    assert parse_definitions(text).affinity_half_life_s == 14 * DAY
    view = {"category_affinity": {"climbing-rope": [6.0, T0]}}
    due = next_time_change(week, view, now=T0)
    assert due is not None and abs(due - (T0 + 7 * DAY)) < 1.0  # 6 halves to 3 in one (7-day) half-life
    assert explain_segments(week, view, now=T0 + 8 * DAY) == {"climbers": False}
    assert explain_segments(parse_definitions(text), view, now=T0 + 8 * DAY) == {"climbers": True}


def test_strict_comparison_flips_just_after_the_boundary() -> None:
    definitions = parse_definitions("segments:\n  - {name: old, when: 'days_since(first_seen) > 30'}\n")
    view = {"first_seen": T0}
    due = next_time_change(definitions, view, now=T0)
    assert due == math.nextafter(T0 + 30 * DAY, math.inf)
    assert evaluate_segments(definitions, view, now=T0 + 30 * DAY) == frozenset()
    assert evaluate_segments(definitions, view, now=due) == {"old"}


def test_no_time_driven_rule_means_no_schedule() -> None:
    definitions = parse_definitions("segments:\n  - {name: rich, when: 'revenue > 100'}\n")
    assert next_time_change(definitions, {"revenue": 5}, now=T0) is None


def test_segment_changes_are_records_with_reasons_exits_first() -> None:
    changes = segment_changes(
        "c1", frozenset({"others", "big_spenders"}), frozenset({"campers", "big_spenders"}), DEFINITIONS, at=T0
    )
    assert changes == (
        SegmentChange(
            customer_id="c1",
            segment="others",
            change="exited",
            at=T0,
            reason="waterfall persona now picks campers",
            group="persona",
        ),
        SegmentChange(
            customer_id="c1",
            segment="campers",
            change="entered",
            at=T0,
            reason='first match in waterfall persona: affinity("tents") >= 2',
            group="persona",
        ),
    )
    assert msgspec.json.decode(msgspec.json.encode(changes[0]), type=SegmentChange) == changes[0]


def test_removed_segment_exit_reason() -> None:
    _, exited = diff_memberships({"gone"}, set(), DEFINITIONS)
    assert exited == {"gone": "segment no longer defined"}


def test_evaluation_does_not_mutate_the_profile_view() -> None:
    view = {"orders": 2, "last_order_at": T0, "category_affinity": {"tents": [5.0, T0]}}
    snapshot = msgspec.json.encode(view)
    evaluate_segments(DEFINITIONS, view, now=T0 + 100 * DAY)
    next_time_change(DEFINITIONS, view, now=T0)
    assert msgspec.json.encode(view) == snapshot


def test_default_definitions_load_and_evaluate_a_real_profile() -> None:
    definitions = load_definitions(DEFAULT_DEFINITIONS)
    names = {rule.name for rule in definitions.rules}
    assert {
        "puppy_owners",
        "dog_food_due",
        "climbers",
        "campers",
        "hikers",
        "vip",
        "at_risk",
        "lapsed",
        "new_visitors",
    } <= names
    profile = Profile(
        customer_id="c1",
        country="DE",
        orders=2,
        revenue=11000,
        last_order_at=T0,
        product_purchases={"pet-dogfood-adult-12kg": (T0 - 30 * DAY, T0)},
        consent={"email": True},
        first_seen=T0 - 40 * DAY,
    )
    members = evaluate_segments(definitions, profile, now=T0 + 26 * DAY)
    assert {"region_dach", "tier_repeat", "dog_food_due"} <= members
    due = next_time_change(definitions, profile, now=T0 + 26 * DAY)
    assert due == T0 + 45 * DAY  # at_risk: orders >= 2 and 45 days without an order


profiles = st.fixed_dictionaries(
    {
        "orders": st.integers(0, 20),
        "revenue": st.integers(0, 200_000),
        "country": st.sampled_from([None, "DE", "AT", "FR", "NL"]),
        "last_order_at": st.sampled_from([0.0, T0 - 100 * DAY, T0 - 50 * DAY, T0 - DAY]),
        "category_affinity": st.dictionaries(
            st.sampled_from(["climbing-rope", "tents", "hiking-boots", "dog-food"]),
            st.tuples(st.floats(0, 20), st.floats(T0 - 60 * DAY, T0)).map(list),
            max_size=4,
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(profile=profiles, offset_days=st.floats(0, 120))
def test_waterfall_groups_are_exclusive_and_pick_the_first_match(profile: dict, offset_days: float) -> None:
    now = T0 + offset_days * DAY
    for definitions in (DEFINITIONS, load_definitions(DEFAULT_DEFINITIONS)):
        members = evaluate_segments(definitions, profile, now=now)
        answers = explain_segments(definitions, profile, now=now)
        for group in definitions.groups:
            picked = [rule.name for rule in group.segments if rule.name in members]
            assert len(picked) <= 1
            first = next((rule.name for rule in group.segments if answers[rule.name]), None)
            assert picked == ([first] if first else [])
        for rule in definitions.independent:
            assert (rule.name in members) == answers[rule.name]


@settings(max_examples=150, deadline=None)
@given(profile=profiles, offset_days=st.floats(0, 120))
def test_nothing_changes_before_next_time_change(profile: dict, offset_days: float) -> None:
    now = T0 + offset_days * DAY
    current = evaluate_segments(DEFINITIONS, profile, now=now)
    due = next_time_change(DEFINITIONS, profile, now=now)
    if due is None:
        assert evaluate_segments(DEFINITIONS, profile, now=now + 3650 * DAY) == current
        return
    assert due > now
    assert evaluate_segments(DEFINITIONS, profile, now=now + (due - now) / 2) == current
    assert evaluate_segments(DEFINITIONS, profile, now=due) != current


def test_rules_read_record_tuples_of_a_real_profile_as_lists():
    """Regression: ``cart`` is a tuple in the Profile record; cart_value and projections must still see it."""
    import msgspec

    from core.profile.apply import new_profile
    from core.rules.definitions import parse_definitions
    from core.segment_eval import evaluate_segments
    from schemas.profile import CartItem

    definitions = parse_definitions(
        "version: 1\nsegments:\n  - name: big_cart\n    when: cart_value >= 10000\n"
        '  - name: tent_in_cart\n    when: cart.category contains "tents"\n'
    )
    item = CartItem(product_id="out-tent-2p", quantity=1, price=15000, added_at=1.0, category="tents")
    profile = msgspec.structs.replace(new_profile("c1"), cart=(item,))
    assert evaluate_segments(definitions, profile, now=2.0) == frozenset({"big_cart", "tent_in_cart"})
