"""A scripted journey through the real broker produces the exact sequence of segment entries and exits."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from trigger_files import NO_TRIGGERS

pytestmark = pytest.mark.integration

JOURNEY_SEGMENTS = """
version: 1
segments:
  - name: recent_browsers
    description: viewed a product in the last 5 seconds (time alone ends it)
    when: event_within("Product Viewed", within=5s)
  - name: big_cart
    when: cart_value >= 10000
  - name: buyers
    when: orders >= 1
groups:
  - name: value_tier
    segments:
      - name: high_value
        when: revenue >= 20000
      - name: low_value
        when: orders >= 1
"""


def call(name: str, user_id: str, properties: dict) -> dict:
    return {
        "type": "track",
        "event": name,
        "messageId": str(uuid.uuid4()),
        "userId": user_id,
        "timestamp": time.time(),
        "properties": properties,
    }


def test_a_journey_emits_the_exact_entries_and_exits(make_pipeline, tmp_path):
    segments_file = tmp_path / "journey-segments.yaml"
    segments_file.write_text(JOURNEY_SEGMENTS)
    pipeline = make_pipeline(segments_file=segments_file, triggers_file=NO_TRIGGERS)
    kafka, topics = pipeline.kafka, pipeline.topics
    customer = "journey-1"
    # One topic and one key: the journey is processed strictly in this order.
    inbound = topics.inbound("clickstream")
    steps = [
        call(
            "Product Viewed", customer, {"product_id": "pet-dogfood-adult-12kg", "category": "dog-food", "price": 54.0}
        ),
        call(
            "Product Added", customer, {"product_id": "out-tent-2p", "category": "tents", "price": 150.0, "quantity": 1}
        ),
        call(
            "Order Completed",
            customer,
            {
                "order_id": "o-1",
                "total": 150.0,
                "products": [{"product_id": "out-tent-2p", "price": 150.0, "quantity": 1}],
            },
        ),
        call(
            "Order Completed",
            customer,
            {
                "order_id": "o-2",
                "total": 100.0,
                "products": [{"product_id": "out-gas-230g", "price": 100.0, "quantity": 1}],
            },
        ),
    ]
    for payload in steps:
        # Steps further apart than STREAMCDP_AUDIENCE_MIN_INTERVAL_S (1 s): each is evaluated on its own.
        payload["timestamp"] = time.time()
        kafka.send(inbound, payload, key=customer)
        kafka.flush()
        time.sleep(1.3)

    deadline = time.monotonic() + 60
    while True:  # until the time-driven exit arrived (or the deadline), then 2 s more for strays
        records = kafka.read(topics.segment_changes, min_count=1, timeout_s=5, settle_s=2.0)
        changes = [orjson.loads(r.value) for r in records]
        sequence = [
            (c["change"], c["segment"]) for c in changes if c["kind"] == "segment" and c["customer_id"] == customer
        ]
        if ("exited", "recent_browsers") in sequence or time.monotonic() > deadline:
            break
    assert sequence == [
        ("entered", "recent_browsers"),
        ("entered", "big_cart"),
        ("exited", "big_cart"),
        ("entered", "buyers"),
        ("entered", "low_value"),
        ("exited", "low_value"),
        ("entered", "high_value"),
        ("exited", "recent_browsers"),  # no event: the 5 s window ran out and the wake-up noticed
    ]
    by_segment = {(c["change"], c["segment"]): c for c in changes if c["kind"] == "segment"}
    assert by_segment[("entered", "low_value")]["group"] == "value_tier"
    assert "waterfall value_tier now picks high_value" in by_segment[("exited", "low_value")]["reason"]
    exited_at = by_segment[("exited", "recent_browsers")]["at"]
    assert exited_at - steps[0]["timestamp"] >= 5.0

    profile = pipeline.worker.profile(customer)
    assert sorted(profile["segments"]) == ["buyers", "high_value"]
    assert set(profile["scores"]) >= {"purchase_7d", "churn_60d"}
    assert all(0.0 <= value <= 1.0 for value in profile["scores"].values())
    status, body = pipeline.worker.http_get("/segments", token=pipeline.settings.api_token)
    assert status == 200
    sizes = {s["name"]: s["size"] for s in orjson.loads(body)["segments"]}
    assert sizes == {"recent_browsers": 0, "big_cart": 0, "buyers": 1, "high_value": 1, "low_value": 0}
