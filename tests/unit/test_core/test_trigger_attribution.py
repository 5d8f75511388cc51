"""Attribution of messaging responses and orders to sent and held-out triggers, and the per-kind counters."""

from __future__ import annotations

import msgspec
import pytest

from core.profile_stage import StagePolicy
from core.triggers.attribution import (
    MAX_TRIGGER_RESPONSES,
    attribute_event,
    count_attributions,
    merge_stats,
)
from schemas.conversions import ChannelStats, KindStats, TriggerConversion
from schemas.profile import Profile
from schemas.triggers import Trigger, TriggerOutcome
from tests.unit.test_core.core_event_factory import POLICY, T0, StageSim, identify, track

DAY = 86400.0
WINDOW = 3 * DAY


def sent(trigger_id: str = "t-cart", kind: str = "cart_abandonment", at: float = T0, channel: str = "email"):
    return TriggerOutcome(trigger_id=trigger_id, kind=kind, outcome="sent", at=at, channel=channel)


def held_out(trigger_id: str = "t-hold", kind: str = "cart_abandonment", at: float = T0):
    return TriggerOutcome(trigger_id=trigger_id, kind=kind, outcome="holdout", at=at, channel="email")


def customer(*history: TriggerOutcome) -> Profile:
    return Profile(customer_id="u1", user_id="u1", trigger_history=history)


def order(at: float, total: int = 5000, order_id: str = "o1", **kw):
    return track("Order Completed", at, order_id=order_id, total=total, currency="EUR", **kw)


@pytest.mark.parametrize(
    ("offset", "attributed"),
    [(-1.0, False), (0.0, True), (1.0, True), (WINDOW, True), (WINDOW + 1.0, False)],
)
def test_an_order_converts_a_trigger_decided_at_most_one_window_before(offset, attributed):
    profile, conversions = attribute_event(customer(sent()), order(T0 + offset), window_s=WINDOW)
    assert len(conversions) == int(attributed)
    assert (profile.trigger_responses == ("t-cart:converted",)) is attributed


@pytest.mark.parametrize(
    ("event", "response"),
    [("Message Delivered", "delivered"), ("Message Opened", "opened"), ("Message Clicked", "clicked")],
)
def test_a_messaging_event_with_the_trigger_id_is_attributed_to_it(event, response):
    _, conversions = attribute_event(customer(sent()), track(event, T0 + 60, trigger_id="t-cart", channel="email"))
    assert [(c.conversion_id, c.response, c.treatment, c.channel) for c in conversions] == [
        (f"t-cart:{response}", response, "treatment", "email")
    ]


@pytest.mark.parametrize(
    ("properties", "at"),
    [
        ({"trigger_id": "other"}, T0 + 60),  # an unknown trigger
        ({}, T0 + 60),  # no trigger id: a campaign message
        ({"trigger_id": "t-cart"}, T0 + WINDOW + 1),  # after the window
    ],
)
def test_messaging_events_that_name_no_recent_send_are_not_attributed(properties, at):
    profile = customer(sent())
    assert attribute_event(profile, track("Message Clicked", at, channel="email", **properties)) == (profile, ())


def test_a_click_for_a_held_out_trigger_is_not_attributed():
    profile = customer(held_out())
    assert attribute_event(profile, track("Message Clicked", T0 + 5, trigger_id="t-hold")) == (profile, ())


def test_each_response_is_attributed_once():
    profile, first = attribute_event(customer(sent()), track("Message Clicked", T0 + 5, trigger_id="t-cart"))
    again, second = attribute_event(profile, track("Message Clicked", T0 + 9, trigger_id="t-cart"))
    assert len(first) == 1 and second == () and again is profile
    profile, converted = attribute_event(profile, order(T0 + 60, order_id="o1"))
    profile, converted_again = attribute_event(profile, order(T0 + 90, order_id="o2"))
    assert len(converted) == 1 and converted_again == ()
    assert profile.trigger_responses == ("t-cart:clicked", "t-cart:converted")


def test_an_order_converts_both_arms_and_every_kind_in_the_window_with_its_revenue():
    profile = customer(
        sent("t-cart"),
        held_out("t-repl", kind="replenishment"),
        TriggerOutcome(trigger_id="t-x", kind="cross_sell", outcome="cancelled_exit", at=T0),
        sent("t-old", kind="browse_abandonment", at=T0 - WINDOW - 10),
    )
    _, conversions = attribute_event(profile, order(T0 + 3600, total=7990, order_id="o9"))
    assert {(c.trigger_id, c.kind, c.treatment, c.revenue, c.order_id) for c in conversions} == {
        ("t-cart", "cart_abandonment", "treatment", 7990, "o9"),
        ("t-repl", "replenishment", "holdout", 7990, "o9"),
    }
    assert all(c.response == "converted" and c.currency == "EUR" and c.at == T0 + 3600 for c in conversions)


def test_remembered_responses_are_capped():
    history = tuple(sent(f"t{i}", at=T0) for i in range(8))
    profile = msgspec.structs.replace(
        customer(*history), trigger_responses=tuple(f"x{i}:clicked" for i in range(MAX_TRIGGER_RESPONSES))
    )
    profile, conversions = attribute_event(profile, order(T0 + 1))
    assert len(conversions) == 8 and len(profile.trigger_responses) == MAX_TRIGGER_RESPONSES
    assert profile.trigger_responses[-1] == "t7:converted"


def _with_history(sim: StageSim, key: str, *history: TriggerOutcome) -> None:
    state = sim.state(key)
    sim.states[key] = msgspec.structs.replace(
        state, profile=msgspec.structs.replace(state.profile, trigger_history=history)
    )


def test_the_stage_attributes_an_order_placed_under_a_linked_id_once_even_when_replayed():
    sim = StageSim(StagePolicy(profile=POLICY, attribution_window_s=WINDOW))
    sim.feed(identify(T0 - 100, user="u1", anon="a1", email="u1@example.com"))
    _with_history(sim, "u1", sent())
    pos_order = order(T0 + 600, user=None, anon="a1", store_id="store-berlin-01")
    sim.feed(pos_order)
    conversions = [c for result in sim.results for c in result.conversions]
    assert [(c.customer_id, c.trigger_id, c.response) for c in conversions] == [("u1", "t-cart", "converted")]
    sim.results.clear()
    sim.feed(pos_order)  # the same message again (a replay after a crash)
    assert [c for result in sim.results for c in result.conversions] == []


def test_the_stage_uses_the_configured_window():
    sim = StageSim(StagePolicy(profile=POLICY, attribution_window_s=60.0))
    sim.feed(identify(T0 - 100, user="u1"))
    _with_history(sim, "u1", sent())
    sim.feed(track("Message Opened", T0 + 61, trigger_id="t-cart", channel="email"), order(T0 + 30))
    assert [c.response for result in sim.results for c in result.conversions] == ["converted"]


def _trigger(kind: str, channel: str = "email", treatment: str = "treatment") -> Trigger:
    return Trigger(
        trigger_id=f"{kind}:{channel}:{treatment}",
        kind=kind,
        customer_id="u1",
        user_id="u1",
        channel=channel,
        channels=(channel,),
        decided_at=T0,
        send_at=T0,
        reason="test",
        priority=50,
        treatment=treatment,
    )


def _conversion(kind: str, response: str, treatment: str = "treatment", channel: str = "email", revenue: int = 0):
    return TriggerConversion(
        conversion_id=f"x:{response}",
        trigger_id="x",
        kind=kind,
        customer_id="u1",
        treatment=treatment,
        channel=channel,
        response=response,
        decided_at=T0,
        at=T0 + 1,
        message_id="m",
        revenue=revenue,
    )


def test_counters_count_both_arms_responses_per_channel_and_revenue_per_arm():
    before = {"cart_abandonment": KindStats(sent=3, channels={"email": ChannelStats(sent=3, opened=1)})}
    updated = count_attributions(
        before,
        [
            _trigger("cart_abandonment"),
            _trigger("cart_abandonment", treatment="holdout"),
            _trigger("cross_sell", "sms"),
        ],
        [
            _conversion("cart_abandonment", "opened"),
            _conversion("cart_abandonment", "converted", revenue=1000),
            _conversion("cart_abandonment", "converted", treatment="holdout", revenue=300),
        ],
    )
    assert updated == {
        "cart_abandonment": KindStats(
            sent=4,
            holdout=1,
            converted_treatment=1,
            converted_holdout=1,
            revenue_treatment=1000,
            revenue_holdout=300,
            channels={"email": ChannelStats(sent=4, opened=2)},
        ),
        "cross_sell": KindStats(sent=1, channels={"sms": ChannelStats(sent=1)}),
    }
    assert before["cart_abandonment"] == KindStats(sent=3, channels={"email": ChannelStats(sent=3, opened=1)})


def test_merging_partitions_sums_every_counter():
    first = {"k": KindStats(sent=2, holdout=1, revenue_treatment=5, channels={"sms": ChannelStats(sent=2, clicked=1)})}
    second = {
        "k": KindStats(sent=1, converted_holdout=1, channels={"sms": ChannelStats(sent=1), "email": ChannelStats()}),
        "j": KindStats(holdout=4),
    }
    assert merge_stats([first, second]) == {
        "k": KindStats(
            sent=3,
            holdout=1,
            converted_holdout=1,
            revenue_treatment=5,
            channels={"sms": ChannelStats(sent=3, clicked=1), "email": ChannelStats()},
        ),
        "j": KindStats(holdout=4),
    }
