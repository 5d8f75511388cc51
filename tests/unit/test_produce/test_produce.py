"""The pure parts of ``streamcdp produce``: routing a line, the send loop, pacing — no Kafka."""

from __future__ import annotations

import io

import orjson
import pytest

from schemas.topics import TopicNames
from streams.produce import (
    ProduceSummary,
    Progress,
    Rejected,
    Routed,
    pace_delay,
    produce_lines,
    read_lines,
    report,
    route_line,
)

NOW = 1_764_000_000.0
TOPICS = TopicNames(prefix="t.")


def line(**fields: object) -> bytes:
    base = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m",
        "userId": "u-1",
        "timestamp": NOW,
        "properties": {"product_id": "p"},
    }
    base.update(fields)
    return orjson.dumps({key: value for key, value in base.items() if value is not ...}) + b"\n"


ROUTES = [
    ("clickstream", line(), "t.events.clickstream", b"u-1"),
    ("page", line(type="page", event=...), "t.events.clickstream", b"u-1"),
    ("purchase", line(event="Order Completed", properties={"total": 3}), "t.events.purchase", b"u-1"),
    ("messaging", line(event="Message Sent", properties={"channel": "sms"}), "t.events.messaging", b"u-1"),
    ("email alias", line(event="Email Opened", properties={}), "t.events.messaging", b"u-1"),
    ("identify", line(type="identify", event=...), "t.events.customer", b"u-1"),
    (
        "consent",
        line(event="Consent Updated", properties={"channel": "sms", "granted": True}),
        "t.events.customer",
        b"u-1",
    ),
    ("other goes to clickstream", line(event="Wishlist Shared"), "t.events.clickstream", b"u-1"),
    ("anonymous key", line(userId=..., anonymousId="a-9"), "t.events.clickstream", b"a-9"),
    ("integer user id", line(userId=42), "t.events.clickstream", b"42"),
    ("utf-8 key", line(userId="zoë"), "t.events.clickstream", "zoë".encode()),
]


@pytest.mark.parametrize("validate", [False, True])
@pytest.mark.parametrize(("raw", "topic", "key"), [case[1:] for case in ROUTES], ids=[case[0] for case in ROUTES])
def test_lines_are_routed_by_family_and_keyed_by_routing_id(raw: bytes, topic: str, key: bytes, validate: bool) -> None:
    routed = route_line(raw, topics=TOPICS, validate=validate, now=NOW)
    # The record timestamp is the event's time: it orders the worker's inputs (streams.alignment).
    assert routed == Routed(topic=topic, key=key, value=raw.rstrip(b"\n"), timestamp_ms=round(NOW * 1000))


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [("2026-01-01T00:00:00.250Z", 1_767_225_600_250), (1_767_225_600, 1_767_225_600_000), ([1], None), (..., None)],
    ids=["iso", "epoch seconds", "unreadable", "missing"],
)
def test_record_timestamp_is_the_event_time(stamp: object, expected: int | None) -> None:
    routed = route_line(line(timestamp=stamp), topics=TOPICS)
    assert isinstance(routed, Routed) and routed.timestamp_ms == expected


def test_topic_override() -> None:
    routed = route_line(line(event="Order Completed", properties={"total": 1}), topics=TOPICS, topic="x")
    assert isinstance(routed, Routed) and routed.topic == "x"


REJECTIONS = [
    ("not json", b"{nope", False, "not_json"),
    ("not an object", b"[1]", False, "not_an_object"),
    ("no identity", line(userId=...), False, "missing_identity"),
    ("validate: negative price", line(properties={"product_id": "p", "price": -1}), True, "bad_amount"),
    ("validate: skew", line(timestamp=NOW + 86400), True, "timestamp_skew"),
    ("validate: missing product", line(properties={}), True, "missing_field"),
]


@pytest.mark.parametrize(
    ("raw", "validate", "reason"), [case[1:] for case in REJECTIONS], ids=[case[0] for case in REJECTIONS]
)
def test_rejections(raw: bytes, validate: bool, reason: str) -> None:
    routed = route_line(raw, topics=TOPICS, validate=validate, now=NOW)
    assert isinstance(routed, Rejected) and routed.reason == reason


def test_without_validate_semantic_errors_are_sent() -> None:
    raw = line(properties={"product_id": "p", "price": -1})
    assert isinstance(route_line(raw, topics=TOPICS, now=NOW), Routed)


@pytest.mark.parametrize("raw", [b"\xff\xfe garbage\n", b"{nope\n", b"[1,2]\n", line(userId=...)])
def test_raw_sends_anything_unchanged(raw: bytes) -> None:
    routed = route_line(raw, topics=TOPICS, raw=True)
    assert isinstance(routed, Routed)
    assert routed.value == raw.rstrip(b"\n")
    assert routed.topic == "t.events.clickstream" and routed.key is None


def test_raw_still_routes_parseable_lines() -> None:
    routed = route_line(line(event="Order Completed", properties={"total": -5}), topics=TOPICS, raw=True)
    assert isinstance(routed, Routed) and (routed.topic, routed.key) == ("t.events.purchase", b"u-1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_produce_lines_skips_blanks_counts_and_numbers_rejections() -> None:
    sent: list[Routed] = []
    lines = [("f", 1, line()), ("f", 2, b"\n"), ("f", 3, b"{bad\n"), ("f", 4, line(userId="u-2"))]
    summary = produce_lines(lines, lambda raw: route_line(raw, topics=TOPICS), sent.append)
    assert (summary.sent, summary.rejected) == (2, 1)
    assert [routed.key for routed in sent] == [b"u-1", b"u-2"]
    assert summary.rejections[0][:3] == ("f", 3, "not_json")


def test_rate_paces_the_sends() -> None:
    clock = FakeClock()
    sent_at: list[float] = []
    lines = [("f", number, line()) for number in range(1, 51)]
    summary = produce_lines(
        lines,
        lambda raw: route_line(raw, topics=TOPICS),
        lambda routed: sent_at.append(clock()),
        rate=100.0,
        clock=clock,
        sleep=clock.sleep,
    )
    assert summary.sent == 50
    assert sent_at[-1] == pytest.approx(0.49)
    assert summary.seconds == pytest.approx(0.49)
    unlimited = FakeClock()
    produce_lines(
        lines, lambda raw: route_line(raw, topics=TOPICS), lambda routed: None, clock=unlimited, sleep=unlimited.sleep
    )
    assert unlimited.slept == 0


@pytest.mark.parametrize(
    ("sent", "elapsed", "rate", "delay"),
    [
        (0, 0.0, 10.0, 0.0),
        (10, 0.5, 10.0, 0.5),
        (10, 2.0, 10.0, 0.0),
        (1000, 0.0, 0.0, 0.0),
    ],
)
def test_pace_delay(sent: int, elapsed: float, rate: float, delay: float) -> None:
    assert pace_delay(sent, elapsed, rate) == pytest.approx(delay)


def test_read_lines_numbers_files_and_stdin(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"one\ntwo\n")
    stdin = io.BytesIO(b"three\n")
    assert list(read_lines([str(path), "-"], stdin)) == [
        (str(path), 1, b"one\n"),
        (str(path), 2, b"two\n"),
        ("<stdin>", 1, b"three\n"),
    ]
    assert list(read_lines([], io.BytesIO(b"x\n"))) == [("<stdin>", 1, b"x\n")]


def test_report_and_progress_lines() -> None:
    out = io.StringIO()
    summary = ProduceSummary(sent=10, rejected=1, seconds=2.0, rejections=[("f", 7, "not_json", "eof")])
    report(summary, out)
    assert out.getvalue() == "f:7: rejected: not_json: eof\nsent 10, rejected 1, failed 0, 2.00 s, 5 events/s\n"
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress(stream, every_s=10.0, clock=clock)
    progress.update(summary)
    assert stream.getvalue() == ""
    clock.now = 11.0
    progress.update(summary)
    assert stream.getvalue().startswith("sent 10, rejected 1")
