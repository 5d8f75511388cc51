"""Log formats (streams.logs): a record error names its topic, partition and offset in text and JSON."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import orjson

from streams.logs import JsonFormatter, TextFormatter, record_context


def log_record(message: str, extra: dict, exc_info=None) -> logging.LogRecord:
    record = logging.LogRecord("streams.runtime", logging.ERROR, __file__, 1, message, (), exc_info)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


CONSUMED = SimpleNamespace(topic="events.purchase", partition=3, offset=4711)


def test_json_line_carries_the_record_position_and_the_exception() -> None:
    try:
        msg = "bad profile"
        raise ValueError(msg)
    except ValueError:
        exc_info = sys.exc_info()
    line = JsonFormatter().format(log_record("processing failed", record_context(3, CONSUMED), exc_info))
    document = orjson.loads(line)
    assert (document["topic"], document["partition"], document["offset"]) == ("events.purchase", 3, 4711)
    assert document["level"] == "error" and document["message"] == "processing failed"
    assert "ValueError: bad profile" in document["exception"]
    assert "\n" not in line


def test_text_line_appends_the_record_position() -> None:
    line = TextFormatter().format(log_record("processing failed", record_context(3, CONSUMED)))
    assert line.endswith("processing failed [topic=events.purchase partition=3 offset=4711]")


def test_a_command_made_due_by_the_clock_names_its_partition() -> None:
    assert record_context(2) == {"partition": 2}
    document = orjson.loads(JsonFormatter().format(log_record("processing failed", record_context(2))))
    assert document["partition"] == 2 and "offset" not in document


def test_lines_without_a_record_have_no_position() -> None:
    assert TextFormatter().format(log_record("worker up", {})).endswith("streams.runtime: worker up")
