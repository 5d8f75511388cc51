"""The exception tree of streamcdp; every error the project raises on purpose derives from one base.

StreamcdpError
├── InvalidEvent          an inbound message breaks the event contract (goes to the dead-letter topic)
├── ConfigError           a configuration file or setting is wrong (segment YAML, model file, ...)
└── LocalKafkaError       the project's own local broker cannot be set up, started or stopped
"""

from __future__ import annotations


class StreamcdpError(Exception):
    """Base of every error streamcdp raises on purpose."""


class InvalidEvent(StreamcdpError):
    """An inbound message breaks the contract; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ConfigError(StreamcdpError):
    """A configuration file or value is invalid; the message names the file, line and problem."""


class LocalKafkaError(StreamcdpError):
    """The local Kafka broker cannot be set up, started or stopped."""
