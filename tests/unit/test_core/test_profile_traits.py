"""Derived traits, the API document, PII absence and the bounded profile size."""

from __future__ import annotations

import random

import msgspec
import pytest
from core_event_factory import KEY, POLICY, T0, identify, page, track

from core.privacy import hash_identifier, normalise_email, normalise_phone
from core.profile.apply import apply_event, new_profile
from core.profile.document import profile_document
from core.profile.policy import DAY_S, ProfilePolicy
from core.traits import days_since_last_order, decayed_affinity, lifecycle_stage, preferred_sizes, rfm_scores
from schemas.profile import Profile


def run(*events, policy=POLICY) -> Profile:
    profile = None
    for event in events:
        profile = apply_event(profile, event, now=T0, policy=policy)
    return profile


def orders(count: int, total: int, last_at: float) -> Profile:
    return run(*(track("Order Completed", last_at - i, order_id=f"o{i}", total=total) for i in range(count)))


@pytest.mark.parametrize(
    ("count", "total", "days_ago", "rfm", "stage"),
    [
        (0, 0, 0, (1, 1, 1), "prospect"),
        (1, 1000, 3, (5, 1, 1), "new"),
        (1, 1000, 40, (3, 1, 1), "active"),
        (2, 3000, 20, (4, 2, 2), "active"),
        (5, 5000, 100, (2, 3, 3), "at_risk"),
        (10, 6000, 200, (1, 4, 4), "lapsed"),
        (20, 6000, 400, (1, 5, 5), "churned"),
    ],
)
def test_rfm_and_lifecycle(count, total, days_ago, rfm, stage):
    now = T0 + days_ago * DAY_S
    profile = orders(count, total, T0) if count else new_profile("u1")
    assert rfm_scores(profile, now) == rfm
    assert lifecycle_stage(profile, now) == stage


def test_refunded_only_customer_is_a_prospect_again():
    profile = run(track("Order Completed", T0, order_id="o", total=100), track("Order Refunded", T0, order_id="o"))
    assert days_since_last_order(profile, T0) is None and lifecycle_stage(profile, T0) == "prospect"


def test_affinity_decays_with_half_life():
    profile = run(track("Product Viewed", T0, product_id="p", category="shoes"))
    half_life = POLICY.affinity_half_life_s
    assert decayed_affinity(profile, T0)["shoes"] == pytest.approx(1.0)
    assert decayed_affinity(profile, T0 + half_life)["shoes"] == pytest.approx(0.5)
    assert decayed_affinity(profile, T0 - 100)["shoes"] == pytest.approx(1.0)  # never grows backwards


def test_affinity_is_order_independent():
    views = [track("Product Viewed", T0 + i * 3600, product_id="p", category="c") for i in range(5)]
    forward = decayed_affinity(run(*views), T0 + 10 * DAY_S)["c"]
    backward = decayed_affinity(run(*reversed(views)), T0 + 10 * DAY_S)["c"]
    assert forward == pytest.approx(backward)


def test_preferred_size_is_the_most_bought():
    profile = run(
        *(
            track(
                "Order Completed",
                T0 + i,
                order_id=f"o{i}",
                total=1,
                products=[{"product_id": f"p{i}", "category": "shoes", "size": size}],
            )
            for i, size in enumerate(["42", "43", "42"])
        )
    )
    assert preferred_sizes(profile) == {"shoes": "42"}


def test_profile_document():
    profile = run(
        identify(city="Berlin", email="a@b.c", plan="pro"),
        track("Order Completed", T0, order_id="o", total=2000, products=[{"product_id": "p", "category": "c"}]),
        track("Consent Updated", T0, channel="sms", granted=True),
    )
    document = profile_document(profile, now=T0 + DAY_S)
    assert "applied_ids" not in document and "applied_ids" not in str(document)
    assert document["orders"] == 1 and document["revenue"] == 2000 and document["cart"] == []
    assert document["traits"]["city"] == "Berlin" and document["traits"]["custom.plan"] == "pro"
    computed = document["computed"]
    assert computed["average_order_value"] == 2000.0
    assert computed["days_since_last_order"] == pytest.approx(1.0)
    assert computed["rfm"] == {"recency": 5, "frequency": 1, "monetary": 1}
    assert computed["lifecycle_stage"] == "new"
    assert computed["category_affinity"]["c"] < 5.0
    assert document["consent"] == {"sms": {"granted": True, "updated_at": T0}}
    msgspec.json.encode(document)  # JSON-serialisable as is


EMAIL = "Ann.Example@Mail.COM"
PHONE = "+49 (30) 555-12345"


@pytest.mark.parametrize("policy", [POLICY, ProfilePolicy()], ids=["hashed", "no-key"])
def test_no_pii_anywhere_in_the_profile(policy):
    profile = run(
        identify(
            email=f"  {EMAIL} ",
            phone=PHONE,
            firstName="Ann",
            last_name="Example",
            name="Ann Example",
            address={"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115"},
            birthday="1990-01-02",
            contact=EMAIL,
            mobile=PHONE,
            backup="+49 30 55512345",
            plan="pro",
        ),
        policy=policy,
    )
    for encoded in (
        msgspec.json.encode(profile),
        msgspec.msgpack.encode(profile),
        repr(profile).encode(),
        msgspec.json.encode(profile_document(profile, now=T0)),
    ):
        text = encoded.decode(errors="replace").lower()
        for secret in (
            EMAIL.lower(),
            "ann.example",
            "hauptstr",
            "10115",
            "1990-01-02",
            "555-12345",
            "5551234",
            "ann example",
            '"ann"',
            "example",
        ):
            assert secret not in text, secret
    assert profile.city == "Berlin" and profile.custom_traits == {"plan": "pro"}
    if policy.pii_hash_key is not None:
        assert profile.email_hash == hash_identifier("ann.example@mail.com", KEY)
        assert profile.phone_hash == hash_identifier("+493055512345", KEY)
    else:
        assert profile.email_hash is None and profile.phone_hash is None


def test_hash_identifier_normalises_and_is_keyed():
    assert normalise_email("  A@B.Com ") == "a@b.com"
    assert normalise_phone(" +1 (555) 010-99 ") == "+155501099"
    assert normalise_phone("0049 30") == "004930"
    assert hash_identifier(" A@B.com", "k") == hash_identifier("a@b.com", b"k")
    assert hash_identifier("a@b.com", "k") != hash_identifier("a@b.com", "other")
    assert len(hash_identifier("+1 555", "k")) == 64


def test_profile_size_stays_bounded_after_10000_events():
    rng = random.Random(7)
    names = [f"Custom Event {i}" for i in range(80)]
    profile = None
    for i in range(10_000):
        at = T0 + i * 60
        kind = rng.randrange(9)
        if kind == 0:
            event = track(
                "Order Completed",
                at,
                order_id=f"o{i}",
                total=rng.randrange(1, 50000),
                coupon="C" * (i % 2),
                payment_method=f"pm{rng.randrange(15)}",
                store_id=f"s{rng.randrange(40)}",
                products=[
                    {
                        "product_id": f"p{rng.randrange(500)}",
                        "category": f"c{rng.randrange(60)}",
                        "size": str(rng.randrange(30)),
                    }
                    for _ in range(25)
                ],
            )
        elif kind == 1:
            event = track("Product Added", at, product_id=f"p{rng.randrange(500)}", price=100, category=f"c{i % 60}")
        elif kind == 2:
            event = identify(at, anon=f"a{rng.randrange(100)}", **{f"trait{rng.randrange(80)}": "v" * 150})
        elif kind == 3:
            event = track(rng.choice(names), at, anon=f"a{rng.randrange(100)}")
        elif kind == 4:
            event = track("Message Opened", at, channel=f"ch{rng.randrange(20)}")
        elif kind == 5:
            event = track("Consent Updated", at, channel=f"ch{rng.randrange(20)}", granted=bool(i % 2))
        elif kind == 6:
            event = track("Order Refunded", at, order_id=f"o{rng.randrange(i + 1)}")
        else:
            event = (
                page(at, context={"device": {"id": f"d{rng.randrange(100)}"}})
                if kind == 7
                else track(
                    "Product Viewed", at, product_id=f"p{rng.randrange(1000)}", category=f"c{rng.randrange(100)}"
                )
            )
        profile = apply_event(profile, event, now=at, policy=POLICY)
    size = len(msgspec.msgpack.encode(profile))
    assert size < 48 * 1024, size
    assert len(profile.product_views) <= 125 and len(profile.event_counts) <= 50 and len(profile.cart) <= 50
    assert len(profile.order_ledger) <= 50 and len(profile.custom_traits) <= 32 and len(profile.consent) <= 8
    assert profile.orders >= 0 and profile.revenue >= 0 and profile.event_count == 10_000
