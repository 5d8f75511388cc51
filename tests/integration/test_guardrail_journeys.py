"""The guard chain through the real broker: scripted journeys, each with exactly its expected messages.

- consent withdrawn → no email, but the SMS the customer opted into;
- five carts in ten minutes → one reminder (the kind's cap; the file's `re_entry` is removed);
- a reminder due at about 02:00 local time arrives when the quiet hours end; the same reminder of a
  customer who orders during the night is cancelled before it goes out;
- a customer who clicks push and ignores email gets push (`channel_reason: engagement`);
- holdout customers appear only on `triggers.holdout` (`treatment: holdout`), the others on their channel.

Quiet hours are computed from the clock: the night customers live in a zone where it is about 02:00, the
quiet hours end 2-3 minutes from now there, and the default zone (everybody else) is at midday.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from test_trigger_journeys import RULES, message, product, read_triggers, track
from trigger_files import fast_triggers

from core.triggers.holdout import in_holdout
from streams.settings import Settings

pytestmark = pytest.mark.integration

WAITS = {
    "cart_abandonment": {"after": "2s"},
    "checkout_abandonment": {"after": "2s"},
    "browse_abandonment": {"after": "2s"},
}
HOLDOUT_SHARES = "browse_abandonment:0.5"
WINDOW_S = 45.0


def zone_at_local_hour(hour: int, now: datetime) -> str:
    """A fixed-offset IANA zone (``Etc/GMT±N``) in which it is now ``hour`` o'clock."""
    offset = (hour - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def guarded_file(directory) -> str:
    path = fast_triggers(directory, waits=WAITS, rules=RULES)  # the score-driven kinds stay out of the way
    document = yaml.safe_load(path.read_text())
    for definition in document["triggers"]:
        definition.pop("re_entry", None)  # only the caps keep the five carts to one reminder
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def pick(prefix: str, held: bool, count: int) -> list[str]:
    """``count`` customer ids that are (not) in the browse holdout: the assignment is a pure hash."""
    rails = Settings(trigger_holdout_shares=HOLDOUT_SHARES).guardrails
    ids = (f"{prefix}-{i}" for i in range(1000))
    return [c for c in ids if in_holdout(c, "browse_abandonment", rails) == held][:count]


def cart_event(name: str, at: float, index: int) -> dict:
    return track(name, "carts-1", at, product(f"sock-{index}"))


def test_guardrail_journeys(make_pipeline, tmp_path):
    wall = datetime.now(UTC)
    night_zone = zone_at_local_hour(2, wall)
    # The quiet hours end at a whole minute (HH:MM) 75-135 s from now: the night reminders are due 2 s after
    # the worker is up and the night order comes 5 s after, well before that; the test waits for the end.
    quiet_end = (wall.astimezone(ZoneInfo(night_zone)) + timedelta(seconds=135)).replace(second=0, microsecond=0)
    pipeline = make_pipeline(
        triggers_file=guarded_file(tmp_path),
        trigger_quiet_hours=f"00:00-{quiet_end:%H:%M}",
        trigger_default_timezone=zone_at_local_hour(12, wall),
        trigger_holdout_shares=HOLDOUT_SHARES,
    )
    now = time.time()
    first: list[tuple[str, str, dict]] = []
    later: list[tuple[str, str, dict]] = []
    expected: list[tuple[str, str, str]] = []

    def who(user: str, at: float, **traits) -> dict:
        return message("identify", user, at, traits={"email": f"{user}@example.com", **traits})

    def consent(user: str, at: float, channel: str, granted: bool) -> dict:
        return track("Consent Updated", user, at, {"channel": channel, "granted": granted})

    # Consent withdrawn from email, SMS opted into: the checkout reminder goes by SMS.
    first.append(("customer", "consent-1", who("consent-1", now - 60, phone="+4915100000007")))
    first.append(("customer", "consent-1", consent("consent-1", now - 50, "sms", True)))
    first.append(("customer", "consent-1", consent("consent-1", now - 40, "email", False)))
    later.append(("clickstream", "consent-1", track("Product Added", "consent-1", now, product("tent-2p"))))
    later.append(("clickstream", "consent-1", track("Checkout Started", "consent-1", now + 0.1, {})))
    expected.append(("consent-1", "checkout_abandonment", "sms"))

    # Five carts within ten minutes, each left until due (played below, in real time): one reminder.
    first.append(("clickstream", "carts-1", who("carts-1", now - 60)))
    expected.append(("carts-1", "cart_abandonment", "email"))

    # Due at about 02:00 local: deferred to the quiet hours' end; the night-time order cancels the other.
    for user in ("night-1", "night-2"):
        first.append(("clickstream", user, who(user, now - 60, timezone=night_zone)))
        first.append(("clickstream", user, track("Product Added", user, now, product("lamp"))))
    later.append(
        ("purchase", "night-2", track("Order Completed", "night-2", now + 5, {"order_id": "n-2", "total": 20.0}))
    )
    expected.append(("night-1", "cart_abandonment", "email"))

    # Clicks push, ignores email: push.
    first.append(("customer", "push-1", who("push-1", now - 300)))
    first.append(("customer", "push-1", consent("push-1", now - 290, "apppush", True)))
    token = {"context": {"device": {"id": "phone-1", "token": "apns-token-1"}}}
    first.append(("clickstream", "push-1", message("page", "push-1", now - 280, **token)))
    for i in range(5):
        first.append(("messaging", "push-1", track("Message Delivered", "push-1", now - 200 + i, {"channel": "email"})))
    for i in range(3):
        for name in ("Message Delivered", "Message Clicked"):
            body = track(name, "push-1", now - 100 + i, {"channel": "apppush"})
            first.append(("messaging", "push-1", body))
    later.append(("clickstream", "push-1", track("Product Added", "push-1", now, product("jacket"))))
    expected.append(("push-1", "cart_abandonment", "apppush"))

    # Browse abandonment with a 50 % holdout: the held customers only on triggers.holdout.
    held, treated = pick("held", True, 2), pick("treated", False, 2)
    for user in (*held, *treated):
        first.append(("clickstream", user, who(user, now - 60)))
        for i in range(3):
            first.append(("clickstream", user, track("Product Viewed", user, now + i * 0.1, product("bed", "pets"))))
        expected.append((user, "browse_abandonment", "holdout" if user in held else "email"))

    for family, key, body in first:
        pipeline.kafka.send(pipeline.topics.inbound(family), body, key=key)
    pipeline.kafka.flush()
    time.sleep(4.0)  # the other topics' consent, token and engagement events are applied first
    for family, key, body in later:
        pipeline.kafka.send(pipeline.topics.inbound(family), body, key=key)
    pipeline.kafka.flush()
    for i in range(5):
        added = time.time()
        pipeline.kafka.send(
            pipeline.topics.inbound("clickstream"), cart_event("Product Added", added, i), key="carts-1"
        )
        pipeline.kafka.flush()
        time.sleep(3.5)  # due 2 s after the add: decided (sent, then capped) before the cart is emptied
        pipeline.kafka.send(
            pipeline.topics.inbound("clickstream"), cart_event("Product Removed", time.time(), i), key="carts-1"
        )
        pipeline.kafka.flush()

    found = read_triggers(pipeline, len(expected), timeout_s=300, settle_s=8.0)

    def route(trigger: dict) -> str:
        return "holdout" if trigger["_topic"] == pipeline.topics.triggers("holdout") else trigger["channel"]

    got = sorted((t["customer_id"], t["kind"], route(t)) for t in found)
    assert got == sorted(expected), (got, found)
    by_customer = {t["customer_id"]: t for t in found}
    for user in held:
        assert by_customer[user]["treatment"] == "holdout" and by_customer[user]["channel"] == "email"
    for user in treated:
        assert by_customer[user]["treatment"] == "treatment"
    assert by_customer["push-1"]["channel_reason"] == "engagement"
    assert by_customer["consent-1"]["channel_reason"] == "only_channel"
    night = by_customer["night-1"]
    assert quiet_end.timestamp() <= night["decided_at"] <= quiet_end.timestamp() + WINDOW_S, night
    assert by_customer["carts-1"]["decided_at"] <= now + 10 + WINDOW_S

    outcomes = [(r["kind"], r["outcome"]) for r in pipeline.worker.profile("carts-1")["triggers"]["recent"]]
    assert outcomes.count(("cart_abandonment", "sent")) == 1
    assert outcomes.count(("cart_abandonment", "capped")) == 4, outcomes
    night_2 = [(r["kind"], r["outcome"]) for r in pipeline.worker.profile("night-2")["triggers"]["recent"]]
    assert night_2 == [("cart_abandonment", "deferred_quiet_hours"), ("cart_abandonment", "cancelled_exit")]
    for user in held:
        recent = pipeline.worker.profile(user)["triggers"]["recent"]
        assert [(r["kind"], r["outcome"]) for r in recent] == [("browse_abandonment", "holdout")]
