"""Shared fixtures: the real local Kafka broker (started and stopped by pid here) and worker processes.

Integration tests run against a real single-node KRaft broker on a free 127.0.0.1 port, started once per
test session by ``streams.kafka_local``. Each test that needs a worker gets its own topic prefix and
application id, so tests never see each other's data on the shared broker.
"""

from __future__ import annotations

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

from schemas.topics import TopicNames
from streams import kafka_local
from streams.http_probe import http_get
from streams.settings import Settings

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


@pytest.fixture
def make_pipeline(kafka_settings: Settings, tmp_path: Path) -> Iterator:
    """Factory: ``make_pipeline(**setting_overrides)`` → a started ``Pipeline``; all stopped at teardown."""
    started: list[Pipeline] = []

    def _make(start: bool = True, **overrides: object) -> Pipeline:
        tag = uuid.uuid4().hex[:8]
        web_port = kafka_local.free_port()
        values: dict[str, object] = {
            "broker_url": kafka_settings.broker_url,
            "topic_prefix": f"t{tag}.",
            "app_id": f"streamcdp-test-{tag}",
            "data_dir": tmp_path / f"data-{tag}",
            "web_port": web_port,
            "topic_partitions": 4,
            "cart_abandonment_delay_s": 2.0,
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
        worker = WorkerProcess(env, tmp_path / f"worker-{tag}.log", web_port, settings.api_token)
        pipeline = Pipeline(settings, worker, KafkaIO(settings.broker_bootstrap))
        started.append(pipeline)
        if start:
            worker.start()
        return pipeline

    yield _make
    for pipeline in started:
        for worker in pipeline.more_workers:
            worker.stop()
        pipeline.worker.stop()
        pipeline.kafka.close()


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


def consumer_lag(pipeline: Pipeline) -> dict[str, int]:
    """Per source topic of the worker (inbound + profile-commands): end offsets minus the group's commits."""
    from kafka import KafkaAdminClient, KafkaConsumer

    topics = [*pipeline.topics.all_inbound, pipeline.topics.profile_commands]
    admin = KafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap, request_timeout_ms=10_000)
    consumer = KafkaConsumer(
        bootstrap_servers=pipeline.kafka.bootstrap, request_timeout_ms=10_000, isolation_level="read_committed"
    )
    try:
        committed = admin.list_group_offsets(pipeline.settings.app_id).get(pipeline.settings.app_id, {})
        partitions = [tp for tp in committed if tp.topic in topics]
        ends = consumer.end_offsets([*{*partitions, *_all_partitions(consumer, topics)}])
    finally:
        consumer.close()
        admin.close()
    lag: dict[str, int] = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
        lag[tp.topic] += max(end - done, 0)
    return lag


def _all_partitions(consumer, topics: list[str]) -> list:
    from kafka import TopicPartition

    return [TopicPartition(topic, p) for topic in topics for p in (consumer.partitions_for_topic(topic) or ())]


def wait_until_drained(pipeline: Pipeline, *, timeout_s: float, quiet_s: float = 2.0) -> float:
    """Wait until the worker's consumer group has committed everything on its source topics (inbound and
    profile-commands, so forwarded links/merges too) and stays so for ``quiet_s``; returns seconds waited.

    Committed offsets survive a ``kill9`` (unlike ``/metrics`` counters), so this works across restarts.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    idle_since: float | None = None
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        worker = pipeline.worker
        if worker.proc is not None and worker.proc.poll() is not None:
            msg = f"worker exited with {worker.proc.returncode}; log:\n{worker.log_tail()}"
            raise AssertionError(msg)
        lag = consumer_lag(pipeline)
        if sum(lag.values()) == 0:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= quiet_s:
                return time.monotonic() - started
        else:
            idle_since = None
        time.sleep(0.5)
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
