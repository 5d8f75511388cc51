"""Run one streamcdp worker process: the stream runtime (``streams.runtime``) and its web API, until
SIGTERM / SIGINT; then flush, commit, leave the consumer group and close the stores."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

from aiokafka import AIOKafkaProducer

from agents.outbox import Outbox
from agents.pipeline import ProfilePipeline
from streams import gauges, metrics, recovery
from streams.assignor import CoPartitionAssignor
from streams.checkpoint import transactional_id
from streams.compiled import check_compiled_modules
from streams.eos_v2 import GroupFencedProducer, StableOffsetsConsumer
from streams.logs import configure_logging
from streams.runtime import Runtime
from streams.security import check_production_settings, pii_policy
from streams.settings import Settings
from streams.stage_config import contract_limits, stage_policy
from streams.topics import ensure_topics, topic_names
from streams.web import start_web

log = logging.getLogger(__name__)


def web_url(settings: Settings) -> str:
    """The address other workers send profile reads to (307): ``STREAMCDP_ADVERTISED_URL`` when set (a
    worker bound to 0.0.0.0 cannot be reached at that address), else the bound host and port."""
    return settings.advertised_url.rstrip("/") or f"http://{settings.web_host}:{settings.web_port}"


def worker_transactional_id(settings: Settings) -> str:
    """The worker's transactional id: its web address, the name the assignor already gives it (unique among
    live workers, since two cannot serve one address; the same after a restart, so the restarted worker's
    ``init_transactions`` aborts what its previous incarnation left open). Fencing a zombie that lost its
    partitions is the group's job (``streams.eos_v2``), not the id's."""
    return transactional_id(settings.app_id, web_url(settings).split("://", 1)[-1])


def build_runtime(settings: Settings) -> Runtime:
    """The runtime with its stage handlers (``agents.pipeline``) and its Kafka clients, not started: a
    producer (at least once, or transactional for the whole worker with exactly once), the group
    consumer and the restore consumer, both reading committed records only."""
    outbox = Outbox()
    stages = ProfilePipeline(
        stage_policy(settings),
        topics=topic_names(settings),
        limits=contract_limits(settings),
        privacy=pii_policy(settings),
        outbox=outbox,
        tally=metrics.tally,
    )
    assignor = CoPartitionAssignor(web_url(settings))
    bootstrap = settings.broker_bootstrap

    def producer(client_id: str, transactional_id: str | None = None) -> AIOKafkaProducer:
        # Exactly-once: the producer whose transactional offset commits carry the group's generation.
        kind = AIOKafkaProducer if transactional_id is None else GroupFencedProducer
        return kind(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            # A flush queues all its records before it waits for them (streams.checkpoint): a linger would only
            # hold the produce request back, and a live flush's outputs with it (bench README, latency round 4).
            linger_ms=0,
            max_batch_size=512 * 1024,
            client_id=client_id,
            transactional_id=transactional_id,
        )

    exactly_once = settings.processing_guarantee == "exactly_once"
    consumer = StableOffsetsConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.app_id,
        client_id=f"{settings.app_id}-worker",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(assignor,),
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        max_poll_interval_ms=300_000,
        max_partition_fetch_bytes=settings.fetch_partition_bytes,
        fetch_max_bytes=settings.fetch_max_bytes,
        isolation_level="read_committed",  # offsets committed by a transaction become visible with it
    )
    restore_consumer = recovery.restore_consumer(settings, client_id=f"{settings.app_id}-restore")
    return Runtime(
        settings,
        stages,
        outbox=outbox,
        producer=producer(f"{settings.app_id}-worker", worker_transactional_id(settings) if exactly_once else None),
        consumer=consumer,
        restore_consumer=restore_consumer,
        assignor=assignor,
    )


# The cyclic GC's default thresholds (700, 10, 10) run a young collection every 700 allocations; the
# stage allocates a few hundred objects per event and keeps tens of thousands of decoded profiles
# cached, so collections cost ~15 % of the worker's CPU on a backlog (measured: 9,400 → 10,900-11,400
# events/s with these). Its data holds no reference cycles; asyncio's rare ones are still collected.
GC_THRESHOLDS = (50_000, 20, 100)


async def serve(settings: Settings) -> None:
    runtime = build_runtime(settings)
    gc.freeze()  # modules, settings and the compiled segment rules live as long as the process
    gc.set_threshold(*GC_THRESHOLDS)
    metrics.gc_pauses.install()
    loop = asyncio.get_running_loop()
    stop_requested: list[float] = []

    def request_stop() -> None:
        # Logged with the time it takes, so an orchestrator's grace period can be checked against it.
        stop_requested.append(time.monotonic())
        log.info("stop requested: flushing, committing, leaving the consumer group")
        runtime.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)
    gauges.watch_worker(lambda: runtime.ready, settings.data_dir)
    runner = await start_web(runtime)
    try:
        await runtime.start()
        log.info("worker %s up: web %s, group %s", settings.app_id, web_url(settings), settings.app_id)
        await runtime.run()
    finally:
        try:
            await runtime.close()
        finally:
            await runner.cleanup()
        if stop_requested:
            log.info("worker stopped %.2f s after the stop request", time.monotonic() - stop_requested[0])
        else:
            log.info("worker stopped")


def run_worker() -> None:
    """Create the project's topics if needed, then run the worker until SIGTERM / SIGINT."""
    settings = Settings()
    check_production_settings(settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    configure_logging(settings.log_level, settings.log_format)
    check_compiled_modules()  # no mypyc extension older than its source runs (scripts/build_compiled.sh)
    ensure_topics(settings)
    asyncio.run(serve(settings))
