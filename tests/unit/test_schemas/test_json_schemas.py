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
    TRACK_FAMILIES,
)
from schemas.events import CLICKSTREAM, OTHER, SEGMENT_TYPES
from schemas.validation import MAX_ID_CHARS, ContractLimits, family_of

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
    # ... the outbound trigger and conversion payloads' (generated, checked in test_trigger_schema.py and
    # test_conversion_schema.py) and the dead-letter record's.
    expected = [*FAMILY_EVENTS, "envelope", "trigger", "trigger-conversion", "deadletter"]
    assert sorted(path.stem for path in JSON_DIR.glob("*.json")) == sorted(expected)


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
    assert defs["id"]["maxLength"] == defs["nonEmptyId"]["anyOf"][0]["maxLength"] == MAX_ID_CHARS


def _branches(family: str) -> list[dict]:
    return load(family)["anyOf"]


def _accepted_types(family: str) -> set[str]:
    """The non-track call types a family file accepts."""
    types: set[str] = set()
    for branch in _branches(family):
        spec = branch["properties"]["type"]
        types.update(spec.get("enum", []))
    return types


def test_the_schemas_accept_every_call_type_the_worker_accepts() -> None:
    assert set(load("envelope")["properties"]["type"]["enum"]) == set(SEGMENT_TYPES)
    for call_type in set(SEGMENT_TYPES) - {"track"}:
        owners = [family for family in FAMILY_EVENTS if call_type in _accepted_types(family)]
        assert owners == [family_of(call_type, None)], call_type


def test_the_schemas_accept_every_track_name_the_worker_accepts() -> None:
    """Each catalog name in its family's file; any other name (family ``other``, sent to events.clickstream)
    matches the clickstream file's catch-all branch, which excludes exactly the other families' names."""
    for name, family in TRACK_FAMILIES.items():
        track = next(b for b in _branches(family) if b["properties"]["type"].get("const") == "track")
        assert name in track["properties"]["event"]["enum"], (name, family)
    catch_all = [
        branch["properties"]["event"]
        for branch in _branches(CLICKSTREAM)
        if branch["properties"]["type"].get("const") == "track" and "not" in branch["properties"]["event"]
    ]
    assert len(catch_all) == 1
    excluded = set(catch_all[0]["not"]["enum"])
    assert excluded == {name for name, family in TRACK_FAMILIES.items() if family != CLICKSTREAM}
    assert family_of("track", "Some Name Nobody Models") == OTHER


def test_group_calls_need_a_group_id_in_the_envelope() -> None:
    rules = [rule for rule in load("envelope")["allOf"] if rule["if"]["properties"]["type"].get("const") == "group"]
    assert rules and rules[0]["then"]["required"] == ["groupId"]
