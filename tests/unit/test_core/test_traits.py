"""The trait registry: one value per trait in the API document, the rule view and rules, scores and triggers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import msgspec
import pytest
from core_event_factory import POLICY, T0, track

from core.audiences import AudiencePolicy, refresh_audiences
from core.profile.apply import apply_event
from core.profile.document import profile_document
from core.profile.merge import merge_profiles
from core.profile.policy import DAY_S, ProfilePolicy
from core.rules.analysis import referenced_fields
from core.rules.compiler import compile_node
from core.rules.context import Context
from core.rules.definitions import load_definitions
from core.rules.parser import compile_rule
from core.scoring import FEATURES, compute_features, load_models, score_profile
from core.segment_eval import evaluate_segments
from core.segment_fields import AGE_FIELDS, DERIVED_INPUTS, build_catalog, profile_view
from core.traits import COMPUTED, DEPRECATED_NAMES, TOP, TRAITS, traits_table
from core.triggers.definitions import load_triggers
from core.triggers.payload import build_trigger
from schemas.profile import Affinity, CartItem, Profile
from schemas.triggers import PendingTrigger
from streams import cli
from tests.unit.test_segments.rule_oracle import evaluate_node

CATALOG = build_catalog()
MODELS = load_models()
README = Path(__file__).resolve().parents[3] / "README.md"


def run(*events, policy: ProfilePolicy = POLICY) -> Profile:
    profile = None
    for event in events:
        profile = apply_event(profile, event, now=T0, policy=policy)
    assert profile is not None
    return profile


def order(order_id: str, days_ago: float, total: int = 3000):
    return track("Order Completed", T0 - days_ago * DAY_S, order_id=order_id, total=total)


def refund(order_id: str, days_ago: float):
    return track("Order Refunded", T0 - days_ago * DAY_S, order_id=order_id)


def rule_answers(rule: str, profile: Profile, now: float) -> set[bool]:
    """The rule's answer interpreted and compiled, on the full view and on the view built for the rule."""
    node = compile_rule(rule, CATALOG)
    fields = referenced_fields(node)
    assert fields is not None
    views = (profile_view(profile, now=now), profile_view(profile, now=now, fields=fields))
    compiled = compile_node(node)
    return {answer(Context(view, now)) for view in views for answer in (compiled, lambda ctx: evaluate_node(node, ctx))}


# --- days_since_last_order: after the latest order is refunded, the API and the rules agree ---------------


def test_days_since_last_order_after_the_latest_order_is_refunded_agrees_in_api_and_rules() -> None:
    profile = run(order("o1", 100), order("o2", 10), refund("o2", 9))
    days = profile_document(profile, now=T0)["computed"]["days_since_last_order"]
    assert days == pytest.approx(100.0)  # counted from o1: o2 was refunded
    for threshold in (50, 99.5, 100.5):
        assert rule_answers(f"days_since_last_order >= {threshold}", profile, T0) == {days >= threshold}
        assert rule_answers(f"days_since_last_order < {threshold}", profile, T0) == {days < threshold}


def test_days_since_last_order_with_every_order_refunded_is_null_in_api_and_false_in_rules() -> None:
    profile = run(order("o1", 20), refund("o1", 19))
    assert profile_document(profile, now=T0)["computed"]["days_since_last_order"] is None
    assert rule_answers("days_since_last_order >= 0", profile, T0) == {False}
    assert rule_answers("days_since_last_order < 1000", profile, T0) == {False}


def test_shipped_at_risk_segment_counts_from_the_latest_order_not_refunded() -> None:
    # Two orders 80 and 70 days ago, a third 5 days ago refunded: 70 days without an order that counts.
    profile = run(order("o1", 80), order("o2", 70), order("o3", 5), refund("o3", 4))
    definitions = load_definitions()
    view = profile_view(profile, now=T0, fields=definitions.view_fields)
    assert "at_risk" in evaluate_segments(definitions, view, now=T0)


# --- cart_value: one value for rules, triggers and scores -------------------------------------------


def test_cart_value_is_the_same_in_rules_triggers_and_scores() -> None:
    # A negative quantity (bad input) counts 0 everywhere, as the scoring features always counted it.
    profile = run(
        track("Product Added", T0, product_id="p1", quantity=2, price=1500),
        track("Product Added", T0 + 1, product_id="p2", quantity=-2, price=700),
    )
    assert {item.quantity for item in profile.cart} == {2, -2}
    value = TRAITS["cart_value"].fn(profile, T0, POLICY)
    assert value == 3000
    assert rule_answers("cart_value == 3000", profile, T0 + 3600) == {True}
    assert profile_view(profile, now=T0)["cart_value"] == value
    cart_reminder = load_triggers().by_kind["cart_abandonment"]
    pending = PendingTrigger(kind="cart_abandonment", trigger_id="t", entered_at=T0, last_entry_at=T0 + 1, due_at=T0)
    trigger = build_trigger(profile, pending, cart_reminder, at=T0 + 3600, channel="email")
    assert trigger.value == value
    features = dict(zip(FEATURES, compute_features(profile, now=T0), strict=True))
    assert features["log_cart_value"] == math.log1p(value / 100.0)


# --- one affinity half-life: the policy's reaches the document, the view, the scores and merges --------


def test_the_policy_half_life_reaches_document_view_scores_and_merge() -> None:
    policy = ProfilePolicy(affinity_half_life_s=DAY_S)
    profile = Profile(customer_id="c", category_affinity={"tents": Affinity(4.0, T0)})
    now = T0 + DAY_S  # one half-life of this policy
    assert profile_document(profile, now=now, policy=policy)["computed"]["category_affinity"] == {"tents": 2.0}
    assert profile_view(profile, now=now, policy=policy)["affinity"] == {"tents": 2.0}
    assert profile_view(profile, now=now, fields={"affinity"}, policy=policy)["affinity"] == {"tents": 2.0}
    share = 2.0 / (2.0 + 1.0)  # AFFINITY_PRIOR is 1
    assert score_profile(MODELS, profile, now=now, policy=policy)["affinity.tents"] == pytest.approx(share)
    audiences = AudiencePolicy(definitions=load_definitions(), models=MODELS)
    refreshed = refresh_audiences(profile, now=now, policy=audiences, profile_policy=policy).profile
    assert refreshed.scores["affinity.tents"] == pytest.approx(share, abs=1e-4)
    other = Profile(customer_id="d", category_affinity={"tents": Affinity(2.0, now)})
    assert merge_profiles(profile, other, policy=policy).category_affinity["tents"] == Affinity(4.0, now)
    # The default policy's half-life (14 days) is used where no policy is given.
    assert profile_document(profile, now=now)["computed"]["category_affinity"]["tents"] == pytest.approx(
        4.0 * 0.5 ** (1 / 14)
    )


def test_the_policy_half_life_reaches_apply() -> None:
    policy = ProfilePolicy(affinity_half_life_s=DAY_S)
    profile = run(
        track("Product Viewed", T0 - DAY_S, product_id="p1", category="tents"),
        track("Product Viewed", T0, product_id="p2", category="tents"),
        policy=policy,
    )
    assert profile.category_affinity["tents"] == Affinity(1.5, T0)


# --- one name per trait ---------------------------------------------------------------------------------


def test_deprecated_aov_is_average_order_value() -> None:
    profile = run(order("o1", 3, total=1000), order("o2", 2, total=3000))
    assert profile_document(profile, now=T0)["computed"]["average_order_value"] == 2000.0
    for threshold, expected in ((1999, True), (2000, False)):
        for name in ("aov", "average_order_value"):
            assert rule_answers(f"{name} > {threshold}", profile, T0) == {expected}
    assert compile_rule("aov > 1", CATALOG) == compile_rule("average_order_value > 1", CATALOG)
    assert set(DEPRECATED_NAMES.values()) <= set(TRAITS)


def test_catalog_document_and_inputs_follow_the_registry() -> None:
    document = profile_document(Profile(customer_id="c"), now=T0)
    for name, trait in TRAITS.items():
        key = trait.document_key or trait.name
        if trait.document == TOP:
            assert key in document
        elif trait.document == COMPUTED:
            assert key in document["computed"]
        else:
            assert key not in document and key not in document["computed"]
        assert DERIVED_INPUTS[name] == trait.inputs
        if trait.name not in Profile.__struct_encode_fields__:
            assert CATALOG.resolve((name,)) == trait.type
    assert {name: trait.age_of for name, trait in TRAITS.items() if trait.time_driven} == AGE_FIELDS
    assert AGE_FIELDS["days_since_last_order"] == "last_unrefunded_order_at"


def test_traits_work_on_the_record_and_on_its_view() -> None:
    profile = run(
        order("o1", 40),
        track("Product Added", T0, product_id="p1", quantity=1, price=990, category="tents"),
    )
    profile = msgspec.structs.replace(
        profile, cart=(*profile.cart, CartItem(product_id="p2", quantity=3, price=5, added_at=T0))
    )
    view = msgspec.json.decode(msgspec.json.encode(profile))
    for trait in TRAITS.values():
        assert trait.fn(profile, T0, POLICY) == trait.fn(view, T0, POLICY), trait.name


# --- the README's table is generated from the registry ------------------------------------------------


def test_readme_traits_table_is_current() -> None:
    match = re.search(r"<!-- traits:start -->\n(.*?)<!-- traits:end -->", README.read_text(encoding="utf-8"), re.S)
    assert match is not None, "README.md has no traits section between <!-- traits:start/end --> markers"
    assert match.group(1) == traits_table(), "README's traits table is out of date: paste `streamcdp traits`"


def test_streamcdp_traits_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["traits"]) == 0
    assert capsys.readouterr().out == traits_table()
    assert all(f"| `{name}` |" in traits_table() for name in (*TRAITS, *DEPRECATED_NAMES))
