"""The exception tree of streamcdp; every error the project raises on purpose derives from one base.

StreamcdpError
├── InvalidRecord             an input record the stage cannot take (goes to the dead-letter topic)
│   ├── InvalidEvent          an inbound message breaks the event contract
│   └── UndecodableCommand    a ``profile-commands`` record is not a command this version can decode
├── ConfigError               a configuration file or setting is wrong (segment YAML, model file, ...)
└── LocalKafkaError           the project's own local broker cannot be set up, started or stopped
"""

from __future__ import annotations


class StreamcdpError(Exception):
    """Base of every error streamcdp raises on purpose."""


class InvalidRecord(StreamcdpError):
    """An input record the stage cannot take; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class InvalidEvent(InvalidRecord):
    """An inbound message breaks the contract; ``reason`` is one of ``schemas.validation.REASONS``."""


class UndecodableCommand(InvalidRecord):
    """A record of the internal ``profile-commands`` topic that does not decode (only a bug writes one)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("undecodable_command", detail)


class ConfigError(StreamcdpError):
    """A configuration file or value is invalid; the message names the file, line and problem."""


class LocalKafkaError(StreamcdpError):
    """The local Kafka broker cannot be set up, started or stopped."""
