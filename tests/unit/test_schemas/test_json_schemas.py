"""The JSON Schema files for producers agree with the in-process contract (names, channels, limits)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from schemas.catalog import (
    CHANNELS,
    CLICKSTREAM_EVENTS,
    CUSTOMER_EVENTS,
    EMAIL_ALIASES,
    MESSAGING_EVENTS,
    PURCHASE_EVENTS,
)
from schemas.validation import ContractLimits

JSON_DIR = Path(__file__).resolve().parents[3] / "schemas" / "json"
FAMILY_EVENTS = {
    "clickstream": CLICKSTREAM_EVENTS,
    "purchase": PURCHASE_EVENTS,
    "messaging": MESSAGING_EVENTS | set(EMAIL_ALIASES),
    "customer": CUSTOMER_EVENTS,
}


def load(name: str) -> dict:
    return orjson.loads((JSON_DIR / f"{name}.json").read_bytes())


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [ref for key, value in node.items() for ref in ([value] if key == "$ref" else refs(value))]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def test_one_file_per_family_and_the_envelope() -> None:
    # ... and the outbound trigger payload's (generated, checked in test_trigger_schema.py).
    assert sorted(path.stem for path in JSON_DIR.glob("*.json")) == sorted([*FAMILY_EVENTS, "envelope", "trigger"])


@pytest.mark.parametrize("name", [*FAMILY_EVENTS, "envelope"])
def test_files_are_draft_2020_12_with_resolvable_refs(name: str) -> None:
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/v1/{name}.json")
    for ref in refs(schema):
        target, _, pointer = ref.partition("#")
        document = load(Path(target).stem) if target else schema
        for part in filter(None, pointer.split("/")):
            document = document[part]


@pytest.mark.parametrize("family", FAMILY_EVENTS)
def test_family_files_list_exactly_the_catalog_names(family: str) -> None:
    schema = load(family)
    track = next(branch for branch in schema["anyOf"] if branch["properties"]["type"].get("const") == "track")
    assert set(track["properties"]["event"]["enum"]) == set(FAMILY_EVENTS[family])


def test_envelope_limits_and_channels_match_the_validator() -> None:
    defs = load("envelope")["$defs"]
    limits = ContractLimits()
    assert set(defs["channel"]["enum"]) == CHANNELS
    assert defs["money"]["maximum"] == limits.max_amount
    assert defs["quantity"]["maximum"] == limits.max_quantity
    assert defs["properties"]["properties"]["products"]["maxItems"] == limits.max_array_length
