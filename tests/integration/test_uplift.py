"""Measuring triggers through the real broker: attribution once, the stats of every worker, measured uplift.

- A journey: a cart reminder is sent; a delivery and a click carrying its ``trigger_id`` and a POS order
  under a linked id follow within the window → one conversion per response on ``trigger-conversions``
  and counters updated once, even when the click and the order are sent again. Two workers: either one
  answers ``/triggers/stats`` for every partition; a fresh worker restores the counters from the changelog.
- The sender simulator (``streams.senders``) answers the cart reminders of scripted customers with a known
  true effect: the treatment arm's measured conversion rate has the true rate in its 95 % interval, and,
  when the trigger definitions support holdouts (the guardrails' ``holdout`` share), so has the uplift.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
import yaml
from trigger_files import fast_triggers

from core.triggers.definitions import TRIGGER_KEYS
from core.uplift import wilson_interval
from offline.responses import ResponseModel, TrueEffect
from streams.report_cli import format_trigger_report
from streams.senders import simulate_senders

pytestmark = pytest.mark.integration

WAITS = {"cart_abandonment": {"after": "2s"}}
# The score-driven kinds get entry rules nobody here meets: only the cart reminder is decided.
RULES = {"high_intent_offer": 'city == "Chamonix"', "win_back": 'orders > 0 and city == "Lapsed"'}
HOLDOUTS_SUPPORTED = "holdout" in TRIGGER_KEYS  # the guardrails branch adds per-kind holdout shares


def track(name: str, at: float, properties: dict, **who: str) -> dict:
    return {
        "type": "track",
        "event": name,
        "messageId": str(uuid.uuid4()),
        "timestamp": at,
        "properties": properties,
        **who,
    }


def identify(user: str, at: float, **traits) -> dict:
    return {"type": "identify", "messageId": str(uuid.uuid4()), "timestamp": at, "userId": user, "traits": traits}


def rope() -> dict:
    return {"product_id": "rope-9mm", "category": "climbing", "price": 89.9, "quantity": 1, "name": "Rope 9mm"}


def stats(worker) -> dict:
    deadline = time.monotonic() + 30
    status, body = worker.http_get("/triggers/stats", token=worker.api_token)
    while status == 503 and time.monotonic() < deadline:  # rebalancing
        time.sleep(0.5)
        status, body = worker.http_get("/triggers/stats", token=worker.api_token)
    assert status == 200, body
    return orjson.loads(body)


def wait_for_stats(worker, predicate, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    document = stats(worker)
    while not predicate(document) and time.monotonic() < deadline:
        time.sleep(0.5)
        document = stats(worker)
    return document


def test_a_click_and_an_order_under_a_linked_id_convert_the_reminder_once(make_pipeline, tmp_path):
    pipeline = make_pipeline(triggers_file=fast_triggers(tmp_path, waits=WAITS, rules=RULES))
    second = pipeline.add_worker()
    topics, kafka = pipeline.topics, pipeline.kafka
    now = time.time()
    # In a zone where it is about noon: at night by UTC the quiet hours would hold the reminder till morning.
    traits = {"email": "buyer-1@example.com", "timezone": midday_zone(now)}
    kafka.send(topics.inbound("customer"), identify("buyer-1", now, **traits), key="buyer-1")
    link = {**identify("buyer-1", now + 0.1), "anonymousId": "pos-card-1"}  # the loyalty card used in store
    kafka.send(topics.inbound("customer"), link, key="buyer-1")
    consent = track("Consent Updated", now + 0.2, {"channel": "email", "granted": True}, userId="buyer-1")
    kafka.send(topics.inbound("customer"), consent, key="buyer-1")
    kafka.send(
        topics.inbound("clickstream"), track("Product Added", now + 0.3, rope(), userId="buyer-1"), key="buyer-1"
    )
    kafka.flush()

    sent = kafka.read(topics.triggers("email"), min_count=1, timeout_s=90)
    assert len(sent) == 1, pipeline.worker.log_tail()
    trigger = orjson.loads(sent[0].value)
    message = {"channel": "email", "trigger_id": trigger["trigger_id"]}
    after = time.time()
    click = track("Message Clicked", after + 1, message, userId="buyer-1")
    pos_order = track(
        "Order Completed",
        after + 2,
        {"order_id": "pos-77", "total": 89.9, "store_id": "store-berlin-01", "products": [rope()]},
        anonymousId="pos-card-1",
    )
    kafka.send(topics.inbound("messaging"), track("Message Delivered", after, message, userId="buyer-1"), key="buyer-1")
    kafka.send(topics.inbound("messaging"), click, key="buyer-1")
    kafka.send(topics.inbound("purchase"), pos_order, key="pos-card-1")
    kafka.flush()

    conversions = kafka.read(topics.trigger_conversions, min_count=3, timeout_s=60)
    got = sorted((orjson.loads(r.value)["kind"], orjson.loads(r.value)["response"]) for r in conversions)
    assert got == [
        ("cart_abandonment", "clicked"),
        ("cart_abandonment", "converted"),
        ("cart_abandonment", "delivered"),
    ], [orjson.loads(r.value) for r in conversions]
    converted = next(orjson.loads(r.value) for r in conversions if orjson.loads(r.value)["response"] == "converted")
    assert converted["customer_id"] == "buyer-1" and converted["order_id"] == "pos-77"
    assert converted["revenue"] == 8990 and converted["trigger_id"] == trigger["trigger_id"]

    # The same click again (a replay), a second click, the same order under a new message id.
    kafka.send(topics.inbound("messaging"), click, key="buyer-1")
    kafka.send(
        topics.inbound("messaging"), track("Message Clicked", after + 3, message, userId="buyer-1"), key="buyer-1"
    )
    kafka.send(topics.inbound("purchase"), {**pos_order, "messageId": str(uuid.uuid4())}, key="pos-card-1")
    kafka.flush()
    pipeline.worker.wait_for_profile("buyer-1", lambda p: p["computed"]["event_counts"].get("Message Clicked") == 2)
    pipeline.worker.wait_for_profile("buyer-1", lambda p: p["computed"]["event_counts"].get("Order Completed") == 2)

    assert len(kafka.read(topics.trigger_conversions, min_count=4, timeout_s=5)) == 3
    expected_cart = {
        "sent": 1,
        "holdout": 0,
        "converted": {"treatment": 1, "holdout": 0},
        "revenue": {"treatment": 8990, "holdout": 0},
    }
    for worker in (pipeline.worker, second):  # each worker answers for every partition
        document = wait_for_stats(worker, lambda d: d["complete"])
        assert document["complete"] and document["counted_partitions"] == [0, 1, 2, 3]
        cart = document["kinds"]["cart_abandonment"]
        assert {key: cart[key] for key in expected_cart} == expected_cart
        email = cart["channels"]["email"]
        assert (email["sent"], email["delivered"], email["opened"], email["clicked"]) == (1, 1, 0, 1)

    # The counters are state: a fresh worker (empty data directory) restores them from the changelog.
    pipeline.worker.stop()
    second.stop()
    restored = wait_for_stats(pipeline.add_worker(), lambda d: d["complete"])
    assert restored["kinds"] == document["kinds"]


CUSTOMERS = 400
TRUE_EFFECT = TrueEffect(treatment=0.45, holdout=0.20)


def midday_zone(now: float) -> str:
    """A fixed-offset time zone where it is about noon at ``now``: no quiet hours delay the reminders."""
    utc_hour = time.gmtime(now).tm_hour
    offset = (12 - utc_hour + 12) % 24 - 12  # hours east of UTC, in [-12, 11]
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # the Etc/ zones' signs are inverted


def stall_report(pipeline, line: str) -> str:
    """What the simulator saw, with the worker's decisions, wake-up age, flushes and log: enough to tell a
    worker that stopped deciding from one that decided but did not commit (one CI run saw 226 of 400
    reminders, then 20 s without a trigger; not reproduced since)."""
    status, body = pipeline.worker.http_get("/metrics")
    wanted = (
        "streamcdp_trigger_decisions_total{",
        "streamcdp_oldest_wakeup_age_seconds",
        "streamcdp_consumer_lag_seconds{",
        "streamcdp_flush_seconds_count",
        "streamcdp_flush_seconds_sum",
    )
    metrics = [row for row in body.decode(errors="replace").splitlines() if row.startswith(wanted)]
    return "\n".join([line, f"/metrics ({status}):", *metrics, "worker log:", pipeline.worker.log_tail(40)])


def run_simulated_campaign(make_pipeline, tmp_path, *, holdout_share: float | None) -> dict:
    """Cart reminders for ``CUSTOMERS`` scripted shoppers, answered by the sender simulator with
    ``TRUE_EFFECT``; returns ``/triggers/stats`` once every reminder's answers are counted."""
    triggers_file = fast_triggers(tmp_path, waits=WAITS, rules=RULES)
    if holdout_share is not None:
        document = yaml.safe_load(triggers_file.read_text())
        for definition in document["triggers"]:
            if definition["name"] == "cart_abandonment":
                definition["holdout"] = holdout_share
        triggers_file.write_text(yaml.safe_dump(document, sort_keys=False))
    pipeline = make_pipeline(triggers_file=triggers_file)
    topics, kafka = pipeline.topics, pipeline.kafka
    now = time.time()
    for index in range(CUSTOMERS):
        user = f"shopper-{index:04d}"
        traits = {"email": f"{user}@example.com", "timezone": midday_zone(now)}
        kafka.send(topics.inbound("customer"), identify(user, now, **traits), key=user)
        consent = track("Consent Updated", now + 0.1, {"channel": "email", "granted": True}, userId=user)
        kafka.send(topics.inbound("customer"), consent, key=user)
        kafka.send(topics.inbound("clickstream"), track("Product Added", now + 0.2, rope(), userId=user), key=user)
    kafka.flush()

    model = ResponseModel(seed=1, effects={"cart_abandonment": TRUE_EFFECT})
    summary = asyncio.run(
        simulate_senders(
            pipeline.settings, model, idle_s=20.0, max_messages=CUSTOMERS, group_id=f"sim-{pipeline.settings.app_id}"
        )
    )
    assert sum(summary.triggers.values()) == CUSTOMERS, stall_report(pipeline, summary.line())
    assert summary.rejected == 0
    orders = summary.answers["Order Completed"]
    document = wait_for_stats(
        pipeline.worker,
        lambda d: sum(d["kinds"].get("cart_abandonment", {}).get("converted", {}).values()) >= orders,
        timeout_s=90,
    )
    print(format_trigger_report(document))
    return document["kinds"]["cart_abandonment"]


def test_the_simulated_treatment_arm_is_measured(make_pipeline, tmp_path):
    cart = run_simulated_campaign(make_pipeline, tmp_path, holdout_share=None)
    assert cart["sent"] == CUSTOMERS and cart["holdout"] == 0
    interval = wilson_interval(cart["converted"]["treatment"], cart["sent"])
    assert interval.contains(TRUE_EFFECT.treatment), cart
    email = cart["channels"]["email"]
    assert email["sent"] == CUSTOMERS and 0 < email["clicked"] <= email["opened"] <= email["delivered"] <= CUSTOMERS


@pytest.mark.skipif(not HOLDOUTS_SUPPORTED, reason="holdout decisions come with the guardrails (issue 12 guards)")
def test_the_measured_uplift_interval_contains_the_true_effect(make_pipeline, tmp_path):
    cart = run_simulated_campaign(make_pipeline, tmp_path, holdout_share=0.5)
    assert cart["sent"] + cart["holdout"] == CUSTOMERS and cart["holdout"] > CUSTOMERS // 4
    uplift = cart["uplift"]
    assert uplift["low"] <= TRUE_EFFECT.uplift <= uplift["high"], cart
