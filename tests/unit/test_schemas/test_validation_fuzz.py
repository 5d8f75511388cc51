"""Property: whatever bytes arrive, ``decode_event`` returns an ``Event`` or raises ``InvalidEvent`` — nothing else."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import InvalidEvent
from schemas.events import FAMILIES, OTHER, SEGMENT_TYPES, Event
from schemas.validation import REASONS, ContractLimits, decode_event

NOW = 1_764_000_000.0
LIMITS = ContractLimits(max_event_bytes=4096, max_depth=6, max_array_length=20)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_trees = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=12) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)

# Near-valid envelopes: right keys, random values, so the deeper checks are reached too.
field_values = st.one_of(
    json_trees,
    st.sampled_from(
        [
            *SEGMENT_TYPES,
            "Order Completed",
            "Email Opened",
            "Consent Updated",
            "Message Sent",
            "Product Added",
            "2025-11-24T16:00:00Z",
            "email",
            "sms",
            "EUR",
        ]
    ),
    st.floats(NOW - 1e6, NOW + 1e3),
    st.just(NOW),
)
property_keys = st.sampled_from(
    [
        "product_id",
        "price",
        "quantity",
        "total",
        "currency",
        "products",
        "channel",
        "granted",
        "order_id",
        "query",
        "sku",
        "trigger_id",
        "revenue",
    ]
)
envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(SEGMENT_TYPES) | json_trees,
        "messageId": st.text(min_size=1, max_size=8) | json_trees,
        "timestamp": st.just(NOW) | field_values,
    },
    optional={
        "event": field_values,
        "name": field_values,
        "userId": field_values,
        "anonymousId": field_values,
        "previousId": field_values,
        "properties": st.dictionaries(
            property_keys,
            field_values | st.lists(st.dictionaries(property_keys, field_values, max_size=5), max_size=3),
            max_size=6,
        )
        | json_trees,
        "traits": st.dictionaries(
            st.sampled_from(["email", "phone", "age", "birthday", "preferred_channel"]), field_values, max_size=4
        )
        | json_trees,
        "context": json_trees,
    },
)


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
    assert isinstance(event.message_id, str)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    decode_or_reject(raw)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(json_trees)
def test_random_json_trees(tree: object) -> None:
    decode_or_reject(orjson.dumps(tree))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(envelopes)
def test_random_envelopes(payload: dict) -> None:
    decode_or_reject(orjson.dumps(payload))


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes, st.integers(0, 400), st.binary(min_size=1, max_size=3))
def test_corrupted_bytes_of_envelopes(payload: dict, position: int, junk: bytes) -> None:
    raw = orjson.dumps(payload)
    position = min(position, len(raw))
    decode_or_reject(raw[:position] + junk + raw[position + 1 :])
