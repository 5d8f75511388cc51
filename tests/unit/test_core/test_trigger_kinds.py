"""Each shipped trigger kind (config/triggers.yaml), as tables of scripted journeys → exact decisions.

Every journey runs the real profile stage with the shipped definitions (all kinds at once, so a journey
also shows that no other kind fires) and a perfect clock (``trigger_journeys.Journey``). A decision is
``(decided_at, kind, customer_id, channel)``.
"""

from __future__ import annotations

import msgspec
import pytest
from core_event_factory import POLICY, T0, identify, page, shipped_triggers, track
from trigger_journeys import Forget, Journey, Tick

from core.audiences import AudiencePolicy
from core.profile_stage import StagePolicy
from core.replenishment import ConsumableCatalog
from core.rules.definitions import parse_definitions
from schemas.events import Event
from schemas.profile import Profile

M, H, D = 60.0, 3600.0, 86400.0
CONSUMABLES = ConsumableCatalog(
    cycle_days_by_product={"dogfood-12kg": 30.0}, category_by_product={"dogfood-12kg": "dog food"}
)
AUDIENCES = AudiencePolicy.build(
    parse_definitions("segments: [{name: buyer, when: 'orders > 0'}]"), None, {}, b"trigger-kinds"
)
STAGE = StagePolicy(profile=POLICY, triggers=shipped_triggers(consumables=CONSUMABLES), audiences=AUDIENCES)


def product_event(name: str, at: float, properties: dict, **who: str | None) -> Event:
    """A track event whose properties may hold ``name`` (``track``'s own first parameter)."""
    return msgspec.structs.replace(track(name, at, **who), properties=properties)


def add(at: float, product: str = "rope-9mm", *, user: str | None = "u1", anon: str | None = None) -> Event:
    properties = {
        "product_id": product,
        "price": 8990,
        "quantity": 1,
        "name": "Rope 9mm",
        "category": "climbing",
        "image_url": f"https://shop.example/img/{product}.jpg",
        "url": f"https://shop.example/p/{product}",
        "currency": "EUR",
    }
    return product_event("Product Added", at, properties, user=user, anon=anon)


def view(
    at: float, product: str = "jacket-1", *, user: str | None = "u1", anon: str | None = None, category: str = "jackets"
) -> Event:
    properties = {"product_id": product, "category": category, "name": "Jacket", "price": 12900}
    return product_event("Product Viewed", at, properties, user=user, anon=anon)


def order(at: float, *products: str, user: str | None = "u1", anon: str | None = None, order_id: str = "o-1"):
    return track(
        "Order Completed",
        at,
        user=user,
        anon=anon,
        order_id=order_id,
        total=100,
        products=[
            {"product_id": p, "category": "dog food" if "dog" in p else "climbing", "price": 100} for p in products
        ],
    )


def remove(at: float, product: str = "rope-9mm") -> object:
    return track("Product Removed", at, product_id=product, quantity=1)


def checkout(at: float) -> object:
    return track("Checkout Started", at)


def scored(customer_id: str, **scores: float) -> Profile:
    return Profile(customer_id=customer_id, user_id=customer_id, scores=scores)


CART = [
    ("idle cart", [add(T0), Tick(T0 + 2 * D)], [(T0 + 30 * M, "cart_abandonment", "u1", "email")]),
    (
        "a later add restarts the wait",
        [add(T0), add(T0 + 10 * M, "tent"), Tick(T0 + D)],
        [(T0 + 40 * M, "cart_abandonment", "u1", "email")],
    ),
    ("ordered before due", [add(T0), order(T0 + 10 * M, "rope-9mm"), Tick(T0 + 2 * D)], []),
    ("emptied before due", [add(T0), remove(T0 + 5 * M), Tick(T0 + 2 * D)], []),
    (
        "checkout: the checkout reminder instead",
        [add(T0), checkout(T0 + 5 * M), Tick(T0 + 2 * D)],
        [(T0 + 5 * M + H, "checkout_abandonment", "u1", "email")],
    ),
    ("an anonymous cart is never mailed", [add(T0, user=None, anon="a1"), Tick(T0 + 5 * D)], []),
    (
        "an anonymous cart is sent once the visitor logs in",
        [add(T0, user=None, anon="a1"), identify(T0 + 2 * H, user="u1", anon="a1"), Tick(T0 + 2 * D)],
        [(T0 + 2 * H, "cart_abandonment", "u1", "email")],
    ),
    (
        "two devices, one cart, one reminder",
        [
            add(T0, user=None, anon="a1"),
            add(T0 + M, "tent", user=None, anon="a2"),
            identify(T0 + 10 * M, user="u1", anon="a1"),
            identify(T0 + 11 * M, user="u1", anon="a2"),
            Tick(T0 + 2 * D),
        ],
        [(T0 + 31 * M, "cart_abandonment", "u1", "email")],
    ),
    ("forgotten before due", [add(T0), Forget("u1", T0 + 10 * M), Tick(T0 + 2 * D)], []),
]

CHECKOUT = [
    (
        "checkout, no order",
        [add(T0), checkout(T0 + M), Tick(T0 + D)],
        [(T0 + M + H, "checkout_abandonment", "u1", "email")],
    ),
    (
        "checkout then order: the cross-sell recommends what else was viewed",
        [view(T0 - H, "harness-1"), add(T0), checkout(T0 + M), order(T0 + 30 * M, "rope-9mm"), Tick(T0 + 4 * D)],
        [(T0 + 30 * M + 3 * D, "post_purchase_cross_sell", "u1", "email")],
    ),
    # Nothing viewed but what was bought: the cross-sell would recommend nothing (blocked_no_content).
    (
        "checkout then order, nothing else viewed",
        [add(T0), checkout(T0 + M), order(T0 + 30 * M, "rope-9mm"), Tick(T0 + 4 * D)],
        [],
    ),
]

BROWSE = [
    (
        "three views",
        [view(T0), view(T0 + M), view(T0 + 2 * M), Tick(T0 + D)],
        [(T0 + 2 * M + 2 * H, "browse_abandonment", "u1", "email")],
    ),
    ("two views are not enough", [view(T0), view(T0 + M), Tick(T0 + D)], []),
    (
        "five views of a category",
        [view(T0 + i * M, f"puppy-{i}", category="puppy") for i in range(5)] + [Tick(T0 + D)],
        [(T0 + 4 * M + 2 * H, "browse_abandonment", "u1", "email")],
    ),
    (
        "added to cart: the cart reminder instead",
        [view(T0), view(T0 + M), view(T0 + 2 * M), add(T0 + 3 * M, "jacket-1"), Tick(T0 + D)],
        [(T0 + 33 * M, "cart_abandonment", "u1", "email")],
    ),
    (
        "an anonymous visitor does not enter",
        [view(T0, user=None, anon="a1"), view(T0 + M, user=None, anon="a1"), Tick(T0 + D)],
        [],
    ),
]

REPLENISHMENT = [
    (
        "runs out in 30 days",
        [view(T0 - H, "dog-bowl"), order(T0, "dogfood-12kg"), Tick(T0 + 40 * D)],
        [
            (T0 + 3 * D, "post_purchase_cross_sell", "u1", "email"),
            (T0 + 27 * D, "replenishment", "u1", "email"),
        ],
    ),
    (
        "bought again first: the next reminder follows the customer's own rhythm",
        [order(T0, "dogfood-12kg"), order(T0 + 20 * D, "dogfood-12kg", order_id="o-2"), Tick(T0 + 60 * D)],
        [(T0 + 37 * D, "replenishment", "u1", "email")],  # nothing else viewed: no cross-sell to send
    ),
    (
        "bought in store on a linked device first",
        [
            view(T0 - H, "dog-bowl"),
            order(T0, "dogfood-12kg"),
            order(T0 + 20 * D, "dogfood-12kg", user=None, anon="pos-card-7", order_id="pos-1"),
            identify(T0 + 21 * D, user="u1", anon="pos-card-7"),
            Tick(T0 + 60 * D),
        ],
        [
            (T0 + 3 * D, "post_purchase_cross_sell", "u1", "email"),
            (T0 + 23 * D, "post_purchase_cross_sell", "u1", "email"),  # the store order's, after the login
            (T0 + 37 * D, "replenishment", "u1", "email"),
        ],
    ),
]

HIGH_INTENT = [
    (
        "high score while viewing",
        [scored("u1", purchase_7d=0.8)],
        [view(T0), view(T0 + H), Tick(T0 + 2 * H)],
        [(T0, "high_intent_offer", "u1", "webpush")],
    ),
    (
        "again after a day",
        [scored("u1", purchase_7d=0.8)],
        [view(T0), view(T0 + 25 * H), Tick(T0 + 26 * H)],
        [
            (T0, "high_intent_offer", "u1", "webpush"),
            (T0 + 25 * H, "high_intent_offer", "u1", "webpush"),
        ],
    ),
    ("low score", [scored("u1", purchase_7d=0.3)], [view(T0), Tick(T0 + H)], []),
]

WIN_BACK = [
    (
        "a past buyer likely to churn",
        [msgspec.structs.replace(scored("u1", churn_60d=0.7), orders=2)],
        [
            page(T0),
            page(T0 + D),
            Tick(T0 + 2 * D),
        ],
        [(T0, "win_back", "u1", "email")],
    ),
    ("never bought", [scored("u1", churn_60d=0.7)], [page(T0), Tick(T0 + D)], []),
]


def _ids(table: list) -> list[str]:
    return [row[0] for row in table]


@pytest.mark.parametrize(
    ("name", "steps", "expected"),
    CART + CHECKOUT + BROWSE + REPLENISHMENT,
    ids=_ids(CART + CHECKOUT + BROWSE + REPLENISHMENT),
)
def test_journey(name: str, steps: list, expected: list):
    assert Journey(STAGE).play(*steps).decisions() == expected


@pytest.mark.parametrize(
    ("name", "profiles", "steps", "expected"), HIGH_INTENT + WIN_BACK, ids=_ids(HIGH_INTENT + WIN_BACK)
)
def test_journey_of_a_scored_customer(name: str, profiles: list, steps: list, expected: list):
    assert Journey(STAGE, *profiles).play(*steps).decisions() == expected
