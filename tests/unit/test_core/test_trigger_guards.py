"""The guard chain's guardrails, one table per guard, and the journeys they shape through the profile stage.

Decisions are built directly (``Decision``) for the tables; the journeys run the real profile stage with the
shipped definitions and the default guardrails (``DEFAULT_GUARDRAILS``), quiet hours off unless a test is
about them. T0 is 2023-11-14 22:13:20 UTC.
"""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from core_event_factory import POLICY, T0, identify, shipped_triggers, track
from test_trigger_kinds import CONSUMABLES, D, H, M, add, order
from trigger_journeys import Journey, Tick

from core.profile.apply import apply_event
from core.profile.merge import merge_profiles
from core.profile_stage import StagePolicy
from core.triggers.caps import remember_send
from core.triggers.channels import DEFINITION_ORDER, ENGAGEMENT, ONLY_CHANNEL, PREFERRED, choose_channel
from core.triggers.guardrails import (
    DEFAULT_GUARDRAILS,
    OPT_IN,
    QuietHours,
    parse_caps,
    parse_channel_caps,
    parse_consent,
    parse_holdout_shares,
    parse_quiet_hours,
)
from core.triggers.guards import (
    BLOCKED_CONSENT,
    BLOCKED_NO_CONTACT,
    BLOCKED_NO_CONTENT,
    BLOCKED_SUPPRESSED,
    CAPPED,
    DEFERRED_QUIET_HOURS,
    HOLDOUT,
    OUTRANKED,
    SENT,
    CapsGuard,
    ConsentGuard,
    ContactGuard,
    ContentGuard,
    Decision,
    HoldoutGuard,
    QuietHoursGuard,
    SuppressedGuard,
    run_guards,
)
from core.triggers.holdout import in_holdout
from core.triggers.payload import build_trigger, message_content
from core.triggers.quiet_hours import customer_zone, quiet_until
from schemas.errors import ConfigError
from schemas.profile import CartItem, Profile
from schemas.triggers import PendingTrigger, TriggerSend

RAILS = dataclasses.replace(DEFAULT_GUARDRAILS, quiet_hours=None)
CART = shipped_triggers().definitions.by_kind["cart_abandonment"]  # channels: email, apppush, webpush
PENDING = PendingTrigger(kind="cart_abandonment", trigger_id="t1", entered_at=T0, last_entry_at=T0, due_at=T0)
CART_ITEMS = (CartItem(product_id="rope-9mm", quantity=1, price=8990, added_at=T0),)  # a cart reminder's content
KNOWN = Profile(customer_id="u1", user_id="u1", email_hash="e" * 64, cart=CART_ITEMS)


def decide(profile: Profile = KNOWN, *, at: float = T0, rails=RAILS, definition=CART, pass_sends=()) -> Decision:
    return Decision(profile, PENDING, definition, at, None, rails, pass_sends)


def known(**changes) -> Profile:
    return msgspec.structs.replace(KNOWN, **changes)


def sends(*items: tuple[str, str, float]) -> tuple[TriggerSend, ...]:
    return tuple(TriggerSend(kind=k, channel=c, at=a) for k, c, a in items)


# --- the guards, one table each ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (KNOWN, None),
        (known(custom_traits={"suppressed": True}), BLOCKED_SUPPRESSED),
        (known(custom_traits={"suppressed": False}), None),
        (known(suppressed={"email": "hard_bounce"}), None),  # apppush and webpush are left
        (known(suppressed=dict.fromkeys(("email", "apppush", "webpush"), "unsubscribed")), BLOCKED_SUPPRESSED),
    ],
)
def test_suppressed(profile, expected):
    assert SuppressedGuard().check(decide(profile)) == expected


@pytest.mark.parametrize(
    ("profile", "rails", "expected"),
    [
        (KNOWN, RAILS, None),  # email is opt-out by default
        (known(consent={"email": False}), RAILS, BLOCKED_CONSENT),  # push channels are opt-in, never granted
        (known(consent={"email": False, "apppush": True}), RAILS, None),
        (KNOWN, dataclasses.replace(RAILS, consent=parse_consent("email:opt_in")), BLOCKED_CONSENT),
        (known(suppressed={"email": "spam_complaint"}), RAILS, BLOCKED_CONSENT),  # suppressed: no open channel
    ],
)
def test_consent(profile, rails, expected):
    assert ConsentGuard().check(decide(profile, rails=rails)) == expected


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (KNOWN, None),
        (known(email_hash=None), BLOCKED_NO_CONTACT),
        (known(email_hash=None, consent={"apppush": True}), BLOCKED_NO_CONTACT),  # consent, but no token
        (known(email_hash=None, consent={"apppush": True}, push_token_hash="t"), None),
        (known(email_hash=None, consent={"webpush": True}, webpush_subscribed=True), None),
        (known(consent={"email": False, "webpush": True}), BLOCKED_NO_CONTACT),  # email on file, withdrawn
    ],
)
def test_contactable(profile, expected):
    assert ContactGuard().check(decide(profile)) == expected


NIGHT = QuietHours(21 * 60, 8 * 60)


@pytest.mark.parametrize(
    ("timezone", "at", "expected_until"),
    [
        (None, T0, 1_700_035_200.0),  # 22:13 UTC → 08:00 UTC next day
        ("Asia/Tokyo", T0, 1_700_002_800.0),  # 07:13 in Tokyo: quiet until 08:00 JST (23:00 UTC)
        ("America/New_York", T0, None),  # 17:13 in New York: allowed
        ("Not/AZone", T0, 1_700_035_200.0),  # unknown zone: the default (UTC)
        (None, 1_699_992_000.0, None),  # 20:00 UTC: allowed
        (None, 1_699_999_200.0, 1_700_035_200.0),  # 21:00 UTC: the first quiet minute
    ],
)
def test_quiet_hours(timezone, at, expected_until):
    zone = customer_zone(timezone, RAILS)
    until = quiet_until(at, zone, NIGHT)
    assert until == expected_until
    rails = dataclasses.replace(RAILS, quiet_hours=NIGHT)
    outcome = QuietHoursGuard().check(decide(known(timezone=timezone), at=at, rails=rails))
    assert outcome == (None if until is None else DEFERRED_QUIET_HOURS)


def test_quiet_hours_that_do_not_wrap_midnight():
    lunch = QuietHours(12 * 60, 14 * 60)
    assert lunch.contains(12 * 60) and lunch.contains(13 * 60 + 59) and not lunch.contains(14 * 60)
    assert not lunch.contains(11 * 60 + 59)


@pytest.mark.parametrize(
    ("earlier", "now", "expected"),
    [
        ((), (), None),
        ((("browse_abandonment", "email", T0 - H),), (), None),  # 1 of 2 a day
        ((("browse_abandonment", "email", T0 - H), ("win_back", "email", T0 - 2 * H)), (), CAPPED),  # 2 a day
        ((("browse_abandonment", "email", T0 - 2 * D),) * 2, (), None),  # older than a day
        (tuple(("win_back", "email", T0 - d * D - H) for d in range(1, 6)), (), CAPPED),  # 5 a week
        ((("cart_abandonment", "email", T0 - 23 * H),), (), CAPPED),  # the kind: 1 a day
        ((("cart_abandonment", "email", T0 - 25 * H),), (), None),
        ((("win_back", "email", T0 - H),), (("high_intent_offer", "webpush", T0),), OUTRANKED),  # took the last
        ((("win_back", "email", T0 - H), ("replenishment", "email", T0 - 2 * H)), (("x", "email", T0),), CAPPED),
    ],
)
def test_caps(earlier, now, expected):
    decision = decide(known(trigger_sends=sends(*earlier)), pass_sends=sends(*now))
    assert CapsGuard().check(decision) == expected


def test_a_capped_channel_is_skipped_for_the_next_one():
    rails = dataclasses.replace(RAILS, channel_caps=parse_channel_caps("email:1/1d"))
    profile = known(trigger_sends=sends(("win_back", "email", T0 - H)), consent={"apppush": True}, push_token_hash="t")
    decision = decide(profile, rails=rails)
    assert CapsGuard().check(decision) is None and decision.channel == ("apppush", ONLY_CHANNEL)
    assert CapsGuard().check(decide(known(trigger_sends=profile.trigger_sends), rails=rails)) == CAPPED


def test_a_definition_cap_replaces_the_kind_caps():
    definition = dataclasses.replace(CART, caps=parse_caps("3/1d"))
    profile = known(trigger_sends=sends(("cart_abandonment", "email", T0 - H)))
    assert CapsGuard().check(decide(profile, definition=definition)) is None
    assert CapsGuard().check(decide(profile)) == CAPPED


CROSS_SELL = shipped_triggers().definitions.by_kind["post_purchase_cross_sell"]  # recommendations only
BOUGHT = PendingTrigger(
    kind="post_purchase_cross_sell",
    trigger_id="x1",
    entered_at=T0,
    last_entry_at=T0,
    due_at=T0,
    facts={"order_id": "o-1", "product_ids": "rope-9mm", "categories": "climbing"},
)


def cross_sell(profile: Profile, *, definition=CROSS_SELL, rails=RAILS) -> Decision:
    return Decision(profile, BOUGHT, definition, T0 + 3 * D, None, rails)


def test_a_message_with_nothing_to_show_is_not_sent():
    # Viewed only what was bought: a cross-sell would recommend nothing.
    only_bought = known(cart=(), recently_viewed=(("rope-9mm", T0 - H),), product_views={"rope-9mm": 2})
    assert ContentGuard().check(cross_sell(only_bought)) == BLOCKED_NO_CONTENT
    assert run_guards(cross_sell(only_bought)) == BLOCKED_NO_CONTENT
    # Something else viewed: recommended, and sent.
    browsed = known(cart=(), recently_viewed=(("rope-9mm", T0 - H), ("harness-1", T0 - H)))
    decision = cross_sell(browsed)
    assert run_guards(decision) == SENT
    assert decision.content.recommendations == ("harness-1",)


def test_content_is_asked_only_of_a_message_that_needs_it():
    nothing = known(cart=())
    with_offer = dataclasses.replace(
        CROSS_SELL, content=dataclasses.replace(CROSS_SELL.content, offer={"code": "MORE-{trigger}"})
    )
    template_only = dataclasses.replace(CROSS_SELL, content=dataclasses.replace(CROSS_SELL.content, recommendations=0))
    assert ContentGuard().check(cross_sell(nothing, definition=with_offer)) is None  # an offer says something
    assert ContentGuard().check(cross_sell(nothing, definition=template_only)) is None  # asks for nothing
    assert ContentGuard().check(cross_sell(nothing)) == BLOCKED_NO_CONTENT


def test_an_empty_message_is_not_drawn_into_the_holdout():
    rails = dataclasses.replace(RAILS, holdout_shares=parse_holdout_shares("*:1"))
    assert run_guards(cross_sell(known(cart=()), rails=rails)) == BLOCKED_NO_CONTENT
    assert run_guards(decide(rails=rails)) == HOLDOUT  # a cart reminder has its cart


def test_the_payload_carries_the_content_the_guard_built():
    browsed = known(cart=(), recently_viewed=(("harness-1", T0 - H), ("chalk", T0 - 2 * H)))
    decision = cross_sell(browsed)
    assert run_guards(decision) == SENT
    at = decision.at
    given = build_trigger(browsed, BOUGHT, CROSS_SELL, at=at, channel="email", content=decision.content)
    built = build_trigger(browsed, BOUGHT, CROSS_SELL, at=at, channel="email")
    assert given == built
    assert built.recommendations == message_content(browsed, BOUGHT, CROSS_SELL, at=at).recommendations
    assert set(built.recommendations) == {"harness-1", "chalk"}


@pytest.mark.parametrize(
    ("shares", "control", "customer", "expected"),
    [
        ("", 0.0, "u1", None),
        ("*:1", 0.0, "u1", HOLDOUT),
        ("cart_abandonment:1", 0.0, "u1", HOLDOUT),
        ("win_back:1", 0.0, "u1", None),
        ("", 1.0, "u1", HOLDOUT),  # the global control group
    ],
)
def test_holdout(shares, control, customer, expected):
    rails = dataclasses.replace(RAILS, holdout_shares=parse_holdout_shares(shares), control_group_share=control)
    assert HoldoutGuard().check(decide(known(customer_id=customer), rails=rails)) == expected


def test_a_definition_holdout_share_replaces_the_settings():
    rails = dataclasses.replace(RAILS, holdout_shares={"*": 1.0})
    assert HoldoutGuard().check(decide(rails=rails, definition=dataclasses.replace(CART, holdout=0.0))) is None


# --- channel choice --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engagement", "preferred", "expected"),
    [
        ({}, None, ("email", DEFINITION_ORDER)),
        ({}, "webpush", ("webpush", PREFERRED)),
        (
            {"apppush": {"delivered": 3, "opened": 3, "clicked": 2}, "email": {"delivered": 5}},
            None,
            ("apppush", ENGAGEMENT),
        ),
        ({"apppush": {"delivered": 3, "opened": 3, "clicked": 2}}, "email", ("apppush", ENGAGEMENT)),
        # One click does not beat a channel opened on a third of 20 deliveries.
        (
            {"email": {"delivered": 20, "opened": 7}, "apppush": {"delivered": 1, "clicked": 1}},
            None,
            ("email", ENGAGEMENT),
        ),
        ({c: {"delivered": 5} for c in ("email", "apppush", "webpush")}, "apppush", ("apppush", PREFERRED)),
        ({"email": {"delivered": 5}, "apppush": {"delivered": 5}}, None, ("webpush", ENGAGEMENT)),  # unmeasured: 0.1
    ],
)
def test_channel_choice(engagement, preferred, expected):
    assert choose_channel(("email", "apppush", "webpush"), engagement, preferred, RAILS) == expected


def test_the_chain_answers_sent_with_the_chosen_channel():
    profile = known(
        consent={"apppush": True}, push_token_hash="t", engagement={"apppush": {"delivered": 2, "clicked": 2}}
    )
    decision = decide(profile)
    assert run_guards(decision) == SENT and decision.channel == ("apppush", ENGAGEMENT)


# --- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_caps, "2"),
        (parse_caps, "2/1y"),
        (parse_caps, "99/1d"),  # more than the sends a profile remembers
        (parse_channel_caps, "fax:1/1d"),
        (parse_quiet_hours, "21-08"),
        (parse_quiet_hours, "08:00-08:00"),
        (parse_consent, "sms:maybe"),
        (parse_holdout_shares, "cart:1.5"),
    ],
)
def test_bad_guardrail_texts_are_refused(parse, text):
    with pytest.raises(ValueError):
        parse(text)


def test_guardrails_from_texts_names_the_field():
    with pytest.raises(ConfigError, match="guardrail default_timezone"):
        DEFAULT_GUARDRAILS.from_texts({"default_timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="unknown guardrail"):
        DEFAULT_GUARDRAILS.from_texts({"caps": "1/1d"})
    assert DEFAULT_GUARDRAILS.from_texts({"consent": "*:opt_in"}).consent["email"] == OPT_IN


def test_a_send_is_remembered_as_long_as_the_longest_window():
    kept = remember_send(sends(("a", "email", T0 - 8 * D), ("b", "email", T0 - D)), sends(("c", "sms", T0))[0], RAILS)
    assert [s.kind for s in kept] == ["b", "c"]


def test_holdout_assignment_depends_only_on_customer_and_kind():
    rails = dataclasses.replace(RAILS, holdout_shares={"*": 0.5})
    first = [in_holdout(f"c{i}", "win_back", rails) for i in range(200)]
    assert first == [in_holdout(f"c{i}", "win_back", rails) for i in range(200)]
    assert 0 < sum(first) < 200


# --- what the events change in the profile -----------------------------------------------------------


def apply(*events, profile: Profile | None = None) -> Profile:
    for event in events:
        profile = apply_event(profile, event, now=event.timestamp, policy=POLICY)
    assert profile is not None
    return profile


@pytest.mark.parametrize(
    ("events", "suppressed"),
    [
        ([track("Message Bounced", T0, channel="email", bounce_type="hard")], {"email": "hard_bounce"}),
        ([track("Message Bounced", T0, channel="email", bounce_type="soft")], {}),
        ([track("Unsubscribed", T0, channel="sms")], {"sms": "unsubscribed"}),
        ([track("Unsubscribed", T0, channel="email", reason="spam")], {"email": "spam_complaint"}),
        ([track("Unsubscribed", T0, channel="sms"), track("Consent Updated", T0 + 1, channel="sms", granted=True)], {}),
        # An older grant arriving late does not lift a newer unsubscribe.
        (
            [track("Unsubscribed", T0, channel="sms"), track("Consent Updated", T0 - 1, channel="sms", granted=True)],
            {"sms": "unsubscribed"},
        ),
        (
            [
                track("Message Bounced", T0, channel="email", bounce_type="hard"),
                identify(T0 + 1, email="new@example.com"),
            ],
            {},
        ),
        (
            [
                track("Message Bounced", T0, channel="sms", bounce_type="permanent"),
                identify(T0 + 1, email="a@example.com"),
            ],
            {"sms": "hard_bounce"},
        ),
    ],
)
def test_suppressing_events(events, suppressed):
    assert apply(*events).suppressed == suppressed


def test_push_token_and_web_push_subscription():
    profile = apply(track("Product Viewed", T0, context={"device": {"id": "d1", "token": "tok-1"}}, product_id="p"))
    assert profile.push_token_hash is not None and len(profile.push_token_hash) == 24
    assert "tok-1" not in msgspec.json.encode(profile).decode()
    profile = apply(track("Push Subscribed", T0), profile=profile)
    assert profile.webpush_subscribed and profile.sessions == 1  # a subscription is no session activity
    assert not apply(track("Push Unsubscribed", T0 + 1), profile=profile).webpush_subscribed
    assert apply(track("Push Unsubscribed", T0 - 1), profile=profile).webpush_subscribed  # older: ignored


# --- journeys through the profile stage ------------------------------------------------------------


def stage(rails=RAILS, **kw) -> StagePolicy:
    return StagePolicy(profile=POLICY, triggers=shipped_triggers(consumables=CONSUMABLES, guardrails=rails, **kw))


def consent(at: float, channel: str, granted: bool):
    return track("Consent Updated", at, channel=channel, granted=granted)


def test_a_consent_withdrawal_cancels_what_waits_without_a_channel():
    journey = Journey(stage()).play(identify(T0 - H, email="ana@example.com"), add(T0), consent(T0 + M, "email", False))
    assert ("cart_abandonment", "cancelled_consent") in journey.outcomes
    assert journey.profile("u1").pending_triggers == ()
    journey.play(Tick(T0 + D))
    assert journey.sent == []


def test_a_withdrawal_leaves_what_another_channel_can_still_carry():
    journey = Journey(stage()).play(
        identify(T0 - H, email="ana@example.com", phone="+4915100000001"),
        consent(T0 - H, "sms", True),
        add(T0),
        track("Checkout Started", T0 + M),
        consent(T0 + 2 * M, "email", False),
        Tick(T0 + D),
    )
    assert [(t.kind, t.channel) for t in journey.sent] == [("checkout_abandonment", "sms")]


def test_five_carts_in_ten_minutes_give_one_reminder():
    fast = dict(after={"cart_abandonment": 60.0})
    journey = Journey(stage(**fast)).play(identify(T0 - H, email="ana@example.com"))
    definitions = journey.policy.triggers.definitions
    no_re_entry = dataclasses.replace(definitions.by_kind["cart_abandonment"], re_entry=0.0)
    triggers = dataclasses.replace(
        journey.policy.triggers, definitions=dataclasses.replace(definitions, definitions=(no_re_entry,))
    )
    journey.policy = dataclasses.replace(journey.policy, triggers=triggers)
    for i in range(5):
        journey.play(
            add(T0 + i * 2 * M, f"p{i}"),
            Tick(T0 + i * 2 * M + 90),
            track("Product Removed", T0 + i * 2 * M + 100, product_id=f"p{i}"),
        )
    assert len(journey.sent) == 1
    assert journey.outcomes.count(("cart_abandonment", "capped")) == 4


def test_a_reminder_due_at_night_is_deferred_to_the_morning_and_an_order_cancels_it():
    rails = dataclasses.replace(RAILS, quiet_hours=NIGHT)
    paris = identify(T0 - H, email="ana@example.com", timezone="Europe/Paris")  # T0 is 23:13 in Paris
    journey = Journey(stage(rails)).play(paris, add(T0 - 10 * M), Tick(T0 + 2 * H))
    [pending] = journey.profile("u1").pending_triggers
    assert ("cart_abandonment", "deferred_quiet_hours") in journey.outcomes
    assert pending.due_at == pending.deferred_until == 1_700_031_600.0  # 08:00 in Paris (07:00 UTC)
    morning = Journey(stage(rails)).play(paris, add(T0 - 10 * M), Tick(T0 + D))
    assert [t.decided_at for t in morning.sent] == [1_700_031_600.0]
    journey.play(order(T0 + 3 * H, "rope-9mm"), Tick(T0 + D))
    assert [t.kind for t in journey.sent] == []  # the night-time order exited it


def test_holdout_customers_get_the_same_payload_marked_holdout():
    rails = dataclasses.replace(RAILS, holdout_shares={"cart_abandonment": 1.0})
    journey = Journey(stage(rails)).play(identify(T0 - H, email="ana@example.com"), add(T0), Tick(T0 + D))
    [trigger] = journey.sent
    assert trigger.treatment == "holdout" and trigger.channel == "email"
    assert ("cart_abandonment", "holdout") in journey.outcomes
    assert [r.outcome for r in journey.profile("u1").trigger_history] == ["holdout"]
    assert len(journey.profile("u1").trigger_sends) == 1  # it counts for the caps as a send would


def test_a_customer_who_clicks_push_and_ignores_email_gets_push():
    habits = [track("Message Delivered", T0 - D + i, channel="email") for i in range(5)]
    habits += [
        track(name, T0 - D + 10 + i, channel="apppush")
        for i in range(3)
        for name in ("Message Delivered", "Message Clicked")
    ]
    journey = Journey(stage()).play(
        identify(T0 - 2 * D, email="ana@example.com"),
        consent(T0 - 2 * D, "apppush", True),
        track("Product Viewed", T0 - 2 * D, context={"device": {"token": "apns-1"}}, product_id="p"),
        *habits,
        add(T0),
        Tick(T0 + D),
    )
    [trigger] = journey.sent
    assert (trigger.channel, trigger.channel_reason, trigger.treatment) == ("apppush", "engagement", "treatment")


def test_a_merge_keeps_the_latest_contact_state_and_every_send_either_way():
    a = known(
        suppressed={"email": "hard_bounce"},
        suppressed_at={"email": T0},
        push_token_hash="old",
        push_token_at=T0,
        trigger_sends=sends(("win_back", "email", T0)),
    )
    b = Profile(
        customer_id="a1",
        suppressed={"email": "unsubscribed", "sms": "spam_complaint"},
        suppressed_at={"email": T0 + 1, "sms": T0 - 1},
        push_token_hash="new",
        push_token_at=T0 + 2,
        webpush_subscribed=True,
        webpush_at=T0,
        trigger_sends=sends(("cart_abandonment", "apppush", T0), ("x", "sms", T0 - 1)),
    )
    merged = merge_profiles(a, b)
    swapped = merge_profiles(msgspec.structs.replace(b, customer_id="u1"), msgspec.structs.replace(a, customer_id="a1"))
    assert merged.suppressed == {"email": "unsubscribed", "sms": "spam_complaint"}
    assert (merged.push_token_hash, merged.webpush_subscribed) == ("new", True)
    assert [s.kind for s in merged.trigger_sends] == ["x", "cart_abandonment", "win_back"]
    for name in ("suppressed", "suppressed_at", "push_token_hash", "webpush_subscribed", "trigger_sends"):
        assert getattr(merged, name) == getattr(swapped, name), name
