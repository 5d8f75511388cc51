"""Run one streamcdp worker process: the stream runtime (``streams.runtime``) and its web API, until
SIGTERM / SIGINT; then flush, commit, leave the consumer group and close the stores."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

from streams import gauges
from streams.logs import configure_logging
from streams.runtime import Runtime
from streams.settings import Settings
from streams.stage_config import stage_policy
from streams.topics import ensure_topics
from streams.web import start_web

log = logging.getLogger(__name__)


def web_url(settings: Settings) -> str:
    """The address other workers send profile reads to (307): ``STREAMCDP_ADVERTISED_URL`` when set (a
    worker bound to 0.0.0.0 cannot be reached at that address), else the bound host and port."""
    return settings.advertised_url.rstrip("/") or f"http://{settings.web_host}:{settings.web_port}"


# The cyclic GC's default thresholds (700, 10, 10) run a young collection every 700 allocations; the
# stage allocates a few hundred objects per event and keeps tens of thousands of decoded profiles
# cached, so collections cost ~15 % of the worker's CPU on a backlog (measured: 9,400 → 10,900-11,400
# events/s with these). Its data holds no reference cycles; asyncio's rare ones are still collected.
GC_THRESHOLDS = (50_000, 20, 100)


async def serve(settings: Settings) -> None:
    runtime = Runtime(settings, stage_policy(settings), web_url(settings))
    gc.freeze()  # modules, settings and the compiled segment rules live as long as the process
    gc.set_threshold(*GC_THRESHOLDS)
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
    configure_logging(settings.log_level, settings.log_format)
    ensure_topics(settings)
    asyncio.run(serve(settings))
