"""Logging set-up of streamcdp processes: plain text for a terminal, one JSON object per line for a log
pipeline (``STREAMCDP_LOG_FORMAT=json``).

A log call about one input record passes ``extra=record_context(partition, record)``; both formats then
show the record's topic, partition and offset, so an error can be found and replayed from Kafka.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

# ``extra`` fields a record error carries; shown by both formats when present.
RECORD_FIELDS = ("topic", "partition", "offset")


def record_context(partition: int, record=None) -> dict[str, object]:
    """``extra=`` of a log call about one input record (or, for a command time made due, its partition)."""
    if record is None:
        return {"partition": partition}
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _record_fields(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in RECORD_FIELDS if hasattr(record, name)}


class TextFormatter(logging.Formatter):
    """``time level logger: message [topic=… partition=… offset=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _record_fields(record)
        if fields:
            text += " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]"
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, record fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_record_fields(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure_logging(level: str, log_format: str) -> None:
    """Root logger to stderr at ``level`` in ``log_format`` (``text`` or ``json``); Kafka clients' chatter
    only from WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
