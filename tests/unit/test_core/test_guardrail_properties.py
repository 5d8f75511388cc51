"""Invariants of the guard chain over random journeys of one customer, and of the holdout assignment.

A journey mixes cart changes, checkouts, views, orders, consent grants and withdrawals, unsubscribes, an
email, a push token, a web push subscription and clock ticks, over days, with quiet hours 21:00-08:00 in
the customer's zone. Whatever the order, of the messages published (sent or held out):

- none breaks a cap: in every rolling window, per customer, per kind and per channel, at most the limit;
- none goes out on a channel without consent (explicit, else the default policy) or without a contact
  known at the decision;
- none is decided inside the quiet hours, local time.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

from core_event_factory import T0, identify, track
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trigger_guards import NIGHT, RAILS, consent, stage
from test_trigger_kinds import H, M, add, checkout, order, view
from trigger_journeys import Journey, Tick

from core.triggers.guardrails import OPT_OUT, parse_caps, parse_channel_caps
from core.triggers.holdout import in_holdout

ZONE = "America/New_York"
GUARDED = dataclasses.replace(
    RAILS,
    quiet_hours=NIGHT,
    kind_caps=parse_caps("1/1d"),
    channel_caps=parse_channel_caps("sms:1/1d,apppush:1/12h"),
    holdout_shares={"browse_abandonment": 0.5},
)
STAGE = stage(GUARDED, after={"cart_abandonment": 10 * M, "checkout_abandonment": 20 * M})
CHANNELS = ("email", "sms", "apppush", "webpush")
OPS = ("add", "add", "checkout", "view", "order", "grant", "withdraw", "unsubscribe", "contact", "tick", "tick")

steps = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(1, 300), st.sampled_from(CHANNELS), st.sampled_from(("p1", "p2"))),
    min_size=1,
    max_size=30,
)
CONTACT_EVENTS = {
    "email": lambda at: identify(at, email="ana@example.com"),
    "sms": lambda at: identify(at, phone="+4915100000001"),
    "apppush": lambda at: track("Product List Viewed", at, context={"device": {"token": "apns-1"}}),
    "webpush": lambda at: track("Push Subscribed", at),
}


def _script(raw: list) -> tuple[list, list[tuple[str, str, float]]]:
    """The steps, and ``(what, channel, at)`` of every consent and contact fact they give."""
    played: list = [identify(T0 - H, timezone=ZONE, email="ana@example.com")]
    facts: list[tuple[str, str, float]] = [("contact", "email", T0 - H)]
    at = T0
    for index, (op, gap_minutes, channel, product) in enumerate(raw):
        at += gap_minutes * M
        if op == "add":
            played.append(add(at, product))
        elif op == "checkout":
            played.append(checkout(at))
        elif op == "view":
            played.extend(view(at + i, product) for i in range(3))
        elif op == "order":
            played.append(order(at, product, order_id=f"o-{index}"))
        elif op in ("grant", "withdraw"):
            played.append(consent(at, channel, op == "grant"))
            facts.append((op, channel, at))
        elif op == "unsubscribe":
            played.append(track("Unsubscribed", at, channel=channel))
            facts.append(("withdraw", channel, at))
        elif op == "contact":
            played.append(CONTACT_EVENTS[channel](at))
            facts.append(("contact", channel, at))
        else:
            played.append(Tick(at))
    played.append(Tick(at + 3 * 86400.0))
    return played, facts


def _allowed(channel: str, at: float, facts: list[tuple[str, str, float]]) -> bool:
    """Consent and contact for ``channel`` as the events known at ``at`` give them."""
    known = [(t, what) for what, c, t in facts if c == channel and t <= at]
    decisions = [what for _, what in sorted(known) if what in ("grant", "withdraw")]
    granted = decisions[-1] == "grant" if decisions else GUARDED.consent[channel] == OPT_OUT
    return granted and any(what == "contact" for _, what in known)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_no_message_breaks_a_cap_goes_without_consent_or_contact_or_inside_quiet_hours(raw):
    played, facts = _script(raw)
    journey = Journey(STAGE).play(*played)
    published = journey.sent
    zone = ZoneInfo(ZONE)
    for trigger in published:
        at = trigger.decided_at
        assert _allowed(trigger.channel, at, facts), (trigger.channel, at, facts)
        local = datetime.fromtimestamp(at, tz=zone)
        assert not NIGHT.contains(local.hour * 60 + local.minute), local
    caps = [(cap, lambda t: True) for cap in GUARDED.customer_caps]
    for kind in {t.kind for t in published}:
        caps += [(cap, lambda t, k=kind: t.kind == k) for cap in GUARDED.kind_caps]
    for channel, channel_caps in GUARDED.channel_caps.items():
        caps += [(cap, lambda t, c=channel: t.channel == c) for cap in channel_caps]
    for cap, counted in caps:
        times = [t.decided_at for t in published if counted(t)]
        for end in times:
            assert sum(1 for t in times if end - cap.window < t <= end) <= cap.limit, (cap, times)


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=40),
    st.sampled_from(("cart_abandonment", "win_back")),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_a_holdout_assignment_never_changes_and_a_larger_share_only_adds(customer, kind, share, more, control):
    rails = dataclasses.replace(RAILS, holdout_shares={"*": share}, control_group_share=control)
    assigned = in_holdout(customer, kind, rails)
    other = dataclasses.replace(GUARDED, holdout_shares={"*": share}, control_group_share=control)  # other knobs
    assert in_holdout(customer, kind, rails) == in_holdout(customer, kind, other) == assigned
    larger = dataclasses.replace(rails, holdout_shares={"*": max(share, more)})
    assert not assigned or in_holdout(customer, kind, larger)


def test_holdout_shares_match_the_configuration_on_10000_customers():
    rails = dataclasses.replace(RAILS, holdout_shares={"*": 0.1, "win_back": 0.25}, control_group_share=0.05)
    customers = [f"user-{i:06d}" for i in range(10_000)]
    for kind, share in (("cart_abandonment", 0.1), ("win_back", 0.25)):
        expected = 1 - (1 - share) * (1 - 0.05)  # the kind's holdout or the global control group
        held = sum(in_holdout(c, kind, rails) for c in customers) / len(customers)
        sigma = (expected * (1 - expected) / len(customers)) ** 0.5
        assert abs(held - expected) < 4 * sigma, (kind, held, expected)
    control_only = dataclasses.replace(rails, holdout_shares={})
    held = sum(in_holdout(c, "any", control_only) for c in customers) / len(customers)
    assert abs(held - 0.05) < 4 * (0.05 * 0.95 / len(customers)) ** 0.5
