"""Run one streamcdp worker process: the agents, the trigger clock and the web API of ``streams.app``."""

from __future__ import annotations

import faust

import agents.ingest  # noqa: F401  (importing registers the agent)
import agents.profiles  # noqa: F401
import agents.triggers  # noqa: F401
import streams.web  # noqa: F401  (importing registers the views)
from streams.app import app, settings
from streams.topics import ensure_topics


def run_worker() -> None:
    """Create the project's topics if needed, then run the worker until SIGTERM / SIGINT."""
    ensure_topics(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), override_logging=True)
    # The terminal spinner sets the root logger to DEBUG, so every aiokafka send built a log record
    # (8% of the worker's CPU in a py-spy profile). A service has no terminal to spin on.
    worker.spinner = None
    worker.execute_from_commandline()
