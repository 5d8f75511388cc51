"""Run one streamcdp worker process: the stream runtime (``streams.runtime``) and its web API, until
SIGTERM / SIGINT; then flush, commit, leave the consumer group and close the stores."""

from __future__ import annotations

import asyncio
import logging
import signal

from streams.runtime import Runtime
from streams.settings import Settings
from streams.stage_config import stage_policy
from streams.topics import ensure_topics
from streams.web import start_web

log = logging.getLogger(__name__)


def web_url(settings: Settings) -> str:
    """The address other workers send profile reads to (307)."""
    return f"http://{settings.web_host}:{settings.web_port}"


async def serve(settings: Settings) -> None:
    runtime = Runtime(settings, stage_policy(settings), web_url(settings))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runtime.stop)
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
        log.info("worker stopped")


def run_worker() -> None:
    """Create the project's topics if needed, then run the worker until SIGTERM / SIGINT."""
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    ensure_topics(settings)
    asyncio.run(serve(settings))
