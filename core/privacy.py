"""Personal data handling: keyed hashes of email and phone, and the personal data no stage ever sees raw.

Ingestion redacts every event right after validation (``redact_event``, before it is re-keyed onto
``profile-commands``, stored or forwarded): the keys of ``PiiPolicy.hashed_keys`` (email, phone) are
replaced by ``<key>_hash`` — HMAC-SHA256 with the secret ``Settings.pii_hash_key``, stable per person so
profiles and audiences can be matched on it, useless to anyone without the key — and the other keys of the
PII list (names, street, postcode, birthday, IP, …) are dropped. A birthday becomes the age in years at
the event's time first, so age bands still work. Dead letters' originals get the same treatment
(``redact_payload``) unless an operator keeps them. The profile stage keeps a second line of defence:
``is_pii_trait`` / ``looks_like_contact`` keep direct identifiers out of free-form custom traits.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import msgspec
import orjson

from schemas.events import Event

# Trait names (normalised by ``trait_key``) that identify a person directly and are never stored raw; the
# default of ``STREAMCDP_PII_TRAITS``.
PII_TRAIT_KEYS = frozenset(
    {
        "email",
        "emailaddress",
        "phone",
        "phonenumber",
        "mobile",
        "mobilephone",
        "cell",
        "telephone",
        "name",
        "firstname",
        "givenname",
        "middlename",
        "lastname",
        "surname",
        "familyname",
        "fullname",
        "username",
        "address",
        "street",
        "streetaddress",
        "addressline1",
        "addressline2",
        "postalcode",
        "postcode",
        "zip",
        "zipcode",
        "birthday",
        "birthdate",
        "dateofbirth",
        "dob",
        "ip",
        "ipaddress",
        "ssn",
        "taxid",
        "passport",
        "iban",
        "creditcard",
        "avatar",
    }
)
# Of those, the ones kept as keyed hashes (the profile's ``email_hash`` and ``phone_hash``); the others are
# dropped. The default of ``STREAMCDP_PII_HASHED_TRAITS``.
HASHED_PII_TRAITS = frozenset({"email", "phone"})
BIRTHDAY_KEYS = frozenset({"birthday", "birthdate", "dateofbirth", "dob"})
# Outside traits these keys name things, not people (product, page, app and campaign names), so they stay.
NAMES_OUTSIDE_TRAITS = frozenset({"name"})
HASH_SUFFIX = "_hash"
# PII keys whose object values are redacted inside rather than dropped: Segment's ``address`` object loses
# its street and postal code and keeps city and country (a string address is dropped).
REDACTED_INSIDE = frozenset({"address"})


@lru_cache(maxsize=4096)
def trait_key(name: str) -> str:
    """A trait name folded for lookups: ``firstName``, ``first_name`` and ``First Name`` → ``firstname``."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased: ``" Ann@Example.COM "`` → ``"ann@example.com"``."""
    return value.strip().lower()


def normalise_phone(value: str) -> str:
    """Digits only, keeping a leading ``+``: ``"+49 (30) 123-45"`` → ``"+493012345"``."""
    text = value.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    return f"+{digits}" if text.startswith("+") else digits


def hash_identifier(value: str, key: str | bytes) -> str:
    """HMAC-SHA256 (hex) of a normalised email (if ``value`` contains ``@``) or phone number.

    ``key`` is the secret (``Settings.pii_hash_key``); the same identifier and key always give the same
    hash, so profiles can be matched on it without storing the identifier.
    """
    normalised = normalise_email(value) if "@" in value else normalise_phone(value)
    secret = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, normalised.encode(), hashlib.sha256).hexdigest()


def is_pii_trait(name: str) -> bool:
    """Whether a trait of this name is a direct identifier that must not be stored raw."""
    return trait_key(name) in PII_TRAIT_KEYS


def looks_like_contact(value: object) -> bool:
    """A string that is probably an email address or a phone number (kept out of free-form traits)."""
    if not isinstance(value, str):
        return False
    if "@" in value:
        return True
    digits = sum(ch.isdigit() for ch in value)
    return digits >= 7 and all(ch.isdigit() or ch in " +-()./" for ch in value.strip())


def age_at(birthday: str, at: float) -> int | None:
    """Age in whole years on the (UTC) day of ``at`` of someone born on ISO date ``birthday``."""
    try:
        born = date.fromisoformat(birthday.strip()[:10])
    except ValueError:
        return None
    on = datetime.fromtimestamp(at, tz=UTC).date()
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return age if 0 <= age <= 150 else None


@dataclass(frozen=True)
class PiiPolicy:
    """What ``redact_event`` and ``redact_payload`` do; built once from ``Settings``
    (``streams.security.pii_policy``). Key sets hold folded names (``trait_key``)."""

    hash_key: bytes
    pii_keys: frozenset[str] = PII_TRAIT_KEYS
    hashed_keys: frozenset[str] = HASHED_PII_TRAITS
    keep_deadletter_originals: bool = False

    @property
    def computed_keys(self) -> frozenset[str]:
        """Folded names of the hashes this policy writes (``emailhash``): a producer's own are dropped."""
        return frozenset(trait_key(key + HASH_SUFFIX) for key in self.hashed_keys)


def _hashed(value: Any, policy: PiiPolicy) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return hash_identifier(value, policy.hash_key)


def _redact_value(value: Any, policy: PiiPolicy, *, in_traits: bool, at: float) -> Any:
    if isinstance(value, dict):
        return _redact_mapping(value, policy, in_traits=in_traits, at=at)
    if isinstance(value, list):
        items = [_redact_value(item, policy, in_traits=in_traits, at=at) for item in value]
        return value if all(new is old for new, old in zip(items, value, strict=True)) else items
    return value


def _redact_mapping(values: dict, policy: PiiPolicy, *, in_traits: bool, at: float) -> dict:
    """``values`` without personal data; the same object when there was none (most events)."""
    redacted: dict[str, Any] = {}
    changed = False
    computed = policy.computed_keys
    for name, value in values.items():
        key = trait_key(name) if isinstance(name, str) else ""
        if key in policy.hashed_keys:
            changed = True
            digest = _hashed(value, policy)
            if digest is not None:
                redacted[f"{name}{HASH_SUFFIX}"] = digest
        elif key in computed:
            changed = True  # only a hash this function computed may carry the name
        elif key in policy.pii_keys and (in_traits or key not in NAMES_OUTSIDE_TRAITS):
            changed = True
            if key in REDACTED_INSIDE and isinstance(value, dict):
                redacted[name] = _redact_mapping(value, policy, in_traits=in_traits, at=at)
            elif key in BIRTHDAY_KEYS and in_traits and isinstance(value, str) and "age" not in values:
                age = age_at(value, at)
                if age is not None:
                    redacted["age"] = age
        elif in_traits and looks_like_contact(value):
            changed = True  # a free-form trait holding an email address or a phone number
        else:
            inner = _redact_value(value, policy, in_traits=in_traits or key == "traits", at=at)
            changed = changed or inner is not value
            redacted[name] = inner
    return redacted if changed else values


def redact_event(event: Event, policy: PiiPolicy) -> Event:
    """``event`` with the PII keys of its traits, ``context.traits``, properties and context hashed or dropped
    (module docstring); the same object when it held none."""
    at = event.timestamp
    traits = _redact_mapping(event.traits, policy, in_traits=True, at=at) if event.traits else event.traits
    properties = (
        _redact_mapping(event.properties, policy, in_traits=False, at=at) if event.properties else event.properties
    )
    context = _redact_mapping(event.context, policy, in_traits=False, at=at) if event.context else event.context
    if traits is event.traits and properties is event.properties and context is event.context:
        return event
    return msgspec.structs.replace(event, traits=traits, properties=properties, context=context)


def redact_payload(raw: bytes, policy: PiiPolicy) -> bytes:
    """A dead letter's original message with its PII keys hashed or dropped, as ``redact_event`` would.

    The message's ``traits`` (and ``context.traits``) count as traits, everything else as properties. A
    message that is not a JSON object has no fields to recognise and is returned as it is (the dead-letter
    topic's retention bounds how long it stays); so is everything when ``keep_deadletter_originals`` is set.
    """
    if policy.keep_deadletter_originals:
        return raw
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(payload, dict):
        return raw
    timestamp = payload.get("timestamp")
    at = float(timestamp) if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool) else 0.0
    at = at / 1000.0 if at > 1e11 else at
    redacted = _redact_mapping(payload, policy, in_traits=False, at=at)
    return raw if redacted is payload else orjson.dumps(redacted)
