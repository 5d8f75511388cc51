"""``streamcdp collect``: a stateless HTTP collector speaking Segment's Tracking API, writing to Kafka.

Trackers that send to Segment (analytics.js, analytics-python, analytics-node, the mobile SDKs) send here
unchanged once their host is this collector's: ``POST /v1/{track,identify,page,screen,alias,group,batch}``
(and analytics.js's ``/v1/t``-style paths), authenticated by a write key (``STREAMCDP_WRITE_KEYS``).
The protocol itself (paths, keys, limits, clock-skew correction) is ``streams.collector_protocol``.

Nothing is lost: every event is checked with the worker's contract code (``streams.produce.route_line``
with ``validate``, i.e. ``schemas.validation.decode_event``), keyed by its routing id and placed with the
murmur2 partitioner the worker applies in place (``streams.partitioning``), and produced with ``acks=all``
and idempotence. The answer is 200 only once the broker acknowledged every event of the request; an invalid
single call is answered 400 with the contract's reason; an invalid event inside a batch is dead-lettered
(``schemas.deadletter.DeadLetter``, as the worker does) and the others are stored. While the broker does not
acknowledge, the answer is 503 with ``Retry-After``, so the SDK keeps the events and sends them again (a
repeat the broker did store after all is dropped by the profile's messageId dedup).

Memory stays bounded under a flood: at most ``collector_max_in_flight_requests`` requests and
``collector_max_in_flight_bytes`` bytes are handled at once, the rest is answered 429 with ``Retry-After``;
a body must arrive within ``collector_read_timeout_s`` (else 408).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import time
from typing import Any, NamedTuple

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.deadletter import clipped_dead_letter
from schemas.errors import InvalidEvent, StreamcdpError
from schemas.events import FAMILIES, OTHER
from schemas.topics import INBOUND_FAMILIES, TopicNames
from schemas.validation import decode_payload
from streams import collector_metrics as metrics
from streams.collector_protocol import (
    BATCH_PATHS,
    CALL_PATHS,
    Oversized,
    Prepared,
    RequestRefused,
    WriteKeys,
    authenticate,
    basic_auth_user,
    decompress,
    error_body,
    parse_body,
    parse_write_keys,
    read_calls,
)
from streams.partitioning import PartitionOwners
from streams.produce import create_topics, inbound_topic
from streams.settings import Settings
from streams.stage_config import contract_limits
from streams.topics import topic_names

log = logging.getLogger(__name__)

# What the collector adds to a message (receivedAt, originalTimestamp, sentAt, context.source, messageId)
# does not count against the per-call limit the client had to respect.
ADDED_FIELDS_BYTES = 1024

# The collector decompresses bodies itself (``decompress``), so that the limits apply to what a body
# inflates to and a gzip bomb never inflates past them.
RUNNER_OPTIONS: dict[str, Any] = {"access_log": None, "auto_decompress": False}

# Allocations between two young collections of the cyclic garbage collector (CPython's default: 700).
GC_FIRST_THRESHOLD = 20_000


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json", headers=headers)


class Record(NamedTuple):  # a tuple: one is made per event
    topic: str
    key: bytes | None
    value: bytes


class BrokerUnavailable(StreamcdpError):
    """The broker did not acknowledge a request's events in time (or is known to be down)."""


class BatchShipper:
    """One batch per partition shared by all concurrent requests, shipped by one task.

    ``add`` appends a request's records to their partitions' open batches and returns the futures of those
    batches' acknowledgements; the shipping task sends every open batch with ``send_batch`` as soon as it is woken,
    and while it waits for the broker the next requests' records gather in new batches. A record costs an
    append instead of an ``AIOKafkaProducer.send`` each (several times cheaper), and the producer's own
    accumulator sees one batch per partition at a time.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._open: dict[tuple[str, int], tuple[Any, asyncio.Future]] = {}
        self._full: list[tuple[tuple[str, int], Any, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._ship_forever(), name="collector-shipper")

    def add(self, placed: dict[tuple[str, int], list[Record]]) -> set[asyncio.Future]:
        """Append each partition's records to its open batch; the acknowledgements of the batches used."""
        acknowledgements: set[asyncio.Future] = set()
        for slot, records in placed.items():
            batch, done = self._open.get(slot) or self._open_batch(slot)
            append = batch.append
            for _, key, value in records:
                if append(key=key, value=value, timestamp=None) is None:  # full: the next batch takes it
                    self._full.append((slot, batch, done))
                    acknowledgements.add(done)
                    batch, done = self._open_batch(slot)
                    append = batch.append
                    append(key=key, value=value, timestamp=None)
            acknowledgements.add(done)
        self._wake.set()
        return acknowledgements

    def _open_batch(self, slot: tuple[str, int]) -> tuple[Any, asyncio.Future]:
        entry = self._open[slot] = (self.producer.create_batch(), _new_acknowledgement())
        return entry

    async def _ship_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._ship()

    async def _ship(self) -> None:
        ready = [*self._full, *((slot, batch, done) for slot, (batch, done) in self._open.items())]
        self._full, self._open = [], {}
        for (topic, partition), batch, done in ready:
            try:
                delivery = await self.producer.send_batch(batch, topic, partition=partition)
            except KafkaError as exc:
                done.set_exception(exc)
                continue
            delivery.add_done_callback(lambda result, done=done: _settle(done, result))

    async def stop(self) -> None:
        """Ship what is open, then stop the task (the producer's ``stop`` waits for the acknowledgements)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._ship()


def _new_acknowledgement() -> asyncio.Future:
    done = asyncio.get_running_loop().create_future()
    # A request that gave up waiting (timeout) leaves the failure unread: mark it read, it was answered 503.
    done.add_done_callback(lambda future: future.cancelled() or future.exception())
    return done


def _settle(done: asyncio.Future, result: asyncio.Future) -> None:
    if done.done():
        return
    error = KafkaError("delivery cancelled") if result.cancelled() else result.exception()
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(None)


class KafkaDelivery:
    """The collector's producer: ``acks=all``, idempotent, partitions chosen by ``PartitionOwners``; it
    connects in the background, so the collector serves (503) while the broker is not there yet."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.available = False
        self.shipper: BatchShipper | None = None
        self._owners: dict[str, PartitionOwners] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="collector-broker-watch")

    async def _connect(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.broker_bootstrap,
            client_id="streamcdp-collector",
            acks="all",
            enable_idempotence=True,
            # No linger: ``BatchShipper`` already gathers the records that come in while a send is under
            # way, and a lingering batch only costs the producer's send loop a timer and a wake-up more.
            linger_ms=0,
            max_batch_size=256 * 1024,
            request_timeout_ms=int(self.settings.collector_produce_timeout_s * 1000),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer
        self.shipper = BatchShipper(producer)

    async def _watch(self) -> None:
        """Connect, then keep ``available`` true while the broker answers metadata requests."""
        interval = float(self.settings.collector_retry_after_s)
        while True:
            try:
                async with asyncio.timeout(self.settings.collector_produce_timeout_s):
                    if self.producer is None:
                        await self._connect()
                    else:
                        await self.producer.client.fetch_all_metadata()
                self._set_available(True)
            except (KafkaError, OSError, TimeoutError) as exc:
                if self.available:
                    log.warning("broker unreachable: %s", exc)
                self._set_available(False)
            await asyncio.sleep(interval if self.available else min(interval, 1.0))

    def _set_available(self, available: bool) -> None:
        self.available = available
        metrics.broker_available.set(1 if available else 0)

    async def _owners_of(self, topic: str, producer: AIOKafkaProducer) -> PartitionOwners:
        owners = self._owners.get(topic)
        if owners is None:
            partitions = await producer.partitions_for(topic)
            owners = self._owners[topic] = PartitionOwners(len(partitions))
        return owners

    async def deliver(self, records: list[Record]) -> None:
        """Send every record and wait until the broker acknowledged all; ``BrokerUnavailable`` otherwise."""
        producer, shipper = self.producer, self.shipper
        if producer is None or shipper is None or not self.available:
            message = "the broker is unreachable"
            raise BrokerUnavailable(message)
        try:
            async with asyncio.timeout(self.settings.collector_produce_timeout_s):
                owners_of = self._owners
                placed: dict[tuple[str, int], list[Record]] = {}
                for record in records:
                    topic, key = record[0], record[1]
                    owners = owners_of.get(topic) or await self._owners_of(topic, producer)
                    slot = (topic, owners(key) if key is not None else 0)  # keyless: dead letters
                    same_partition = placed.get(slot)
                    if same_partition is None:
                        placed[slot] = [record]
                    else:
                        same_partition.append(record)
                await asyncio.gather(*shipper.add(placed))
        except (KafkaError, TimeoutError) as exc:
            self._set_available(False)
            message = f"the broker did not acknowledge: {exc!r}"
            raise BrokerUnavailable(message) from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.shipper is not None:
            await self.shipper.stop()
        if self.producer is not None:
            await self.producer.stop()


class InFlight:
    """Back-pressure: requests and bytes being handled now, each with a ceiling."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def admit(self, size: int) -> bool:
        if self.requests >= self.max_requests or self.bytes + size > self.max_bytes:
            return False
        self.requests += 1
        self.bytes += size
        metrics.in_flight_requests.set(self.requests)
        return True

    def release(self, size: int) -> None:
        self.requests -= 1
        self.bytes -= size
        metrics.in_flight_requests.set(self.requests)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The raw request body, at most ``limit`` bytes, within ``timeout_s`` (408 / 400 otherwise)."""
    if request.content_length is not None and request.content_length > limit:
        message = f"the body is larger than {limit} bytes ({request.content_length} bytes)"
        raise RequestRefused(400, "payload_too_large", message)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await request.content.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    message = f"the body is larger than {limit} bytes"
                    raise RequestRefused(400, "payload_too_large", message)
                chunks.append(chunk)
    except TimeoutError:
        message = f"the body did not arrive within {timeout_s:g} s"
        raise RequestRefused(408, "request_timeout", message) from None
    return b"".join(chunks)


class Collector:
    """The HTTP views: the tracking API, health, readiness and metrics."""

    def __init__(self, settings: Settings, keys: WriteKeys, delivery: KafkaDelivery) -> None:
        self.settings = settings
        self.keys = keys
        self.delivery = delivery
        self.topics: TopicNames = topic_names(settings)
        self.limits = contract_limits(settings)
        family_of_topic = {self.topics.inbound(family): family for family in INBOUND_FAMILIES}
        # event family → (its inbound topic, the family its acceptance is counted under: the topic's)
        self.placement: dict[str, tuple[str, str]] = {}
        for family in (*FAMILIES, OTHER):
            topic = inbound_topic(self.topics, family)
            self.placement[family] = (topic, family_of_topic.get(topic, OTHER))
        self.in_flight = InFlight(settings.collector_max_in_flight_requests, settings.collector_max_in_flight_bytes)
        origins = [origin.strip() for origin in settings.collector_cors_origins.split(",") if origin.strip()]
        self.cors_any = "*" in origins
        self.cors_origins = frozenset(origins)

    def application(self) -> web.Application:
        application = web.Application(middlewares=[self.cors])
        paths = [*CALL_PATHS, *BATCH_PATHS]
        application.add_routes(
            [
                *(web.post(path, self.track_api) for path in paths),
                *(web.options(path, self.preflight) for path in paths),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.prometheus_metrics),
            ]
        )
        return application

    # --- CORS -------------------------------------------------------------------------------------

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        if self.cors_any:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in self.cors_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    @web.middleware
    async def cors(self, request: web.Request, handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(self._cors_headers(request))
        return response

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self._cors_headers(request)
        if headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
                    "Access-Control-Max-Age": "86400",
                }
            )
        return web.Response(status=204, headers=headers)

    # --- the tracking API -------------------------------------------------------------------------

    async def track_api(self, request: web.Request) -> web.Response:
        path = request.path
        response = await self._answer(request, path)
        metrics.requests.labels(path, str(response.status)).inc()
        return response

    async def _answer(self, request: web.Request, path: str) -> web.Response:
        settings = self.settings
        call_type = CALL_PATHS.get(path)
        limit = settings.collector_max_call_bytes if call_type is not None else settings.collector_max_batch_bytes
        reserved = min(request.content_length or limit, limit)
        retry_after = {"Retry-After": str(settings.collector_retry_after_s)}
        if not self.in_flight.admit(reserved):
            return _json(error_body("too_many_requests", "the collector is busy, retry later"), 429, retry_after)
        try:
            header = request.headers.get("Authorization")
            if basic_auth_user(header) is not None:
                authenticate(self.keys, header)  # a wrong key is refused before its body is read
            raw = await read_body(request, limit, settings.collector_read_timeout_s)
            body = parse_body(decompress(raw, request.headers.get("Content-Encoding"), limit))
            key = authenticate(self.keys, header, body.get("writeKey"))
            received_at = time.time()
            messages = read_calls(
                body,
                call_type=call_type,
                received_at=received_at,
                source=self.keys.source_of(key),
                max_call_bytes=settings.collector_max_call_bytes + ADDED_FIELDS_BYTES,
            )
            records, accepted, rejected = self._route(messages, path, received_at, single=call_type is not None)
            if not self.delivery.available:
                return _json(error_body("unavailable", "the broker is unreachable, retry later"), 503, retry_after)
            started = time.perf_counter()
            await self.delivery.deliver(records)
            metrics.produce_seconds.observe(time.perf_counter() - started)
        except RequestRefused as refused:
            return _json(error_body(refused.code, refused.message), refused.status)
        except BrokerUnavailable as exc:
            log.warning("answering 503: %s", exc)
            return _json(error_body("unavailable", "the broker did not acknowledge, retry later"), 503, retry_after)
        finally:
            self.in_flight.release(reserved)
        for family, count in accepted.items():
            metrics.events_accepted.labels(family).inc(count)
        for reason, count in rejected.items():
            metrics.events_rejected.labels(reason).inc(count)
        return _json({"success": True})

    def _route(
        self, messages: list[Prepared | Oversized], path: str, received_at: float, *, single: bool
    ) -> tuple[list[Record], dict[str, int], dict[str, int]]:
        """Records to produce (events and dead letters), accepted events per family, rejected per reason.
        A single call that breaks the contract is refused (400) instead.

        Each event is checked by ``decode_payload`` and placed as ``streams.produce.route_payload`` places it
        (its family's inbound topic, keyed by its routing id), without that function's per-event wrapper."""
        records: list[Record] = []
        accepted: dict[str, int] = {}
        rejected: dict[str, int] = {}
        placement, limits = self.placement, self.limits
        for message in messages:
            raw = message.raw
            if isinstance(message, Oversized):
                reason, detail = "oversized", f"{len(raw)} bytes > {message.limit}"
            else:
                try:
                    event = decode_payload(
                        message.message, raw, now=received_at, limits=limits, timestamp_s=message.timestamp_s
                    )
                except InvalidEvent as exc:
                    reason, detail = exc.reason, exc.detail
                else:
                    topic, family = placement[event.family]
                    records.append(Record(topic, event.routing_id.encode(), raw))
                    accepted[family] = accepted.get(family, 0) + 1
                    continue
            if single:
                metrics.events_rejected.labels(reason).inc()
                message_text = f"{reason}: {detail}"
                raise RequestRefused(400, reason, message_text)
            rejected[reason] = rejected.get(reason, 0) + 1
            dead = clipped_dead_letter(
                reason=reason,
                detail=detail,
                source_topic=f"http:{path}",  # it came over HTTP: no topic, partition or offset of its own
                source_partition=-1,
                source_offset=-1,
                failed_at=received_at,
                original=raw,
            )
            records.append(Record(self.topics.deadletter, None, msgspec.json.encode(dead)))
        return records, accepted, rejected

    # --- operations -------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = self.delivery.available
        return _json({"ready": ready, "broker": "available" if ready else "unreachable"}, 200 if ready else 503)

    async def prometheus_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def tune_garbage_collection() -> None:
    """Keep the cyclic garbage collector from costing a collector a tenth of its CPU.

    A request allocates a few thousand containers (the parsed body, the prepared messages, the checked
    events) that reference counting frees; with CPython's defaults they still trigger a young collection
    every 700 allocations, which walks the in-flight requests' objects and promotes them, and the full
    collections that follow walk every object of the process (measured under the benchmark: 13 % of the
    collector's CPU). The objects that exist once the service is set up live as long as the process:
    frozen, no collection walks them again; and young collections run every ``GC_FIRST_THRESHOLD``
    allocations instead of 700 (the garbage of a reference cycle waits a little longer, nothing else)."""
    gc.freeze()
    gc.set_threshold(GC_FIRST_THRESHOLD, *gc.get_threshold()[1:])


async def serve_collector(settings: Settings, keys: WriteKeys, stop: asyncio.Event) -> None:
    """Serve on ``STREAMCDP_WEB_HOST:STREAMCDP_COLLECTOR_PORT`` until ``stop`` is set; then answer what is in
    flight and flush the producer."""
    delivery = KafkaDelivery(settings)
    await delivery.start()
    collector = Collector(settings, keys, delivery)
    runner = web.AppRunner(collector.application(), **RUNNER_OPTIONS)
    await runner.setup()
    tune_garbage_collection()
    try:
        await web.TCPSite(runner, settings.web_host, settings.collector_port).start()
        log.info("collector listening on http://%s:%s", settings.web_host, settings.collector_port)
        await stop.wait()
    finally:
        await runner.cleanup()
        await delivery.stop()
        log.info("collector stopped")


def _cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    keys = parse_write_keys(settings.write_keys)
    try:
        create_topics(settings)
    except StreamcdpError as exc:
        log.warning("%s; serving anyway (503 until the broker answers)", exc)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_collector(settings, keys, stop)

    asyncio.run(main())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="run the Segment-compatible HTTP collector",
        description="Accept Segment HTTP Tracking API calls (/v1/track, /v1/batch, ...) authenticated by a write key "
        "(STREAMCDP_WRITE_KEYS) on STREAMCDP_WEB_HOST:STREAMCDP_COLLECTOR_PORT and store them on the inbound topics.",
    )
    parser.set_defaults(handler=_cmd_collect)
