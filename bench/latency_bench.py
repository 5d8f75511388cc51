"""End-to-end latency at half load (issue 15, item 4): from an event's append to Kafka to its consequence
on an output topic::

    .venv/bin/python bench/latency_bench.py [--backlog-events 100000] [--backlog-kind generated|live|live-stamped] \\
        [--live-seconds 60] [--load 0.5] [--out bench/results/latency.json]

Clock: the broker's. The inbound topics and the output topics (``segments.changes``, ``triggers.*``) of
the bench's deployment are set to ``message.timestamp.type=LogAppendTime``, so every record carries the
time the broker appended it; latency = output record's append time − input record's append time, both
read back from the topics afterwards (one clock, millisecond resolution). A second figure, "seen", is the
moment a ``read_committed`` consumer tailing the output topics during the run received the record (this
host's clock, the broker runs on the same host) − the input's append time: with exactly-once outputs a
record becomes visible only when its transaction commits, so "seen" includes the commit interval.

Steps: one worker (``streamcdp worker --processes 1``, default settings and ``config/triggers.yaml``)
drains a backlog from the project's generator (``bench/pipeline_bench.py``'s workload), which gives the
sustained rate; then ``--live-seconds`` of live traffic at ``--load`` × that rate (or ``--rate``). Live
traffic is new customers (``live-…`` ids), each sending, ``--gap`` seconds apart: ``identify`` (email),
``Consent Updated`` (email granted), then three pairs of ``Product Viewed`` / ``Product Added`` of one
product. Consequences measured:

- segment change: the customer's first ``segments.changes`` record (a new customer enters
  ``new_visitors``) − the append time of its first event;
- ``high_intent_offer``: the customer's trigger record (the purchase score crosses 0.6 after a few views
  and adds) − the append time of its latest event appended before the trigger. With events of one
  customer ``--gap`` apart, the cause is unambiguous while the latency is below the gap (the JSON counts
  latencies ≥ gap, which would be attributed to a later event: then raise ``--gap``).

Every live event is a new customer's: they cost the worker more than the backlog's (mostly known
customers'; ``state_bench.py`` drains such traffic at less than half the backlog's rate), so ``--load``
× the backlog's rate can exceed what the worker sustains for it, and the figures then measure a queue.
``caught_up_s`` (seconds after the last send until the group has committed everything) shows it; then
use ``--backlog-kind live``: the backlog is new customers shaped like the live ones, so the sustained rate
(and ``--load`` × it) is that of the traffic measured. Loaded in a second into ``LogAppendTime`` topics, though, a
backlog customer's events are milliseconds apart in the runtime's event time (the Kafka timestamps), and one audience
refresh serves them all, where live every event refreshes: ``--backlog-kind live-stamped`` loads them with their own
times as Kafka timestamps, so the drain does the stage work of live traffic.

Per phase (backlog drain, live from the first send until caught up) the JSON gives the worker's CPU per event and
what its loop did: records per fetch, fetches and flushes per second, wake-ups and changelog records per event
(``backlog``, ``live.worker``), and the idle worker's CPU per second between the two (``idle``); ``--py-spy DIR``
profiles the worker in each phase.

Live customers carry a ``timezone`` trait where it is about 13:00 when the run starts (``daytime_zone``):
the quiet hours guard would otherwise hold every trigger of a run made at night UTC until the morning.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from fleet import Deployment, Fleet, FleetRun, add_run_arguments, bench_main, drain, make_deployment
from passthrough import steady_rate
from pipeline_bench import (
    GroupLag,
    Message,
    _route,
    build_workload,
    iso_now_ms,
    load_backlog,
)

from schemas.topics import TopicNames
from streams import kafka_local
from streams.http_probe import http_get

log = logging.getLogger("bench.latency")

LOG_APPEND_TIME = 1  # kafka-python's ConsumerRecord.timestamp_type for LogAppendTime
TRIGGER = "high_intent_offer"


def daytime_zone(now_s: float) -> str:
    """An IANA zone where it is about 13:00 at ``now_s``, the live customers' ``timezone`` trait: the quiet
    hours guard (default 21:00-08:00 in the customer's zone) would otherwise defer every trigger of a run
    made at night UTC to the morning, and the bench would measure the guard, not the pipeline."""
    offset = (13 - time.gmtime(now_s).tm_hour + 12) % 24 - 12  # hours east of UTC, -12..11
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-3 is UTC+3


def live_customer(index: int, timezone: str = "UTC", prefix: str = "live") -> list[tuple[str, dict]]:
    """The events of live customer ``index`` (without timestamps), in order; names for the JSON only.
    ``prefix`` names the ids (``live-…``: the customers whose latency is measured)."""
    user_id = f"{prefix}-{index:07d}"
    base = {"userId": user_id, "anonymousId": f"{prefix}-anon-{index:07d}"}
    product = {
        "product_id": f"sku-live-{index % 50}",
        "name": "Thing",
        "category": "dog-food",
        "price": 39.99,
        "currency": "EUR",
    }
    events = [
        (
            "identify",
            {
                **base,
                "type": "identify",
                "traits": {"email": f"{user_id}@example.com", "country": "DE", "timezone": timezone},
            },
        ),
        (
            "consent",
            {
                **base,
                "type": "track",
                "event": "Consent Updated",
                "properties": {"channel": "email", "granted": True},
            },
        ),
    ]
    for _pair in range(3):
        events.append(("view", {**base, "type": "track", "event": "Product Viewed", "properties": product}))
        events.append(
            ("add", {**base, "type": "track", "event": "Product Added", "properties": {**product, "quantity": 1}})
        )
    return [(name, {**payload, "messageId": f"{user_id}-{n}"}) for n, (name, payload) in enumerate(events)]


EVENTS_PER_LIVE_CUSTOMER = len(live_customer(0))


def live_shaped_backlog(topics: TopicNames, events: int, gap: float, timezone: str) -> list[Message]:
    """``--backlog-kind live``: about ``events`` events of new customers shaped like the live ones (ids
    ``backlog-…``), stamped an hour ago, ``gap`` s apart per customer: its drain rate is the sustained rate
    of the very traffic the live phase sends, so ``--load`` is a fraction of what the worker sustains for it.

    But the runtime's event time is the records' Kafka timestamps, and loaded into ``LogAppendTime`` topics in
    about a second, a customer's events are milliseconds apart there: ``audience_min_interval_s`` folds them into
    one refresh, where live every event refreshes (bench README, round 3 of the latency section). Hence
    ``live_stamped_backlog``."""
    return [message for _, message in _live_shaped(topics, events, gap, timezone)]


def live_stamped_backlog(topics: TopicNames, events: int, gap: float, timezone: str) -> list[tuple[int, Message]]:
    """``--backlog-kind live-stamped``: ``live_shaped_backlog``'s events with their own times as Kafka timestamps
    (epoch ms, loaded with ``CreateTime``), in time order: the runtime sees a customer's events ``gap`` apart, as
    live, and the drain rate is what the worker sustains for that traffic."""
    return sorted(_live_shaped(topics, events, gap, timezone), key=lambda stamped: stamped[0])


def _live_shaped(topics: TopicNames, events: int, gap: float, timezone: str) -> list[tuple[int, Message]]:
    began = time.time() - 3600.0
    messages = []
    for index in range(max(1, events // EVENTS_PER_LIVE_CUSTOMER)):
        for step, (_, payload) in enumerate(live_customer(index, timezone, prefix="backlog")):
            at = began + index * 0.01 + step * gap
            stamped = dict(payload, timestamp=iso_now_ms(at))
            messages.append((round(at * 1000), _route(topics, stamped, orjson.dumps(stamped))))
    return messages


async def load_stamped(bootstrap: str, stamped: list[tuple[int, Message]], partitions: int) -> None:
    """``pipeline_bench.load_backlog`` with each record's Kafka timestamp given (epoch ms): hand-built batches per
    partition, keys partitioned by murmur2 as every client does."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    partitioner, everything = DefaultPartitioner(), list(range(partitions))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    batches: dict[tuple[str, int], object] = {}
    deliveries = []
    try:
        for timestamp_ms, message in stamped:
            where = (message.topic, partitioner(message.key, everything, everything))
            batch = batches.get(where) or batches.setdefault(where, producer.create_batch())
            if batch.append(key=message.key, value=message.value, timestamp=timestamp_ms) is None:
                deliveries.append(await producer.send_batch(batch, where[0], partition=where[1]))
                batch = batches[where] = producer.create_batch()
                batch.append(key=message.key, value=message.value, timestamp=timestamp_ms)
        for (topic, partition), batch in batches.items():
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


def live_schedule(rate: float, seconds: float, gap: float, timezone: str = "UTC") -> list[tuple[float, dict]]:
    """(send offset in s, payload) for ``seconds`` of traffic at ``rate`` events/s, sorted by offset:
    a new customer starts every ``EVENTS_PER_LIVE_CUSTOMER / rate`` s; its events follow ``gap`` s apart."""
    starts_per_s = rate / EVENTS_PER_LIVE_CUSTOMER
    customers = max(1, int(starts_per_s * seconds))
    schedule = []
    for index in range(customers):
        start = index / starts_per_s
        for step, (_, payload) in enumerate(live_customer(index, timezone)):
            schedule.append((start + step * gap, payload))
    schedule.sort(key=lambda item: item[0])
    return schedule


async def send_schedule(bootstrap: str, topics: TopicNames, schedule: list[tuple[float, dict]]) -> dict:
    """Send each payload at its offset from now, with ``timestamp`` = the moment it is sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    began = time.monotonic()
    pending = []
    late = 0.0
    try:
        for offset, payload in schedule:
            wait = offset - (time.monotonic() - began)
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late = max(late, -wait)
            stamped = dict(payload, timestamp=iso_now_ms(time.time()))
            message = _route(topics, stamped, orjson.dumps(stamped))
            pending.append(await producer.send(message.topic, value=message.value, key=message.key))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    seconds = time.monotonic() - began
    return {"events": len(schedule), "seconds": seconds, "rate": len(schedule) / seconds, "max_send_delay_s": late}


def set_log_append_time(bootstrap: str, topic_names: list[str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-latency")
    try:
        admin.alter_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, configs={"message.timestamp.type": "LogAppendTime"})
                for name in topic_names
            ]
        )
    finally:
        admin.close()


def end_offsets(bootstrap: str, topic_names: list[str]) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    try:
        partitions = [TopicPartition(t, p) for t in topic_names for p in sorted(consumer.partitions_for_topic(t) or ())]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def read_range(bootstrap: str, starts: dict) -> list:
    """Records from ``starts`` (TopicPartition → offset) to the end (read_committed), with timestamps."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False, group_id=None
    )
    records = []
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        ends = consumer.end_offsets(list(starts))
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=10_000)
            for tp_records in batch.values():
                records.extend(tp_records)
            if all(consumer.position(tp) >= ends[tp] for tp in starts):
                break
    finally:
        consumer.close()
    return records


class OutputTail(threading.Thread):
    """A read_committed consumer on the output topics from ``starts``: when each record arrived (time.time())."""

    def __init__(self, bootstrap: str, starts: dict) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.starts = bootstrap, starts
        self.seen: dict[tuple[str, int, int], float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=10,
        )
        try:
            consumer.assign(list(self.starts))
            for tp, offset in self.starts.items():
                consumer.seek(tp, offset)
            while not self._stop_event.is_set():
                for tp_records in consumer.poll(timeout_ms=50).values():
                    arrived = time.time()
                    for record in tp_records:
                        self.seen[(record.topic, record.partition, record.offset)] = arrived
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def quantiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"count": len(ordered), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": ordered[-1]}


def latencies(inputs: list, outputs: list, seen: dict, gap_s: float) -> dict:
    """Match output records to the live inputs that caused them (see the module docstring)."""
    appended: dict[str, list[int]] = {}
    kinds = set()
    for record in inputs:
        if record.key and record.key.startswith(b"live-"):
            appended.setdefault(record.key.decode(), []).append(record.timestamp)
            kinds.add(record.timestamp_type)
    for stamps in appended.values():
        stamps.sort()
    segment_ms, segment_seen, trigger_ms, trigger_seen = [], [], [], []
    first_segment_done: set[str] = set()
    trigger_kinds: dict[str, int] = {}
    output_kinds = set()
    for record in sorted(outputs, key=lambda r: r.timestamp):
        output_kinds.add(record.timestamp_type)
        document = orjson.loads(record.value)
        customer = str(document.get("customer_id", ""))
        stamps = appended.get(customer)
        if not stamps:
            continue
        seen_at = seen.get((record.topic, record.partition, record.offset))
        if record.topic.endswith("segments.changes"):
            if document.get("kind") != "segment" or customer in first_segment_done:
                continue
            first_segment_done.add(customer)
            segment_ms.append(record.timestamp - stamps[0])
            if seen_at is not None:
                segment_seen.append(seen_at * 1000 - stamps[0])
        else:
            trigger_kinds[document.get("kind", "?")] = trigger_kinds.get(document.get("kind", "?"), 0) + 1
            if document.get("kind") != TRIGGER:
                continue
            cause = stamps[max(0, bisect.bisect_right(stamps, record.timestamp) - 1)]
            trigger_ms.append(record.timestamp - cause)
            if seen_at is not None:
                trigger_seen.append(seen_at * 1000 - cause)
    return {
        "input_timestamp_types": sorted(kinds),
        "output_timestamp_types": sorted(output_kinds),
        "live_customers": len(appended),
        "segment_change_append_to_append": quantiles(segment_ms),
        "segment_change_append_to_seen": quantiles(segment_seen),
        f"{TRIGGER}_append_to_append": quantiles(trigger_ms),
        f"{TRIGGER}_append_to_seen": quantiles(trigger_seen),
        f"{TRIGGER}_latencies_at_or_above_gap": sum(1 for v in trigger_ms if v >= gap_s * 1000),
        "trigger_records_by_kind": trigger_kinds,
    }


IDLE_SECONDS = 5.0  # between the backlog and the live phase: the worker's CPU per second without traffic

# The worker's counters compared between the backlog and the live phase (sample name, label or "").
PHASE_COUNTERS = {
    "streamcdp_events_ingested_total": None,
    "streamcdp_profile_commands_total": "kind",  # event, check (a wake-up: WakeUp), link, ...
    "streamcdp_fetches_total": "result",  # records, empty
    "streamcdp_fetched_records_total": None,
    "streamcdp_flush_seconds_count": None,  # flushes (with exactly-once, transactions)
    "streamcdp_flush_seconds_sum": None,  # the loop's time in them (it processes nothing meanwhile)
    "streamcdp_outputs_sent_total": None,
    "streamcdp_changelog_records_total": None,
    "streamcdp_gc_pause_seconds_count": "generation",  # the collector's pauses stop the loop
    "streamcdp_gc_pause_seconds_sum": "generation",
}
# Pauses at most this long, per generation (``..._bucket:<generation>``): the count above it is the long ones.
GC_PAUSE_LONG_S = "0.025"


def worker_counters(fleet: Fleet) -> dict[str, float]:
    """The ``PHASE_COUNTERS`` of every child, summed (``name`` or ``name:label``)."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for port in fleet.ports():
        status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout_s=5.0)
        if status != 200:
            continue
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "streamcdp_gc_pause_seconds_bucket" and sample.labels.get("le") == GC_PAUSE_LONG_S:
                    name = f"{sample.name}:{sample.labels['generation']}"
                    counts[name] = counts.get(name, 0.0) + sample.value
                if sample.name not in PHASE_COUNTERS:
                    continue
                label = PHASE_COUNTERS[sample.name]
                name = sample.name if label is None else f"{sample.name}:{sample.labels.get(label, '')}"
                counts[name] = counts.get(name, 0.0) + sample.value
    return counts


def phase_figures(cpu_s: float, seconds: float, before: dict[str, float], after: dict[str, float]) -> dict:
    """One phase's worker CPU per event and what the loop did per event and per second (counter deltas)."""
    delta = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    events = delta.get("streamcdp_events_ingested_total", 0.0)
    fetches = delta.get("streamcdp_fetches_total:records", 0.0)
    flushes = delta.get("streamcdp_flush_seconds_count", 0.0)

    def per_event(value: float) -> float | None:
        return value / events if events else None

    return {
        "seconds": seconds,
        "events": events,
        "worker_cpu_seconds": cpu_s,
        "worker_cpu_ms_per_event": None if not events else 1000 * cpu_s / events,
        "records_per_fetch": delta.get("streamcdp_fetched_records_total", 0.0) / fetches if fetches else None,
        "fetches_per_s": fetches / seconds if seconds else None,
        "empty_fetches_per_s": delta.get("streamcdp_fetches_total:empty", 0.0) / seconds if seconds else None,
        "flushes_per_s": flushes / seconds if seconds else None,
        "flushes_per_event": flushes / events if events else None,
        "events_per_flush": events / flushes if flushes else None,
        "flush_ms_per_flush": 1000 * delta.get("streamcdp_flush_seconds_sum", 0.0) / flushes if flushes else None,
        "flush_share_of_wall": delta.get("streamcdp_flush_seconds_sum", 0.0) / seconds if seconds else None,
        "gc_pauses": {
            generation: {
                "count": delta.get(f"streamcdp_gc_pause_seconds_count:{generation}", 0.0),
                "ms": 1000 * delta.get(f"streamcdp_gc_pause_seconds_sum:{generation}", 0.0),
                f"over_{GC_PAUSE_LONG_S}_s": delta.get(f"streamcdp_gc_pause_seconds_count:{generation}", 0.0)
                - delta.get(f"streamcdp_gc_pause_seconds_bucket:{generation}", 0.0),
            }
            for generation in ("0", "1", "2")
        },
        "wake_ups_per_event": per_event(delta.get("streamcdp_profile_commands_total:check", 0.0)),
        "commands_per_event": per_event(
            sum(v for k, v in delta.items() if k.startswith("streamcdp_profile_commands_total:"))
        ),
        "changelog_records_per_event": per_event(delta.get("streamcdp_changelog_records_total", 0.0)),
        "outputs_per_event": per_event(delta.get("streamcdp_outputs_sent_total", 0.0)),
        "counters": delta,
    }


@dataclass
class PySpy:
    """``py-spy record`` of one worker process (raw collapsed stacks, 200 Hz) for one phase; ``stop`` writes it.
    ``--nonblocking``: the worker is not paused for each sample (paused, it fell behind live traffic it keeps up
    with otherwise, and the profile was of a queue)."""

    pid: int
    out: Path
    proc: subprocess.Popen | None = None

    def start(self) -> PySpy:
        spy = str(Path(sys.executable).with_name("py-spy"))
        command = [
            spy,
            "record",
            "--pid",
            str(self.pid),
            "-r",
            "200",
            "-f",
            "raw",
            "--nonblocking",
            "-o",
            str(self.out),
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@dataclass
class Run(FleetRun):
    tail: OutputTail | None = None
    spies: list[PySpy] = field(default_factory=list)

    def spy(self, fleet: Fleet, directory: str | None, phase: str) -> PySpy | None:
        """With ``--py-spy DIR``: profile the fleet's (one) worker child for ``phase``, into DIR/pyspy-PHASE.raw."""
        if directory is None:
            return None
        Path(directory).mkdir(parents=True, exist_ok=True)
        spy = PySpy(fleet.children()[0], Path(directory) / f"pyspy-{phase}.raw").start()
        self.spies.append(spy)
        return spy

    def stop_extras(self) -> None:
        for spy in self.spies:
            spy.stop()
        if self.tail is not None:
            self.tail.stop()


def wait_caught_up(bootstrap: str, deployment: Deployment, timeout_s: float) -> float | None:
    """Seconds after the last send until the worker's group has committed its inputs to their end (None
    if not within ``timeout_s``): a live phase whose consequences are still queued measures the queue."""
    topics = deployment.topics
    lag = GroupLag(bootstrap, deployment.app_id, (*topics.all_inbound, topics.profile_commands))
    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout_s:
            if lag.lag() == 0:
                return time.monotonic() - began
            time.sleep(0.5)
    finally:
        lag.close()
    return None


def output_topics(deployment: Deployment) -> list[str]:
    return [deployment.topics.segment_changes, *deployment.topics.all_triggers]


def run_benchmark(args: argparse.Namespace, run: Run) -> dict:
    results = run.results
    run.start(args.partitions, args.kafka_heap)
    bootstrap = run.broker.broker_bootstrap
    broker_pid = kafka_local.running_pid(run.broker)
    settings = dict(item.split("=", 1) for item in args.worker_setting)  # e.g. commit_interval_s=0.1
    deployment = make_deployment(run.broker, run.run_dir, args.partitions, extra=settings)
    inbound, outputs = list(deployment.topics.all_inbound), output_topics(deployment)
    stamped_backlog = args.backlog_kind == "live-stamped"
    # A stamped backlog keeps its own timestamps (CreateTime); the inbound topics switch after its drain.
    set_log_append_time(bootstrap, outputs if stamped_backlog else inbound + outputs)

    timezone = daytime_zone(time.time())
    stamped: list[tuple[int, Message]] = []
    if stamped_backlog:
        stamped = live_stamped_backlog(deployment.topics, args.backlog_events, args.gap, timezone)
        messages = [message for _, message in stamped]
    elif args.backlog_kind == "live":
        messages = live_shaped_backlog(deployment.topics, args.backlog_events, args.gap, timezone)
    else:
        messages = build_workload(deployment.topics, args.backlog_events, None, args.seed).messages
    backlog = len(messages)
    fleet = Fleet(deployment, 1, run.run_dir / "worker.log", cwd=run.run_dir / "src")
    run.fleets.append(fleet)
    at_ready: dict[str, float] = {}
    spies: list[PySpy | None] = []

    def load() -> None:
        at_ready.update(worker_counters(fleet))
        spies.append(run.spy(fleet, args.py_spy, "backlog"))
        if stamped_backlog:
            asyncio.run(load_stamped(bootstrap, stamped, args.partitions))
        else:
            asyncio.run(load_backlog(bootstrap, messages, args.partitions))

    # Loaded once the worker is ready: a worker draining a waiting backlog answers /readyz late, and the
    # work before that answer would be missing from the drain's CPU and rate.
    drained = drain(fleet, backlog, broker_pid, bootstrap, timeout_s=300.0 + backlog / 200.0, after_ready=load)
    drained_counters = worker_counters(fleet)
    if spies[0] is not None:
        spies[0].stop()
    messages.clear()
    stamped.clear()
    if stamped_backlog:
        set_log_append_time(bootstrap, inbound)  # the live phase's latencies are measured in append times
    sustained = steady_rate(drained.samples, backlog)
    rate = args.rate or args.load * sustained
    results["config"] = {
        "backlog_events": backlog,
        "backlog_kind": args.backlog_kind,
        "partitions": args.partitions,
        "live_seconds": args.live_seconds,
        "gap_s": args.gap,
        "load": args.load,
        "rate_override": args.rate,
        "worker_settings": args.worker_setting,
        "events_per_live_customer": EVENTS_PER_LIVE_CUSTOMER,
        "timestamps": "LogAppendTime on inbound and output topics (the broker's append time)",
    }
    results["backlog"] = {
        "sustained_rate": sustained,
        "workers_cpu_seconds": drained.fleet_cpu_s,
        **phase_figures(drained.fleet_cpu_s, drained.drained_s - drained.ready_s, at_ready, drained_counters),
    }
    log.info("backlog: %.0f events/s sustained; live at %.0f events/s for %.0f s", sustained, rate, args.live_seconds)

    input_starts, output_starts = end_offsets(bootstrap, inbound), end_offsets(bootstrap, outputs)
    run.tail = OutputTail(bootstrap, output_starts)
    run.tail.start()
    results["config"]["live_timezone"] = timezone
    schedule = live_schedule(rate, args.live_seconds, args.gap, timezone)
    # The worker's CPU with no traffic (its ticks, heartbeats, empty fetches): spread over the live events, it is
    # part of their cost at a low rate, none of the backlog's.
    idle_cpu, idle_began = fleet.cpu_seconds(), time.monotonic()
    time.sleep(IDLE_SECONDS)
    idle_s = time.monotonic() - idle_began
    results["idle"] = {"seconds": idle_s, "worker_cpu_seconds_per_s": (fleet.cpu_seconds() - idle_cpu) / idle_s}
    live_spy = run.spy(fleet, args.py_spy, "live")
    live_counters, live_cpu, live_began = worker_counters(fleet), fleet.cpu_seconds(), time.monotonic()
    results["live"] = asyncio.run(send_schedule(bootstrap, deployment.topics, schedule))
    # Customers start for --live-seconds, each one's events span (events - 1) x gap: the rate ramps up and
    # down over that span at both ends and is the nominal rate in between; "rate" is the average of all.
    results["live"]["nominal_rate"] = rate
    results["live"]["caught_up_s"] = wait_caught_up(bootstrap, deployment, timeout_s=300.0)
    # From the first send until caught up: the same events as a backlog of that size (its CPU: the backlog's).
    results["live"]["worker"] = phase_figures(
        fleet.cpu_seconds() - live_cpu, time.monotonic() - live_began, live_counters, worker_counters(fleet)
    )
    if live_spy is not None:
        live_spy.stop()
    time.sleep(max(3.0, args.gap))  # the last consequences: the commit interval, a trigger scan
    run.tail.stop()
    seen, run.tail = run.tail.seen, None
    inputs, produced = read_range(bootstrap, input_starts), read_range(bootstrap, output_starts)
    results["latency"] = latencies(inputs, produced, seen, args.gap)
    return results


def table(results: dict) -> str:
    latency, live = results["latency"], results["live"]
    lines = [
        f"backlog sustained {results['backlog']['sustained_rate']:,.0f} events/s; live {live['nominal_rate']:,.0f} "
        f"events/s nominal ({live['rate']:,.0f} on average over {live['seconds']:.0f} s with the ramps), "
        f"{latency['live_customers']:,} customers; caught up {live['caught_up_s']} s after the last send",
        "consequence                       count     p50      p90      p99      max   (ms)",
    ]
    for name in (
        "segment_change_append_to_append",
        "segment_change_append_to_seen",
        f"{TRIGGER}_append_to_append",
        f"{TRIGGER}_append_to_seen",
    ):
        q = latency[name]
        if q["count"]:
            lines.append(
                f"{name:<32} {q['count']:>6} {q['p50_ms']:>7.0f}  {q['p90_ms']:>7.0f}  {q['p99_ms']:>7.0f}  "
                f"{q['max_ms']:>7.0f}"
            )
        else:
            lines.append(f"{name:<32}      0")
    lines.append(f"trigger records by kind: {latency['trigger_records_by_kind']}")
    lines.append("phase     events  worker CPU ms/event  records/fetch  flushes/s  wake-ups/event  changelog/event")
    for name, figures in (("backlog", results["backlog"]), ("live", live["worker"])):
        lines.append(
            f"{name:<8} {figures['events']:>7.0f}  {_figure(figures['worker_cpu_ms_per_event'], 19, 3)}  "
            f"{_figure(figures['records_per_fetch'], 13, 1)}  {_figure(figures['flushes_per_s'], 9, 1)}  "
            f"{_figure(figures['wake_ups_per_event'], 14, 3)}  {_figure(figures['changelog_records_per_event'], 15, 3)}"
        )
    return "\n".join(lines)


def _figure(value: float | None, width: int, decimals: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{decimals}f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog-events", type=int, default=100_000, help="backlog for the sustained rate")
    parser.add_argument("--live-seconds", type=float, default=60.0)
    parser.add_argument("--load", type=float, default=0.5, help="live rate / sustained rate (0.5)")
    parser.add_argument("--rate", type=float, default=None, help="live rate in events/s (overrides --load)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between one live customer's events")
    parser.add_argument(
        "--worker-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting (streams/settings.py field name), repeatable; e.g. commit_interval_s=0.1",
    )
    parser.add_argument(
        "--backlog-kind",
        choices=("generated", "live", "live-stamped"),
        default="generated",
        help="the backlog whose drain gives the sustained rate: the project's generated month (default), or new "
        "customers shaped like the live traffic, so --load is a fraction of what the worker sustains for it; or those "
        "with their own times as Kafka timestamps (live-stamped: a customer's events gap apart in the runtime's event "
        "time, as live, where loaded they are milliseconds apart)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        default=None,
        help="profile the worker process in each phase (py-spy record -r 200 -f raw): DIR/pyspy-backlog.raw and "
        "DIR/pyspy-live.raw (the sampling slows the worker: take CPU figures from runs without it)",
    )
    add_run_arguments(parser, "latency")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), "latency", lambda run_dir: Run(run_dir=run_dir), run_benchmark, table)


if __name__ == "__main__":
    sys.exit(main())
