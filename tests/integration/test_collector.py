"""Issue 13 through the real broker and a running worker: the official Segment Python SDK
(``segment-analytics-python``) sends to ``streamcdp collect`` exactly as it would send to Segment.

- identify + track + alias + page + group through the SDK build exactly the profile that the same stored
  events build when sent with ``streamcdp produce``;
- a batch with one invalid event stores the others and dead-letters that one;
- the broker stopped mid-run: the collector answers 503, the SDK keeps its events and sends them again, and
  once the broker is back every event is stored and applied once (counted in the profile).
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from conftest import REPO, Pipeline, metric_sum
from segment.analytics import Client
from trigger_files import NO_TRIGGERS

from schemas.validation import parse_timestamp
from streams import kafka_local
from streams.http_probe import http_get

pytestmark = pytest.mark.integration

WRITE_KEY = "test-write-key"
SOURCE = "website"


class CollectorProcess:
    """One ``streamcdp collect`` subprocess for a pipeline's topics; stopped by pid."""

    def __init__(self, pipeline: Pipeline, log_path: Path) -> None:
        self.port = kafka_local.free_port()
        self.env = dict(
            pipeline.worker.env,
            STREAMCDP_WRITE_KEYS=f"{WRITE_KEY}:{SOURCE}",
            STREAMCDP_COLLECTOR_PORT=str(self.port),
            STREAMCDP_COLLECTOR_RETRY_AFTER_S="1",
            STREAMCDP_COLLECTOR_PRODUCE_TIMEOUT_S="5",
        )
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "collect"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert self.wait_ready(True, timeout_s), f"collector not ready; log:\n{self.log_tail()}"

    def wait_ready(self, ready: bool, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"collector exited; log:\n{self.log_tail()}"
            if (http_get(f"{self.url}/readyz")[0] == 200) == ready:
                return True
            time.sleep(0.2)
        return False

    def metrics(self) -> dict:
        from prometheus_client.parser import text_string_to_metric_families

        status, body = http_get(f"{self.url}/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@pytest.fixture
def start_collector(tmp_path: Path):
    started: list[CollectorProcess] = []

    def _start(pipeline: Pipeline) -> CollectorProcess:
        collector = CollectorProcess(pipeline, tmp_path / f"collector-{len(started)}.log")
        started.append(collector)
        collector.start()
        return collector

    yield _start
    for collector in started:
        collector.stop()


class Sdk:
    """The Segment SDK pointed at the collector; failures it reports (``on_error``) are kept."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.errors: list[str] = []
        self.client = Client(
            WRITE_KEY,
            host=collector.url,
            gzip=True,
            upload_size=100,
            upload_interval=0.2,
            max_retries=100,
            on_error=lambda error, batch: self.errors.append(f"{error} ({len(batch)} messages)"),
        )

    def flush(self, timeout_s: float = 180.0) -> None:
        """``Client.flush`` (it blocks until the SDK's queue is empty) in a thread, with a bound."""
        flusher = threading.Thread(target=self.client.flush, daemon=True)
        flusher.start()
        flusher.join(timeout_s)
        assert not flusher.is_alive(), "the SDK did not deliver its queue in time"
        assert self.errors == []

    def close(self) -> None:
        self.flush()
        self.client.join()


def read_records(bootstrap: str, topics: list[str], count: int, timeout_s: float = 60.0) -> list:
    """Records of ``topics`` from the start until ``count`` arrived (or the timeout), then 1 s more."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
    )
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            records.extend(consumer)
            if len(records) >= count:
                records.extend(consumer)  # one more idle second: what must not be there would show
                break
    finally:
        consumer.close()
    return records


def send_journey(client: Client, prefix: str, start: datetime, phase: int) -> int:
    """Phase 1, an anonymous visit and the login (identify + alias): 5 calls; phase 2, an order, a household
    and a coupon: 3 calls. The phases are applied one after the other, so that both ingestion paths see
    the same order of events (how sessions add up across a merge depends on it)."""
    anonymous, user = f"{prefix}anon-1", f"{prefix}user-1"

    def at(seconds: int) -> datetime:
        return start + timedelta(seconds=seconds)

    boots = {"product_id": "boots-1", "name": "Trail Boots", "category": "hiking-boots", "price": 139.95}
    if phase == 1:
        client.page(anonymous_id=anonymous, name="Home", properties={"url": "https://shop.example/"}, timestamp=at(0))
        client.track(anonymous_id=anonymous, event="Product Viewed", properties=boots, timestamp=at(10))
        client.track(
            anonymous_id=anonymous, event="Product Added", properties={**boots, "quantity": 1}, timestamp=at(20)
        )
        client.identify(
            user_id=user, anonymous_id=anonymous, traits={"city": "Lyon", "loyalty_tier": "gold"}, timestamp=at(30)
        )
        client.alias(previous_id=anonymous, user_id=user, timestamp=at(31))
        return 5
    order = {"order_id": f"{prefix}o1", "total": 139.95, "currency": "eur", "products": [{**boots, "quantity": 1}]}
    client.track(user_id=user, event="Order Completed", properties=order, timestamp=at(40))
    client.group(user_id=user, group_id=f"{prefix}household", traits={"plan": "family", "size": 3}, timestamp=at(50))
    client.track(user_id=user, event="Coupon Applied", properties={"coupon_id": "WELCOME"}, timestamp=at(60))
    return 3


PHASE_2_FROM_S = 35  # seconds after the journey's start: the calls of phase 2


def comparable(document: dict, prefix: str) -> dict:
    """A profile document with the customer's id prefix neutralised and the ``now``-dependent figures
    (days since the last order, decayed affinity, scores) and the segments left out."""
    text = orjson.dumps(document).replace(prefix.encode(), b"<id>")
    view = orjson.loads(text)
    view["computed"].pop("days_since_last_order")
    view["computed"]["category_affinity"] = sorted(view["computed"]["category_affinity"])
    view.pop("scores", None)
    # Segments are refreshed asynchronously after a burst (STREAMCDP_AUDIENCE_MIN_INTERVAL_S); observed:
    # the produce path's refresh after its second burst can lag for over 30 s, a matter of the worker's
    # audience timer, not of how the events came in. The test checks the collector path's segments itself.
    view.pop("segments", None)
    return view


def test_sdk_events_build_the_profile_produce_builds(make_pipeline, start_collector, tmp_path):
    # No cart reminder between the phases: its trigger id is derived from the customer's id. The journey's
    # events are stamped 30 minutes back, as an SDK's offline queue sends them: the worker is not behind, so
    # the segment refresh keeps its short interval (the default backlog stretch follows the worker's backlog,
    # not the events' age) and the segments below arrive within the wait.
    pipeline = make_pipeline(triggers_file=NO_TRIGGERS)
    collector = start_collector(pipeline)
    sdk = Sdk(collector)
    worker = pipeline.worker
    start = datetime.now(UTC) - timedelta(minutes=30)
    first = send_journey(sdk.client, "sdk-", start, phase=1)
    sdk.flush()
    worker.wait_for_profile("sdk-user-1", lambda p: p["event_count"] == first)
    sent = first + send_journey(sdk.client, "sdk-", start, phase=2)
    sdk.close()
    worker.wait_for_profile("sdk-user-1", lambda p: p["event_count"] == sent)

    # What the collector stored: the SDK's calls, each corrected for clock skew as Segment does it and
    # tagged with the write key's source, keyed by routing id on its family's topic.
    records = read_records(pipeline.kafka.bootstrap, list(pipeline.topics.all_inbound), sent)
    assert len(records) == sent
    for record in records:
        stored = orjson.loads(record.value)
        assert record.key == (stored.get("userId") or stored["anonymousId"]).encode()
        assert stored["context"]["source"] == SOURCE and stored["context"]["library"]["name"] == "analytics-python"
        skew = parse_timestamp(stored["sentAt"]) - parse_timestamp(stored["originalTimestamp"])
        expected = parse_timestamp(stored["receivedAt"]) - skew
        assert parse_timestamp(stored["timestamp"]) == pytest.approx(expected, abs=0.002)
    assert {orjson.loads(r.value)["type"] for r in records} == {"page", "track", "identify", "alias", "group"}

    # The same events, sent by `streamcdp produce` for another customer (ids renamed), build the same profile.
    phase_2_from = start.timestamp() + PHASE_2_FROM_S
    for phase_records, expected in (
        ([r for r in records if parse_timestamp(orjson.loads(r.value)["originalTimestamp"]) < phase_2_from], first),
        ([r for r in records if parse_timestamp(orjson.loads(r.value)["originalTimestamp"]) >= phase_2_from], sent),
    ):
        jsonl = tmp_path / f"same-events-{expected}.jsonl"
        jsonl.write_bytes(b"\n".join(r.value.replace(b"sdk-", b"cli-") for r in phase_records) + b"\n")
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", "produce", str(jsonl)],
            cwd=REPO,
            env=pipeline.worker.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        worker.wait_for_profile("cli-user-1", lambda p, expected=expected: p["event_count"] == expected)
    via_sdk, via_produce = worker.profile("sdk-user-1"), worker.profile("cli-user-1")
    assert comparable(via_sdk, "sdk-") == comparable(via_produce, "cli-")
    # The collector path's segments are those of a gold customer with one order (bounded wait for the refresh).
    worker.wait_for_profile("sdk-user-1", lambda p: {"vip", "tier_one_time"} <= set(p["segments"]), timeout_s=30)
    assert via_sdk["groups"] == {"sdk-household": {"plan": "family", "size": 3}}
    assert via_sdk["orders"] == 1 and via_sdk["revenue"] == 13995 and via_sdk["traits"]["city"] == "Lyon"


def test_a_batch_with_one_invalid_event_stores_the_others_and_dead_letters_it(make_pipeline, start_collector):
    pipeline = make_pipeline()
    collector = start_collector(pipeline)
    sdk = Sdk(collector)
    now = datetime.now(UTC) - timedelta(minutes=5)
    for index in range(3):
        sdk.client.track(
            user_id="batch-user-1", event="Product Viewed", properties={"product_id": f"p{index}"}, timestamp=now
        )
    # Product Added without a product: the contract rejects it; the SDK does not know that.
    sdk.client.track(user_id="batch-user-1", event="Product Added", properties={"price": 5}, message_id="bad-1")
    sdk.close()

    profile = pipeline.worker.wait_for_profile("batch-user-1", lambda p: p["event_count"] == 3)
    assert profile["computed"]["product_views"] == {"p0": 1, "p1": 1, "p2": 1}
    (dead,) = read_records(pipeline.kafka.bootstrap, [pipeline.topics.deadletter], 1)
    letter = orjson.loads(dead.value)
    assert (letter["reason"], letter["detail"], letter["source_topic"]) == (
        "missing_field",
        "properties.product_id",
        "http:/v1/batch",
    )
    assert orjson.loads(base64.b64decode(letter["original"]))["messageId"] == "bad-1"
    stored = read_records(pipeline.kafka.bootstrap, list(pipeline.topics.all_inbound), 3)
    assert len(stored) == 3
    metrics = collector.metrics()
    assert metric_sum(metrics, "streamcdp_collector_events_rejected_total", reason="missing_field") == 1
    assert metric_sum(metrics, "streamcdp_collector_events_accepted_total", family="clickstream") == 3


def test_the_sdk_retries_deliver_every_event_once_after_a_broker_outage(
    restartable_kafka, make_pipeline, start_collector
):
    pipeline = make_pipeline(broker_url=restartable_kafka.broker_url)
    collector = start_collector(pipeline)
    sdk = Sdk(collector)
    start = datetime.now(UTC) - timedelta(minutes=20)

    def views(first: int, count: int) -> None:
        for index in range(first, first + count):
            sdk.client.track(
                user_id="outage-user-1",
                event="Product Viewed",
                properties={"product_id": f"p{index}"},
                timestamp=start + timedelta(seconds=index),
                message_id=f"outage-{index}",
            )

    views(0, 20)
    sdk.flush()
    pipeline.worker.wait_for_profile("outage-user-1", lambda p: p["event_count"] == 20)

    kafka_local.stop(restartable_kafka)
    assert collector.wait_ready(False, 60), "the collector still reports ready without a broker"
    views(20, 30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the SDK has been told 503 at least once
        if metric_sum(collector.metrics(), "streamcdp_collector_requests_total", status="503") >= 1:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the collector never answered 503 while the broker was down")
    assert metric_sum(collector.metrics(), "streamcdp_collector_requests_total", status="200") >= 1

    kafka_local.start(restartable_kafka)
    sdk.close()  # the SDK's own retries deliver what it kept
    profile = pipeline.worker.wait_for_profile("outage-user-1", lambda p: p["event_count"] == 50, timeout_s=180)
    assert sorted(profile["computed"]["product_views"]) == sorted(f"p{index}" for index in range(50))

    stored = read_records(pipeline.kafka.bootstrap, [pipeline.topics.inbound("clickstream")], 50)
    ids = [orjson.loads(record.value)["messageId"] for record in stored]
    assert set(ids) == {f"outage-{index}" for index in range(50)}  # every event stored (repeats allowed)
    time.sleep(2)  # any repeat still in flight would be applied by now: the profile must not count it
    assert pipeline.worker.profile("outage-user-1")["event_count"] == 50
