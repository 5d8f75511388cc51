"""Changing the segment definitions and restarting re-evaluates every profile and publishes the moves."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from trigger_files import NO_TRIGGERS

pytestmark = pytest.mark.integration

BEFORE = """
version: 1
segments:
  - name: buyers
    when: orders >= 1
"""

AFTER = """
version: 1
consumables:
  products: {pet-dogfood-adult-12kg: 30}
segments:
  - name: loyal
    when: orders >= 1
  - name: big_buyers
    when: orders >= 5
"""


def test_new_definitions_after_a_restart_move_existing_customers(make_pipeline, tmp_path):
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(BEFORE)
    pipeline = make_pipeline(segments_file=segments_file, triggers_file=NO_TRIGGERS)
    kafka, topics, worker = pipeline.kafka, pipeline.topics, pipeline.worker
    ordered_at = time.time() - 5
    order = {
        "type": "track",
        "event": "Order Completed",
        "messageId": str(uuid.uuid4()),
        "userId": "r1",
        "timestamp": ordered_at,
        "properties": {
            "order_id": "o-1",
            "total": 54.0,
            "products": [{"product_id": "pet-dogfood-adult-12kg", "price": 54.0, "quantity": 1}],
        },
    }
    kafka.send(topics.inbound("purchase"), order, key="r1")
    kafka.flush()
    worker.wait_for_profile("r1", lambda p: p["segments"] == ["buyers"])
    assert "replenishment" not in worker.profile("r1")  # no consumables defined yet

    worker.stop()
    segments_file.write_text(AFTER)
    worker.start()

    after = worker.wait_for_profile("r1", lambda p: p["segments"] == ["loyal"], timeout_s=60)
    records = kafka.read(topics.segment_changes, min_count=3, timeout_s=30)
    moves = [
        (c["change"], c["segment"])
        for c in map(orjson.loads, (r.value for r in records))
        if c["kind"] == "segment" and c["customer_id"] == "r1"
    ]
    assert moves == [("entered", "buyers"), ("exited", "buyers"), ("entered", "loyal")]
    [refill] = after["replenishment"]
    assert refill["product_id"] == "pet-dogfood-adult-12kg" and refill["basis"] == "catalog"
    assert refill["expected_at"] == pytest.approx(ordered_at + 30 * 86400, abs=1)
