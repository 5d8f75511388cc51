"""The synthetic workload: deterministic, valid, time-ordered, and its ground truth matches its events."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import orjson
import pytest

from offline.generator import CATALOG, WorkloadConfig, generate_workload
from schemas.catalog import CLICKSTREAM_EVENTS, ECOMMERCE_V2_EVENTS, MESSAGING_EVENTS, PURCHASE_EVENTS
from schemas.errors import InvalidEvent
from schemas.events import Event
from schemas.validation import decode_event
from streams import generate
from streams.settings import Settings

START = 1_760_000_000.0
DAYS = 30.0
NOW = START + DAYS * 86400 + 1
CONFIG = WorkloadConfig(start=START, customers=60, days=DAYS, seed=7, deletion_rate=0.05, refund_rate=0.2)


@pytest.fixture(scope="module")
def workload():
    return generate_workload(CONFIG)


@pytest.fixture(scope="module")
def events(workload) -> list[Event]:
    return [decode_event(line, now=NOW) for line in workload.lines]


def test_same_seed_same_bytes_other_seed_other_bytes(workload) -> None:
    again = generate_workload(CONFIG)
    assert again.lines == workload.lines
    assert again.truth == workload.truth
    other = generate_workload(WorkloadConfig(start=START, customers=60, days=DAYS, seed=8))
    assert other.lines != workload.lines


def test_every_event_is_valid_and_in_time_order(workload, events) -> None:
    assert len(events) == workload.truth["events"] == len(workload.lines)
    timestamps = [event.timestamp for event in events]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] >= START and timestamps[-1] <= START + DAYS * 86400
    assert len({event.message_id for event in events}) == len(events)


def test_the_workload_covers_the_contract(events) -> None:
    names = Counter(event.event if event.type == "track" else event.type for event in events)
    for expected in (
        *(CLICKSTREAM_EVENTS - ECOMMERCE_V2_EVENTS),
        *(PURCHASE_EVENTS - ECOMMERCE_V2_EVENTS),
        "identify",
        "alias",
        "page",
        "screen",
        "Consent Updated",
        "Deletion Requested",
        "Message Sent",
        "Message Delivered",
        "Message Opened",
        "Message Clicked",
        "Message Bounced",
    ):
        assert names[expected] > 0, expected
    assert set(names) - {"identify", "alias", "page", "screen"} <= {
        *CLICKSTREAM_EVENTS,
        *PURCHASE_EVENTS,
        *MESSAGING_EVENTS,
        "Consent Updated",
        "Deletion Requested",
    }
    orders = [event for event in events if event.event == "Order Completed"]
    assert any("store_id" in event.properties for event in orders)  # in-store POS
    assert any("coupon" in event.properties for event in orders)
    assert any(item.get("size") for event in orders for item in event.properties["products"])
    assert any(event.properties.get("trigger_id") for event in events if event.family == "messaging")
    categories = {item["category"] for event in orders for item in event.properties["products"]}
    assert {"dog-food", "cat-litter"} <= categories
    assert {"climbing-rope", "tents", "hiking-boots", "puppy-toys"} <= {product.category for product in CATALOG}


def test_segment_email_names_were_used_and_normalised(workload) -> None:
    raw_names = {orjson.loads(line).get("event") for line in workload.lines}
    assert raw_names & {"Email Delivered", "Email Opened", "Email Link Clicked", "Email Sent"}


def recompute_truth(events: list[Event]) -> dict[str, dict]:
    """The truth, from the decoded events alone, by the rules the truth document states."""
    linked: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.type == "identify" and event.user_id and event.anonymous_id:
            linked[event.user_id].add(event.anonymous_id)
        elif event.type == "alias":
            linked[event.user_id].add(event.previous_id)
    owner = {anonymous_id: user for user, ids in linked.items() for anonymous_id in ids}
    truth: dict[str, dict] = {}
    totals: dict[str, int] = {}
    for event in events:
        user = event.user_id or owner.get(event.anonymous_id)
        if user is None:
            continue
        row = truth.setdefault(
            user,
            {
                "user_id": user,
                "anonymous_ids": sorted(linked[user]),
                "events": 0,
                "orders": 0,
                "revenue": 0,
                "last_order_at": None,
                "refunds": 0,
                "refunded_revenue": 0,
                "deleted": False,
            },
        )
        row["events"] += 1
        if event.event == "Order Completed":
            totals[event.properties["order_id"]] = event.properties["total"]
            row["orders"] += 1
            row["revenue"] += event.properties["total"]
            row["last_order_at"] = max(row["last_order_at"] or 0, event.timestamp)
        elif event.event == "Order Refunded":
            assert event.properties["total"] == totals[event.properties["order_id"]]
            row["orders"] -= 1
            row["revenue"] -= event.properties["total"]
            row["refunds"] += 1
            row["refunded_revenue"] += event.properties["total"]
        elif event.event == "Deletion Requested":
            row["deleted"] = True
    return truth


def test_truth_matches_the_events(workload, events) -> None:
    expected = recompute_truth(events)
    actual = {row["user_id"]: row for row in workload.truth["profiles"]}
    assert actual == expected
    assert any(row["refunds"] for row in actual.values())
    assert any(row["deleted"] for row in actual.values())
    assert any(len(row["anonymous_ids"]) > 1 for row in actual.values())


def test_deleted_customers_send_nothing_afterwards(workload, events) -> None:
    deleted_at = {event.user_id: event.timestamp for event in events if event.event == "Deletion Requested"}
    assert deleted_at
    for event in events:
        if event.user_id in deleted_at:
            assert event.timestamp <= deleted_at[event.user_id]


def test_size_parameters_scale_the_workload(workload) -> None:
    smaller = generate_workload(
        WorkloadConfig(start=START, customers=30, days=DAYS, seed=7, deletion_rate=0.05, refund_rate=0.2)
    )
    # Each customer has its own random stream: the first 30 customers are the same in both.
    assert smaller.truth["profiles"] == [row for row in workload.truth["profiles"] if row["user_id"] < "user-000030"]
    assert 0.3 < len(smaller.lines) / len(workload.lines) < 0.7
    shorter = generate_workload(WorkloadConfig(start=START, customers=60, days=10, seed=7))
    assert len(shorter.lines) < len(workload.lines) * 0.6
    last = decode_event(shorter.lines[-1], now=NOW)
    assert last.timestamp <= START + 10 * 86400


def test_corrupted_lines_fail_with_the_counted_reasons() -> None:
    corrupted = generate_workload(WorkloadConfig(start=START, customers=20, days=10, seed=3, corrupt_fraction=0.1))
    reasons: Counter = Counter()
    valid = 0
    for line in corrupted.lines:
        try:
            decode_event(line, now=NOW)
            valid += 1
        except InvalidEvent as exc:
            reasons[exc.reason] += 1
    truth = corrupted.truth
    assert valid == truth["events"]
    assert dict(reasons) == truth["corrupted_by_reason"]
    assert sum(reasons.values()) == truth["corrupted"] == round(0.1 * truth["events"])
    assert len(reasons) == 10
    clean = generate_workload(WorkloadConfig(start=START, customers=20, days=10, seed=3))
    assert [line for line in corrupted.lines if line in set(clean.lines)] == clean.lines


def test_generate_command_writes_lines_and_truth(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    generate.register(parser.add_subparsers(dest="command"))
    out, truth_path = tmp_path / "events.jsonl", tmp_path / "truth.json"
    args = parser.parse_args(
        [
            "generate",
            "--customers",
            "8",
            "--days",
            "5",
            "--seed",
            "2",
            "--start",
            str(START),
            "--out",
            str(out),
            "--truth",
            str(truth_path),
            "--corrupt-fraction",
            "0.05",
        ]
    )
    assert args.handler(args, Settings()) == 0
    lines = out.read_bytes().splitlines()
    truth = orjson.loads(truth_path.read_bytes())
    assert len(lines) == truth["events"] + truth["corrupted"] == truth["lines_written"]
    assert "sent" in capsys.readouterr().err
    again = tmp_path / "again.jsonl"
    args = parser.parse_args(
        [
            "generate",
            "--customers",
            "8",
            "--days",
            "5",
            "--seed",
            "2",
            "--start",
            "2025-10-09T08:53:20Z",
            "--out",
            str(again),
            "--corrupt-fraction",
            "0.05",
        ]
    )
    assert args.handler(args, Settings()) == 0
    assert again.read_bytes() == out.read_bytes()


def test_generate_command_default_start_is_recent(tmp_path) -> None:
    assert generate.parse_start(None, 30, now=2_000_000_000.0) == 2_000_000_000.0 - 30 * 86400
    assert generate.parse_start("1760000000", 30, now=0) == START
