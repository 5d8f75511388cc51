"""One journey per shipped trigger kind through the real broker: exactly the expected triggers, and no other.

The worker runs the shipped definitions with test-sized waits (seconds instead of hours and days) and, for
the two score-driven kinds, an entry rule a test can satisfy (a trait instead of a model's score; the
score conditions are covered by the unit journeys). Every trigger topic is read; each journey must yield
its triggers (kind, channel, customer) within its time window, and nothing else may appear.
"""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from trigger_files import fast_triggers

from schemas.topics import CHANNELS

pytestmark = pytest.mark.integration

WAITS = {
    "cart_abandonment": {"after": "2s"},
    "checkout_abandonment": {"after": "2s"},
    "browse_abandonment": {"after": "2s"},
    "replenishment": {"before": "expected_at", "lead": "3650d"},  # due at once: the cycle is 30 days
    "post_purchase_cross_sell": {"after": "3s"},
}
RULES = {"high_intent_offer": 'city == "Chamonix"', "win_back": 'orders > 0 and city == "Lapsed"'}
WINDOW_S = 45.0  # a decision may come this late after its due time on a busy machine


def message(kind: str, user: str | None, at: float, *, anon: str | None = None, **fields) -> dict:
    body = {"type": kind, "messageId": str(uuid.uuid4()), "timestamp": at, **fields}
    if user is not None:
        body["userId"] = user
    if anon is not None:
        body["anonymousId"] = anon
    return body


def track(name: str, user: str | None, at: float, properties: dict, **who) -> dict:
    return message("track", user, at, event=name, properties=properties, **who)


def product(product_id: str, category: str = "climbing", price: float = 89.9) -> dict:
    return {"product_id": product_id, "category": category, "price": price, "quantity": 1, "name": product_id}


def journeys(now: float) -> tuple[list[tuple[str, str, dict]], list[tuple[str, str, str, float]]]:
    """``(topic family, key, message)`` to send, and ``(customer, kind, channel, earliest decision time)``."""
    sends: list[tuple[str, str, dict]] = []
    expected: list[tuple[str, str, str, float]] = []

    def send(family: str, key: str, body: dict) -> None:
        sends.append((family, key, body))

    def email(family: str, user: str) -> None:
        """An email on file (the guard chain's contact for email), on the topic of the user's next events."""
        send(family, user, message("identify", user, now - 1, traits={"email": f"{user}@example.com"}))

    for family, user in (("clickstream", "cart-1"), ("clickstream", "checkout-1"), ("clickstream", "browse-1")):
        email(family, user)
    for family, user in (("purchase", "repl-1"), ("clickstream", "paid-1")):
        email(family, user)
    send("clickstream", "cart-1", track("Product Added", "cart-1", now, product("rope-9mm")))
    expected.append(("cart-1", "cart_abandonment", "email", now + 2))

    send("clickstream", "checkout-1", track("Product Added", "checkout-1", now, product("tent-2p")))
    send("clickstream", "checkout-1", track("Checkout Started", "checkout-1", now + 0.1, {}))
    expected.append(("checkout-1", "checkout_abandonment", "email", now + 2.1))

    for i in range(3):
        send(
            "clickstream", "browse-1", track("Product Viewed", "browse-1", now + i * 0.1, product("puppy-bed", "pets"))
        )
    expected.append(("browse-1", "browse_abandonment", "email", now + 2.2))

    # A toy viewed before the order: what the cross-sell recommends (with nothing, it would not be sent).
    send("clickstream", "repl-1", track("Product Viewed", "repl-1", now - 0.5, product("pet-toy-rope", "puppy-toys")))
    dog_food = product("pet-dogfood-adult-12kg", "dog-food", 54.0)
    order = {"order_id": "r-1", "total": 54.0, "products": [dog_food]}
    send("purchase", "repl-1", track("Order Completed", "repl-1", now, order))
    expected.append(("repl-1", "replenishment", "email", now))
    expected.append(("repl-1", "post_purchase_cross_sell", "email", now + 3))

    # Same topic and key as the event after it, so the trait is known first (topics are not ordered).
    send("clickstream", "intent-1", message("identify", "intent-1", now, traits={"city": "Chamonix"}))
    # Web push needs an opt-in and a subscription (the guard chain): then it is the definition's first channel.
    send("clickstream", "intent-1", track("Consent Updated", "intent-1", now, {"channel": "webpush", "granted": True}))
    send("clickstream", "intent-1", track("Push Subscribed", "intent-1", now, {}))
    send("clickstream", "intent-1", track("Product Viewed", "intent-1", now + 0.1, product("jacket-gtx")))
    expected.append(("intent-1", "high_intent_offer", "webpush", now))

    traits = {"city": "Lapsed", "email": "lapsed-1@example.com"}
    send("purchase", "lapsed-1", message("identify", "lapsed-1", now, traits=traits))
    lapsed_order = {"order_id": "w-1", "total": 20.0, "products": [product("chalk-bag")]}
    send("purchase", "lapsed-1", track("Order Completed", "lapsed-1", now + 0.1, lapsed_order))
    expected.append(("lapsed-1", "win_back", "email", now))
    # No cross-sell for lapsed-1: it viewed nothing but what it bought, so the message would recommend nothing.

    # No trigger at all: an anonymous cart (nobody to mail), a cart ordered before its reminder is due
    # (an order without products: no cross-sell either).
    send("clickstream", "anon-1", track("Product Added", None, now, product("boots-42"), anon="anon-1"))
    send("clickstream", "paid-1", track("Product Added", "paid-1", now, product("stove")))
    paid = {"order_id": "p-1", "total": 89.9}
    send("clickstream", "paid-1", track("Order Completed", "paid-1", now + 0.2, paid))
    return sends, expected


def read_triggers(pipeline, expected_count: int, timeout_s: float, settle_s: float) -> list[dict]:
    from kafka import KafkaConsumer

    topics = [pipeline.topics.triggers(channel) for channel in (*CHANNELS, "holdout")]
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=pipeline.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=500,
    )
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    reached_at: float | None = None
    try:
        while time.monotonic() < deadline:
            found.extend({**orjson.loads(m.value), "_topic": m.topic} for m in consumer)
            if len(found) >= expected_count:
                reached_at = reached_at or time.monotonic()
                if time.monotonic() - reached_at >= settle_s:
                    break
    finally:
        consumer.close()
    return found


def test_one_journey_per_kind_yields_exactly_its_triggers(make_pipeline, tmp_path):
    # No quiet hours: the journeys' times are the clock's, whatever the hour (test_guardrail_journeys has them).
    pipeline = make_pipeline(triggers_file=fast_triggers(tmp_path, waits=WAITS, rules=RULES), trigger_quiet_hours="")
    now = time.time()
    sends, expected = journeys(now)
    for family, key, body in sends:
        pipeline.kafka.send(pipeline.topics.inbound(family), body, key=key)
    pipeline.kafka.flush()

    found = read_triggers(pipeline, len(expected), timeout_s=90, settle_s=6.0)

    got = sorted((t["customer_id"], t["kind"], t["channel"]) for t in found)
    assert got == sorted((customer, kind, channel) for customer, kind, channel, _ in expected), found
    earliest = {(customer, kind): at for customer, kind, _, at in expected}
    for trigger in found:
        assert trigger["_topic"] == pipeline.topics.triggers(trigger["channel"])
        due = earliest[(trigger["customer_id"], trigger["kind"])]
        assert due - 1.0 <= trigger["decided_at"] <= due + WINDOW_S, trigger
    assert len({t["trigger_id"] for t in found}) == len(found)
    by_kind = {t["kind"]: t for t in found}
    assert [item["product_id"] for item in by_kind["cart_abandonment"]["items"]] == ["rope-9mm"]
    assert by_kind["cart_abandonment"]["value"] == 8990
    assert by_kind["replenishment"]["items"][0]["product_id"] == "pet-dogfood-adult-12kg"
    assert by_kind["high_intent_offer"]["offer"]["percent_off"] == 10
    profile = pipeline.worker.profile("cart-1")
    assert [(r["kind"], r["outcome"]) for r in profile["triggers"]["recent"]] == [("cart_abandonment", "sent")]
    anonymous = pipeline.worker.profile("anon-1")
    assert [p["kind"] for p in anonymous["triggers"]["pending"]] == ["cart_abandonment"]
    assert anonymous["triggers"]["pending"][0]["state"] == "held"
