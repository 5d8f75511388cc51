"""decode_event: one table of accepted inputs and their normalisation, one table per rejection reason."""

from __future__ import annotations

import copy

import orjson
import pytest

from schemas.errors import InvalidEvent
from schemas.events import CLICKSTREAM, CUSTOMER, MESSAGING, OTHER, PURCHASE
from schemas.validation import (
    MAX_ID_CHARS,
    REASONS,
    ContractLimits,
    decode_event,
    decode_payload,
    family_of,
    parse_timestamp,
)

NOW = 1_764_000_000.0  # 2025-11-24T16:00:00Z
ISO_NOW = "2025-11-24T16:00:00Z"


def envelope(**fields: object) -> dict:
    base = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": ISO_NOW,
        "properties": {"product_id": "p-1", "price": 10.5},
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


DEFAULT_LIMITS = ContractLimits()


def decode(payload: object, limits: ContractLimits = DEFAULT_LIMITS):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return decode_event(raw, now=NOW, limits=limits)


def reason_of(payload: object, limits: ContractLimits = DEFAULT_LIMITS) -> str:
    with pytest.raises(InvalidEvent) as caught:
        decode(payload, limits)
    assert caught.value.reason in REASONS, caught.value.reason
    return caught.value.reason


# --- accepted ------------------------------------------------------------------------------------

VALID = [
    ("page", envelope(type="page", event=..., name="Home", properties={"url": "https://x"}), CLICKSTREAM),
    ("screen", envelope(type="screen", event=..., name="Cart", properties={}), CLICKSTREAM),
    ("search", envelope(event="Products Searched", properties={"query": "tent"}), CLICKSTREAM),
    ("list", envelope(event="Product List Viewed", properties={"category": "tents"}), CLICKSTREAM),
    ("viewed", envelope(), CLICKSTREAM),
    ("added", envelope(event="Product Added", properties={"product_id": 7, "price": 3, "quantity": 2}), CLICKSTREAM),
    ("removed", envelope(event="Product Removed", properties={"sku": "S-1"}), CLICKSTREAM),
    ("cart", envelope(event="Cart Viewed", properties={}), CLICKSTREAM),
    ("checkout", envelope(event="Checkout Started", properties={"order_id": 5}), CLICKSTREAM),
    ("order total", envelope(event="Order Completed", properties={"total": 12.0, "currency": "eur"}), PURCHASE),
    (
        "order pos",
        envelope(
            event="Order Completed",
            properties={
                "order_id": "o1",
                "store_id": 12,
                "payment_method": "cash",
                "coupon": "X",
                "products": [
                    {"product_id": "b1", "category": "hiking-boots", "price": 99.9, "quantity": 1, "size": "42"}
                ],
            },
        ),
        PURCHASE,
    ),
    ("refund", envelope(event="Order Refunded", properties={"order_id": "o1"}), PURCHASE),
    ("sent", envelope(event="Message Sent", properties={"channel": "sms", "trigger_id": 9}), MESSAGING),
    ("email alias", envelope(event="Email Opened", properties={}), MESSAGING),
    ("unsubscribed", envelope(event="Unsubscribed", properties={}), MESSAGING),
    (
        "identify",
        envelope(
            type="identify",
            event=...,
            properties=...,
            traits={
                "email": " A@B.com ",
                "phone": 4912345,
                "age": 31,
                "gender": "f",
                "city": "Lyon",
                "country": "FR",
                "timezone": "Europe/Paris",
                "loyalty_tier": "gold",
                "preferred_channel": "whatsapp",
            },
        ),
        CUSTOMER,
    ),
    ("alias", envelope(type="alias", event=..., properties=..., previousId="anon-1"), CUSTOMER),
    ("consent", envelope(event="Consent Updated", properties={"channel": "email", "granted": False}), CUSTOMER),
    ("deletion", envelope(event="Deletion Requested", properties={}), CUSTOMER),
    ("unknown name", envelope(event="Wishlist Shared", properties={"x": 1}), OTHER),
    (
        "group",
        envelope(type="group", event=..., properties=..., groupId=77, traits={"name": "Doe household", "email": "x"}),
        CUSTOMER,
    ),
    ("order cancelled", envelope(event="Order Cancelled", properties={"order_id": "o1", "total": 5}), PURCHASE),
    ("order updated", envelope(event="Order Updated", properties={"order_id": "o1"}), PURCHASE),
    ("order cancelled bare", envelope(event="Order Cancelled", properties={}), PURCHASE),
    ("wishlist", envelope(event="Product Added to Wishlist", properties={"product_id": "p"}), CLICKSTREAM),
    ("coupon", envelope(event="Coupon Applied", properties={"coupon_id": "c", "discount": 2}), CLICKSTREAM),
    ("checkout step", envelope(event="Checkout Step Completed", properties={"step": 2}), CLICKSTREAM),
    ("promotion viewed", envelope(event="Promotion Viewed", properties={"promotion_id": "x"}), CLICKSTREAM),
    ("promotion clicked", envelope(event="Promotion Clicked", properties={}), CLICKSTREAM),
    ("shared", envelope(event="Product Shared", properties={"share_via": "email"}), CLICKSTREAM),
    ("reviewed", envelope(event="Product Reviewed", properties={"rating": 5}), CLICKSTREAM),
    ("anonymous only", envelope(userId=..., anonymousId="a-1"), CLICKSTREAM),
    ("integer ids", envelope(userId=42, messageId=7), CLICKSTREAM),
    ("epoch ms", envelope(timestamp=NOW * 1000), CLICKSTREAM),
    ("epoch s", envelope(timestamp=NOW - 10), CLICKSTREAM),
]


@pytest.mark.parametrize(("payload", "family"), [case[1:] for case in VALID], ids=[case[0] for case in VALID])
def test_valid_events_decode_to_their_family(payload: dict, family: str) -> None:
    assert decode(payload).family == family


def test_normalisation_of_ids_money_currency_quantity_and_time() -> None:
    event = decode(
        envelope(
            event="Order Completed",
            userId=42,
            timestamp="2025-11-24T17:00:00+01:00",
            properties={
                "order_id": 9,
                "total": 19.99,
                "currency": "eur",
                "store_id": 3,
                "products": [{"product_id": 1, "price": 9.99, "quantity": 2.0}],
            },
        )
    )
    assert event.user_id == "42"
    assert event.timestamp == NOW
    props = event.properties
    assert (props["order_id"], props["store_id"], props["total"], props["currency"]) == ("9", "3", 1999, "EUR")
    assert props["products"] == [{"product_id": "1", "price": 999, "quantity": 2}]


def test_email_aliases_become_message_events_on_the_email_channel() -> None:
    event = decode(envelope(event="Email Link Clicked", properties={"channel": "sms"}))
    assert (event.event, event.properties["channel"], event.family) == ("Message Clicked", "email", MESSAGING)
    assert family_of("track", "Email Bounced") == MESSAGING


def test_identify_traits_are_normalised() -> None:
    event = decode(envelope(type="identify", event=..., traits={"email": " A@B.com ", "phone": 4912345, "age": 31.0}))
    assert event.traits == {"email": "a@b.com", "phone": "4912345", "age": 31}


def test_group_calls_keep_the_group_id_and_its_traits_unchecked() -> None:
    event = decode(envelope(type="group", event=..., properties=..., groupId=77, traits={"email": "team", "size": 4}))
    assert (event.type, event.group_id, event.traits) == ("group", "77", {"email": "team", "size": 4})


def test_decoding_does_not_mutate_or_share_the_payload() -> None:
    payload = envelope(
        event="Order Completed", properties={"total": 1.0, "products": [{"product_id": "a", "price": 1}]}
    )
    before = copy.deepcopy(payload)
    decode(payload)
    assert payload == before


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-11-24T16:00:00Z", NOW),
        ("2025-11-24T16:00:00.500Z", NOW + 0.5),
        ("2025-11-24T16:00:00", NOW),
        ("2025-11-24T18:00:00+02:00", NOW),
        (NOW, NOW),
        (NOW * 1000, NOW),
        (int(NOW), NOW),
    ],
)
def test_parse_timestamp_forms(value: object, expected: float) -> None:
    assert parse_timestamp(value) == expected


# --- rejected: one table per reason -------------------------------------------------------------

deep: dict = {"x": 1}
for _ in range(20):
    deep = {"x": deep}

REJECTED = {
    "oversized": [envelope(properties={"product_id": "p", "blob": "x" * 70_000})],
    "not_utf8": [b"\xff\xfe not json at all", b'{"type": "track", "event": "\xc3\x28"}'],
    "not_json": [b"", b"{", b"{'type': 'track'}", b"NaN", b"\xef\xbb\xbf{}", b'{"a": 1}{"b": 2}'],
    "not_an_object": [[1, 2], "track", 3, None, True],
    "too_deep": [envelope(properties={"product_id": "p", "deep": deep}), b"[" * 2000 + b"]" * 2000],
    "array_too_long": [envelope(properties={"product_id": "p", "list": list(range(1001))})],
    "unknown_type": [envelope(type="trackk"), envelope(type=...), envelope(type=1), envelope(type=["track"])],
    "missing_field": [
        envelope(messageId=...),
        envelope(messageId=""),
        envelope(timestamp=...),
        envelope(event=...),
        envelope(event=""),
        envelope(type="alias", previousId=...),
        envelope(type="alias", previousId="a", userId=..., anonymousId="a"),
        envelope(type="group", event=..., properties=...),
        envelope(type="group", event=..., properties=..., groupId=""),
        envelope(properties={}),
        envelope(event="Product Added", properties={"price": 1}),
        envelope(event="Products Searched", properties={}),
        envelope(event="Order Completed", properties={"currency": "EUR"}),
        envelope(event="Order Completed", properties={"products": [{"price": 1}]}),
        envelope(event="Order Refunded", properties={"total": 1}),
        envelope(event="Message Sent", properties={}),
        envelope(event="Consent Updated", properties={"channel": "sms"}),
        envelope(event="Consent Updated", properties={"granted": True}),
    ],
    "wrong_type": [
        envelope(properties=[1]),
        envelope(traits="x"),
        envelope(context=3),
        envelope(event=5),
        envelope(type="page", event=..., name=5),
        envelope(properties={"product_id": "p", "price": "10"}),
        envelope(properties={"product_id": "p", "quantity": "2"}),
        envelope(properties={"products": {"a": 1}}),
        envelope(properties={"products": [1]}),
        envelope(event="Products Searched", properties={"query": 3}),
        envelope(event="Consent Updated", properties={"channel": "sms", "granted": "yes"}),
        envelope(type="identify", traits={"email": 3}),
        envelope(type="identify", traits={"age": "31"}),
    ],
    "bad_id": [
        envelope(userId=1.5),
        envelope(userId=True),
        envelope(messageId={"a": 1}),
        envelope(anonymousId=[1]),
        envelope(properties={"product_id": {"id": 1}}),
        envelope(type="alias", previousId=2.5),
        envelope(event="Product Added", properties={"sku": True}),
        envelope(type="group", event=..., groupId={"id": 1}),
    ],
    "id_too_long": [
        envelope(messageId="m" * (MAX_ID_CHARS + 1)),
        envelope(userId="u" * 45_000),
        envelope(userId=..., anonymousId="a" * (MAX_ID_CHARS + 1)),
        envelope(type="alias", previousId="p" * (MAX_ID_CHARS + 1)),
        envelope(properties={"product_id": "p" * (MAX_ID_CHARS + 1)}),
        envelope(properties={"sku": "s" * (MAX_ID_CHARS + 1)}),
        envelope(event="Order Completed", properties={"products": [{"product_id": "p", "order_id": "o" * 200}]}),
    ],
    "missing_identity": [envelope(userId=...), envelope(userId="", anonymousId=None)],
    "bad_timestamp": [
        envelope(timestamp="yesterday"),
        envelope(timestamp=True),
        envelope(timestamp=None),
        envelope(timestamp={"t": 1}),
        envelope(timestamp="2025-13-45T00:00:00Z"),
    ],
    "timestamp_skew": [
        envelope(timestamp=NOW + 3600),
        envelope(timestamp="2020-01-01T00:00:00Z"),
        envelope(timestamp=0),
        envelope(timestamp=-5),
        envelope(timestamp="0001-01-01T00:00:00+05:00"),
    ],
    "bad_amount": [
        envelope(properties={"product_id": "p", "price": -1}),
        envelope(properties={"product_id": "p", "price": 1e12}),
        envelope(event="Order Completed", properties={"total": -0.01}),
        envelope(event="Order Completed", properties={"products": [{"product_id": "a", "price": -3}]}),
    ],
    "bad_quantity": [
        envelope(properties={"product_id": "p", "quantity": -1}),
        envelope(properties={"product_id": "p", "quantity": 1.5}),
        envelope(properties={"product_id": "p", "quantity": 10**9}),
        envelope(event="Order Completed", properties={"products": [{"product_id": "a", "quantity": -2}]}),
    ],
    "bad_currency": [
        envelope(event="Order Completed", properties={"total": 1, "currency": c})
        for c in ("EURO", "E1R", 978, "", "€€€")
    ],
    "bad_channel": [
        envelope(event="Message Opened", properties={"channel": "pigeon"}),
        envelope(event="Consent Updated", properties={"channel": 3, "granted": True}),
        envelope(type="identify", traits={"preferred_channel": "fax"}),
        # unhashable values: a set lookup would raise TypeError instead of rejecting the event
        envelope(event="Message Sent", properties={"channel": []}),
        envelope(event="Consent Updated", properties={"channel": {"a": 1}, "granted": True}),
        envelope(type="identify", traits={"preferred_channel": ["email"]}),
        envelope(type="identify", traits={"preferred_channel": {}}),
    ],
    "bad_value": [
        envelope(type="identify", traits={"email": "nobody"}),
        envelope(type="identify", traits={"age": -1}),
        envelope(type="identify", traits={"age": 400}),
        envelope(type="identify", traits={"birthday": "soon"}),
    ],
}


def test_every_reason_has_a_table() -> None:
    assert set(REJECTED) == set(REASONS)


@pytest.mark.parametrize(
    ("reason", "payload"),
    [(reason, payload) for reason, payloads in REJECTED.items() for payload in payloads],
    ids=[f"{reason}-{i}" for reason, payloads in REJECTED.items() for i in range(len(payloads))],
)
def test_rejections_carry_a_precise_reason(reason: str, payload: object) -> None:
    assert reason_of(payload) == reason


def _verdict(check, *args, **kwargs) -> object:
    try:
        return check(*args, **kwargs)
    except InvalidEvent as exc:
        return (exc.reason, exc.detail)


@pytest.mark.parametrize(
    "payload",
    [payload for payloads in REJECTED.values() for payload in payloads if not isinstance(payload, bytes)]
    + [envelope(), envelope(type="identify", traits={"email": " A@B.C "}), envelope(event="Order Completed")],
)
def test_decoding_a_parsed_payload_gives_the_verdict_of_decoding_its_bytes(payload: object) -> None:
    """The collector checks what it already parsed with ``decode_payload``: the same event or the same
    rejection (reason and detail) as ``decode_event`` on the bytes, and the payload is left as it was."""
    raw = orjson.dumps(payload)
    parsed = orjson.loads(raw)
    expected = _verdict(decode_event, raw, now=NOW)
    assert _verdict(decode_payload, parsed, raw, now=NOW) == expected
    assert parsed == orjson.loads(raw)


def test_ids_up_to_the_limit_are_accepted() -> None:
    longest = "i" * MAX_ID_CHARS
    event = decode(envelope(messageId=longest, userId=longest, properties={"product_id": longest}))
    assert (event.message_id, event.user_id, event.properties["product_id"]) == (longest, longest, longest)


def test_limits_are_configurable() -> None:
    tight = ContractLimits(max_event_bytes=100, max_depth=2, max_array_length=2, max_quantity=5, max_amount=50)
    assert reason_of(envelope(properties={"product_id": "p", "pad": "x" * 100}), tight) == "oversized"
    assert reason_of(b'{"a": {"b": {"c": 1}}}', tight) == "too_deep"
    assert reason_of(b'{"a": [1, 2, 3]}', tight) == "array_too_long"
    small = ContractLimits(max_quantity=5, max_amount=50)
    assert reason_of(envelope(properties={"product_id": "p", "quantity": 6}), small) == "bad_quantity"
    assert reason_of(envelope(properties={"product_id": "p", "price": 51}), small) == "bad_amount"
    assert decode(envelope(timestamp=NOW + 200)).timestamp == NOW + 200
    assert reason_of(envelope(timestamp=NOW + 200), ContractLimits(max_future_skew_s=100)) == "timestamp_skew"
