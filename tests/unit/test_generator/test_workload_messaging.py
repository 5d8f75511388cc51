"""What the generator gives the guardrails and the sender simulator: consents, time zones, push tokens, habits."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from offline.generator import WorkloadConfig, generate_workload
from offline.responses import engagement_habit

START = 1_760_000_000.0


@pytest.fixture(scope="module")
def events() -> list[dict]:
    workload = generate_workload(WorkloadConfig(start=START, customers=300, days=30.0, seed=11))
    return [orjson.loads(line) for line in workload.lines]


def test_app_devices_carry_a_push_token_and_web_devices_none(events):
    devices = [e["context"]["device"] for e in events if e["type"] == "identify" and "device" in e.get("context", {})]
    mobile = [d for d in devices if d["type"] == "mobile"]
    assert mobile and all(len(d["token"]) == 64 for d in mobile)
    assert all("token" not in d for d in devices if d["type"] == "desktop")


def test_customers_have_time_zones_and_consents(events):
    zones = {e["traits"]["timezone"] for e in events if e["type"] == "identify" and "timezone" in e.get("traits", {})}
    assert len(zones) > 1
    consents = Counter(
        (e["properties"]["channel"], e["properties"]["granted"]) for e in events if e.get("event") == "Consent Updated"
    )
    assert consents[("email", True)] > 0 and consents[("sms", True)] > 0 and consents[("email", False)] > 0


def test_opens_follow_each_customers_habit(events):
    delivered: Counter = Counter()
    opened: Counter = Counter()
    expected = 0.0
    for event in events:
        channel = event.get("properties", {}).get("channel")
        if event.get("event") == "Message Delivered" and channel:
            delivered[channel] += 1
            expected += engagement_habit(event["userId"])[channel].opened
        elif event.get("event") == "Message Opened" and channel:
            opened[channel] += 1
    assert sum(delivered.values()) > 200
    assert sum(opened.values()) == pytest.approx(expected, rel=0.15)
