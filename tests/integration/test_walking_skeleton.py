"""The walking skeleton through the real broker: events → profile table → cart-abandonment trigger."""

from __future__ import annotations

import shutil
import time
import uuid

import orjson
import pytest
from conftest import metric_sum, read_metrics, wait_until_drained
from trigger_files import fast_triggers

pytestmark = pytest.mark.integration


def track(name: str, user_id: str, properties: dict, at: float | None = None) -> dict:
    return {
        "type": "track",
        "event": name,
        "messageId": str(uuid.uuid4()),
        "userId": user_id,
        "timestamp": at if at is not None else time.time(),
        "properties": properties,
    }


def added(user_id: str, product_id: str, price: float, at: float | None = None) -> dict:
    return track(
        "Product Added",
        user_id,
        {"product_id": product_id, "price": price, "quantity": 1, "name": product_id.title()},
        at,
    )


def triggers_for(records: list, customer_id: str) -> list[dict]:
    decoded = [orjson.loads(record.value) for record in records]
    return [trigger for trigger in decoded if trigger["customer_id"] == customer_id]


def test_cart_abandonment_fires_after_the_delay_and_not_after_an_order(make_pipeline, tmp_path):
    # No quiet hours: the decision time is the clock's, whatever the hour.
    rules = {"high_intent_offer": 'city == "Chamonix"'}  # its score-driven offer would go by email too now
    triggers = fast_triggers(tmp_path, waits={"cart_abandonment": {"after": "2s"}}, rules=rules)
    pipeline = make_pipeline(triggers_file=triggers, trigger_quiet_hours="")
    kafka, topics = pipeline.kafka, pipeline.topics
    started = time.time()
    for user in ("alice", "bob"):  # an email on file: the guard chain's contact for email
        identify = {"type": "identify", "messageId": str(uuid.uuid4()), "userId": user, "timestamp": started - 1}
        kafka.send(topics.inbound("clickstream"), {**identify, "traits": {"email": f"{user}@example.com"}}, key=user)
    kafka.send(topics.inbound("clickstream"), added("alice", "rope-9mm", 89.90), key="alice")
    kafka.send(topics.inbound("clickstream"), added("bob", "dog-food-12kg", 54.00), key="bob")
    order = track(
        "Order Completed",
        "bob",
        {
            "order_id": "o-1",
            "total": 54.00,
            "products": [{"product_id": "dog-food-12kg", "price": 54.0, "quantity": 1}],
        },
        at=time.time() + 0.2,
    )
    # Same topic and key as bob's cart: the order is consumed after the cart and before the delay ends.
    # (Across topics, a worker lagging by more than the delay could decide before it sees the order;
    # production delays are 30 minutes, this test's are 2 seconds.)
    kafka.send(topics.inbound("clickstream"), order, key="bob")
    kafka.flush()

    records = kafka.read(topics.triggers("email"), min_count=1, timeout_s=60, settle_s=4.0)

    alice = triggers_for(records, "alice")
    assert len(alice) == 1, alice
    trigger = alice[0]
    assert trigger["kind"] == "cart_abandonment"
    assert trigger["channel"] == "email"
    assert [item["product_id"] for item in trigger["items"]] == ["rope-9mm"]
    assert trigger["value"] == 8990
    assert trigger["decided_at"] - started >= 2.0  # not before the configured delay
    assert triggers_for(records, "bob") == []  # the order came first: no reminder
    profile = pipeline.worker.profile("bob")
    assert profile["orders"] == 1 and profile["revenue"] == 5400 and profile["cart"] == []


def test_profile_is_recovered_from_the_changelog_after_a_restart(make_pipeline):
    # The events are stamped a minute back; without the backlog stretch (the default) the segment refresh
    # comes within 1 s of the burst, well inside the 1.5 s between the two agreeing reads below.
    pipeline = make_pipeline()
    kafka, topics, worker = pipeline.kafka, pipeline.topics, pipeline.worker
    base = time.time() - 60
    for i in range(5):
        kafka.send(topics.inbound("clickstream"), added("carol", f"tent-{i}", 100.0 + i, at=base + i), key="carol")
    kafka.send(
        topics.inbound("purchase"),
        track("Order Completed", "carol", {"order_id": "o-9", "total": 250.0}, at=base + 10),
        key="carol",
    )
    kafka.flush()
    before = worker.wait_for_profile("carol", lambda p: p["event_count"] == 6)
    assert before["orders"] == 1 and before["revenue"] == 25000
    # Segments and scores of a burst are refreshed once, up to the audience interval after it: read the
    # profile until two reads agree, so the copy compared below is the one the worker flushed.
    for _ in range(20):
        time.sleep(1.5)
        settled = worker.profile("carol")
        if stored_part(settled) == stored_part(before):
            break
        before = settled

    worker.stop()
    # Remove the local RocksDB state: everything must come back from the Kafka changelog.
    shutil.rmtree(pipeline.settings.data_dir)
    worker.start()

    after = worker.wait_for_profile("carol", lambda p: p["event_count"] == 6, timeout_s=90)
    assert stored_part(after) == stored_part(before)


def stored_part(document: dict) -> dict:
    """The profile document without what is derived from the clock at read time."""
    clock_derived = {"category_affinity", "days_since_last_order", "rfm", "lifecycle_stage"}
    computed = {k: v for k, v in document["computed"].items() if k not in clock_derived}
    return {**document, "computed": computed}


def test_profile_api_requires_the_token_and_answers_404_for_unknown_ids(make_pipeline):
    pipeline = make_pipeline()
    worker = pipeline.worker
    status, _ = worker.http_get("/profiles/nobody")
    assert status == 401
    status, _ = worker.http_get("/profiles/nobody", token="wrong")
    assert status == 401
    status, body = worker.http_get("/profiles/nobody", token=pipeline.settings.api_token)
    assert status == 404, body
    assert worker.http_get("/healthz")[0] == 200
    assert worker.http_get("/readyz")[0] == 200


def test_a_broken_message_does_not_stop_the_worker(make_pipeline):
    pipeline = make_pipeline()
    kafka, topics = pipeline.kafka, pipeline.topics
    kafka.send(topics.inbound("clickstream"), b"\xff\xfe not json at all", key="x")
    kafka.send(topics.inbound("clickstream"), b'{"type": "track"}', key="x")
    kafka.send(topics.inbound("clickstream"), added("dave", "boots-42", 120.0), key="dave")
    kafka.flush()
    profile = pipeline.worker.wait_for_profile("dave", lambda p: p["event_count"] == 1)
    assert profile["cart"][0]["product_id"] == "boots-42"
    dead = kafka.read(topics.deadletter, min_count=2, timeout_s=30)
    reasons = sorted(orjson.loads(record.value)["reason"] for record in dead)
    assert reasons == ["missing_field", "not_utf8"]


def test_events_not_keyed_by_their_routing_id_are_rekeyed_through_profile_commands(make_pipeline):
    """A producer that keys by something else (or not at all) still gets every event applied, once, in the
    partition that owns the customer: ingestion re-keys it through profile-commands."""
    pipeline = make_pipeline()
    kafka, topics, worker = pipeline.kafka, pipeline.topics, pipeline.worker
    base = time.time() - 60
    for i in range(6):
        kafka.send(
            topics.inbound("clickstream"),
            added("dave", f"boot-{i}", 50.0 + i, at=base + i),
            key=None if i % 2 else f"session-{i}",
        )
    kafka.flush()
    profile = worker.wait_for_profile("dave", lambda p: p["event_count"] == 6)
    assert sorted(item["product_id"] for item in profile["cart"]) == [f"boot-{i}" for i in range(6)]
    wait_until_drained(pipeline, timeout_s=60)
    metrics = read_metrics(worker)
    assert metric_sum(metrics, "streamcdp_profile_commands_total", kind="event") == 6
    assert metric_sum(metrics, "streamcdp_outputs_sent_total") >= 6  # the six re-keyed commands
