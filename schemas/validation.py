"""Decode, validate and normalise one inbound Segment Spec message into an ``Event``.

Pure: the clock (``now``) and the limits come in as arguments. Every rejection raises ``InvalidEvent``
with a short reason code (``REASONS`` lists them all) that the dead-letter record carries.

The checks run cheapest first: size, UTF-8 and JSON (orjson), the shape limits (nesting depth, array
length — walked only when a byte count says the limit could be reached), the envelope, then the
properties the event's name requires. Normalisation: timestamps → UTC epoch seconds, ids → strings,
money → integer minor units, currency → upper case, quantities → ints, Segment's email event names →
the canonical ``Message …`` names with ``channel="email"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from schemas.catalog import (
    CHANNELS,
    CLICKSTREAM_EVENTS,
    CUSTOMER_EVENTS,
    EMAIL_ALIASES,
    ID_PROPERTIES,
    MESSAGING_EVENTS,
    MONEY_PROPERTIES,
    PRODUCT_EVENTS,
    PURCHASE_EVENTS,
    STRING_TRAITS,
    TRACK_FAMILIES,
)
from schemas.errors import InvalidEvent
from schemas.events import CLICKSTREAM, CUSTOMER, OTHER, SEGMENT_TYPES, Event

__all__ = [
    "CLICKSTREAM_EVENTS",
    "CUSTOMER_EVENTS",
    "MESSAGING_EVENTS",
    "PURCHASE_EVENTS",
    "REASONS",
    "ContractLimits",
    "canonical_event_name",
    "decode_event",
    "decode_payload",
    "family_of",
    "parse_timestamp",
    "to_minor_units",
]

# Every reason code ``decode_event`` can raise, with what it means (the CONTRACT.md table mirrors this).
REASONS: dict[str, str] = {
    "oversized": "payload larger than max_event_bytes",
    "not_utf8": "payload bytes are not valid UTF-8",
    "not_json": "payload is not JSON",
    "not_an_object": "top-level JSON value is not an object",
    "too_deep": "containers nested deeper than max_depth",
    "array_too_long": "an array longer than max_array_length",
    "unknown_type": "type is not one of track, identify, page, screen, alias, group",
    "missing_field": "a required field or property is absent (detail names it)",
    "wrong_type": "a field or property has the wrong JSON type (detail names it)",
    "bad_id": "an id (messageId, userId, anonymousId, previousId, *_id) is not a string or integer",
    "id_too_long": "an id is longer than MAX_ID_CHARS (128) characters",
    "missing_identity": "neither userId nor anonymousId",
    "bad_timestamp": "timestamp is not ISO-8601 or epoch seconds/milliseconds",
    "timestamp_skew": "timestamp further in the future or past than the limits allow",
    "bad_amount": "a money value is negative or larger than max_amount",
    "bad_quantity": "a quantity is negative, fractional or larger than max_quantity",
    "bad_currency": "currency is not a three-letter ISO-4217 code",
    "bad_channel": "channel (or preferred_channel) is not the string email, sms, whatsapp, webpush or apppush",
    "bad_value": "a known trait has an impossible value (email without @, age, birthday)",
}


# Longest id (messageId, userId, anonymousId, previousId, the ``*_id`` properties) the contract accepts. Ids are
# stored many times over (the dedup window of applied messageIds, identity links, order ids), so one long id
# multiplies into state records that outgrow Kafka's message size; 128 fits UUIDs, hashes and every usual
# id scheme with room to spare.
MAX_ID_CHARS = 128
# A price or total above this, in major units, is absurd. A module constant (not read off ``ContractLimits``'
# class) so that ``to_minor_units``' default compiles with mypyc (scripts/build_compiled.sh).
MAX_AMOUNT = 10_000_000.0


@dataclass(frozen=True)
class ContractLimits:
    """Bounds an inbound message must stay within (from ``Settings``)."""

    max_event_bytes: int = 64 * 1024
    max_future_skew_s: float = 300.0
    max_past_skew_s: float = 400 * 86400.0
    max_depth: int = 16  # containers nested in containers, the top-level object counting as 1
    max_array_length: int = 1000
    max_amount: float = MAX_AMOUNT
    max_quantity: int = 10_000
    max_age: int = 150


def canonical_event_name(event_name: str) -> str:
    """Segment's email spec names ("Email Opened") → our canonical names ("Message Opened")."""
    return EMAIL_ALIASES.get(event_name, event_name)


def family_of(event_type: str, event_name: str | None) -> str:
    """Which family an event belongs to, by its Segment type and track name (aliases included)."""
    if event_type in ("page", "screen"):
        return CLICKSTREAM
    if event_type in ("identify", "alias", "group"):
        return CUSTOMER
    if event_type != "track" or not isinstance(event_name, str):
        return OTHER
    return TRACK_FAMILIES.get(event_name, OTHER)


_SEGMENT_TIMESTAMP_CHARS = len("2025-10-09T08:53:20.000Z")


def parse_timestamp(value: Any) -> float:
    """ISO-8601 (Segment's form) or epoch seconds/milliseconds → UTC epoch seconds."""
    if value.__class__ is str and len(value) == _SEGMENT_TIMESTAMP_CHARS and value[-1] == "Z":
        # Segment's own form, "2025-10-09T08:53:20.000Z" (nearly every event): Python 3.11 reads the "Z"
        # itself, as the general path below reads "+00:00"; anything it rejects takes that path for the error.
        try:
            return datetime.fromisoformat(value).timestamp()
        except (ValueError, OverflowError):
            pass
    if isinstance(value, bool):
        msg = "bad_timestamp"
        raise InvalidEvent(msg, "timestamp is a boolean")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str):
        detail = f"timestamp has type {type(value).__name__}"
        msg = "bad_timestamp"
        raise InvalidEvent(msg, detail)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            # Segment timestamps without an offset are UTC.
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        detail = f"unparseable timestamp {value[:40]!r}"
        msg = "bad_timestamp"
        raise InvalidEvent(msg, detail) from None


def to_minor_units(amount: Any, field: str, max_amount: float = MAX_AMOUNT) -> int:
    """A decimal currency amount → integer minor units (cents)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        detail = f"{field} is not a number"
        msg = "wrong_type"
        raise InvalidEvent(msg, detail)
    if amount < 0 or amount > max_amount:
        detail = f"{field}={amount} is negative or absurd"
        msg = "bad_amount"
        raise InvalidEvent(msg, detail)
    return round(amount * 100)


def _to_quantity(value: Any, field: str, limits: ContractLimits) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        detail = f"{field} is not a number"
        msg = "wrong_type"
        raise InvalidEvent(msg, detail)
    if value < 0 or value > limits.max_quantity or value != int(value):
        detail = f"{field}={value} is negative, fractional or absurd"
        msg = "bad_quantity"
        raise InvalidEvent(msg, detail)
    return int(value)


def _to_id(value: Any, field: str) -> str:
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            detail = f"{field} has {len(value)} characters > {MAX_ID_CHARS}"
            msg = "id_too_long"
            raise InvalidEvent(msg, detail)
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a JSON integer has at most 20 digits here (orjson reads 64-bit integers only)
    detail = f"{field} must be a string or integer"
    msg = "bad_id"
    raise InvalidEvent(msg, detail)


def _optional_id(payload: dict, key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if value.__class__ is str and len(value) <= MAX_ID_CHARS:  # the usual id, as ``_to_id`` would return it
        return value
    return _to_id(value, key)


def _dict_field(payload: dict, key: str) -> dict:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        detail = f"{key} must be an object"
        msg = "wrong_type"
        raise InvalidEvent(msg, detail)
    return value


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "depth limit" in message:
            reason = "too_deep"
        else:
            try:
                bytes(raw).decode("utf-8")
                reason = "not_json"
            except UnicodeDecodeError:
                reason = "not_utf8"
        raise InvalidEvent(reason, message[:120]) from None


def _check_shape(raw: bytes, payload: dict, limits: ContractLimits) -> None:
    """Nesting depth and array length; the byte counts skip the walk for every ordinary event."""
    check_depth = raw.count(b"{") + raw.count(b"[") > limits.max_depth
    # A payload shorter than the limit holds fewer commas than that: no need to count them.
    check_arrays = len(raw) >= limits.max_array_length and raw.count(b",") >= limits.max_array_length
    if not (check_depth or check_arrays):
        return
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            detail = f"nested deeper than {limits.max_depth}"
            msg = "too_deep"
            raise InvalidEvent(msg, detail)
        if isinstance(node, dict):
            children = node.values()
        else:
            if len(node) > limits.max_array_length:
                detail = f"array of {len(node)} items > {limits.max_array_length}"
                msg = "array_too_long"
                raise InvalidEvent(msg, detail)
            children = node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


# The keys normalised, in the order they are checked (which names the first bad one), and what each is.
_NORMALISED_ORDER = (*ID_PROPERTIES, *MONEY_PROPERTIES, "quantity", "currency")
_NORMALISED_KEYS = frozenset(_NORMALISED_ORDER)
_RANK = {key: rank for rank, key in enumerate(_NORMALISED_ORDER)}
_IDS, _MONEY = frozenset(ID_PROPERTIES), frozenset(MONEY_PROPERTIES)
# The keys present → them in check order: a producer sends a few combinations, so sorting is done once each.
_CHECK_ORDERS: dict[frozenset[str], tuple[str, ...]] = {}
MAX_CHECK_ORDERS = 4096  # bounds the memo (17 keys make at most 131,071 combinations)


def _normalise_values(values: dict, limits: ContractLimits, where: str) -> dict:
    """Ids → strings, money → minor units, quantity → int, currency → upper case; a new dict."""
    normalised = dict(values)
    present = _NORMALISED_KEYS.intersection(normalised)
    if not present:  # pages, messages: nothing to normalise
        return normalised
    # Only the keys there (a product event has three or four of the 17), in ``_NORMALISED_ORDER``.
    order = _CHECK_ORDERS.get(present)
    if order is None:
        order = tuple(sorted(present, key=_RANK.__getitem__))
        if len(_CHECK_ORDERS) < MAX_CHECK_ORDERS:
            _CHECK_ORDERS[present] = order
    max_amount = limits.max_amount
    for key in order:
        value = normalised[key]
        if value is None:
            continue
        # The usual values are checked inline; anything else goes to the function that names the error.
        if key in _IDS:
            if value.__class__ is not str or len(value) > MAX_ID_CHARS:
                normalised[key] = _to_id(value, f"{where}.{key}")
        elif key in _MONEY:
            if (value.__class__ is int or value.__class__ is float) and 0 <= value <= max_amount:
                normalised[key] = round(value * 100)
            else:
                normalised[key] = to_minor_units(value, f"{where}.{key}", max_amount)
        elif key == "quantity":
            normalised[key] = _to_quantity(value, f"{where}.quantity", limits)
        else:
            _normalise_currency(normalised, value, where)
    return normalised


def _normalise_currency(normalised: dict, currency: Any, where: str) -> None:
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        detail = f"{where}.currency={str(currency)[:10]!r}"
        msg = "bad_currency"
        raise InvalidEvent(msg, detail)
    normalised["currency"] = currency.upper()


def _normalise_properties(properties: dict, limits: ContractLimits) -> dict:
    normalised = _normalise_values(properties, limits, "properties")
    products = normalised.get("products")
    if products is not None:
        if not isinstance(products, list):
            detail = "properties.products must be an array"
            msg = "wrong_type"
            raise InvalidEvent(msg, detail)
        items = []
        for index, item in enumerate(products):
            if not isinstance(item, dict):
                detail = f"properties.products[{index}] must be an object"
                msg = "wrong_type"
                raise InvalidEvent(msg, detail)
            items.append(_normalise_values(item, limits, f"properties.products[{index}]"))
        normalised["products"] = items
    return normalised


def _require(properties: dict, key: str) -> Any:
    value = properties.get(key)
    if value is None or value == "":
        detail = f"properties.{key}"
        msg = "missing_field"
        raise InvalidEvent(msg, detail)
    return value


def _check_channel(channel: Any, field: str) -> None:
    # The type check comes first: a list or object is unhashable, and ``in CHANNELS`` (a set) would raise.
    if not isinstance(channel, str) or channel not in CHANNELS:
        detail = f"{field}={str(channel)[:20]!r}"
        msg = "bad_channel"
        raise InvalidEvent(msg, detail)


def _require_channel(properties: dict, key: str = "channel") -> None:
    _check_channel(_require(properties, key), f"properties.{key}")


def _check_track_properties(name: str, properties: dict) -> dict:  # noqa: PLR0912  (one branch per event family)
    """The properties the named event requires; returns them with defaults filled in."""
    if name in PRODUCT_EVENTS:
        if properties.get("product_id") in (None, "") and isinstance(properties.get("sku"), (str, int)):
            properties = {**properties, "product_id": _to_id(properties["sku"], "properties.sku")}
        _require(properties, "product_id")
    elif name == "Products Searched":
        if not isinstance(_require(properties, "query"), str):
            detail = "properties.query must be a string"
            msg = "wrong_type"
            raise InvalidEvent(msg, detail)
    elif name == "Order Completed":
        products = properties.get("products")
        if not products and properties.get("total") is None and properties.get("revenue") is None:
            detail = "Order Completed needs properties.products or properties.total"
            msg = "missing_field"
            raise InvalidEvent(msg, detail)
        for index, item in enumerate(products or ()):
            if item.get("product_id") in (None, ""):
                detail = f"properties.products[{index}].product_id"
                msg = "missing_field"
                raise InvalidEvent(msg, detail)
    elif name == "Order Refunded":
        _require(properties, "order_id")
    elif name in MESSAGING_EVENTS:
        if name == "Unsubscribed" and properties.get("channel") is None:
            # Segment's email spec sends Unsubscribed without a channel.
            properties = {**properties, "channel": "email"}
        _require_channel(properties)
    elif name == "Consent Updated":
        _require_channel(properties)
        granted = _require(properties, "granted")
        if not isinstance(granted, bool):
            detail = "properties.granted must be a boolean"
            msg = "wrong_type"
            raise InvalidEvent(msg, detail)
    return properties


def _normalise_traits(traits: dict, limits: ContractLimits) -> dict:
    if not traits:
        return traits
    normalised = dict(traits)
    phone = normalised.get("phone")
    if isinstance(phone, int) and not isinstance(phone, bool):
        normalised["phone"] = str(phone)
    for key in STRING_TRAITS:
        value = normalised.get(key)
        if value is not None and not isinstance(value, str):
            detail = f"traits.{key} must be a string"
            msg = "wrong_type"
            raise InvalidEvent(msg, detail)
    email = normalised.get("email")
    if email is not None:
        email = email.strip().lower()
        if "@" not in email:
            detail = "traits.email has no @"
            msg = "bad_value"
            raise InvalidEvent(msg, detail)
        normalised["email"] = email
    age = normalised.get("age")
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, (int, float)):
            detail = "traits.age is not a number"
            msg = "wrong_type"
            raise InvalidEvent(msg, detail)
        if age < 0 or age > limits.max_age or age != int(age):
            detail = f"traits.age={age}"
            msg = "bad_value"
            raise InvalidEvent(msg, detail)
        normalised["age"] = int(age)
    birthday = normalised.get("birthday")
    if birthday is not None:
        try:
            date.fromisoformat(birthday[:10])
        except ValueError:
            detail = f"traits.birthday={birthday[:20]!r}"
            msg = "bad_value"
            raise InvalidEvent(msg, detail) from None
    preferred = normalised.get("preferred_channel")
    if preferred is not None:
        _check_channel(preferred, "traits.preferred_channel")
    return normalised


def _group_and_traits(payload: dict, event_type: str, limits: ContractLimits) -> tuple[str | None, dict]:
    """``groupId`` (required on group calls) and the traits: a person's normalised, a group's as they are
    (they describe the account or household, so the person's trait checks do not apply to them)."""
    group_id = _optional_id(payload, "groupId")
    traits = _dict_field(payload, "traits")
    if event_type != "group":
        return group_id, _normalise_traits(traits, limits)
    if group_id is None:
        msg = "missing_field"
        raise InvalidEvent(msg, "group needs groupId")
    return group_id, traits


def _check_size(raw: bytes, limits: ContractLimits) -> None:
    if len(raw) > limits.max_event_bytes:
        detail = f"{len(raw)} bytes > {limits.max_event_bytes}"
        msg = "oversized"
        raise InvalidEvent(msg, detail)


def decode_event(raw: bytes, *, now: float, limits: ContractLimits = ContractLimits()) -> Event:
    """Bytes of one Segment Spec call → a normalised ``Event``; raises ``InvalidEvent``."""
    _check_size(raw, limits)  # before parsing: an oversized payload is never parsed
    return decode_payload(_parse_json(raw), raw, now=now, limits=limits)


def decode_payload(  # noqa: PLR0912, PLR0915  (one straight pass over the envelope: the per-event hot path)
    payload: Any, raw: bytes, *, now: float, limits: ContractLimits = ContractLimits(), timestamp_s: float | None = None
) -> Event:
    """An already parsed Segment Spec call and its JSON bytes → a normalised ``Event``; raises ``InvalidEvent``.

    The contract after the JSON parse, for callers that hold both the parsed value and its bytes (the
    collector parses a batch body once and encodes each event once for Kafka): ``raw`` must be the JSON
    encoding of ``payload`` (``decode_event`` passes what it parsed), for the size limit and the byte counts
    that decide whether the shape walk is needed. ``payload`` is not changed. ``timestamp_s``, when given, is
    ``parse_timestamp(payload["timestamp"])`` as the caller knows it (the collector wrote that text from it).
    """
    _check_size(raw, limits)
    if not isinstance(payload, dict):
        detail = f"top level is {type(payload).__name__}"
        msg = "not_an_object"
        raise InvalidEvent(msg, detail)
    if raw.count(b"{") + raw.count(b"[") > limits.max_depth or len(raw) >= limits.max_array_length:
        _check_shape(raw, payload, limits)  # the byte counts say a limit could be reached: walk
    event_type = payload.get("type")
    if not isinstance(event_type, str) or event_type not in SEGMENT_TYPES:
        detail = f"type={str(event_type)[:40]!r}"
        msg = "unknown_type"
        raise InvalidEvent(msg, detail)
    message_id = _optional_id(payload, "messageId")
    if message_id is None:
        msg = "missing_field"
        raise InvalidEvent(msg, "messageId")
    user_id = _optional_id(payload, "userId")
    anonymous_id = _optional_id(payload, "anonymousId")
    if user_id is None and anonymous_id is None:
        msg = "missing_identity"
        raise InvalidEvent(msg, "neither userId nor anonymousId")
    if "timestamp" not in payload:
        msg = "missing_field"
        raise InvalidEvent(msg, "timestamp")
    timestamp = parse_timestamp(payload["timestamp"]) if timestamp_s is None else timestamp_s
    if timestamp > now + limits.max_future_skew_s:
        detail = f"timestamp {timestamp:.0f} is more than {limits.max_future_skew_s:.0f}s in the future"
        msg = "timestamp_skew"
        raise InvalidEvent(msg, detail)
    if timestamp < now - limits.max_past_skew_s:
        detail = f"timestamp {timestamp:.0f} is more than {limits.max_past_skew_s:.0f}s in the past"
        msg = "timestamp_skew"
        raise InvalidEvent(msg, detail)
    properties = _normalise_properties(_dict_field(payload, "properties"), limits)
    event_name: Any = None
    if event_type == "track":
        event_name = payload.get("event")
        if event_name is None or event_name == "":
            msg = "missing_field"
            raise InvalidEvent(msg, "event")
        if not isinstance(event_name, str):
            msg = "wrong_type"
            raise InvalidEvent(msg, "event must be a string")
        if event_name in EMAIL_ALIASES:
            event_name = EMAIL_ALIASES[event_name]
            properties["channel"] = "email"
        properties = _check_track_properties(event_name, properties)
    elif event_type in ("page", "screen"):
        event_name = payload.get("name")
        if event_name is not None and not isinstance(event_name, str):
            msg = "wrong_type"
            raise InvalidEvent(msg, "name must be a string")
    previous_id = _optional_id(payload, "previousId")
    if event_type == "alias" and (previous_id is None or user_id is None):
        msg = "missing_field"
        raise InvalidEvent(msg, "alias needs previousId and userId")
    group_id, traits = _group_and_traits(payload, event_type, limits)
    return Event(
        type=event_type,
        message_id=message_id,
        timestamp=timestamp,
        family=family_of(event_type, event_name),
        user_id=user_id,
        anonymous_id=anonymous_id,
        event=event_name,
        properties=properties,
        traits=traits,
        previous_id=previous_id,
        group_id=group_id,
        context=_dict_field(payload, "context"),
    )
