"""The trigger payload: its JSON Schema file is generated from the record, and a built trigger fits it."""

from __future__ import annotations

from pathlib import Path

import msgspec
import orjson

from schemas.triggers import Trigger, TriggerItem, trigger_json_schema

JSON_DIR = Path(__file__).resolve().parents[3] / "schemas" / "json"
CONTRACT = Path(__file__).resolve().parents[3] / "schemas" / "CONTRACT.md"


def test_the_schema_file_is_the_generated_schema():
    assert orjson.loads((JSON_DIR / "trigger.json").read_bytes()) == trigger_json_schema(), (
        "regenerate: streamcdp triggers schema > schemas/json/trigger.json"
    )


def test_the_schema_requires_what_a_sender_cannot_do_without():
    schema = trigger_json_schema()["$defs"]["Trigger"]
    assert {"trigger_id", "kind", "customer_id", "user_id", "channel", "decided_at", "send_at"} <= set(
        schema["required"]
    )
    assert {"items", "value", "currency", "recommendations", "offer", "segments", "timezone", "locale"} <= set(
        schema["properties"]
    )


def test_the_contract_example_decodes_as_a_trigger():
    text = CONTRACT.read_text()
    start = text.index("```json\n", text.index("## Trigger messages")) + len("```json\n")
    example = text[start : text.index("```", start)]
    trigger = msgspec.json.decode(example.encode(), type=Trigger)
    assert trigger.kind == "cart_abandonment" and trigger.items[0] == TriggerItem(
        product_id="rope-9mm",
        name="Rope 9mm",
        category="climbing",
        price=8990,
        quantity=1,
        image_url="https://shop.example/img/rope-9mm.jpg",
        url="https://shop.example/p/rope-9mm",
    )
