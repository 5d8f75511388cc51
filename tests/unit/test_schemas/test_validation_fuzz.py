"""Property: whatever arrives, ``decode_event`` returns an ``Event`` or raises ``InvalidEvent`` — nothing else.

Random bytes and random JSON reach only the first checks; the envelopes below are built per Segment call and
per track name of every family, with every field and property the validator reads present or absent and
holding any JSON value (nested lists and objects, integers of any size, floats, strings, null), so each
type check is reached with each wrong type.
"""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.catalog import (
    EMAIL_ALIASES,
    ID_PROPERTIES,
    MONEY_PROPERTIES,
    STRING_TRAITS,
    TRACK_FAMILIES,
)
from schemas.errors import InvalidEvent
from schemas.events import FAMILIES, OTHER, SEGMENT_TYPES, Event
from schemas.validation import MAX_ID_CHARS, REASONS, ContractLimits, decode_event

NOW = 1_764_000_000.0
LIMITS = ContractLimits(max_event_bytes=8192, max_depth=6, max_array_length=20)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_trees = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)

# Values that get past the first type check of a field, so the checks behind it are reached too.
plausible = st.sampled_from(
    [
        "2025-11-24T16:00:00Z",
        "email",
        "sms",
        "EUR",
        "eur",
        "a@b.c",
        "+49 30 1234567",
        "1988-04-02",
        "",
        "x" * (MAX_ID_CHARS + 1),
        "p-1",
        True,
        0,
        -1,
        1.5,
        10**12,
        NOW,
        [],
        {},
        [{}],
        {"product_id": "p"},
    ]
)
any_value = json_trees | plausible | st.floats(NOW - 1e6, NOW + 1e3)

# Every key the validator reads, in properties and in each product of properties.products ...
PROPERTY_KEYS = [*ID_PROPERTIES, *MONEY_PROPERTIES, "quantity", "currency", "channel", "granted", "query", "sku"]
# ... and in traits.
TRAIT_KEYS = [*STRING_TRAITS, "age", "preferred_channel", "address"]
TRACK_NAMES = sorted({*TRACK_FAMILIES, *EMAIL_ALIASES, "Something Custom"})


def objects_with(keys: list[str]) -> st.SearchStrategy[dict]:
    """Objects holding any subset of ``keys`` (plus a random one) with any value."""
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), any_value, max_size=len(keys))


properties = st.builds(
    lambda base, products: {**base, "products": products} if products is not None else base,
    objects_with(PROPERTY_KEYS),
    st.none() | any_value | st.lists(objects_with(PROPERTY_KEYS) | any_value, max_size=4),
)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from(SEGMENT_TYPES) | any_value},
    optional={
        "messageId": st.text(min_size=1, max_size=8) | any_value,
        "timestamp": st.just(NOW) | any_value,
        "event": st.sampled_from(TRACK_NAMES) | any_value,
        "name": any_value,
        "userId": st.just("u-1") | any_value,
        "anonymousId": st.just("a-1") | any_value,
        "previousId": any_value,
        "groupId": any_value,
        "properties": properties | any_value,
        "traits": objects_with(TRAIT_KEYS) | any_value,
        "context": objects_with(["traits", "ip", "page"]) | any_value,
    },
)


def valid_track(name: str) -> dict:
    return {"type": "track", "event": name, "messageId": "m-1", "userId": "u-1", "timestamp": NOW}


def decode_or_reject(raw: bytes) -> None:
    try:
        event = decode_event(raw, now=NOW, limits=LIMITS)
    except InvalidEvent as exc:
        assert exc.reason in REASONS
        return
    assert isinstance(event, Event)
    assert event.type in SEGMENT_TYPES
    assert event.family in (*FAMILIES, OTHER)
    assert event.routing_id
    for value in (event.message_id, event.user_id, event.anonymous_id, event.previous_id):
        assert value is None or (isinstance(value, str) and len(value) <= MAX_ID_CHARS)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    decode_or_reject(raw)


@FUZZ
@given(json_trees)
def test_random_json_trees(tree: object) -> None:
    decode_or_reject(orjson.dumps(tree))


@FUZZ
@given(envelopes)
@example({"type": "track", "event": "Message Sent", "messageId": "m", "userId": "u", "properties": {"channel": []}})
@example({"type": "identify", "messageId": "m", "userId": "u", "timestamp": NOW, "traits": {"preferred_channel": {}}})
def test_random_envelopes(payload: dict) -> None:
    decode_or_reject(orjson.dumps(payload))


@FUZZ
@given(st.sampled_from(TRACK_NAMES), properties, st.sampled_from(PROPERTY_KEYS + ["products"]), any_value)
def test_every_track_name_with_any_value_in_any_property(name: str, props: dict, key: str, value: object) -> None:
    """A valid envelope of each track name, whose properties hold any value in a key the validator reads."""
    decode_or_reject(orjson.dumps({**valid_track(name), "properties": {**props, key: value}}))


@FUZZ
@given(st.sampled_from(["identify", "page", "screen", "alias"]), st.sampled_from(TRAIT_KEYS), any_value)
def test_every_call_with_any_value_in_any_trait(call: str, key: str, value: object) -> None:
    payload = {**valid_track("x"), "type": call, "previousId": "a-0", "traits": {key: value}}
    decode_or_reject(orjson.dumps(payload))


@FUZZ
@given(
    st.sampled_from(["messageId", "userId", "anonymousId", "previousId", "timestamp", "event", "name", "type"]),
    any_value,
)
def test_any_value_in_any_envelope_field(field: str, value: object) -> None:
    decode_or_reject(orjson.dumps({**valid_track("Product Viewed"), "properties": {"product_id": "p"}, field: value}))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes, st.integers(0, 400), st.binary(min_size=1, max_size=3))
def test_corrupted_bytes_of_envelopes(payload: dict, position: int, junk: bytes) -> None:
    raw = orjson.dumps(payload)
    position = min(position, len(raw))
    decode_or_reject(raw[:position] + junk + raw[position + 1 :])
