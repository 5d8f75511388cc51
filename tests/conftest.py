"""Shared fixtures: the real local Kafka broker (started and stopped by pid here) and worker processes.

Integration tests run against a real single-node KRaft broker on a free 127.0.0.1 port, started once per
test session by ``streams.kafka_local``. Each test that needs a worker gets its own topic prefix and
application id, so tests never see each other's data on the shared broker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka.errors import KafkaError

from schemas.topics import TopicNames
from streams import kafka_local
from streams.http_probe import http_get
from streams.settings import Settings

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running local broker for the whole test session; stopped by pid at the end."""
    run_dir = tmp_path_factory.mktemp("kafka")
    port = kafka_local.free_port()
    controller_port = kafka_local.free_port()
    settings = Settings(
        broker_url=f"kafka://127.0.0.1:{port}",
        kafka_port=port,
        kafka_controller_port=controller_port,
        kafka_run_dir=run_dir,
        kafka_home=REPO / ".cache" / "kafka",
    )
    kafka_local.start(settings)
    try:
        yield settings
    finally:
        kafka_local.stop(settings)


@pytest.fixture
def restartable_kafka(tmp_path: Path) -> Iterator[Settings]:
    """A broker of the test's own, which the test may stop and start again (``kafka_local.stop``/``start``
    with these settings: same ports, same storage); stopped by pid at the end."""
    port = kafka_local.free_port()
    settings = Settings(
        broker_url=f"kafka://127.0.0.1:{port}",
        kafka_port=port,
        kafka_controller_port=kafka_local.free_port(),
        kafka_run_dir=tmp_path / "own-kafka",
        kafka_home=REPO / ".cache" / "kafka",
    )
    kafka_local.start(settings)
    try:
        yield settings
    finally:
        kafka_local.stop(settings)


class KafkaIO:
    """Produce to and consume from the test broker (kafka-python, synchronous, bounded waits)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        from kafka import KafkaProducer

        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")

    def send(self, topic: str, value: bytes | dict, key: str | bytes | None = None) -> None:
        payload = value if isinstance(value, bytes) else orjson.dumps(value)
        encoded_key = key.encode() if isinstance(key, str) else key
        self._producer.send(topic, key=encoded_key, value=payload)

    def flush(self) -> None:
        self._producer.flush(timeout=30)

    def read(self, topic: str, *, min_count: int = 1, timeout_s: float = 60.0, settle_s: float = 0.0) -> list:
        """All records of ``topic`` from the start, once at least ``min_count`` arrived (or the timeout passed).

        ``settle_s`` keeps reading that long after ``min_count`` is reached, to catch records that
        must *not* be there.
        """
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=500,
            isolation_level="read_committed",  # as downstream consumers must: no aborted or open transactions
        )
        records: list = []
        deadline = time.monotonic() + timeout_s
        reached_at: float | None = None
        try:
            while time.monotonic() < deadline:
                for message in consumer:
                    records.append(message)
                if len(records) >= min_count:
                    reached_at = reached_at or time.monotonic()
                    if time.monotonic() - reached_at >= settle_s:
                        break
        finally:
            consumer.close()
        return records

    def close(self) -> None:
        self._producer.close()


class WorkerProcess:
    """One ``streamcdp worker`` subprocess with its own environment; stopped by pid."""

    def __init__(self, env: dict[str, str], log_path: Path, web_port: int, api_token: str) -> None:
        self.env = env
        self.log_path = log_path
        self.web_port = web_port
        self.api_token = api_token
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout_s: float = 120.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"worker exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                raise RuntimeError(msg)
            status, _ = self.http_get("/readyz")
            if status == 200:
                return
            time.sleep(0.3)
        msg = f"worker not ready within {ready_timeout_s}s; log:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def http_get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        return http_get(f"http://127.0.0.1:{self.web_port}{path}", token=token)

    def profile(self, customer_id: str) -> dict | None:
        status, body = self.http_get(f"/profiles/{customer_id}", token=self.api_token)
        return orjson.loads(body) if status == 200 else None

    def wait_for_profile(self, customer_id: str, predicate, timeout_s: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout_s
        profile = None
        while time.monotonic() < deadline:
            profile = self.profile(customer_id)
            if profile is not None and predicate(profile):
                return profile
            time.sleep(0.3)
        msg = f"profile {customer_id!r} never matched; last seen: {profile}\nlog:\n{self.log_tail()}"
        raise AssertionError(msg)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class Pipeline:
    """A worker plus the topic names and Kafka I/O of one isolated test deployment."""

    def __init__(self, settings: Settings, worker: WorkerProcess, kafka: KafkaIO) -> None:
        self.settings = settings
        self.topics = TopicNames(prefix=settings.topic_prefix)
        self.worker = worker
        self.kafka = kafka
        self.more_workers: list[WorkerProcess] = []

    def add_worker(self, start: bool = True) -> WorkerProcess:
        """Another worker of this deployment: same topics, consumer group and token, its own web port, data
        directory and log; stopped at teardown with the first."""
        number = len(self.more_workers) + 2
        web_port = kafka_local.free_port()
        env = dict(
            self.worker.env,
            STREAMCDP_WEB_PORT=str(web_port),
            STREAMCDP_DATA_DIR=f"{self.settings.data_dir}-worker{number}",
        )
        log_path = self.worker.log_path.with_name(f"{self.worker.log_path.stem}-worker{number}.log")
        worker = WorkerProcess(env, log_path, web_port, self.worker.api_token)
        self.more_workers.append(worker)
        if start:
            worker.start()
        return worker


class PipelineFactory:
    """Builds isolated test deployments on the shared broker (own topic prefix, app id, token, data dir,
    web port) and stops them all in ``close``; ``make_pipeline`` is one per test, a module-scoped fixture
    may hold one for several tests."""

    def __init__(self, kafka_settings: Settings, base_dir: Path) -> None:
        self.kafka_settings = kafka_settings
        self.base_dir = base_dir
        self.started: list[Pipeline] = []

    def make(self, start: bool = True, **overrides: object) -> Pipeline:
        """A ``Pipeline`` with ``overrides`` of the test defaults; its worker started unless ``start=False``."""
        tag = uuid.uuid4().hex[:8]
        web_port = kafka_local.free_port()
        values: dict[str, object] = {
            "broker_url": self.kafka_settings.broker_url,
            "topic_prefix": f"t{tag}.",
            "app_id": f"streamcdp-test-{tag}",
            "data_dir": self.base_dir / f"data-{tag}",
            "web_port": web_port,
            "topic_partitions": 4,
            "trigger_scan_interval_s": 0.5,
            "api_token": f"token-{tag}",
            "env": "dev",  # the workers may use the development PII hash key
            "log_level": "info",
        }
        values.update(overrides)
        settings = Settings(**values)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCDP_")}
        env.update({f"STREAMCDP_{k.upper()}": str(v) for k, v in values.items()})
        # The guarantee the tests' own Settings() see (STREAMCDP_PROCESSING_GUARANTEE or the default).
        env["STREAMCDP_PROCESSING_GUARANTEE"] = settings.processing_guarantee
        env["PYTHONUNBUFFERED"] = "1"
        worker = WorkerProcess(env, self.base_dir / f"worker-{tag}.log", web_port, settings.api_token)
        pipeline = Pipeline(settings, worker, KafkaIO(settings.broker_bootstrap))
        self.started.append(pipeline)
        if start:
            worker.start()
        return pipeline

    def close(self) -> None:
        for pipeline in self.started:
            for worker in pipeline.more_workers:
                worker.stop()
            pipeline.worker.stop()
            pipeline.kafka.close()


@pytest.fixture
def make_pipeline(kafka_settings: Settings, tmp_path: Path) -> Iterator:
    """Factory: ``make_pipeline(**setting_overrides)`` → a started ``Pipeline``; all stopped at teardown."""
    factory = PipelineFactory(kafka_settings, tmp_path)
    yield factory.make
    factory.close()


def restart_test_broker(kafka_settings: Settings) -> float:
    """Stop the session's broker by its pid (SIGTERM: a clean shutdown) and start it again on the same ports
    and data directory, as an operator's restart would; returns the seconds it was away. Clients see
    their connections drop and must reconnect; nothing committed is lost."""
    started = time.monotonic()
    kafka_local.stop(kafka_settings)
    kafka_local.start(kafka_settings)
    return time.monotonic() - started


def read_to_end(bootstrap: str, topics: list[str], *, isolation_level: str = "read_committed") -> list:
    """Every record of ``topics`` from the start up to their end offsets at the call (committed records
    only by default, as a downstream consumer should read), in offset order per partition.

    Read with aiokafka, as the worker reads: its position steps over transaction markers and aborted
    batches by their batch's next offset. kafka-python's position stopped short of the end of a changelog
    with many aborted transactions (the full-size chaos test, 20 kills), so the read never ended."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def read() -> list:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, isolation_level=isolation_level
        )
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()  # the partitions of topics it has not seen yet
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]
            if not partitions:
                return []
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: list = []
            deadline = time.monotonic() + 120
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                if time.monotonic() > deadline:
                    msg = f"could not read {topics} to their end offsets {ends} within 120 s"
                    raise AssertionError(msg)
                for batch in (await consumer.getmany(timeout_ms=500, max_records=50_000)).values():
                    records.extend(batch)
            return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
        finally:
            await consumer.stop()

    return asyncio.run(read())


# --- Workload-scale helpers (dead-letter and ground-truth tests): produce many lines, know when the
# worker is done, read its metrics and many profiles. Bounded waits everywhere.


def produce_raw_lines(pipeline: Pipeline, lines: list[bytes]) -> int:
    """Send every line as it is (``route_line(raw=True)``) with the batching ``KafkaSender``; all must be acked."""
    from streams.produce import KafkaSender, Routed, route_line

    sender = KafkaSender(pipeline.settings)
    sent = 0
    try:
        for line in lines:
            routed = route_line(line, topics=pipeline.topics, raw=True)
            assert isinstance(routed, Routed), routed
            sender.send(routed)
            sent += 1
    finally:
        failed = sender.close()
    assert failed == 0, f"{failed} of {sent} records not acknowledged"
    return sent


def read_metrics(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's ``/metrics`` as {(sample name, sorted labels): value}; {} when it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = worker.http_get("/metrics")
    if status != 200:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def metric_sum(metrics: dict, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (sample, sample_labels), value in metrics.items() if sample == name and wanted <= set(sample_labels)
    )


class GroupLag:
    """The lag of a worker's consumer group on its source topics (inbound + profile-commands), asked again and
    again over one admin client and one consumer (building both per question took about 0.25 s each time on
    the 2-core machine, which stretched every poll of ``wait_until_drained``)."""

    def __init__(self, pipeline: Pipeline) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.group = pipeline.settings.app_id
        self.topics = [*pipeline.topics.all_inbound, pipeline.topics.profile_commands]
        self._admin = KafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap, request_timeout_ms=10_000)
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=pipeline.kafka.bootstrap, request_timeout_ms=10_000, isolation_level="read_committed"
            )
        except BaseException:
            self._admin.close()
            raise

    def __call__(self) -> dict[str, int]:
        """Per source topic: end offsets minus the group's commits."""
        from kafka import TopicPartition

        committed = self._admin.list_group_offsets(self.group).get(self.group, {})
        partitions = {tp for tp in committed if tp.topic in self.topics}
        for topic in self.topics:
            partitions.update(TopicPartition(topic, p) for p in self._consumer.partitions_for_topic(topic) or ())
        ends = self._consumer.end_offsets([*partitions])
        lag: dict[str, int] = dict.fromkeys(self.topics, 0)
        for tp, end in ends.items():
            done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
            lag[tp.topic] += max(end - done, 0)
        return lag

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()


def consumer_lag(pipeline: Pipeline) -> dict[str, int]:
    """Per source topic of the worker (inbound + profile-commands): end offsets minus the group's commits."""
    probe = GroupLag(pipeline)
    try:
        return probe()
    finally:
        probe.close()


def wait_until_drained(pipeline: Pipeline, *, timeout_s: float, quiet_s: float = 2.0) -> float:
    """Wait until the worker's consumer group has committed everything on its source topics (inbound and
    profile-commands, so forwarded links/merges too) and stays so for ``quiet_s``; returns seconds waited.

    Committed offsets survive a ``kill9`` (unlike ``/metrics`` counters), so this works across restarts.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    idle_since: float | None = None
    lag: dict[str, int] = {}
    probe = GroupLag(pipeline)
    try:
        while time.monotonic() < deadline:
            worker = pipeline.worker
            if worker.proc is not None and worker.proc.poll() is not None:
                msg = f"worker exited with {worker.proc.returncode}; log:\n{worker.log_tail()}"
                raise AssertionError(msg)
            try:
                lag = probe()
            except KafkaError as exc:  # the broker coming back (a restart): no group coordinator for a moment
                log.info("lag not known yet: %s", exc)
                idle_since = None
                time.sleep(0.5)
                continue
            if sum(lag.values()) == 0:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= quiet_s:
                    return time.monotonic() - started
            else:
                idle_since = None
            time.sleep(0.5)
    finally:
        probe.close()
    msg = f"worker not drained within {timeout_s}s; lag {lag}\nlog:\n{pipeline.worker.log_tail()}"
    raise AssertionError(msg)


def fetch_profiles(worker: WorkerProcess, ids: list[str], threads: int = 8) -> dict[str, tuple[int, dict | None]]:
    """``GET /profiles/{id}`` for many ids in parallel: {id: (status, document or None)}."""
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import quote

    def one(customer_id: str) -> tuple[int, dict | None]:
        status, body = worker.http_get(f"/profiles/{quote(customer_id, safe='')}", token=worker.api_token)
        return status, orjson.loads(body) if status == 200 else None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


def anonymous_visitors(lines: list[bytes], truth: dict) -> dict[str, int]:
    """Valid events per anonymous id that no customer of ``truth`` ever linked: those ids keep profiles
    of their own (a device that never logs in stays a separate anonymous visitor)."""
    from schemas.errors import InvalidEvent
    from schemas.validation import decode_event

    linked = {anonymous_id for customer in truth["profiles"] for anonymous_id in customer["anonymous_ids"]}
    now = time.time()
    visitors: dict[str, int] = {}
    for line in lines:
        try:
            event = decode_event(line, now=now)
        except InvalidEvent:
            continue
        if event.user_id is None and event.anonymous_id not in linked:
            visitors[event.anonymous_id] = visitors.get(event.anonymous_id, 0) + 1
    return visitors


# --- Ground truth of a generated workload (``offline.generator``): shared by the ground-truth, scale-out and
# chaos tests.


def profile_mismatches(worker: WorkerProcess, workload) -> list[str]:
    """Every difference between the profiles ``worker`` serves and the generator's truth (``offline.generator``
    ``Workload``), as readable lines: identified customers, their linked devices, deleted customers (404)
    and anonymous visitors that never logged in."""
    truth = workload.truth
    customers = truth["profiles"]
    visitors = anonymous_visitors(workload.lines, truth)
    ids = [*(c["user_id"] for c in customers), *(a for c in customers for a in c["anonymous_ids"]), *visitors]
    answers = fetch_profiles(worker, ids)
    problems: list[str] = []
    for customer in customers:
        user_id = customer["user_id"]
        if customer["deleted"]:
            for asked in (user_id, *customer["anonymous_ids"]):
                if answers[asked][0] != 404:
                    problems.append(f"{asked} of deleted {user_id}: HTTP {answers[asked][0]}, expected 404")
            continue
        status, document = answers[user_id]
        if status != 200:
            problems.append(f"{user_id}: HTTP {status}")
            continue
        expected = expected_document(customer)
        actual = observed_document(document)
        if actual != expected:
            problems.append(f"{user_id}: {actual} != truth {expected}")
        for anonymous_id in customer["anonymous_ids"]:
            status, via = answers[anonymous_id]
            if status != 200 or via.get("requested_id") != anonymous_id or via["customer_id"] != user_id:
                seen = (status, via and via.get("customer_id"), via and via.get("requested_id"))
                problems.append(f"{anonymous_id} of {user_id}: (HTTP, customer_id, requested_id) = {seen}")
            elif observed_document(via) != actual:
                problems.append(f"{anonymous_id} of {user_id}: another view {observed_document(via)} != {actual}")
    for anonymous_id, events in visitors.items():
        status, document = answers[anonymous_id]
        if status != 200 or document["customer_id"] != anonymous_id or document["event_count"] != events:
            seen = (status, document and document["customer_id"], document and document["event_count"])
            problems.append(f"visitor {anonymous_id}: (HTTP, customer_id, event_count) = {seen}, expected {events}")
    return problems


def expected_document(customer: dict) -> dict:
    return {
        "customer_id": customer["user_id"],
        "event_count": customer["events"],
        "orders": customer["orders"],
        "revenue": customer["revenue"],
        "refunds": customer["refunds"],
        "last_order_at": customer["last_order_at"],
        "linked_ids": sorted(customer["anonymous_ids"]),
    }


def observed_document(document: dict) -> dict:
    last_order_at = document["last_order_at"] or None  # the profile stores 0.0 for "no order yet"
    return {
        "customer_id": document["customer_id"],
        "event_count": document["event_count"],
        "orders": document["orders"],
        "revenue": document["revenue"],
        "refunds": document["computed"]["refunds"],
        "last_order_at": None if last_order_at is None else round(last_order_at, 3),
        "linked_ids": sorted(document["identity"]["linked_ids"]),
    }


def wait_for_ingested(pipeline: Pipeline, count: int, *, timeout_s: float) -> float:
    """Wait until the worker has ingested at least ``count`` events; returns how many it had."""
    deadline = time.monotonic() + timeout_s
    ingested = 0.0
    while time.monotonic() < deadline:
        ingested = metric_sum(read_metrics(pipeline.worker), "streamcdp_events_ingested_total")
        if ingested >= count:
            return ingested
        time.sleep(0.2)
    msg = f"only {ingested:.0f} of {count} events ingested within {timeout_s}s\n{pipeline.worker.log_tail()}"
    raise AssertionError(msg)
