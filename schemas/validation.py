"""Decode, validate and normalise one inbound Segment Spec message into an ``Event``.

Pure: the clock (``now``) and the limits come in as arguments. Every rejection raises ``InvalidEvent``
with a short reason code that the dead-letter record carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from core.errors import InvalidEvent
from schemas.events import CLICKSTREAM, CUSTOMER, MESSAGING, OTHER, PURCHASE, SEGMENT_TYPES, Event

CLICKSTREAM_EVENTS = frozenset(
    {
        "Products Searched", "Product List Viewed", "Product Viewed", "Product Added", "Product Removed",
        "Cart Viewed", "Checkout Started",
    }
)
PURCHASE_EVENTS = frozenset({"Order Completed", "Order Refunded"})
MESSAGING_EVENTS = frozenset(
    {
        "Message Sent", "Message Delivered", "Message Opened", "Message Clicked", "Message Bounced",
        "Message Replied", "Unsubscribed",
    }
)
CUSTOMER_EVENTS = frozenset({"Consent Updated", "Deletion Requested"})


@dataclass(frozen=True)
class ContractLimits:
    """Bounds an inbound message must stay within (from ``Settings``)."""

    max_event_bytes: int = 64 * 1024
    max_future_skew_s: float = 300.0
    max_past_skew_s: float = 400 * 86400.0


def family_of(event_type: str, event_name: str | None) -> str:
    """Which family an event belongs to, by its Segment type and track name."""
    if event_type in ("page", "screen"):
        return CLICKSTREAM
    if event_type in ("identify", "alias"):
        return CUSTOMER
    if event_name in CLICKSTREAM_EVENTS:
        return CLICKSTREAM
    if event_name in PURCHASE_EVENTS:
        return PURCHASE
    if event_name in MESSAGING_EVENTS:
        return MESSAGING
    if event_name in CUSTOMER_EVENTS:
        return CUSTOMER
    return OTHER


def parse_timestamp(value: Any) -> float:
    """ISO-8601 (Segment's form) or epoch seconds/milliseconds → UTC epoch seconds."""
    if isinstance(value, bool):
        raise InvalidEvent("bad_timestamp", "timestamp is a boolean")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str):
        raise InvalidEvent("bad_timestamp", f"timestamp has type {type(value).__name__}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        detail = f"unparseable timestamp {value[:40]!r}"
        raise InvalidEvent("bad_timestamp", detail) from None
    if parsed.tzinfo is None:
        # Segment timestamps without an offset are UTC.
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def to_minor_units(amount: Any, field: str) -> int:
    """A decimal currency amount → integer minor units (cents)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise InvalidEvent("bad_amount", f"{field} is not a number")
    if amount < 0 or amount > 10_000_000:
        raise InvalidEvent("bad_amount", f"{field}={amount} is negative or absurd")
    return round(amount * 100)


def _optional_id(payload: dict, key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent("bad_id", f"{key} must be a string or integer")
    return str(value)


def _dict_field(payload: dict, key: str) -> dict:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", f"{key} must be an object")
    return value


_MONEY_KEYS = ("price", "total", "revenue", "value", "subtotal", "discount", "shipping", "tax")


def _normalise_money(properties: dict) -> dict:
    normalised = dict(properties)
    for key in _MONEY_KEYS:
        if key in normalised and normalised[key] is not None:
            normalised[key] = to_minor_units(normalised[key], key)
    products = normalised.get("products")
    if products is not None:
        if not isinstance(products, list):
            raise InvalidEvent("wrong_type", "products must be an array")
        normalised["products"] = [_normalise_money(_as_object(item, "products[]")) for item in products]
    return normalised


def _as_object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", f"{what} must be an object")
    return value


def decode_event(raw: bytes, *, now: float, limits: ContractLimits = ContractLimits()) -> Event:
    """Bytes of one Segment Spec call → a normalised ``Event``; raises ``InvalidEvent``."""
    if len(raw) > limits.max_event_bytes:
        raise InvalidEvent("oversized", f"{len(raw)} bytes > {limits.max_event_bytes}")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("not_json", str(exc)[:120]) from None
    if not isinstance(payload, dict):
        raise InvalidEvent("not_an_object", f"top level is {type(payload).__name__}")
    event_type = payload.get("type")
    if event_type not in SEGMENT_TYPES:
        raise InvalidEvent("unknown_type", f"type={str(event_type)[:40]!r}")
    message_id = _optional_id(payload, "messageId")
    if message_id is None:
        raise InvalidEvent("missing_field", "messageId")
    user_id = _optional_id(payload, "userId")
    anonymous_id = _optional_id(payload, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidEvent("missing_identity", "neither userId nor anonymousId")
    if "timestamp" not in payload:
        raise InvalidEvent("missing_field", "timestamp")
    timestamp = parse_timestamp(payload["timestamp"])
    if timestamp > now + limits.max_future_skew_s:
        raise InvalidEvent("timestamp_skew", "timestamp too far in the future")
    if timestamp < now - limits.max_past_skew_s:
        raise InvalidEvent("timestamp_skew", "timestamp too far in the past")
    event_name = payload.get("event") if event_type == "track" else payload.get("name")
    if event_type == "track" and (not isinstance(event_name, str) or not event_name):
        raise InvalidEvent("missing_field", "event")
    if event_name is not None and not isinstance(event_name, str):
        raise InvalidEvent("wrong_type", "name must be a string")
    previous_id = _optional_id(payload, "previousId")
    if event_type == "alias" and (previous_id is None or user_id is None):
        raise InvalidEvent("missing_field", "alias needs previousId and userId")
    return Event(
        type=event_type,
        message_id=message_id,
        timestamp=timestamp,
        family=family_of(event_type, event_name),
        user_id=user_id,
        anonymous_id=anonymous_id,
        event=event_name,
        properties=_normalise_money(_dict_field(payload, "properties")),
        traits=_dict_field(payload, "traits"),
        previous_id=previous_id,
        context=_dict_field(payload, "context"),
    )
