"""What an ``identify`` call changes: known traits into their fields, email/phone as keyed hashes, other
safe scalars as custom traits — each last-write-wins by event time (``Profile.trait_times``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.privacy import age_at, hash_identifier, is_pii_trait, looks_like_contact, trait_key
from core.profile.bounded import clipped_id, clipped_text, is_newer
from core.profile.policy import (
    MAX_CUSTOM_TRAITS,
    MAX_HASH_CHARS,
    MAX_TEXT_BYTES,
    MAX_TRAIT_NAME_BYTES,
    ProfilePolicy,
)
from schemas.events import Event
from schemas.profile import Profile, Scalar

AGE_BANDS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (65, "55-64"))
_KNOWN_TRAITS = {
    "gender": "gender",
    "city": "city",
    "country": "country",
    "timezone": "timezone",
    "loyaltytier": "loyalty_tier",
    "tier": "loyalty_tier",
    "preferredchannel": "preferred_channel",
}
_BIRTHDAY_KEYS = ("birthday", "birthdate", "dateofbirth", "dob")


def age_band_of(age: int) -> str:
    """``"<18"``, ``"18-24"``, ``"25-34"``, ``"35-44"``, ``"45-54"``, ``"55-64"`` or ``"65+"``."""
    for limit, label in AGE_BANDS:
        if age < limit:
            return label
    return "65+"


def _age_band_from(traits: dict[str, Any], at: float) -> str | None:
    age = traits.get("age")
    if isinstance(age, (int, float)) and not isinstance(age, bool) and 0 <= age <= 150:
        return age_band_of(int(age))
    for key in _BIRTHDAY_KEYS:
        birthday = traits.get(key)
        if isinstance(birthday, str):
            years = age_at(birthday, at)
            if years is not None:
                return age_band_of(years)
    return None


def _known_values(event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    """Field → new value of the known traits of ``event`` (and of email/phone as keyed hashes)."""
    folded = {trait_key(k): v for k, v in event.traits.items() if isinstance(k, str)}
    address = folded.get("address")
    if isinstance(address, dict):
        for part in ("city", "country"):
            if address.get(part) and part not in folded:
                folded[part] = address[part]
    values: dict[str, Any] = {}
    band = _age_band_from(folded, event.timestamp)
    if band is not None:
        values["age_band"] = band
    for key, field in _KNOWN_TRAITS.items():
        value = folded.get(key)
        if isinstance(value, str) and value.strip():
            text = value.strip().lower() if field == "gender" else value.strip()
            values[field] = clipped_text(text, MAX_TEXT_BYTES)
    for key, field in (("email", "email_hash"), ("phone", "phone_hash")):
        value = folded.get(key)  # raw: an event that did not pass ingestion's redaction (core.privacy)
        if policy.pii_hash_key is not None and isinstance(value, str) and value.strip():
            values[field] = hash_identifier(value, policy.pii_hash_key)
        elif isinstance(hashed := folded.get(trait_key(field)), str) and hashed:  # hashed at ingest
            values[field] = clipped_id(hashed, MAX_HASH_CHARS)
    return values


def _custom_values(event: Event) -> Iterator[tuple[str, Scalar]]:
    """(name, value) of each trait of ``event`` kept as a custom trait: safe scalars, never PII, clipped."""
    for name, value in event.traits.items():
        if not isinstance(name, str) or is_pii_trait(name) or trait_key(name) in _KNOWN_TRAITS:
            continue
        if trait_key(name) in ("age", "company", "traits", "id", "userid", "anonymousid", "emailhash", "phonehash"):
            continue
        if not isinstance(value, (str, int, float, bool)) or looks_like_contact(value):
            continue
        kept = clipped_text(value, MAX_TEXT_BYTES) if isinstance(value, str) else value
        yield clipped_text(name, MAX_TRAIT_NAME_BYTES), kept


def trait_changes(profile: Profile, event: Event, policy: ProfilePolicy) -> dict[str, Any]:
    """Known traits into their fields, email/phone as keyed hashes, other safe scalars as custom traits."""
    at = event.timestamp
    times = profile.trait_times
    changes: dict[str, Any] = {}
    new_times: dict[str, float] | None = None
    for field, value in _known_values(event, policy).items():
        if is_newer(at, value, times.get(field), getattr(profile, field)):
            changes[field] = value
            new_times = new_times if new_times is not None else dict(times)
            new_times[field] = at
    custom: dict[str, Scalar] | None = None
    for name, value in _custom_values(event):
        slot = f"t.{name}"
        if not is_newer(at, value, times.get(slot), profile.custom_traits.get(name)):
            continue
        custom = custom if custom is not None else dict(profile.custom_traits)
        new_times = new_times if new_times is not None else dict(times)
        custom[name] = value
        new_times[slot] = at
        if len(custom) > MAX_CUSTOM_TRAITS:
            oldest = min((k for k in custom if k != name), key=lambda k: (new_times.get(f"t.{k}", 0.0), k))
            del custom[oldest]
            new_times.pop(f"t.{oldest}", None)
    if custom is not None:
        changes["custom_traits"] = custom
    if new_times is not None:
        changes["trait_times"] = new_times
    return changes
