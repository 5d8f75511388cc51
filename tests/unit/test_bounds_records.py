"""Every record the profile stage stores or sends is bounded in bytes, not only in count (issue 10).

``worst_profile`` is the largest ``Profile`` the caps allow: every capped collection full (``bump``'s dicts
at their ``cap * 5 / 4``), every string at its limit in bytes and made of 4-byte characters — ids the
contract checks (customer, user, message and linked ids: ``MAX_ID_CHARS`` characters, so 512 bytes), ids
and text the profile clips (``MAX_ID_BYTES``, ``MAX_TEXT_BYTES``, ``MAX_URL_BYTES``), every number at its
widest. The records built from it (the profile, the identity that carries it in ``sent_absorb``, the
absorb command) are asserted below the producer's request limit with a margin; a property test then checks
that no field of a profile built by random valid events (and merges) is ever larger than that field of
``worst_profile``, so the bound holds for every reachable profile.

Trigger and segment definitions are configuration, not input: the bound assumes at most
``MAX_TRIGGER_KINDS`` trigger and ``MAX_SEGMENTS`` segment definitions (and models), named in at most
``MAX_NAME_CHARS`` characters (the default files have 7 and 13).
"""

from __future__ import annotations

import random
import string

import msgspec
import orjson
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.tables import IDENTITIES, PROFILES, SEGMENT_SIZES, WAKE_UPS
from core.groups import MAX_GROUP_TRAITS, MAX_GROUPS
from core.identity import KeyIdentity, absorb_id_for, link_id_for
from core.profile.apply import apply_event
from core.profile.bounded import clipped_id, clipped_text
from core.profile.merge import merge_profiles
from core.profile.policy import (
    MAX_ABSORBED_IDS,
    MAX_AFFINITIES,
    MAX_ANONYMOUS_IDS,
    MAX_APPLIED_IDS,
    MAX_CART_ITEMS,
    MAX_CATEGORY_VIEWS,
    MAX_CHANNELS,
    MAX_CUSTOM_TRAITS,
    MAX_DEVICES,
    MAX_EVENT_NAMES,
    MAX_HASH_CHARS,
    MAX_ID_BYTES,
    MAX_LEDGER_ORDERS,
    MAX_LINKED_IDS,
    MAX_LINKED_USERS,
    MAX_ORDER_TIMES,
    MAX_PAYMENT_METHODS,
    MAX_PRODUCT_VIEWS,
    MAX_PRODUCTS_PER_ORDER,
    MAX_PURCHASED_PRODUCTS,
    MAX_PURCHASES_PER_PRODUCT,
    MAX_RECENTLY_VIEWED,
    MAX_SIZE_CATEGORIES,
    MAX_SIZES_PER_CATEGORY,
    MAX_STORES,
    MAX_TEXT_BYTES,
    MAX_TRAIT_NAME_BYTES,
    MAX_TRIGGER_HISTORY,
    MAX_TRIGGERS_REMEMBERED,
    MAX_URL_BYTES,
    ProfilePolicy,
)
from core.triggers.definitions import MAX_RECOMMENDATIONS
from core.triggers.pending import MAX_TRIGGER_SENDS
from schemas.codecs import encode_json, encode_msgpack
from schemas.commands import AbsorbProfile, ApplyEvent, LinkIdentity, encode_command
from schemas.deadletter import PRODUCER_MAX_REQUEST_BYTES
from schemas.errors import InvalidEvent
from schemas.profile import Affinity, CartItem, OrderRecord, Profile
from schemas.triggers import PendingTrigger, Trigger, TriggerItem, TriggerOutcome, TriggerSend
from schemas.validation import MAX_ID_CHARS, ContractLimits, decode_event
from streams.settings import Settings
from streams.stage_config import stage_policy

WIDE = "\U0001f600"  # 4 bytes in UTF-8, the most a character takes
MAX_TRIGGER_KINDS = 16  # a pending trigger per kind, each with its facts
MAX_SEGMENTS = 64  # segment names and score names
MAX_NAME_CHARS = 64
CHANNEL_CHARS = 32  # apply_event keeps channel names to 32 characters
PAYMENT_CHARS = 40
BIG_INT = -(2**63)  # msgpack's widest integer (9 bytes)
AT = 1.5e300  # msgpack's widest number: a float64 (9 bytes), like every time
# A record must leave this share of the producer's limit free (a margin for fields added later).
MARGIN = 0.25
LIMIT = PRODUCER_MAX_REQUEST_BYTES * (1 - MARGIN)


def wide(max_bytes: int, i: int = 0) -> str:
    """A distinct string (per ``i``) of exactly ``max_bytes`` UTF-8 bytes, of 4-byte characters (and a 1-byte
    character per byte left over)."""
    return chr(0x10000 + i) + WIDE * (max_bytes // 4 - 1) + "x" * (max_bytes % 4)


def event_id(i: int = 0) -> str:
    """An id as the contract lets it through: ``MAX_ID_CHARS`` characters of 4 bytes."""
    return chr(0x10000 + i) + WIDE * (MAX_ID_CHARS - 1)


def clipped(i: int = 0) -> str:
    """An id as the profile keeps it after ``clipped_id``."""
    return wide(MAX_ID_BYTES, i)


def name(i: int = 0) -> str:
    return f"{i}".ljust(MAX_NAME_CHARS, "n")


def bumped(cap: int) -> int:
    """How many keys ``bump`` lets a counted dict hold."""
    return cap + cap // 4


def counts(cap: int, key=clipped) -> dict[str, int]:
    return {key(i): BIG_INT for i in range(cap)}


def worst_facts() -> dict:
    """Every fact any entry-facts function (``core.triggers.kinds``) writes, at its largest."""
    return {
        "product_id": clipped(),
        **{fact: wide(MAX_TEXT_BYTES, i) for i, fact in enumerate(("name", "category", "currency"))},
        **{fact: wide(MAX_URL_BYTES, i) for i, fact in enumerate(("image_url", "url"))},
        "price": BIG_INT,
        "views": BIG_INT,
        "category_views": BIG_INT,
        "episode": "category:" + clipped(),
        "expected_at": AT,
        "last_purchase_at": AT,
        "interval_days": AT,
        "order_id": clipped(),
        "product_ids": ",".join(clipped(i) for i in range(20)),
        "categories": ",".join(clipped(i) for i in range(10)),
    }


def worst_profile() -> Profile:
    trigger_id = f"{name()}:{'f' * 24}"
    return Profile(
        customer_id=event_id(),
        first_seen=AT,
        last_seen=AT,
        event_count=BIG_INT,
        cart=tuple(
            CartItem(
                product_id=clipped(i),
                quantity=BIG_INT,
                price=BIG_INT,
                added_at=AT,
                name=wide(MAX_TEXT_BYTES, i),
                category=clipped(i),
                image_url=wide(MAX_URL_BYTES, i),
                url=wide(MAX_URL_BYTES, i),
                currency=WIDE * 3,
            )
            for i in range(MAX_CART_ITEMS)
        ),
        cart_updated_at=AT,
        last_checkout_at=AT,
        orders=BIG_INT,
        revenue=BIG_INT,
        last_order_at=AT,
        triggers_sent=tuple(trigger_id for _ in range(MAX_TRIGGERS_REMEMBERED)),
        applied_ids=tuple(clipped(i) for i in range(MAX_APPLIED_IDS)),
        user_id=event_id(),
        anonymous_ids=tuple(clipped(i) for i in range(MAX_ANONYMOUS_IDS)),
        linked_ids=tuple(event_id(i) for i in range(MAX_LINKED_IDS)),
        absorbed_ids=tuple(f"absorb:{'f' * 24}" for _ in range(MAX_ABSORBED_IDS)),
        email_hash=WIDE * (MAX_HASH_CHARS // 4),
        phone_hash=WIDE * (MAX_HASH_CHARS // 4),
        age_band="65+",
        gender=wide(MAX_TEXT_BYTES),
        city=wide(MAX_TEXT_BYTES),
        country=wide(MAX_TEXT_BYTES),
        timezone=wide(MAX_TEXT_BYTES),
        loyalty_tier=wide(MAX_TEXT_BYTES),
        preferred_channel=wide(MAX_TEXT_BYTES),
        custom_traits={wide(MAX_TRAIT_NAME_BYTES, i): wide(MAX_TEXT_BYTES, i) for i in range(MAX_CUSTOM_TRAITS)},
        groups={
            clipped(g): {wide(MAX_TRAIT_NAME_BYTES, i): wide(MAX_TEXT_BYTES, i) for i in range(MAX_GROUP_TRAITS)}
            for g in range(MAX_GROUPS)
        },
        group_times={clipped(g): AT for g in range(MAX_GROUPS)},
        trait_times={
            **{field: AT for field in ("age_band", "gender", "city", "country", "timezone", "loyalty_tier")},
            **{field: AT for field in ("preferred_channel", "email_hash", "phone_hash")},
            **{f"t.{wide(MAX_TRAIT_NAME_BYTES, i)}": AT for i in range(MAX_CUSTOM_TRAITS)},
        },
        sessions=BIG_INT,
        last_session_id=clipped(),
        last_active_at=AT,
        devices=tuple(clipped(i) for i in range(MAX_DEVICES)),
        product_views=counts(bumped(MAX_PRODUCT_VIEWS)),
        category_views=counts(bumped(MAX_CATEGORY_VIEWS)),
        category_affinity={clipped(i): Affinity(AT, AT) for i in range(MAX_AFFINITIES)},
        recently_viewed=tuple((clipped(i), AT) for i in range(MAX_RECENTLY_VIEWED)),
        event_counts=counts(MAX_EVENT_NAMES),
        event_last_at={clipped(i): AT for i in range(MAX_EVENT_NAMES)},
        order_times=(AT,) * MAX_ORDER_TIMES,
        product_purchases={clipped(i): (AT,) * MAX_PURCHASES_PER_PRODUCT for i in range(MAX_PURCHASED_PRODUCTS)},
        orders_with_coupon=BIG_INT,
        payment_methods=counts(bumped(MAX_PAYMENT_METHODS), key=lambda i: wide(PAYMENT_CHARS * 4, i)),
        size_counts={clipped(i): counts(bumped(MAX_SIZES_PER_CATEGORY)) for i in range(MAX_SIZE_CATEGORIES)},
        stores_visited=tuple(clipped(i) for i in range(MAX_STORES)),
        order_ledger={
            clipped(i): OrderRecord(
                at=AT,
                revenue=BIG_INT,
                coupon=True,
                payment_method=wide(PAYMENT_CHARS * 4),
                product_ids=tuple(clipped(j) for j in range(MAX_PRODUCTS_PER_ORDER)),
                known=False,
                refunded=True,
            )
            for i in range(MAX_LEDGER_ORDERS)
        },
        refunds=BIG_INT,
        engagement={
            wide(CHANNEL_CHARS * 4, c): counts(7, key=lambda i: f"unsubscribed{i}") for c in range(MAX_CHANNELS)
        },
        consent={wide(CHANNEL_CHARS * 4, c): False for c in range(MAX_CHANNELS)},
        consent_updated_at={wide(CHANNEL_CHARS * 4, c): AT for c in range(MAX_CHANNELS)},
        suppressed={wide(CHANNEL_CHARS * 4, c): "spam_complaint" for c in range(MAX_CHANNELS)},  # longest reason
        suppressed_at={wide(CHANNEL_CHARS * 4, c): AT for c in range(MAX_CHANNELS)},
        push_token_hash="f" * 24,
        push_token_at=AT,
        webpush_subscribed=True,
        webpush_at=AT,
        segments=tuple(name(i) for i in range(MAX_SEGMENTS)),
        scores={name(i): AT for i in range(MAX_SEGMENTS)},
        audience_version="f" * 64,
        audience_due_at=AT,
        audience_refreshed_at=AT,
        pending_triggers=tuple(
            PendingTrigger(
                kind=name(i),
                trigger_id=trigger_id,
                entered_at=AT,
                last_entry_at=AT,
                due_at=AT,
                facts=worst_facts(),
                deferred_until=AT,
            )
            for i in range(MAX_TRIGGER_KINDS)
        ),
        trigger_history=tuple(
            TriggerOutcome(trigger_id=trigger_id, kind=name(), outcome=name(), at=AT, channel=name())
            for _ in range(MAX_TRIGGER_HISTORY)
        ),
        trigger_last_sent={name(i): AT for i in range(MAX_TRIGGER_KINDS)},
        trigger_sends=tuple(TriggerSend(kind=name(), channel="whatsapp", at=AT) for _ in range(MAX_TRIGGER_SENDS)),
    )


def worst_identity(profile: Profile) -> KeyIdentity:
    link = LinkIdentity(alias=event_id(1), customer_id=event_id(2), at=AT, link_id=link_id_for("a", "c", "alias"))
    absorb = AbsorbProfile(customer_id=event_id(2), absorbed=profile, absorb_id=absorb_id_for(link), linked_at=AT)
    return KeyIdentity(
        redirect_to=event_id(2),
        link_kind="identify",
        linked_at=AT,
        linked_users=tuple(event_id(i) for i in range(MAX_LINKED_USERS)),
        forgotten_at=AT,
        sent_absorb=absorb,
        applied_before_link=tuple(clipped(i) for i in range(MAX_APPLIED_IDS)),
    )


def record_bytes(table_tag: bytes, key: str, value: bytes) -> int:
    """A changelog record's size as the producer counts it (key: the table's tag and the key's bytes)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(table_tag + key.encode(), value, [])


def test_the_worst_strings_are_as_long_as_the_limits():
    assert len(wide(MAX_TEXT_BYTES).encode()) == MAX_TEXT_BYTES and len(clipped().encode()) == MAX_ID_BYTES
    assert len(event_id()) == MAX_ID_CHARS and len(event_id().encode()) == 4 * MAX_ID_CHARS


def test_the_largest_profile_and_identity_fit_the_changelog_with_a_margin():
    profile = worst_profile()
    identity = worst_identity(profile)
    profile_size = record_bytes(PROFILES.tag, event_id(), PROFILES.encode(profile))
    identity_size = record_bytes(IDENTITIES.tag, event_id(), IDENTITIES.encode(identity))
    absorb_size = len(encode_command(identity.sent_absorb)) + 4 * MAX_ID_CHARS
    assert profile_size < identity_size < LIMIT, (profile_size, identity_size, LIMIT)
    assert absorb_size < LIMIT  # the absorb command on profile-commands carries the whole profile too
    assert record_bytes(WAKE_UPS.tag, event_id(), WAKE_UPS.encode(AT)) < 1024
    assert record_bytes(SEGMENT_SIZES.tag, name(), SEGMENT_SIZES.encode(BIG_INT)) < 1024


def test_the_largest_trigger_message_fits():
    """A trigger carries the whole cart (or the entry's product), recommendations and the profile's segments;
    as JSON every stored byte may take 6 (a control character as ``\\u00XX``)."""
    control = "\x01"
    items = tuple(
        TriggerItem(
            product_id=control * MAX_ID_BYTES,
            name=control * MAX_TEXT_BYTES,
            category=control * MAX_ID_BYTES,
            price=BIG_INT,
            quantity=BIG_INT,
            image_url=control * MAX_URL_BYTES,
            url=control * MAX_URL_BYTES,
        )
        for _ in range(MAX_CART_ITEMS)
    )
    trigger = Trigger(
        trigger_id=f"{name()}:{'f' * 24}",
        kind=name(),
        customer_id=control * MAX_ID_CHARS * 4,
        user_id=control * MAX_ID_CHARS * 4,
        channel="whatsapp",
        channels=("email", "sms", "whatsapp", "webpush", "apppush"),
        decided_at=AT,
        send_at=AT,
        reason=control * 4096,  # the definition's description, the wait and a product id
        priority=100,
        timezone=control * MAX_TEXT_BYTES,
        locale=control * MAX_TEXT_BYTES,
        items=items,
        value=BIG_INT,
        currency=control * MAX_TEXT_BYTES,
        recommendations=(control * MAX_ID_BYTES,) * MAX_RECOMMENDATIONS,
        offer={name(i): control * 1024 for i in range(8)},  # from the definition, not from events
        content={name(i): control * 1024 for i in range(8)},
        segments=tuple(name(i) for i in range(MAX_SEGMENTS)),
    )
    assert record_bytes(b"", event_id(), encode_json(trigger)) < LIMIT


def test_the_default_definitions_are_within_what_the_bound_assumes():
    policy = stage_policy(Settings())
    triggers = policy.triggers.rules if policy.triggers is not None else {}
    segments = [rule.name for rule in policy.audiences.definitions.rules] if policy.audiences is not None else []
    assert 0 < len(triggers) <= MAX_TRIGGER_KINDS and 0 < len(segments) <= MAX_SEGMENTS
    assert all(len(kind) <= MAX_NAME_CHARS for kind in triggers)
    assert all(len(segment) <= MAX_NAME_CHARS for segment in segments)


def test_settings_cannot_raise_the_caps_the_bound_is_computed_from():
    assert Settings().dedup_max_ids <= MAX_APPLIED_IDS
    for field in ("dedup_max_ids", "max_users_per_anonymous_id"):
        metadata = Settings.model_fields[field].metadata
        assert any(getattr(bound, "le", None) is not None for bound in metadata), field


def test_the_largest_event_fits_as_a_command_on_profile_commands():
    """The widest growth from JSON to msgpack: arrays of the shortest floats (``1e1``, 4 bytes with its comma,
    9 bytes in msgpack), each as long as the contract allows, up to the largest payload the settings allow."""
    largest = max(bound.le for bound in Settings.model_fields["max_event_bytes"].metadata if hasattr(bound, "le"))
    limits = ContractLimits(max_event_bytes=largest)
    envelope = {"type": "track", "event": "Floats", "messageId": "m", "userId": "u", "timestamp": NOW}
    floats = "[" + ",".join(["1e1"] * limits.max_array_length) + "]"
    size = len(orjson.dumps(envelope)) + len(',"properties":{}')
    arrays = []
    while size + len(floats) + 12 < largest:
        arrays.append(f'"{len(arrays)}":{floats}')
        size += len(arrays[-1]) + 1
    raw = orjson.dumps(envelope)[:-1] + b',"properties":{' + ",".join(arrays).encode() + b"}}"
    assert largest - 4096 < len(raw) <= largest
    command = encode_command(ApplyEvent(decode_event(raw, now=NOW, limits=limits)))
    assert len(command) / len(raw) > 2  # the growth is real
    assert record_bytes(b"", event_id(), command) < LIMIT


def test_clipping_keeps_short_ids_and_tells_long_ones_apart():
    assert clipped_id("p-1") == "p-1" and clipped_id(42) == "42" and clipped_id("é" * 64) == "é" * 64
    long_a, long_b = WIDE * 100 + "a", WIDE * 100 + "b"
    assert clipped_id(long_a) != clipped_id(long_b)
    assert len(clipped_id(long_a).encode()) <= MAX_ID_BYTES and clipped_id(long_a) == clipped_id(long_a)
    assert clipped_text("ab" + WIDE, 4) == "ab" and clipped_text("abc", 4) == "abc"


# --- property: no field of a profile that events can build is larger than worst_profile's --------------------

NOW = 1_764_000_000.0
POLICY = ProfilePolicy(pii_hash_key=b"unit")
CONTRACT = ContractLimits()
WORST_FIELDS = {field: len(encode_msgpack(getattr(worst_profile(), field))) for field in Profile.__struct_fields__}

# Strings up to past every limit, of characters of 1 to 4 bytes; ids stay within the contract's 128.
_alphabet = st.sampled_from([*string.ascii_letters[:6], "é", "€", WIDE])
texts = st.text(_alphabet, max_size=300)
ids = st.text(_alphabet, min_size=1, max_size=MAX_ID_CHARS) | st.integers(0, 2**53)
product = st.fixed_dictionaries(
    {"product_id": ids, "category": ids, "name": texts, "size": ids, "price": st.integers(0, 10**6)},
    optional={"image_url": texts, "url": texts, "currency": st.just("EUR"), "quantity": st.integers(1, 10)},
)
TRACKS = ["Product Viewed", "Product Added", "Product Removed", "Order Completed", "Order Refunded"]
TRACKS += ["Message Opened", "Consent Updated", "Unsubscribed", "Checkout Started"]


@st.composite
def events(draw) -> dict:
    """A message of any kind the profile keeps strings from, with strings as long as the contract lets through."""
    kind = draw(st.sampled_from(["track", "identify", "group", "page"]))
    message = {
        "type": kind,
        "messageId": draw(ids),
        "timestamp": NOW - draw(st.integers(0, 10**6)),
        "userId": draw(st.sampled_from(["u-1", WIDE * MAX_ID_CHARS])),
        "anonymousId": draw(ids),
        "context": {"session_id": draw(ids), "device": {"id": draw(ids)}},
    }
    if kind == "track":
        message["event"] = draw(st.sampled_from([*TRACKS, draw(texts) or "x"]))
        message["properties"] = {
            **draw(product),
            "order_id": draw(ids),
            "store_id": draw(ids),
            "payment_method": draw(texts),
            "channel": draw(st.sampled_from(["email", "sms"])),
            "granted": draw(st.booleans()),
            "products": draw(st.lists(product, max_size=25)),
        }
    elif kind in ("identify", "group"):
        traits = draw(st.dictionaries(texts, texts | st.integers(), max_size=40))
        traits.update({"city": draw(texts), "gender": draw(texts), "timezone": draw(texts), "email_hash": draw(texts)})
        message["traits"] = traits
        message["groupId"] = draw(ids)
    return message


def decoded(message: dict):
    try:
        return decode_event(msgspec.json.encode(message), now=NOW, limits=CONTRACT)
    except InvalidEvent:
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(events(), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_no_field_built_by_valid_events_and_merges_outgrows_the_worst_profile(messages, rng: random.Random):
    valid = [event for event in map(decoded, messages) if event is not None]
    profiles: list[Profile | None] = [None, None]
    for event in valid:
        side = rng.randrange(2)
        profiles[side] = apply_event(profiles[side], event, now=NOW, policy=POLICY)
    built = [profile for profile in profiles if profile is not None]
    if len(built) == 2:
        built.append(merge_profiles(built[0], built[1], policy=POLICY))
    for profile in built:
        for field, worst in WORST_FIELDS.items():
            assert len(encode_msgpack(getattr(profile, field))) <= worst, field
