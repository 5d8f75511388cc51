"""The trigger-conversions payload: its JSON Schema file is generated from the record; the report formats it."""

from __future__ import annotations

from pathlib import Path

import orjson

from core.uplift import kind_report
from schemas.conversions import ChannelStats, KindStats, conversion_json_schema
from schemas.topics import TopicNames
from streams.report_cli import format_trigger_report

JSON_DIR = Path(__file__).resolve().parents[3] / "schemas" / "json"


def test_the_schema_file_is_the_generated_schema():
    assert orjson.loads((JSON_DIR / "trigger-conversion.json").read_bytes()) == conversion_json_schema(), (
        "regenerate: streamcdp report conversion-schema > schemas/json/trigger-conversion.json"
    )


def test_the_conversions_topic_is_declared_and_not_a_trigger_topic():
    topics = TopicNames(prefix="shop.")
    assert topics.trigger_conversions == "shop.trigger-conversions"
    assert topics.trigger_conversions in topics.all_declared
    assert not topics.trigger_conversions.startswith("shop.triggers.")


def test_the_report_prints_rates_uplift_and_channels():
    stats = KindStats(
        sent=70,
        holdout=80,
        converted_treatment=56,
        converted_holdout=48,
        revenue_treatment=123456,
        channels={"sms": ChannelStats(sent=70, delivered=70, opened=35, clicked=7)},
    )
    text = format_trigger_report({"kinds": {"cart_abandonment": kind_report(stats)}, "complete": True})
    row = next(line for line in text.splitlines() if line.startswith("cart_abandonment"))
    assert row.split() == [
        "cart_abandonment",
        "70",
        "80",
        "80.0%",
        "60.0%",
        "+20.0pp",
        "[+5.2,",
        "+33.4]pp",
        "1234.56",
        "0.00",
    ]
    assert "opened  50.0%" in text and "clicked  10.0%" in text
    assert "INCOMPLETE" in format_trigger_report({"kinds": {}, "complete": False, "missing_partitions": [3]})
