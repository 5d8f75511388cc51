"""The benchmark of issue 4: ingest → identity → profile, one worker process, on a backlog and live.

One command, everything it starts is its own and stopped by pid at the end (also on errors / Ctrl-C)::

    .venv/bin/python bench/pipeline_bench.py [--events 1000000] [--customers N] [--partitions 4] \\
        [--out bench/results/pipeline.json]

Steps: start a private Kafka broker (``streams.kafka_local``, free ports, temp run dir); generate seeded
Segment events (``offline.generator`` when present, else a small built-in generator) and load them into the
inbound topics, keyed by routing id; measure the passthrough ceiling (``bench/passthrough.py``); start one
``streamcdp worker`` and measure the backlog drain from its ``/metrics``; then a live phase at a fixed rate
with event timestamps = produce time for the end-to-end lag; peak RSS; state on disk; and recovery after
deleting the worker's data dir. Prints a table and writes every figure plus the machine to ``--out``.
See ``bench/README.md`` for what each figure means and what it does not include.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import orjson  # noqa: E402
from passthrough import run_passthrough, steady_rate  # noqa: E402

from schemas.topics import TopicNames  # noqa: E402
from streams import kafka_local  # noqa: E402
from streams.http_probe import http_get  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402

log = logging.getLogger("bench.pipeline")

SAMPLE_EVERY_S = 0.5
# No wake-up fired for this long after a drain: the worker ticks every 1 s and publishes its counters at flushes,
# the first of a burst after 5,000 changed keys (about 1.4 s of wake-ups here), so a burst shows within 2.5 s.
CATCH_UP_QUIET_S = 5.0
CATCH_UP_TIMEOUT_S = 120.0  # the live phase starts then anyway (the JSON says it had not settled)
# Parts of the profile document the API derives at read time (``profile_document(profile, now=time.time())``:
# recency, RFM, decayed affinity …): they change with the clock, not with the state, so recovery ignores them.
READ_TIME_FIELDS = ("computed",)
# Segments and scores also move with the clock alone: a wake-up between the snapshot and the stop may
# refresh them (a deferred burst, a time-driven exit), and the stopped worker's last flush keeps that
# newer state. Recovery is checked on everything else the profile stores.
CLOCK_DRIVEN_FIELDS = ("segments", "scores")
EVENTS_PER_CUSTOMER_DAY = 3.2  # what offline.generator produces on average (≈ 97 events per customer in 30 days)


# ---------------------------------------------------------------------------------------------------------
# Workload: (topic, key, value) triples for the inbound topics
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes | None
    value: bytes


def iso_now_ms(moment: float) -> str:
    """Epoch seconds → Segment's ISO-8601 form with milliseconds (UTC)."""
    stamp = datetime.fromtimestamp(moment, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _routing_key(payload: dict) -> bytes | None:
    value = payload.get("userId") or payload.get("anonymousId")
    return None if value is None else str(value).encode()


def _route(topics: TopicNames, payload: dict, value: bytes) -> Message:
    from schemas.events import OTHER
    from schemas.validation import family_of

    family = family_of(str(payload.get("type")), payload.get("event"))
    return Message(topics.inbound("clickstream" if family == OTHER else family), _routing_key(payload), value)


def simple_events(count: int, customers: int, start: float, seed: int) -> list[dict]:
    """Fallback workload: identify (userId + anonymousId), Product Viewed / Added, Order Completed."""
    rng = random.Random(seed)
    span = max(time.time() - start, 1.0)
    events = []
    for index in range(count):
        customer = rng.randrange(customers)
        user_id, anonymous_id = f"user-{customer:06d}", f"anon-{customer:06d}"
        moment = start + span * index / max(count, 1)
        base = {
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "anonymousId": anonymous_id,
            "userId": user_id,
            "timestamp": iso_now_ms(moment),
        }
        roll = rng.random()
        product = {
            "product_id": f"sku-{rng.randrange(50)}",
            "name": "Thing",
            "category": "things",
            "price": 9.99,
            "currency": "EUR",
        }
        if roll < 0.05:
            events.append({**base, "type": "identify", "traits": {"city": "Berlin"}})
        elif roll < 0.75:
            events.append({**base, "type": "track", "event": "Product Viewed", "properties": product})
        elif roll < 0.93:
            events.append({**base, "type": "track", "event": "Product Added", "properties": {**product, "quantity": 1}})
        else:
            events.append(
                {
                    **base,
                    "type": "track",
                    "event": "Order Completed",
                    "properties": {
                        "order_id": f"ord-{index}",
                        "total": 9.99,
                        "currency": "EUR",
                        "products": [{"product_id": product["product_id"], "price": 9.99, "quantity": 1}],
                    },
                }
            )
    return events


@dataclass
class Workload:
    messages: list[Message]
    source: str  # which generator made them
    customers: int
    days: float
    seconds: float  # generation time


def build_workload(topics: TopicNames, events: int, customers: int | None, seed: int) -> Workload:
    """``events`` inbound messages from the project's generator (first ``events`` in time order)."""
    began = time.perf_counter()
    now = time.time()
    if customers is None:
        customers, days = max(1, math.ceil(events / (30 * EVENTS_PER_CUSTOMER_DAY) * 1.15)), 30.0
    else:
        days = min(380.0, max(1.0, events / (customers * EVENTS_PER_CUSTOMER_DAY) * 1.2))
    try:
        from offline.generator import WorkloadConfig, generate_workload
    except ImportError:
        log.warning("offline.generator is not there: using the bench's simple event mix")
        payloads = simple_events(events, customers, now - days * 86400, seed)
        messages = [_route(topics, p, orjson.dumps(p)) for p in payloads]
        return Workload(messages, "bench.simple_events", customers, days, time.perf_counter() - began)
    lines = generate_workload(WorkloadConfig(start=now - days * 86400, customers=customers, days=days, seed=seed)).lines
    if len(lines) < events:
        log.warning("the generator made %d events for %d customers; benchmarking those", len(lines), customers)
    messages = [_route(topics, orjson.loads(line), line) for line in lines[:events]]
    return Workload(messages, "offline.generator", customers, days, time.perf_counter() - began)


def live_payloads(count: int, seed: int) -> list[dict]:
    """Payloads for the live phase (a different seed: new message ids); timestamps are set at send time."""
    try:
        from offline.generator import WorkloadConfig, generate_workload
    except ImportError:
        return simple_events(count, max(1, count // 20), time.time() - 86400, seed)
    customers = max(1, math.ceil(count / (30 * EVENTS_PER_CUSTOMER_DAY) * 1.3))
    lines = generate_workload(WorkloadConfig(start=time.time() - 30 * 86400, customers=customers, seed=seed)).lines
    # Drop deletion requests: a live phase that erases profiles measures erasure, not updates.
    payloads = [orjson.loads(line) for line in lines]
    return [p for p in payloads if p.get("event") != "Deletion Requested"][:count]


# ---------------------------------------------------------------------------------------------------------
# Kafka I/O
# ---------------------------------------------------------------------------------------------------------


async def load_backlog(bootstrap: str, messages: list[Message], partitions: int) -> dict:
    """Produce every message in large hand-built batches; return count, bytes, seconds, rate.

    Keys go to partitions by the Kafka default partitioner (murmur2, as every client), so a key's
    events stay in order in one partition; batches (≤ 512 KiB each) skip the per-message futures.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    began = time.perf_counter()
    total_bytes = 0
    batches: dict[tuple[str, int], object] = {}
    deliveries = []
    try:
        for message in messages:
            partition = partitioner(message.key, all_partitions, all_partitions)
            where = (message.topic, partition)
            batch = batches.get(where) or batches.setdefault(where, producer.create_batch())
            if batch.append(key=message.key, value=message.value, timestamp=None) is None:
                deliveries.append(await producer.send_batch(batch, message.topic, partition=partition))
                batch = batches[where] = producer.create_batch()
                batch.append(key=message.key, value=message.value, timestamp=None)
            total_bytes += len(message.value)
            if len(deliveries) >= 64:
                await asyncio.gather(*deliveries)
                deliveries.clear()
        for (topic, partition), batch in batches.items():
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - began
    return {"events": len(messages), "bytes": total_bytes, "seconds": seconds, "rate": len(messages) / seconds}


async def produce_live(bootstrap: str, topics: TopicNames, payloads: list[dict], rate: float) -> dict:
    """Send ``payloads`` at ``rate`` per second, each with its Segment ``timestamp`` = the moment it is sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    began = time.monotonic()
    sent = 0
    pending = []
    try:
        while sent < len(payloads):
            due = min(len(payloads), int((time.monotonic() - began) * rate) + 1)
            while sent < due:
                payload = dict(payloads[sent], timestamp=iso_now_ms(time.time()))
                message = _route(topics, payload, orjson.dumps(payload))
                pending.append(await producer.send(message.topic, value=message.value, key=message.key))
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    seconds = time.monotonic() - began
    return {"events": sent, "seconds": seconds, "rate": sent / seconds}


# ---------------------------------------------------------------------------------------------------------
# The worker process and what we read from it
# ---------------------------------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict:
    """Processed events (profile-stage events + dead letters) and the event-lag histogram of one scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    figures = {
        "events": 0.0,
        "deadlettered": 0.0,
        "checks": 0.0,
        "forwarded": 0.0,
        "ingested": 0.0,
        "lag_buckets": {},
        "lag_count": 0.0,
        "lag_sum": 0.0,
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamcdp_profile_commands_total":
                figures["events" if sample.labels.get("kind") == "event" else "checks"] += sample.value
            elif sample.name == "streamcdp_profile_outcomes_total" and sample.labels.get("outcome") == "forwarded":
                figures["forwarded"] += sample.value
            elif sample.name == "streamcdp_events_ingested_total":
                figures["ingested"] += sample.value
            elif sample.name == "streamcdp_events_deadlettered_total":
                figures["deadlettered"] += sample.value
            elif sample.name == "streamcdp_event_lag_seconds_bucket":
                figures["lag_buckets"][float(sample.labels["le"])] = sample.value
            elif sample.name == "streamcdp_event_lag_seconds_count":
                figures["lag_count"] = sample.value
            elif sample.name == "streamcdp_event_lag_seconds_sum":
                figures["lag_sum"] = sample.value
    # An event whose key was merged into another customer is handled twice by the profile stage: once
    # forwarded (counted as kind="event" and outcome="forwarded"), once applied. Count it once.
    figures["processed"] = figures["events"] - figures["forwarded"] + figures["deadlettered"]
    return figures


def histogram_quantile(q: float, buckets: dict[float, float]) -> tuple[float, float]:
    """(interpolated quantile, upper bound of its bucket) from cumulative buckets, as Prometheus does.

    The true value lies somewhere in the bucket; the interpolation assumes events spread evenly in it.
    """
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return math.nan, math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower, bound  # beyond the last finite bucket: only a lower bound is known
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0), bound
        lower, below = bound, count
    return lower, math.inf


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _status_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_ticks() -> list[int]:
    """The machine's CPU time by state so far, in clock ticks summed over cores: the ``cpu`` line of
    /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal, ...); empty when unreadable."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return []


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine spent busy so far (from /proc/stat), summed over cores."""
    fields = machine_cpu_ticks()
    if not fields:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def machine_steal_seconds() -> float:
    """CPU seconds the hypervisor gave other guests while this VM wanted to run (/proc/stat ``steal``), summed
    over cores. ``machine_busy_seconds`` counts it as busy, so it is part of "everything else"; a live phase
    whose lag jumps while steal jumps was slowed from outside the machine."""
    fields = machine_cpu_ticks()
    return fields[7] / os.sysconf("SC_CLK_TCK") if len(fields) > 7 else 0.0


def disk_usage(path: Path) -> dict:
    """Bytes on disk (as du) and apparent bytes of everything under ``path``."""
    on_disk = apparent = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            on_disk += stat.st_blocks * 512
            apparent += stat.st_size
            files += 1
    return {"bytes_on_disk": on_disk, "apparent_bytes": apparent, "files": files}


class MemoryWatch(threading.Thread):
    """Polls the process tree's RSS every ``SAMPLE_EVERY_S``; keeps the peak sum and each pid's VmHWM."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_tree_rss_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(SAMPLE_EVERY_S)

    def sample(self) -> None:
        pids = process_tree(self.pid)
        self.peak_tree_rss_kib = max(self.peak_tree_rss_kib, sum(_status_kib(p, "VmRSS") for p in pids))
        for pid in pids:
            self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), _status_kib(pid, "VmHWM"))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


class Worker:
    """One ``streamcdp worker`` subprocess in its own session; stopped by its pid / process group."""

    def __init__(self, env: dict[str, str], log_path: Path, web_port: int, token: str, cwd: Path = REPO) -> None:
        self.env, self.log_path, self.web_port, self.token, self.cwd = env, log_path, web_port, token, cwd
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            message = f"the worker exited ({self.proc.returncode if self.proc else '?'}); log:\n{self.log_tail()}"
            raise RuntimeError(message)

    def get(self, path: str, token: str | None = None, timeout_s: float = 5.0) -> tuple[int, bytes]:
        return http_get(f"http://127.0.0.1:{self.web_port}{path}", token=token, timeout_s=timeout_s)

    def metrics(self) -> dict | None:
        status, body = self.get("/metrics")
        return parse_metrics(body.decode()) if status == 200 else None

    def profile(self, customer_id: str) -> tuple[int, dict | None]:
        """The stored part of a profile: the API document without ``READ_TIME_FIELDS`` and ``CLOCK_DRIVEN_FIELDS``."""
        status, body = self.get(f"/profiles/{customer_id}", token=self.token)
        if status != 200:
            return status, None
        document = orjson.loads(body)
        for name in (*READ_TIME_FIELDS, *CLOCK_DRIVEN_FIELDS):
            document.pop(name, None)
        return status, document

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from start until ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if self.get("/readyz", timeout_s=2.0)[0] == 200:
                return time.monotonic() - self.started_at
            time.sleep(0.1)
        message = f"the worker was not ready within {timeout_s:.0f} s; log:\n{self.log_tail()}"
        raise TimeoutError(message)

    def stop(self, timeout_s: float = 60.0) -> float:
        """SIGTERM, then SIGKILL to its process group after ``timeout_s``; returns the seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("worker %s ignored SIGTERM for %.0f s; killing its process group", self.proc.pid, timeout_s)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        return time.monotonic() - began

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class GroupLag:
    """Whether a consumer group has committed up to the end of its topics (kafka-python, bounded calls)."""

    def __init__(self, bootstrap: str, group: str, topics: tuple[str, ...]) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.group, self.topics = group, topics
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-lag", request_timeout_ms=5000)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="bench-lag",
            request_timeout_ms=5000,
            isolation_level="read_committed",  # end offsets: the last stable offset, as the workers read
        )

    def lag(self) -> int:
        """Messages between the group's committed offsets and the end of its topics (all partitions)."""
        from kafka import TopicPartition

        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        ends = self.consumer.end_offsets(partitions)
        if hasattr(self.admin, "list_consumer_group_offsets"):  # kafka-python 2.x
            committed = self.admin.list_consumer_group_offsets(self.group)
        else:  # kafka-python 3.x
            committed = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
        total = 0
        for partition in partitions:
            offset = committed.get(partition)
            total += max(0, ends[partition] - (offset.offset if offset is not None and offset.offset >= 0 else 0))
        return total

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def wait_processed(
    worker: Worker, target: float, timeout_s: float, group_lag: GroupLag | None = None, stall_s: float = 180.0
) -> list[tuple[float, dict]]:
    """Scrape ``/metrics`` every ``SAMPLE_EVERY_S`` until ``processed >= target``; (s since start, figures).

    With ``group_lag``, also until the worker's consumer group has committed everything on the inbound
    and profile-commands topics: the pipeline is then drained whatever the counters count.
    """
    samples: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout_s
    last_progress, last_count = time.monotonic(), -1.0
    next_report = time.monotonic() + 30.0
    while True:
        worker.check_alive()
        figures = worker.metrics()
        now = time.monotonic()
        if figures is not None:
            samples.append((now - worker.started_at, figures))
            if figures["processed"] > last_count:
                last_count, last_progress = figures["processed"], now
            if figures["processed"] >= target and (group_lag is None or group_lag.lag() == 0):
                return samples
            if now >= next_report:
                next_report = now + 30.0
                log.info("processed %.0f of %.0f", figures["processed"], target)
        if now > deadline:
            message = f"the worker processed {last_count:.0f} of {target:.0f} within {timeout_s:.0f} s"
            raise TimeoutError(message)
        if last_count > 0 and now - last_progress > stall_s:
            message = f"the worker made no progress for {stall_s:.0f} s at {last_count:.0f} of {target:.0f}"
            raise TimeoutError(message)
        time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - now)))


def wait_wake_ups_settled(worker: Worker, quiet_s: float, timeout_s: float) -> dict:
    """After a drain, scrape ``/metrics`` until the worker fired no wake-up (``checks``) for ``quiet_s``: the
    wake-ups that came due up to the wall clock once it caught up are fired. ``settled``: whether that happened
    within ``timeout_s``; ``seconds`` it took from the call; ``wake_ups`` fired meanwhile.

    Why: the backlog's Kafka timestamps are its load time (about 8 s for 30 days of events), so every
    customer's last deferred refresh of segments and scores (``audience_min_interval_s`` after its last event)
    comes due in the load's last second, and the worker's first tick after the drain fires them all (about
    15,000 at a million events, 4 s), then its stream time is the wall clock. A record stamped after them waits
    for them (event-time order), so live traffic sent meanwhile measured that burst, as far as it overlapped,
    not the live latency (the live phase's p99 varied from 69 ms to 2.3 s)."""
    started = time.monotonic()
    first = worker.metrics()
    last_checks = first["checks"] if first else 0.0
    start_checks, changed_at = last_checks, started
    while True:
        time.sleep(SAMPLE_EVERY_S)
        worker.check_alive()
        figures = worker.metrics()
        now = time.monotonic()
        if figures is not None and figures["checks"] != last_checks:
            last_checks, changed_at = figures["checks"], now
        if now - changed_at >= quiet_s or now - started >= timeout_s:
            return {
                "settled": now - changed_at >= quiet_s,
                "seconds": changed_at - started,
                "wake_ups": last_checks - start_checks,
            }


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything the run started, so that ``cleanup`` stops exactly that."""

    run_dir: Path
    broker: Settings | None = None
    worker: Worker | None = None
    memory: MemoryWatch | None = None
    results: dict = field(default_factory=dict)

    def cleanup(self) -> None:
        if self.memory is not None:
            self.memory.stop()
        if self.worker is not None:
            try:
                self.worker.stop(timeout_s=30)
            except Exception:
                log.exception("stopping the worker failed")
        if self.broker is not None:
            kafka_local.stop(self.broker)


def machine_info() -> dict:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    cpu_model = ""
    with contextlib.suppress(OSError):
        cpu_model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("aiokafka", "kafka-python", "rocksdict", "aiohttp"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001
            versions[package] = None
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_bytes": mem_kib * 1024,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "packages": versions,
    }


SNAPSHOT_SKIP = {
    ".git",
    ".venv",
    ".cache",
    "var",
    ".data",
    "tests",
    "bench",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "node_modules",
}


def snapshot_sources(target: Path) -> dict:
    """Copy the repository's code (not .git, .venv, caches, tests, bench) to ``target``; return its digest.

    The worker runs from this copy, so commits landing in the shared working tree during a run cannot
    change the code under test between the drain and the recovery restart (they did once: the restarted
    worker had a new profile layout and no profile compared equal).
    """
    import hashlib

    digest = hashlib.sha256()
    files = 0
    for source in sorted(REPO.rglob("*")):
        relative = source.relative_to(REPO)
        if any(part in SNAPSHOT_SKIP or part.endswith(".egg-info") for part in relative.parts) or not source.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        digest.update(str(relative).encode() + b"\0" + destination.read_bytes())
        files += 1
    return {"path": str(target), "files": files, "sha256": digest.hexdigest()}


def worker_env(values: dict[str, object]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCDP_")}
    env.update({f"STREAMCDP_{k.upper()}": str(v) for k, v in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_benchmark(args: argparse.Namespace, run: Run) -> dict:
    results = run.results
    results["machine"] = machine_info()
    # The worker imports its code from this copy (cwd first on sys.path, before the editable install).
    results["source_snapshot"] = snapshot_sources(run.run_dir / "src")
    tag = uuid.uuid4().hex[:8]
    port, controller_port = kafka_local.free_port(), kafka_local.free_port()
    broker = Settings(
        broker_url=f"kafka://127.0.0.1:{port}",
        kafka_port=port,
        kafka_controller_port=controller_port,
        kafka_run_dir=run.run_dir / "kafka",
        kafka_home=REPO / ".cache" / "kafka",
        kafka_heap=args.kafka_heap,
        topic_partitions=args.partitions,
    )
    bootstrap = broker.broker_bootstrap
    log.info("starting Kafka on %s (run dir %s)", bootstrap, run.run_dir)
    run.broker = broker
    kafka_local.start(broker)
    results["broker"] = {"pid": kafka_local.running_pid(broker), "heap": args.kafka_heap}

    prefix, app_id = f"bench{tag}.", f"streamcdp-bench-{tag}"
    web_port, token = kafka_local.free_port(), f"bench-{tag}"
    data_dir = run.run_dir / "worker-data"
    # The worker's shipped trigger definitions (issue 15: the full pipeline as configured by default), or with
    # ``--no-triggers`` an empty file: then no trigger fires and the bench measures the profile path alone (what
    # every figure before stop 28 measured).
    triggers_file = REPO / Settings().triggers_file  # the default is relative to the repo (the worker's cwd)
    if args.no_triggers:
        triggers_file = run.run_dir / "no-triggers.yaml"
        triggers_file.write_text("version: 1\ntriggers: []\n")
    results["triggers_file"] = str(triggers_file)
    values: dict[str, object] = {
        "broker_url": broker.broker_url,
        "topic_prefix": prefix,
        "app_id": app_id,
        "data_dir": data_dir,
        "web_port": web_port,
        "topic_partitions": args.partitions,
        "api_token": token,
        "env": "dev",  # the development PII hash key is fine for generated data
        "log_level": "warning",
        "triggers_file": triggers_file,
    }
    for item in args.worker_setting:  # e.g. state_cache_keys=2000: the same run with another worker setting
        name, _, value = item.partition("=")
        values[name.strip().lower()] = value.strip()
    settings = Settings(**values)
    topics = TopicNames(prefix=prefix)
    ensure_topics(settings)

    # --- 1. load the backlog ---------------------------------------------------------------------------
    workload = build_workload(topics, args.events, args.customers, args.seed)
    events = len(workload.messages)
    results["config"] = {
        "events": events,
        "requested_events": args.events,
        "customers": workload.customers,
        "days": round(workload.days, 2),
        "partitions": args.partitions,
        "seed": args.seed,
        "generator": workload.source,
        "topic_prefix": prefix,
        "app_id": app_id,
        "worker_settings": list(args.worker_setting),
    }
    log.info(
        "generated %d events (%s, %d customers) in %.1f s; loading",
        events,
        workload.source,
        workload.customers,
        workload.seconds,
    )
    results["load"] = asyncio.run(load_backlog(bootstrap, workload.messages, args.partitions))
    results["load"]["generate_seconds"] = workload.seconds
    log.info("loaded %d events in %.1f s (%.0f events/s)", events, results["load"]["seconds"], results["load"]["rate"])
    sample_ids = sorted({m.key.decode() for m in workload.messages if m.key and m.key.startswith(b"user-")})
    del workload

    # --- 2. passthrough ceiling ----------------------------------------------------------------------
    scratch = f"{prefix}bench.passthrough"
    from passthrough import ensure_topic

    ensure_topic(bootstrap, scratch, args.partitions)
    passthrough = asyncio.run(
        run_passthrough(bootstrap, topics.all_inbound, scratch, events, timeout_s=args.phase_timeout)
    )
    results["passthrough"] = {k: v for k, v in asdict(passthrough).items() if k != "samples"}
    log.info("passthrough: %.0f events/s sustained (%.0f overall)", passthrough.sustained_rate, passthrough.rate)

    # --- 3. the pipeline drains the backlog ---------------------------------------------------------
    worker = Worker(worker_env(values), run.run_dir / "worker.log", web_port, token, cwd=run.run_dir / "src")
    run.worker = worker
    worker.start()
    run.memory = MemoryWatch(worker.pid)
    run.memory.start()
    ready_s = worker.wait_ready(args.ready_timeout)
    cpu_at_start = cpu_seconds(worker.pid)
    broker_pid = results["broker"]["pid"]
    broker_cpu_at_start = cpu_seconds(broker_pid)
    machine_at_start = machine_busy_seconds()
    steal_at_start = machine_steal_seconds()
    log.info("worker pid %s ready after %.1f s; draining %d events", worker.pid, ready_s, events)
    group_lag = GroupLag(bootstrap, app_id, (*topics.all_inbound, topics.profile_commands))
    samples = wait_processed(worker, events, timeout_s=args.phase_timeout, group_lag=group_lag)
    drained_at = samples[-1][0]
    cpu_used = cpu_seconds(worker.pid) - cpu_at_start
    broker_cpu_used = cpu_seconds(broker_pid) - broker_cpu_at_start
    machine_used = machine_busy_seconds() - machine_at_start
    steal_used = machine_steal_seconds() - steal_at_start
    series = [(t, f["processed"]) for t, f in samples]
    first_t = next((t for t, count in series if count > 0), drained_at)
    final = samples[-1][1]
    sustained = steady_rate(series, events)
    drain_window = max(drained_at - ready_s, 1e-9)
    results["pipeline"] = {
        "sustained_rate": sustained,
        "overall_rate": events / max(drained_at - first_t, 1e-9),
        "ready_s": ready_s,
        "first_event_s": first_t,
        "drained_s": drained_at,
        "processed": final["processed"],
        "ingested": final["ingested"],
        "event_commands": final["events"],
        "forwarded": final["forwarded"],
        "deadlettered": final["deadlettered"],
        "other_commands": final["checks"],
        "worker_cpu_seconds": cpu_used,
        "worker_cpu_share": cpu_used / drain_window,
        "broker_cpu_share": broker_cpu_used / drain_window,
        # Everything else that ran meanwhile (this bench's sampler, other users of the machine), in cores.
        "other_cpu_share": max(0.0, machine_used - cpu_used - broker_cpu_used) / drain_window,
        "steal_cpu_share": steal_used / drain_window,  # part of other_cpu_share
        "samples": [(round(t, 3), int(count)) for t, count in series],
    }
    log.info("pipeline: %.0f events/s sustained; drained in %.1f s", sustained, drained_at - first_t)

    # --- 4. live phase: end-to-end lag --------------------------------------------------------------
    # First the wake-ups the caught-up worker fires up to the wall clock (see wait_wake_ups_settled): the
    # live phase measures live traffic, not that burst, which is reported on its own.
    results["pipeline"]["catch_up_wake_ups"] = settled = wait_wake_ups_settled(
        worker, quiet_s=CATCH_UP_QUIET_S, timeout_s=CATCH_UP_TIMEOUT_S
    )
    log.info(
        "caught-up wake-ups: %.0f fired in %.1f s after the drain%s",
        settled["wake_ups"],
        settled["seconds"],
        "" if settled["settled"] else " (still firing at the timeout)",
    )
    live_rate = min(args.live_rate, max(50.0, args.live_load * sustained)) if sustained > 0 else args.live_rate
    payloads = live_payloads(args.live_events, args.seed + 1)
    before = worker.metrics() or final
    live_steal_at_start, live_started = machine_steal_seconds(), time.monotonic()
    log.info("live phase: %d events at %.0f events/s", len(payloads), live_rate)
    live = asyncio.run(produce_live(bootstrap, topics, payloads, live_rate))
    wait_processed(worker, before["processed"] + live["events"], timeout_s=args.phase_timeout, group_lag=group_lag)
    group_lag.close()
    time.sleep(1.0)  # the lag is observed right after the table write; one more scrape interval to be safe
    after = worker.metrics() or before
    live_window = max(time.monotonic() - live_started, 1e-9)
    live_steal_share = (machine_steal_seconds() - live_steal_at_start) / live_window
    buckets = {
        bound: after["lag_buckets"].get(bound, 0.0) - before["lag_buckets"].get(bound, 0.0)
        for bound in after["lag_buckets"]
    }
    observed = after["lag_count"] - before["lag_count"]
    p50, p50_bound = histogram_quantile(0.5, buckets)
    p99, p99_bound = histogram_quantile(0.99, buckets)
    results["latency"] = {
        "live_events": live["events"],
        "live_rate": live["rate"],
        "observed": observed,
        "mean_s": (after["lag_sum"] - before["lag_sum"]) / observed if observed else math.nan,
        "p50_s": p50,
        "p50_bucket_le": p50_bound,
        "p99_s": p99,
        "p99_bucket_le": p99_bound,
        "buckets": {str(bound): count for bound, count in sorted(buckets.items())},
        "steal_cpu_share": live_steal_share,  # CPU the hypervisor took for other guests, in cores
    }

    # --- 5. memory and state ------------------------------------------------------------------------
    run.memory.sample()
    results["memory"] = {
        "worker_vmhwm_bytes": run.memory.hwm_kib.get(worker.pid, 0) * 1024,
        "tree_vmhwm_sum_bytes": sum(run.memory.hwm_kib.values()) * 1024,
        "tree_peak_rss_bytes": run.memory.peak_tree_rss_kib * 1024,
        "processes": len(run.memory.hwm_kib),
    }
    results["state"] = disk_usage(data_dir)

    # --- 6. recovery: stop, delete the data dir, start, time until ready and profiles equal ----------
    rng = random.Random(args.seed)
    candidates = rng.sample(sample_ids, min(len(sample_ids), args.recovery_sample * 2))
    expected: dict[str, dict] = {}
    for customer_id in candidates:
        status, profile = worker.profile(customer_id)
        if status == 200 and profile is not None:
            expected[customer_id] = profile
        if len(expected) >= args.recovery_sample:
            break
    run.memory.stop()
    run.memory = None
    stop_s = worker.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    worker.start()
    recovery_ready_s = worker.wait_ready(args.phase_timeout)
    remaining = dict(expected)
    deadline = time.monotonic() + 120.0 + args.events / 2000.0
    differences: dict[str, object] = {}
    while remaining and time.monotonic() < deadline:
        for customer_id in list(remaining):
            status, profile = worker.profile(customer_id)
            if status == 200 and profile == remaining[customer_id]:
                del remaining[customer_id]
                differences.pop(customer_id, None)
            elif status != 200 or profile is None:
                differences[customer_id] = f"HTTP {status}"
            else:
                differences[customer_id] = sorted(
                    k
                    for k in set(profile) | set(remaining[customer_id])
                    if profile.get(k) != remaining[customer_id].get(k)
                )
        if remaining:
            time.sleep(0.2)
    equal_s = time.monotonic() - worker.started_at
    results["recovery"] = {
        "stop_s": stop_s,
        "ready_s": recovery_ready_s,
        "profiles_equal_s": equal_s if not remaining else None,
        "sampled_profiles": len(expected),
        "ignored_fields": [*READ_TIME_FIELDS, *CLOCK_DRIVEN_FIELDS],
        "not_equal": {k: differences.get(k) for k in sorted(remaining)[:20]},
    }
    if remaining:
        log.error("%d of %d sampled profiles differ after recovery", len(remaining), len(expected))
    results["ratio_pipeline_to_passthrough"] = (
        sustained / passthrough.sustained_rate if passthrough.sustained_rate else None
    )
    return results


def _finite(value: object) -> object:
    """NaN / infinity → None, so the JSON file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def table(results: dict) -> str:
    def mib(value: float) -> str:
        return f"{value / 2**20:,.0f} MiB"

    def ms(value: float, bound: float) -> str:
        return "n/a" if math.isnan(value) else f"{value * 1000:,.0f} ms (bucket ≤ {bound * 1000:,.0f} ms)"

    machine, config = results["machine"], results["config"]
    load, through, pipeline = results["load"], results["passthrough"], results["pipeline"]
    latency, memory, state, recovery = results["latency"], results["memory"], results["state"], results["recovery"]
    equal = recovery["profiles_equal_s"]
    rows = [
        ("events / customers / partitions", f"{config['events']:,} / {config['customers']:,} / {config['partitions']}"),
        ("machine", f"{machine['nproc']} CPU, {machine['cpu_model']}, Python {machine['python']}"),
        ("load into Kafka", f"{load['rate']:,.0f} events/s ({load['seconds']:.1f} s, {mib(load['bytes'])})"),
        ("passthrough ceiling (sustained)", f"{through['sustained_rate']:,.0f} events/s"),
        ("pipeline, 1 worker (sustained)", f"{pipeline['sustained_rate']:,.0f} events/s"),
        ("pipeline / passthrough", f"{results['ratio_pipeline_to_passthrough']:.3f}"),
        (
            "pipeline overall drain",
            f"{pipeline['overall_rate']:,.0f} events/s ({pipeline['drained_s'] - pipeline['first_event_s']:.1f} s)",
        ),
        ("worker start → ready / first event", f"{pipeline['ready_s']:.1f} s / {pipeline['first_event_s']:.1f} s"),
        (
            "worker CPU during drain",
            f"{pipeline['worker_cpu_share'] * 100:.0f} % of one core "
            f"(broker {pipeline['broker_cpu_share'] * 100:.0f} %, "
            f"everything else {pipeline.get('other_cpu_share', 0) * 100:.0f} %, "
            f"of it steal {pipeline.get('steal_cpu_share', 0) * 100:.0f} %)",
        ),
        ("dead-lettered", f"{pipeline['deadlettered']:,.0f}"),
        (f"e2e lag p50 (live, {latency['live_rate']:,.0f}/s)", ms(latency["p50_s"], latency["p50_bucket_le"])),
        ("e2e lag p99", ms(latency["p99_s"], latency["p99_bucket_le"])),
        ("steal during the live phase", f"{latency.get('steal_cpu_share', 0) * 100:.1f} % of one core"),
        ("worker peak RSS (VmHWM)", mib(memory["worker_vmhwm_bytes"])),
        ("state on disk (data dir)", mib(state["bytes_on_disk"])),
        ("recovery: ready (readyz 200)", f"{recovery['ready_s']:.1f} s"),
        (
            f"recovery: {recovery['sampled_profiles']} profiles equal",
            f"{equal:.1f} s" if equal is not None else "NOT EQUAL",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog size (default 1,000,000)")
    parser.add_argument(
        "--customers",
        type=int,
        default=None,
        help="customers of the generated workload (default: events / ~85, 30 days)",
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "pipeline.json"), help="JSON output")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--live-events", type=int, default=20_000, help="events of the live lag phase (default 20,000)")
    parser.add_argument(
        "--live-rate",
        type=float,
        default=1_000.0,
        help="live phase rate cap, events/s (default 1,000; see --live-load)",
    )
    parser.add_argument(
        "--live-load",
        type=float,
        default=0.5,
        help="live rate as a fraction of the measured sustained rate, so lag is not queueing (0.5)",
    )
    parser.add_argument("--recovery-sample", type=int, default=100, help="profiles compared across recovery (100)")
    parser.add_argument("--kafka-heap", default="1g", help="JVM heap of the benchmark's broker (default 1g)")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for /readyz")
    parser.add_argument(
        "--phase-timeout", type=float, default=None, help="seconds any one phase may take (default 300 + events / 200)"
    )
    parser.add_argument(
        "--worker-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting (streams/settings.py field name), repeatable; e.g. state_cache_keys=2000",
    )
    parser.add_argument(
        "--no-triggers",
        action="store_true",
        help="an empty trigger definitions file (default: the worker's, config/triggers.yaml)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp run dir (broker + worker logs, data)")
    args = parser.parse_args(argv)
    if args.phase_timeout is None:
        args.phase_timeout = 300.0 + args.events / 200.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # SIGTERM unwinds like Ctrl-C, so the finally below stops the worker and the broker.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run = Run(run_dir=Path(tempfile.mkdtemp(prefix="streamcdp-bench-")))
    failed = True
    out = Path(args.out)
    try:
        results = run_benchmark(args, run)
        failed = False
    except BaseException as exc:
        run.results["error"] = f"{type(exc).__name__}: {exc}"[:4000]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".partial.json").write_text(json.dumps(_finite(run.results), indent=2, default=str) + "\n")
        log.error("failed; partial results in %s", out.with_suffix(".partial.json"))
        raise
    finally:
        run.cleanup()
        if failed or args.keep:
            log.info("run dir kept for inspection: %s", run.run_dir)
        else:
            shutil.rmtree(run.run_dir, ignore_errors=True)
    results["finished_at"] = datetime.now(tz=UTC).isoformat(timespec="seconds")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(results), indent=2, default=str) + "\n")
    sys.stdout.write(table(results) + f"\n\nwritten: {out}\n")
    return 0 if results["recovery"]["profiles_equal_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
