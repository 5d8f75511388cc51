"""Issue 3 through the real broker: a generated stream with corrupted lines, sent as it is.

Every valid event is processed exactly once (observed: the worker's counters and the sum of the
profiles' event counts, not assumed), every corrupted line lands in ``events.deadletter`` with its
reason, its source topic/partition/offset and its exact bytes, and a re-sent event (same messageId) is
applied once. One worker, never restarted.
"""

from __future__ import annotations

import base64
import time
from collections import Counter

import orjson
import pytest
from conftest import (
    anonymous_visitors,
    fetch_profiles,
    metric_sum,
    produce_raw_lines,
    read_metrics,
    wait_until_drained,
)
from trigger_files import NO_TRIGGERS

from offline.generator import WorkloadConfig, generate_workload
from streams.produce import route_line

pytestmark = pytest.mark.integration

DAYS = 10.0
# No deletions here (the ground-truth test covers them): then every valid event must still be counted
# in exactly one live profile, which makes "processed exactly once" observable as a sum.
CONFIG = dict(customers=300, days=DAYS, seed=3, corrupt_fraction=0.01, deletion_rate=0.0)


def test_valid_events_are_applied_once_and_corrupted_ones_are_dead_lettered(make_pipeline):
    # No cart reminders during the test: the trigger timer would only add unrelated commands.
    # Dead letters keep their exact bytes here (by default their PII fields are redacted: unit-tested).
    pipeline = make_pipeline(triggers_file=NO_TRIGGERS, deadletter_keep_pii=True)
    kafka, topics, worker = pipeline.kafka, pipeline.topics, pipeline.worker
    workload = generate_workload(WorkloadConfig(start=time.time() - (DAYS + 1) * 86400, **CONFIG))
    truth = workload.truth
    assert truth["corrupted"] >= 50 and len(truth["corrupted_by_reason"]) == 10, truth["corrupted_by_reason"]
    valid = [line for line in workload.lines if _passes_contract(line)]
    # A valid event of an identified customer, re-sent at the end with the same messageId.
    duplicate = next(
        line for line in reversed(workload.lines) if _passes_contract(line) and orjson.loads(line).get("userId")
    )
    duplicate_customer = orjson.loads(duplicate)["userId"]

    started = time.monotonic()
    sent = produce_raw_lines(pipeline, [*workload.lines, duplicate])
    assert sent == len(workload.lines) + 1 == truth["events"] + truth["corrupted"] + 1
    drained_s = wait_until_drained(pipeline, timeout_s=120)
    print(f"\n{sent} lines sent and processed in {time.monotonic() - started:.1f} s (drain wait {drained_s:.1f} s)")

    # The worker's own counts: every valid line ingested (the duplicate too), every corrupted one
    # dead-lettered by its reason, each valid event applied once and the re-sent one seen as a duplicate.
    metrics = read_metrics(worker)
    assert metric_sum(metrics, "streamcdp_events_ingested_total") == truth["events"] + 1
    assert metric_sum(metrics, "streamcdp_events_deadlettered_total") == truth["corrupted"]
    for reason, count in truth["corrupted_by_reason"].items():
        assert metric_sum(metrics, "streamcdp_events_deadlettered_total", reason=reason) == count, reason
    assert metric_sum(metrics, "streamcdp_profile_outcomes_total", outcome="applied") == truth["events"]
    assert metric_sum(metrics, "streamcdp_profile_outcomes_total", outcome="duplicate") == 1

    # The profiles say the same: each customer holds exactly its events, each unlinked device its own,
    # and together they hold every valid event once.
    visitors = anonymous_visitors(workload.lines, truth)
    customers = {customer["user_id"]: customer for customer in truth["profiles"]}
    documents = fetch_profiles(worker, [*customers, *visitors])
    missing = [i for i, (status, _) in documents.items() if status != 200]
    assert not missing, f"{len(missing)} profiles missing, e.g. {missing[:5]}"
    wrong = {
        user_id: (documents[user_id][1]["event_count"], customer["events"])
        for user_id, customer in customers.items()
        if documents[user_id][1]["event_count"] != customer["events"]
    }
    wrong.update(
        {
            anonymous_id: (documents[anonymous_id][1]["event_count"], count)
            for anonymous_id, count in visitors.items()
            if documents[anonymous_id][1]["event_count"] != count
        }
    )
    assert not wrong, f"{len(wrong)} profiles with (event_count, expected) wrong, e.g. {list(wrong.items())[:5]}"
    assert sum(document["event_count"] for _, document in documents.values()) == truth["events"] == len(valid)
    assert documents[duplicate_customer][1]["event_count"] == customers[duplicate_customer]["events"]

    # Every dead letter: its reason, where it came from (the bytes at that topic/partition/offset),
    # and the original bytes, exactly the line that was sent.
    dead = kafka.read(topics.deadletter, min_count=truth["corrupted"], timeout_s=60, settle_s=1.0)
    records = [orjson.loads(record.value) for record in dead]
    assert len(records) == truth["corrupted"]
    assert dict(sorted(Counter(record["reason"] for record in records).items())) == truth["corrupted_by_reason"]
    corrupted = [line for line in workload.lines if not _passes_contract(line)]
    originals = [base64.b64decode(record["original"]) for record in records]
    assert sorted(originals) == sorted(corrupted)
    inbound = _inbound_records(pipeline, workload.lines)
    for record, original in zip(records, originals, strict=True):
        position = (record["source_topic"], record["source_partition"], record["source_offset"])
        assert inbound.get(position) == original, (position, record["reason"])
        assert record["source_topic"] == route_line(original, topics=topics, raw=True).topic
        assert record["detail"] and record["failed_at"] > 0
    assert worker.proc.poll() is None  # no restart was needed


def _passes_contract(line: bytes) -> bool:
    """The generator's corrupted lines all lack one of: UTF-8 JSON, ids, a sane timestamp, ... — the
    cheap test that tells them apart is decoding with the contract itself."""
    from schemas.errors import InvalidEvent
    from schemas.validation import decode_event

    try:
        decode_event(line, now=time.time())
    except InvalidEvent:
        return False
    return True


def _inbound_records(pipeline, lines: list[bytes]) -> dict[tuple[str, int, int], bytes]:
    """Every record of the inbound topics by (topic, partition, offset)."""
    per_topic = Counter(route_line(line, topics=pipeline.topics, raw=True).topic for line in lines)
    records: dict[tuple[str, int, int], bytes] = {}
    for topic, count in per_topic.items():
        for record in pipeline.kafka.read(topic, min_count=count, timeout_s=60):
            records[(record.topic, record.partition, record.offset)] = record.value
    return records
