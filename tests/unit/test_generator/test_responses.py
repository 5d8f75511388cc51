"""The sender simulator's response model: deterministic, contract-valid answers with the configured effect."""

from __future__ import annotations

import orjson
import pytest

from offline.responses import (
    CHANNELS,
    ResponseModel,
    TrueEffect,
    engagement_habit,
    favourite_channel,
    parse_effects,
    respond,
)
from schemas.errors import ConfigError
from schemas.topics import TopicNames
from streams.produce import Routed, route_payload
from streams.senders import SeenTriggers

NOW = 1_800_000_000.0


def trigger(customer: str = "user-000001", *, treatment: str = "treatment", channel: str = "email") -> dict:
    return {
        "trigger_id": f"cart_abandonment:{customer}",
        "kind": "cart_abandonment",
        "customer_id": customer,
        "user_id": customer,
        "channel": channel,
        "treatment": treatment,
        "value": 8990,
        "currency": "EUR",
        "items": [{"product_id": "rope-9mm", "price": 8990, "quantity": 1}],
    }


def test_answers_are_the_same_every_time_and_pass_the_contract():
    model = ResponseModel(seed=5, default_effect=TrueEffect(treatment=1.0, holdout=1.0))
    funnel = ["Message Delivered", "Message Opened", "Message Clicked"]
    depths = set()
    for customer in (f"user-{i:06d}" for i in range(50)):
        answers = respond(trigger(customer), model, now=NOW)
        assert answers == respond(trigger(customer), model, now=NOW)
        events = [p["event"] for p in answers]
        depth = len(events) - 1
        assert events == [*funnel[:depth], "Order Completed"]  # a click needs an open needs a delivery
        depths.add(depth)
        for payload in answers:
            routed = route_payload(payload, orjson.dumps(payload), topics=TopicNames(""), now=NOW + 10)
            assert isinstance(routed, Routed), routed
        assert all(p["properties"]["trigger_id"] == f"cart_abandonment:{customer}" for p in answers[:-1])
        order = answers[-1]["properties"]
        assert order["total"] == 89.9 and order["order_id"] == f"sim-order-cart_abandonment:{customer}"
    assert {1, 3} <= depths


def test_a_held_out_customer_gets_no_message_but_may_order():
    model = ResponseModel(default_effect=TrueEffect(treatment=0.0, holdout=1.0))
    assert [p["event"] for p in respond(trigger(treatment="holdout"), model, now=NOW)] == ["Order Completed"]
    assert all(p["event"] != "Order Completed" for p in respond(trigger(), model, now=NOW))


@pytest.mark.parametrize("arm", ["treatment", "holdout"])
def test_conversion_rates_follow_the_true_effect(arm):
    effect = TrueEffect(treatment=0.4, holdout=0.1)
    model = ResponseModel(seed=2, effects={"cart_abandonment": effect})
    customers = [f"user-{i:06d}" for i in range(4000)]
    orders = sum(
        any(p["event"] == "Order Completed" for p in respond(trigger(c, treatment=arm), model, now=NOW))
        for c in customers
    )
    expected = effect.treatment if arm == "treatment" else effect.holdout
    assert orders / len(customers) == pytest.approx(expected, abs=0.03)


def test_open_rates_follow_the_customers_habit_on_the_channel():
    model = ResponseModel(seed=3)
    customers = [f"user-{i:06d}" for i in range(3000)]
    expected = sum(engagement_habit(c, 3)["sms"].delivered * engagement_habit(c, 3)["sms"].opened for c in customers)
    opened = sum(
        any(p["event"] == "Message Opened" for p in respond(trigger(c, channel="sms"), model, now=NOW))
        for c in customers
    )
    assert opened == pytest.approx(expected, rel=0.1)
    assert favourite_channel("user-000001", 3) in CHANNELS


def test_effects_are_parsed_and_checked():
    assert parse_effects("cart_abandonment=0.3:0.2, win_back=0.1:0.05") == {
        "cart_abandonment": TrueEffect(0.3, 0.2),
        "win_back": TrueEffect(0.1, 0.05),
    }
    for bad in ("cart=0.3", "cart=1.5:0.1", "=0.1:0.1", "cart=a:b"):
        with pytest.raises(ConfigError):
            parse_effects(bad)


def test_the_simulator_handles_each_trigger_id_once_and_forgets_the_oldest():
    seen = SeenTriggers(capacity=2)
    assert [seen.first_time(i) for i in ("a", "b", "a", "c", "a")] == [True, True, False, True, True]
