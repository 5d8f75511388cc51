"""The collector's HTTP behaviour in process, with a stand-in for Kafka: statuses, bodies, what is produced."""

from __future__ import annotations

import asyncio
import base64
import gzip

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas.topics import TopicNames
from streams.collector import RUNNER_OPTIONS, BrokerUnavailable, Collector, Record
from streams.collector_protocol import parse_write_keys
from streams.settings import Settings

TOPICS = TopicNames(prefix="t.")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"wk:").decode()}
NOW_ISO = "2026-12-02T10:00:00Z"


class FakeDelivery:
    """Records what the collector would produce; ``available``/``fail``/``gate`` play the broker's part."""

    def __init__(self) -> None:
        self.available = True
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.records: list[Record] = []
        self.waiting = 0

    async def deliver(self, records: list[Record]) -> None:
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        if self.fail:
            message = "no broker"
            raise BrokerUnavailable(message)
        self.records.extend(records)


def settings(**overrides) -> Settings:
    return Settings(topic_prefix="t.", write_keys="wk:web", max_past_skew_s=1e10, max_future_skew_s=1e10, **overrides)


async def client_for(delivery: FakeDelivery, **overrides) -> TestClient:
    collector = Collector(settings(**overrides), parse_write_keys("wk:web"), delivery)
    server = TestServer(collector.application())
    await server.start_server(**RUNNER_OPTIONS)
    client = TestClient(server)
    await client.start_server()
    return client


def track(**fields) -> dict:
    return {
        "userId": "u1",
        "event": "Product Viewed",
        "properties": {"product_id": "p1"},
        "timestamp": NOW_ISO,
        **fields,
    }


async def post(client: TestClient, path: str, body: dict | bytes, headers: dict | None = None):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(path, data=data, headers=AUTH if headers is None else headers)
    return response.status, await response.json(), response.headers


@pytest.fixture
async def delivery():
    return FakeDelivery()


async def test_a_valid_call_is_produced_keyed_by_its_routing_id(delivery):
    client = await client_for(delivery)
    try:
        status, body, _ = await post(client, "/v1/track", track())
        assert (status, body) == (200, {"success": True})
        (record,) = delivery.records
        stored = orjson.loads(record.value)
        assert (record.topic, record.key) == (TOPICS.inbound("clickstream"), b"u1")
        assert stored["type"] == "track" and stored["context"] == {"source": "web"} and "receivedAt" in stored
        status, _, _ = await post(client, "/v1/t", track())  # analytics.js's short path
        assert status == 200 and len(delivery.records) == 2
    finally:
        await client.close()


async def test_an_invalid_single_call_is_answered_400_with_the_reason(delivery):
    client = await client_for(delivery)
    try:
        status, body, _ = await post(client, "/v1/track", track(properties={}))
        assert status == 400 and body["code"] == "missing_field" and "product_id" in body["message"]
        status, body, _ = await post(client, "/v1/group", {"userId": "u1"})
        assert status == 400 and body["code"] == "missing_field"
        assert delivery.records == []
    finally:
        await client.close()


async def test_a_batch_stores_the_valid_events_and_dead_letters_the_invalid_one(delivery):
    client = await client_for(delivery)
    try:
        batch = {
            "batch": [
                {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}},
                {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {}},
                {"type": "group", "anonymousId": "a1", "groupId": "h1"},
            ]
        }
        status, body, _ = await post(client, "/v1/batch", batch)
        assert (status, body) == (200, {"success": True})
        topics = [record.topic for record in delivery.records]
        assert topics == [TOPICS.inbound("customer"), TOPICS.deadletter, TOPICS.inbound("customer")]
        dead = orjson.loads(delivery.records[1].value)
        assert dead["reason"] == "missing_field" and dead["source_topic"] == "http:/v1/batch"
        assert orjson.loads(base64.b64decode(dead["original"]))["event"] == "Order Completed"
    finally:
        await client.close()


async def test_write_keys_in_the_header_or_the_body(delivery):
    client = await client_for(delivery)
    try:
        status, body, _ = await post(client, "/v1/track", track(), headers={})
        assert (status, body["code"]) == (401, "unauthorized")
        wrong = {"Authorization": "Basic " + base64.b64encode(b"stolen:").decode()}
        status, body, _ = await post(client, "/v1/track", track(), headers=wrong)
        assert (status, body["code"]) == (401, "unauthorized")
        status, _, _ = await post(client, "/v1/b", {"writeKey": "wk", "batch": [track(type="track")]}, headers={})
        assert status == 200 and b"wk" not in delivery.records[0].value
    finally:
        await client.close()


async def test_gzip_bodies_limits_and_malformed_json(delivery):
    client = await client_for(delivery, collector_max_call_bytes=2048)
    try:
        gzipped = {**AUTH, "Content-Encoding": "gzip"}
        status, body, _ = await post(client, "/v1/track", gzip.compress(orjson.dumps(track())), headers=gzipped)
        assert status == 200, body
        status, body, _ = await post(client, "/v1/track", track(properties={"product_id": "p", "pad": "x" * 4000}))
        assert (status, body["code"]) == (400, "payload_too_large")
        status, body, _ = await post(client, "/v1/track", b"{nope")
        assert (status, body["code"]) == (400, "invalid_json")
        status, body, _ = await post(client, "/v1/track", b"{}", headers={**AUTH, "Content-Encoding": "br"})
        assert (status, body["code"]) == (400, "unsupported_encoding")
        assert len(delivery.records) == 1
    finally:
        await client.close()


async def test_no_200_while_the_broker_does_not_acknowledge(delivery):
    client = await client_for(delivery, collector_retry_after_s=7)
    try:
        delivery.fail = True
        status, body, headers = await post(client, "/v1/track", track())
        assert (status, body["code"], headers["Retry-After"]) == (503, "unavailable", "7")
        delivery.fail, delivery.available = False, False
        status, _, headers = await post(client, "/v1/batch", {"batch": [track(type="track")]})
        assert (status, headers["Retry-After"]) == (503, "7")
        response = await client.get("/readyz")
        assert response.status == 503
        assert delivery.records == []
    finally:
        await client.close()


async def test_requests_beyond_the_in_flight_limit_are_answered_429(delivery):
    client = await client_for(delivery, collector_max_in_flight_requests=1)
    try:
        delivery.gate = asyncio.Event()
        first = asyncio.create_task(post(client, "/v1/track", track()))
        for _ in range(500):  # until the first request holds the only slot (bounded)
            if delivery.waiting:
                break
            await asyncio.sleep(0.01)
        assert delivery.waiting == 1
        status, body, headers = await post(client, "/v1/track", track(messageId="second"))
        assert (status, body["code"], "Retry-After" in headers) == (429, "too_many_requests", True)
        delivery.gate.set()
        assert (await first)[0] == 200
        assert len(delivery.records) == 1
    finally:
        await client.close()


async def test_a_half_sent_body_is_timed_out(delivery):
    client = await client_for(delivery, collector_read_timeout_s=0.2)
    try:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
            + b"Authorization: "
            + AUTH["Authorization"].encode()
            + b"\r\n\r\n"
            + b'{"userId": "u1", '
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=30)
        writer.close()
        assert status_line.split()[1] == b"408"
        assert delivery.records == []
    finally:
        await client.close()


async def test_cors_for_browser_sdks(delivery):
    client = await client_for(delivery)
    try:
        response = await client.options("/v1/t", headers={"Origin": "https://shop.example"})
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        status, _, headers = await post(client, "/v1/t", track(), headers={**AUTH, "Origin": "https://shop.example"})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    finally:
        await client.close()
    restricted = await client_for(delivery, collector_cors_origins="https://a.example")
    try:
        allowed = await restricted.options("/v1/batch", headers={"Origin": "https://a.example"})
        other = await restricted.options("/v1/batch", headers={"Origin": "https://evil.example"})
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://a.example"
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        await restricted.close()


async def test_metrics_count_requests_and_events(delivery):
    client = await client_for(delivery)
    try:
        await post(client, "/v1/batch", {"batch": [track(type="track"), track(type="track", properties={})]})
        text = await (await client.get("/metrics")).text()
        assert 'streamcdp_collector_requests_total{path="/v1/batch",status="200"}' in text
        assert 'streamcdp_collector_events_accepted_total{family="clickstream"}' in text
        assert 'streamcdp_collector_events_rejected_total{reason="missing_field"}' in text
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()
