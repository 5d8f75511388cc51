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
from functools import cached_property, lru_cache
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


# What ``_redact_mapping`` does with a key, by its folded name (``PiiPolicy.actions``).
HASH, DROP, DROP_IN_TRAITS, REDACT_INSIDE, TO_AGE = "hash", "drop", "drop_in_traits", "redact_inside", "to_age"
MAX_REMEMBERED_NAMES = 10_000  # bounds the memo of key names (a producer could invent names without end)
_UNSEEN = "unseen"


@dataclass(frozen=True)
class PiiPolicy:
    """What ``redact_event`` and ``redact_payload`` do; built once from ``Settings``
    (``streams.security.pii_policy``). Key sets hold folded names (``trait_key``)."""

    hash_key: bytes
    pii_keys: frozenset[str] = PII_TRAIT_KEYS
    hashed_keys: frozenset[str] = HASHED_PII_TRAITS
    keep_deadletter_originals: bool = False

    @cached_property
    def actions(self) -> dict[str, str]:
        """Folded key → what happens to it; one lookup per key on the hot path."""
        actions = {}
        for key in self.pii_keys:
            if key in NAMES_OUTSIDE_TRAITS:
                actions[key] = DROP_IN_TRAITS
            elif key in REDACTED_INSIDE:
                actions[key] = REDACT_INSIDE
            elif key in BIRTHDAY_KEYS:
                actions[key] = TO_AGE
            else:
                actions[key] = DROP
        # Only a hash this module computed may carry such a name: a producer's own is dropped.
        actions.update({trait_key(key + HASH_SUFFIX): DROP for key in self.hashed_keys})
        actions.update(dict.fromkeys(self.hashed_keys, HASH))
        return actions

    @cached_property
    def action_by_name(self) -> dict[str, str | None]:
        """Memo of ``actions`` by unfolded name (None: not personal data), filled by ``action_of``: producers
        use a few hundred names, and one dict lookup per key is what redaction costs on the hot path."""
        return {}

    def action_of(self, name: object) -> str | None:
        action = self.actions.get(trait_key(name)) if isinstance(name, str) else None
        if len(self.action_by_name) < MAX_REMEMBERED_NAMES and isinstance(name, str):
            self.action_by_name[name] = action
        return action


def _hashed(value: Any, policy: PiiPolicy) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return hash_identifier(value, policy.hash_key)


def _redact_list(values: list, policy: PiiPolicy, *, in_traits: bool, at: float) -> list:
    items = [
        _redact_mapping(item, policy, in_traits=in_traits, at=at)
        if isinstance(item, dict)
        else _redact_list(item, policy, in_traits=in_traits, at=at)
        if isinstance(item, list)
        else item
        for item in values
    ]
    return values if all(new is old for new, old in zip(items, values, strict=True)) else items


def _redact_mapping(values: dict, policy: PiiPolicy, *, in_traits: bool, at: float) -> dict:
    """``values`` without personal data; the same object when there was none (most events)."""
    by_name = policy.action_by_name
    redacted: dict[str, Any] = {}
    changed = False
    for name, value in values.items():
        action = by_name.get(name, _UNSEEN)
        if action is _UNSEEN:
            action = policy.action_of(name)
        if action is None or (action == DROP_IN_TRAITS and not in_traits):
            if not isinstance(value, (dict, list, str)):
                redacted[name] = value
                continue
            if isinstance(value, dict):
                inner: Any = _redact_mapping(value, policy, in_traits=in_traits or name == "traits", at=at)
            elif isinstance(value, list):
                inner = _redact_list(value, policy, in_traits=in_traits, at=at)
            elif in_traits and isinstance(value, str) and looks_like_contact(value):
                changed = True  # a free-form trait holding an email address or a phone number
                continue
            else:
                redacted[name] = value
                continue
            changed = changed or inner is not value
            redacted[name] = inner
            continue
        changed = True
        redacted.update(_replacement(action, name, value, values, policy, in_traits=in_traits, at=at))
    return redacted if changed else values


def _replacement(
    action: str, name: str, value: Any, siblings: dict, policy: PiiPolicy, *, in_traits: bool, at: float
) -> dict[str, Any]:
    """What a personal-data entry becomes: nothing (dropped), or one safe entry."""
    if action == HASH:
        digest = _hashed(value, policy)
        return {f"{name}{HASH_SUFFIX}": digest} if digest is not None else {}
    if action == REDACT_INSIDE and isinstance(value, dict):
        return {name: _redact_mapping(value, policy, in_traits=in_traits, at=at)}
    if action == TO_AGE and in_traits and isinstance(value, str) and "age" not in siblings:
        age = age_at(value, at)
        return {"age": age} if age is not None else {}
    return {}


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
