"""Propensity scoring: features, bounds, model file, threshold crossings, affinity shares."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.scoring import (
    CHURN_60D,
    FEATURES,
    PURCHASE_7D,
    LogisticModel,
    PropensityModels,
    category_affinity_scores,
    compute_features,
    load_models,
    parse_models,
    score_crossings,
    score_profile,
    sigmoid,
)
from schemas.errors import ConfigError
from schemas.profile import Affinity, CartItem, Profile

DAY = 86400.0
T0 = 1_700_000_000.0
MODELS = load_models()


def test_shipped_model_file_loads_with_both_models_and_metrics() -> None:
    assert MODELS.version == "propensity-v1"
    assert set(MODELS.models) == {PURCHASE_7D, CHURN_60D}
    for model in MODELS.models.values():
        assert model.metrics["auc"] > 0.6
        assert model.metrics["reliability"]


def test_features_of_record_and_builtins_view_agree() -> None:
    profile = Profile(
        customer_id="c",
        orders=3,
        revenue=12000,
        last_order_at=T0 - 5 * DAY,
        order_times=(T0 - 40 * DAY, T0 - 20 * DAY, T0 - 5 * DAY),
        first_seen=T0 - 60 * DAY,
        last_seen=T0 - DAY,
        event_count=40,
        sessions=6,
        cart=(CartItem(product_id="p", quantity=2, price=1500, added_at=T0 - DAY),),
        event_last_at={"Product Viewed": T0 - 2 * DAY},
        engagement={"email": {"delivered": 10, "opened": 4, "clicked": 1}},
    )
    features = compute_features(profile, now=T0)
    assert len(features) == len(FEATURES)
    assert features == compute_features(msgspec.to_builtins(profile), now=T0)
    named = dict(zip(FEATURES, features, strict=True))
    assert named["has_ordered"] == 1.0 and named["cart_nonempty"] == 1.0 and named["viewed_7d"] == 1.0
    assert named["open_rate"] == pytest.approx(0.4)


def test_empty_profile_scores_are_probabilities() -> None:
    scores = score_profile(MODELS, Profile(customer_id="c"), now=T0)
    assert set(scores) == {PURCHASE_7D, CHURN_60D}
    assert all(0.0 <= value <= 1.0 for value in scores.values())


def test_recent_frequent_buyer_outscores_a_dormant_visitor() -> None:
    buyer = Profile(
        customer_id="a",
        orders=8,
        revenue=40000,
        last_order_at=T0 - 3 * DAY,
        order_times=tuple(T0 - d * DAY for d in (66, 54, 45, 33, 24, 15, 9, 3)),
        first_seen=T0 - 90 * DAY,
        last_seen=T0 - DAY,
        event_count=300,
        sessions=30,
        event_last_at={"Product Viewed": T0 - DAY},
    )
    dormant = Profile(customer_id="b", first_seen=T0 - 90 * DAY, last_seen=T0 - 80 * DAY, event_count=3)
    assert score_profile(MODELS, buyer, now=T0)[PURCHASE_7D] > score_profile(MODELS, dormant, now=T0)[PURCHASE_7D]


profiles = st.builds(
    Profile,
    customer_id=st.just("c"),
    orders=st.integers(-5, 10_000),
    revenue=st.integers(-(10**6), 10**12),
    last_order_at=st.floats(0, 2 * T0, allow_nan=False),
    first_seen=st.floats(0, 2 * T0, allow_nan=False),
    last_seen=st.floats(0, 2 * T0, allow_nan=False),
    last_checkout_at=st.floats(0, 2 * T0, allow_nan=False),
    event_count=st.integers(0, 10**9),
    sessions=st.integers(0, 10**6),
    order_times=st.lists(st.floats(0, 2 * T0, allow_nan=False), max_size=5).map(lambda t: tuple(sorted(t))),
    event_last_at=st.dictionaries(
        st.sampled_from(["Product Viewed", "Order Completed"]), st.floats(0, 2 * T0, allow_nan=False)
    ),
    engagement=st.dictionaries(
        st.sampled_from(["email", "sms"]),
        st.dictionaries(st.sampled_from(["delivered", "opened", "clicked"]), st.integers(0, 10**6)),
    ),
    category_affinity=st.dictionaries(
        st.sampled_from(["tents", "dog-food", "socks"]), st.builds(Affinity, st.floats(0, 1e6), st.floats(0, 2 * T0))
    ),
)


@settings(max_examples=300, deadline=None)
@given(profile=profiles, now=st.floats(0, 2 * T0, allow_nan=False))
def test_scores_stay_in_unit_interval(profile: Profile, now: float) -> None:
    scores = score_profile(MODELS, profile, now=now)
    for name, value in scores.items():
        assert 0.0 <= value <= 1.0, name
        assert not math.isnan(value)
    shares = category_affinity_scores(profile, now=now)
    assert sum(shares.values()) <= 1.0 + 1e-9


@given(z=st.floats(allow_nan=True, allow_infinity=True))
def test_sigmoid_bounds(z: float) -> None:
    assert 0.0 <= sigmoid(z) <= 1.0


def test_affinity_shares_decay_and_normalise() -> None:
    profile = Profile(customer_id="c", category_affinity={"tents": Affinity(3.0, T0), "socks": Affinity(1.0, T0)})
    now_shares = category_affinity_scores(profile, now=T0)
    assert now_shares == {"tents": pytest.approx(0.6), "socks": pytest.approx(0.2)}
    later = category_affinity_scores(profile, now=T0 + 14 * DAY)
    assert later["tents"] < now_shares["tents"]
    assert score_profile(MODELS, profile, now=T0)["affinity.tents"] == pytest.approx(0.6)


def test_score_crossings() -> None:
    crossings = score_crossings(
        {"purchase_7d": 0.5, "churn_60d": 0.8},
        {"purchase_7d": 0.65, "churn_60d": 0.3},
        {"purchase_7d": (0.6, 0.9), "churn_60d": (0.7,), "missing": (0.1,)},
    )
    assert [(c.score, c.threshold, c.direction) for c in crossings] == [
        ("churn_60d", 0.7, "down"),
        ("purchase_7d", 0.6, "up"),
    ]
    assert score_crossings({}, {"x": 0.2}, {"x": (0.2,)})[0].direction == "up"
    assert score_crossings({"x": 0.5}, {"x": 0.5}, {"x": (0.5,)}) == []


def test_model_file_round_trip_and_errors(tmp_path) -> None:
    assert parse_models(MODELS.to_json()).models[PURCHASE_7D] == MODELS.models[PURCHASE_7D]
    with pytest.raises(ConfigError, match="not JSON"):
        parse_models(b"{")
    with pytest.raises(ConfigError, match="retrain"):
        parse_models(b'{"models": {}, "features": ["x"]}')
    broken = PropensityModels("v", "t", FEATURES, {"m": LogisticModel((1.0,), 0.0, (0.0,), (1.0,))})
    with pytest.raises(ConfigError, match="expected 18 finite numbers"):
        parse_models(broken.to_json())
    with pytest.raises(ConfigError, match="cannot read"):
        load_models(tmp_path / "nope.json")
