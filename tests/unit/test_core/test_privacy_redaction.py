"""PII redaction at ingest (``core.privacy``): what is hashed, what is dropped, what stays, and that the
profile built from a redacted event is the one the raw event gave, minus the raw personal data."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from core.privacy import (
    MAX_REMEMBERED_NAMES,
    PII_TRAIT_KEYS,
    PiiPolicy,
    age_at,
    hash_identifier,
    redact_event,
    redact_payload,
    trait_key,
)
from core.profile.apply import apply_event
from core.profile.policy import ProfilePolicy
from schemas.events import CUSTOMER, Event

KEY = b"test-secret-key"
POLICY = PiiPolicy(hash_key=KEY)
T0 = 1_764_000_000.0  # 2025-11-24

TRAITS = {
    "email": "Ann.Example@Mail.com",
    "phone": "+49 30 555 12345",
    "given_name": "Ann",
    "surname": "Example",
    "firstName": "Ann",
    "name": "Ann Example",
    "postcode": "10115",
    "birthday": "1988-04-02",
    "address": {"street": "Invalidenstr. 1", "postalCode": "10115", "city": "Berlin", "country": "DE"},
    "city": "Berlin",
    "loyalty_tier": "silver",
    "backup_contact": "ann@other.example",
    "email_hash": "forged",
}


def identify(traits: dict, **fields: object) -> Event:
    base: dict = {"type": "identify", "message_id": "m-1", "timestamp": T0, "family": CUSTOMER, "user_id": "u-1"}
    return Event(**{**base, "traits": traits, **fields})


def all_keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return {trait_key(k) for k in node} | {key for value in node.values() for key in all_keys(value)}
    if isinstance(node, list):
        return {key for value in node for key in all_keys(value)}
    return set()


def test_identify_traits_keep_hashes_and_safe_values_only() -> None:
    redacted = redact_event(identify(TRAITS), POLICY)
    assert redacted.traits == {
        "email_hash": hash_identifier("ann.example@mail.com", KEY),
        "phone_hash": hash_identifier("+493055512345", KEY),
        "age": 37,
        "address": {"city": "Berlin", "country": "DE"},
        "city": "Berlin",
        "loyalty_tier": "silver",
    }


def test_context_traits_properties_and_context_are_redacted_and_names_of_things_stay() -> None:
    event = identify(
        {},
        type="track",
        event="Product Viewed",
        properties={"product_id": "p1", "name": "Trail Boots", "email": "a@b.c", "products": [{"zip": "1"}]},
        context={"ip": "203.0.113.9", "app": {"name": "shop"}, "traits": {"name": "Ann", "email": "a@b.c"}},
    )
    redacted = redact_event(event, POLICY)
    digest = hash_identifier("a@b.c", KEY)
    assert redacted.properties == {"product_id": "p1", "name": "Trail Boots", "email_hash": digest, "products": [{}]}
    assert redacted.context == {"app": {"name": "shop"}, "traits": {"email_hash": digest}}


def test_an_event_without_personal_data_is_returned_as_it_is() -> None:
    event = identify({"city": "Berlin"}, properties={"product_id": "p", "products": [{"product_id": "q"}]})
    assert redact_event(event, POLICY) is event


def test_the_pii_list_is_configurable() -> None:
    policy = PiiPolicy(hash_key=KEY, pii_keys=frozenset({"email", "loyaltycard"}), hashed_keys=frozenset({"email"}))
    redacted = redact_event(identify({"loyalty_card": "LC-1", "surname": "Kept", "phone": "x"}), policy)
    assert redacted.traits == {"surname": "Kept", "phone": "x"}


def test_the_profile_of_a_redacted_event_matches_the_raw_one_without_raw_pii() -> None:
    policy = ProfilePolicy(pii_hash_key=KEY)
    raw = apply_event(None, identify(TRAITS), now=T0, policy=policy)
    redacted = apply_event(None, redact_event(identify(TRAITS), POLICY), now=T0, policy=policy)
    assert (redacted.email_hash, redacted.phone_hash, redacted.age_band, redacted.city) == (
        raw.email_hash,
        raw.phone_hash,
        raw.age_band,
        raw.city,
    )
    assert redacted.email_hash == hash_identifier("ann.example@mail.com", KEY)
    assert not {"givenname", "surname", "postcode", "emailhash"} & {trait_key(k) for k in redacted.custom_traits}


def test_age_at_counts_whole_years() -> None:
    assert age_at("1988-11-24", T0) == 37
    assert age_at("1988-11-25", T0) == 36
    assert age_at("not a date", T0) is None


def test_dead_letter_originals_are_redacted_unless_kept() -> None:
    payload = {
        "type": "identify",
        "userId": "u",
        "timestamp": "yesterday",
        "traits": {"email": "a@b.c", "surname": "X"},
    }
    raw = orjson.dumps(payload)
    redacted = orjson.loads(redact_payload(raw, POLICY))
    assert redacted["traits"] == {"email_hash": hash_identifier("a@b.c", KEY)}
    assert redacted["userId"] == "u"
    assert redact_payload(raw, PiiPolicy(hash_key=KEY, keep_deadletter_originals=True)) == raw
    for unparseable in (b"{not json", b"[1, 2]", b"\xff"):
        assert redact_payload(unparseable, POLICY) == unparseable


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(sorted(PII_TRAIT_KEYS)) | st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(PII_TRAIT_KEYS)) | st.text(max_size=10), json_values, max_size=8))
def test_no_pii_key_survives_in_traits(traits: dict) -> None:
    redacted = redact_event(identify(traits, context={"traits": traits}), POLICY)
    kept = all_keys(redacted.traits) | all_keys(redacted.context)
    # "address" objects stay (their parts are redacted), "age" may be derived from a birthday.
    assert not kept & (PII_TRAIT_KEYS - {"address"})


def test_the_memo_of_key_names_is_bounded() -> None:
    policy = PiiPolicy(hash_key=KEY)
    names = {f"k{n}": n for n in range(MAX_REMEMBERED_NAMES + 50)}
    assert redact_event(identify(names), policy).traits == names  # nothing personal: kept as it is
    assert len(policy.action_by_name) == MAX_REMEMBERED_NAMES
    assert redact_event(identify({"k-extra": 1, "surname": "X"}), policy).traits == {"k-extra": 1}
