"""``streamcdp produce``: send JSONL Segment Spec events to the inbound topics, one line per message.

Each line goes to ``events.<family>`` (family from ``schemas.validation.family_of``; track names we do not
model go to clickstream), keyed by its routing id (userId, else anonymousId) as UTF-8, its bytes unchanged.
``--validate`` runs the full contract check locally and does not send rejected lines; ``--raw`` sends every
line as it is, even broken ones (to exercise the dead-letter path); ``--topic`` overrides the routing.

The pure part is ``route_line`` (a line → where it goes, or why not); ``produce_lines`` is the loop
(numbering, pacing, progress, summary) around any ``send`` callable, so ``streamcdp generate --produce``
reuses it, and tests drive it without Kafka.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from schemas.errors import InvalidEvent, StreamcdpError
from schemas.events import OTHER
from schemas.topics import TopicNames
from schemas.validation import ContractLimits, decode_event, decode_payload, family_of, parse_timestamp
from streams.settings import Settings
from streams.stage_config import contract_limits
from streams.topics import topic_names

MAX_REPORTED_REJECTIONS = 50
DEFAULT_LIMITS = ContractLimits()  # the contract's own limits, for callers without settings


@dataclass(frozen=True)
class Routed:
    topic: str
    key: bytes | None
    value: bytes
    # The Kafka record timestamp: the event's own time (epoch ms), which orders a partition's topics for
    # the worker (``streams.alignment``); None when the line has no readable timestamp (the broker's time).
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


@dataclass
class ProduceSummary:
    sent: int = 0
    rejected: int = 0
    failed: int = 0  # sends the broker did not acknowledge
    seconds: float = 0.0
    rejections: list[tuple[str, int, str, str]] = field(default_factory=list)  # (source, line, reason, detail)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"sent {self.sent}, rejected {self.rejected}, failed {self.failed}, "
            f"{self.seconds:.2f} s, {self.rate:.0f} events/s"
        )


def _routing_key(payload: dict) -> bytes | None:
    for name in ("userId", "anonymousId"):
        value = payload.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            return str(value).encode()
    return None


def _event_time_ms(payload: dict) -> int | None:
    """The payload's ``timestamp`` in epoch ms; None if it is missing or unreadable (the worker rejects it)."""
    try:
        timestamp_ms = round(parse_timestamp(payload["timestamp"]) * 1000)
    except (KeyError, InvalidEvent, ValueError, OverflowError):
        return None
    return timestamp_ms if timestamp_ms >= 0 else None


def route_line(
    line: bytes,
    *,
    topics: TopicNames,
    validate: bool = False,
    raw: bool = False,
    topic: str | None = None,
    now: float = 0.0,
    limits: ContractLimits = DEFAULT_LIMITS,
) -> Routed | Rejected:
    """Where one JSONL line goes (topic, key, its bytes) or why it is not sent; ``now`` is for ``validate``."""
    value = line.rstrip(b"\r\n")
    if validate:
        try:
            event = decode_event(value, now=now, limits=limits)
        except InvalidEvent as exc:
            return Rejected(exc.reason, exc.detail)
        family = event.family
        key: bytes | None = event.routing_id.encode()
        timestamp_ms: int | None = round(event.timestamp * 1000)
    else:
        try:
            payload: Any = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            payload = None
            if not raw:
                return Rejected("not_json", str(exc)[:120])
        if isinstance(payload, dict):
            family = family_of(str(payload.get("type")), payload.get("event"))
            key = _routing_key(payload)
            timestamp_ms = _event_time_ms(payload)
        else:
            if not raw:
                return Rejected("not_an_object", f"top level is {type(payload).__name__}")
            family, key, timestamp_ms = OTHER, None, None
        if key is None and not raw:
            return Rejected("missing_identity", "neither userId nor anonymousId")
    if topic is None:
        topic = inbound_topic(topics, family)
    return Routed(topic=topic, key=key, value=value, timestamp_ms=timestamp_ms)


def inbound_topic(topics: TopicNames, family: str) -> str:
    """The inbound topic of an event family (families we do not model go to clickstream)."""
    return topics.inbound("clickstream" if family == OTHER else family)


def route_payload(
    payload: Any, value: bytes, *, topics: TopicNames, now: float, limits: ContractLimits = DEFAULT_LIMITS
) -> Routed | Rejected:
    """``route_line(value, validate=True)`` for a caller that already holds ``value`` parsed as ``payload``
    (the same contract check, ``decode_payload``, without parsing the bytes a second time)."""
    try:
        event = decode_payload(payload, value, now=now, limits=limits)
    except InvalidEvent as exc:
        return Rejected(exc.reason, exc.detail)
    return Routed(
        topic=inbound_topic(topics, event.family),
        key=event.routing_id.encode(),
        value=value,
        timestamp_ms=round(event.timestamp * 1000),
    )


def pace_delay(sent: int, elapsed: float, rate: float) -> float:
    """Seconds to wait before the next send so that ``sent`` messages take ``sent / rate`` seconds (0: no limit)."""
    if rate <= 0:
        return 0.0
    return max(0.0, sent / rate - elapsed)


class Progress:
    """A live counter on stderr when it is a terminal, else a line every ``every_s`` seconds."""

    def __init__(self, stream: IO[str], every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self.clock = clock
        self.started = clock()
        self.last = self.started

    def update(self, summary: ProduceSummary) -> None:
        now = self.clock()
        if now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        text = f"sent {summary.sent}, rejected {summary.rejected}, {summary.sent / max(elapsed, 1e-9):.0f} events/s"
        self.stream.write(f"\r{text}   " if self.tty else f"{text}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def produce_lines(
    numbered_lines: Iterable[tuple[str, int, bytes]],
    route: Callable[[bytes], Routed | Rejected],
    send: Callable[[Routed], None],
    *,
    rate: float = 0.0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProduceSummary:
    """Route and send every non-blank line; rejected lines are counted and remembered, not sent."""
    summary = ProduceSummary()
    started = clock()
    for source, number, line in numbered_lines:
        if not line.strip():
            continue
        routed = route(line)
        if isinstance(routed, Rejected):
            summary.rejected += 1
            if len(summary.rejections) < MAX_REPORTED_REJECTIONS:
                summary.rejections.append((source, number, routed.reason, routed.detail))
            continue
        if rate > 0:
            delay = pace_delay(summary.sent, clock() - started, rate)
            if delay > 0.001:
                sleep(delay)
        send(routed)
        summary.sent += 1
        if progress is not None and summary.sent % 1000 == 0:
            progress.update(summary)
    summary.seconds = clock() - started
    return summary


def read_lines(paths: list[str], stdin: IO[bytes]) -> Iterator[tuple[str, int, bytes]]:
    """(source, line number, bytes) of every line of the files, or of stdin for none or ``-``."""
    for path in paths or ["-"]:
        if path == "-":
            yield from (("<stdin>", number, line) for number, line in enumerate(stdin, 1))
            continue
        with Path(path).open("rb") as handle:
            yield from ((path, number, line) for number, line in enumerate(handle, 1))


class KafkaSender:
    """Fast sends with aiokafka: records are packed into per-partition batches here (aiokafka's default
    murmur2 partitioner, so a key always lands on the same partition) and shipped by an event loop on
    a background thread — several times faster than one ``send`` call per record. A batch is shipped
    when full or when ``linger_s`` has passed, so paced (``--rate``) sends still go out promptly."""

    def __init__(self, settings: Settings, linger_s: float = 0.05) -> None:
        import asyncio

        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError
        from aiokafka.partitioner import DefaultPartitioner

        compression = "lz4" if importlib.util.find_spec("lz4") else None  # optional: only if the codec is installed
        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="streamcdp-produce", daemon=True)
        self.thread.start()

        async def make_producer() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.broker_bootstrap,
                client_id="streamcdp-produce",
                acks=1,
                enable_idempotence=False,
                max_batch_size=512 * 1024,
                max_request_size=4 * 1024 * 1024,
                compression_type=compression,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            return producer

        try:
            self.producer = self._call(make_producer())
        except KafkaError:
            self._stop_loop()
            message = f"no Kafka broker reachable at {settings.broker_bootstrap}"
            raise StreamcdpError(message) from None
        self.partitioner = DefaultPartitioner()
        self.linger_s = linger_s
        self.partitions: dict[str, list[int]] = {}
        self.batches: dict[tuple[str, int], Any] = {}
        self.in_flight: list[tuple[Any, int]] = []  # (delivery future, records)
        self.last_ship = time.monotonic()
        self.failed = 0

    def _call(self, coroutine: Any) -> Any:
        return self._asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _partitions_of(self, topic: str) -> list[int]:
        if topic not in self.partitions:
            self.partitions[topic] = sorted(self._call(self.producer.partitions_for(topic)))
        return self.partitions[topic]

    def _ship(self, topic: str, partition: int, batch: Any) -> None:
        future = self._call(self.producer.send_batch(batch, topic, partition=partition))
        self.in_flight.append((future, batch.record_count()))

    def _ship_open(self) -> None:
        for (topic, partition), batch in self.batches.items():
            self._ship(topic, partition, batch)
        self.batches = {}
        self.last_ship = time.monotonic()
        self._collect(done_only=True)

    def _collect(self, done_only: bool) -> None:
        """Count failed records of settled deliveries (all of them, waiting, unless ``done_only``)."""
        settled = [(future, records) for future, records in self.in_flight if not done_only or future.done()]
        self.in_flight = [item for item in self.in_flight if item not in settled] if done_only else []
        if not done_only:
            asyncio = self._asyncio

            async def settle() -> None:
                await asyncio.gather(*(future for future, _ in settled), return_exceptions=True)

            self._call(settle())
        self.failed += sum(records for future, records in settled if future.cancelled() or future.exception())

    def send(self, routed: Routed) -> None:
        partitions = self._partitions_of(routed.topic)
        partition = self.partitioner(routed.key, partitions, partitions)
        slot = (routed.topic, partition)
        batch = self.batches.get(slot)
        if batch is None:
            batch = self.batches[slot] = self.producer.create_batch()
        if batch.append(key=routed.key, value=routed.value, timestamp=routed.timestamp_ms) is None:
            self._ship(routed.topic, partition, batch)
            batch = self.batches[slot] = self.producer.create_batch()
            batch.append(key=routed.key, value=routed.value, timestamp=routed.timestamp_ms)
        if time.monotonic() - self.last_ship > self.linger_s:
            self._ship_open()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    def close(self) -> int:
        """Ship what is left, wait for every acknowledgement, stop; return how many records failed."""
        try:
            self._ship_open()
            self._collect(done_only=False)
        finally:
            self._call(self.producer.stop())
            self._stop_loop()
        return self.failed


def report(summary: ProduceSummary, stream: IO[str]) -> None:
    """Rejections with their line numbers, then the one summary line."""
    for source, number, reason, detail in summary.rejections:
        stream.write(f"{source}:{number}: rejected: {reason}: {detail}\n")
    if summary.rejected > len(summary.rejections):
        stream.write(f"... and {summary.rejected - len(summary.rejections)} more rejected lines\n")
    stream.write(summary.line() + "\n")
    stream.flush()


def create_topics(settings: Settings) -> None:
    """The project's topics, created if missing; a clear error when no broker answers."""
    from kafka.errors import KafkaError

    from streams.topics import ensure_topics

    try:
        ensure_topics(settings)
    except KafkaError:
        message = f"no Kafka broker reachable at {settings.broker_bootstrap}"
        raise StreamcdpError(message) from None


def _cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    topics = topic_names(settings)
    limits = contract_limits(settings)

    def route(line: bytes) -> Routed | Rejected:
        return route_line(
            line, topics=topics, validate=args.validate, raw=args.raw, topic=args.topic, now=time.time(), limits=limits
        )

    if not args.no_create_topics:
        create_topics(settings)
    sender = KafkaSender(settings)
    progress = Progress(sys.stderr)
    try:
        summary = produce_lines(
            read_lines(args.files, sys.stdin.buffer), route, sender.send, rate=args.rate, progress=progress
        )
    finally:
        failed = sender.close()
        progress.done()
    summary.failed = failed
    report(summary, sys.stderr)
    return 1 if summary.rejected or summary.failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "produce",
        help="send JSONL events to the inbound topics",
        description="Send JSONL Segment Spec events (files or stdin) to events.<family>, keyed by userId or "
        "anonymousId. Exit status 1 when a line was rejected or not acknowledged.",
    )
    parser.add_argument("files", nargs="*", help="JSONL files (none or '-': stdin)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--validate", action="store_true", help="check each line against the contract; don't send rejects"
    )
    mode.add_argument("--raw", action="store_true", help="send every line as-is, even unparseable ones")
    parser.add_argument("--topic", default=None, help="send everything to this topic instead of events.<family>")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    parser.add_argument("--no-create-topics", action="store_true", help="don't create missing project topics first")
    parser.set_defaults(handler=_cmd_produce)
