"""A seeded, deterministic synthetic omnichannel workload: Segment Spec events and their ground truth.

Two shops share one customer base: a pet shop (dog food, cat litter, puppy toys, harnesses …) and an
outdoor retailer (climbing ropes, tents, hiking boots, gas canisters …). Each shopper browses
anonymously on one to three devices (one ``anonymousId`` each), identifies later (identify with userId,
anonymousId and traits; a few devices are linked by ``alias`` instead), views, searches, adds and removes
products, abandons or completes carts on the web, buys in store (POS orders with ``store_id``),
replenishes consumables on a cycle (dog food about every 30 days), receives messages (sent, delivered,
opened, clicked, bounced, replied; sometimes with a ``trigger_id``; some email events under Segment's
"Email …" names), changes consents, unsubscribes, gets refunds, and a few request deletion. Each
customer has a time zone (trait ``timezone``), an engagement habit per channel (``offline.responses``:
how often they open and click there, the same habit the sender simulator answers with), and app devices
carry a push token (``context.device.token``) in their identify.

Pure: ``generate_workload(config)`` depends only on its config (seed and start time included) — the
same config gives byte-identical lines. Each customer draws from its own random stream, so a customer's
events do not depend on how many other customers there are.

Ground truth rules (also written into the truth document's ``rules``):

- a customer's events are those carrying its ``userId`` or one of its linked ``anonymousId``s; an
  ``anonymousId`` is linked once it appears in an identify together with the userId, or as the
  ``previousId`` of an alias to it (a device that never logs in stays a separate anonymous visitor);
- ``orders`` = number of Order Completed minus number of Order Refunded (every refund fully reverses
  one earlier order of the same customer, named by ``order_id``; an order is refunded at most once);
- ``revenue`` = sum of Order Completed ``total`` minus the totals of the refunded orders, in minor units;
- ``last_order_at`` = epoch seconds of the latest Order Completed (a refund does not move it back),
  ``null`` without orders;
- ``deleted`` = the customer sent Deletion Requested; it sends nothing afterwards, and its counts still
  describe the events it sent before (a pipeline must have erased that profile).

Corrupted lines (``corrupt_fraction``) are extra lines, never counted in the truth, each built to fail
validation with a known reason; the truth document counts them by reason.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from core.shop_catalog import CATALOG, Product
from offline.responses import engagement_habit

MS_PER_DAY = 86_400_000


PRODUCTS_BY_SHOP = {shop: tuple(p for p in CATALOG if p.shop == shop) for shop in ("pet", "outdoor")}
PRODUCT_BY_ID = {p.product_id: p for p in CATALOG}
STORES = ("store-berlin-01", "store-munich-02", "store-hamburg-03", "store-lyon-04")
COUPONS = ("WELCOME10", "SPRING10", "LOYAL10")
WEB_PAYMENTS = ("card", "paypal", "apple_pay", "klarna", "gift_card")
POS_PAYMENTS = ("card", "cash", "contactless")
CITIES = (
    ("Berlin", "DE", "Europe/Berlin"),
    ("Munich", "DE", "Europe/Berlin"),
    ("Lyon", "FR", "Europe/Paris"),
    ("Vienna", "AT", "Europe/Vienna"),
    ("Zurich", "CH", "Europe/Zurich"),
    ("Hamburg", "DE", "Europe/Berlin"),
)
SEARCHES = {
    "pet": ("dog food", "puppy toy", "cat litter", "harness"),
    "outdoor": ("tent", "rope", "boots", "rain jacket"),
}
PAGES = ("Home", "Category", "Search Results", "Product", "Cart", "Account")
EMAIL_SPEC_NAMES = {
    "Message Sent": "Email Sent",
    "Message Delivered": "Email Delivered",
    "Message Opened": "Email Opened",
    "Message Clicked": "Email Link Clicked",
    "Message Bounced": "Email Bounced",
}

CORRUPTIONS = (
    ("bad_json", "not_json"),
    ("not_utf8", "not_utf8"),
    ("missing_ids", "missing_identity"),
    ("bad_timestamp", "bad_timestamp"),
    ("negative_price", "bad_amount"),
    ("unknown_type", "unknown_type"),
    ("oversized", "oversized"),
    ("missing_message_id", "missing_field"),
    ("future_timestamp", "timestamp_skew"),
    ("too_deep", "too_deep"),
)

TRUTH_RULES = (
    "orders = Order Completed minus Order Refunded (each refund fully reverses one earlier order, by order_id); "
    "revenue = sum of Order Completed totals minus refunded orders' totals, in minor units; "
    "last_order_at = epoch seconds of the latest Order Completed (refunds do not move it), null without orders; "
    "a customer's events carry its userId or a linked anonymousId (linked by identify with the userId or by "
    "alias previousId); deleted = sent Deletion Requested (nothing follows it; the profile must be erased); "
    "profiles lists the customers that identified at least once (the others stay anonymous visitors); "
    "corrupted lines are extra lines, excluded from every count."
)


@dataclass(frozen=True)
class WorkloadConfig:
    """What to generate. ``start`` is epoch seconds of the first possible event (the caller picks it)."""

    start: float
    customers: int = 100
    days: float = 30.0
    seed: int = 1
    corrupt_fraction: float = 0.0
    currency: str = "EUR"
    deletion_rate: float = 0.005
    refund_rate: float = 0.05


@dataclass(frozen=True)
class Workload:
    lines: list[bytes]  # JSONL lines without newline, in timestamp order (corrupted lines interleaved)
    truth: dict[str, Any]


@dataclass
class _Device:
    anonymous_id: str
    kind: str  # "web" or "app"
    linked: bool = False


@dataclass
class _Shopper:
    """Mutable simulation state of one customer (local to ``_simulate``)."""

    index: int
    user_id: str
    rng: random.Random
    start_ms: int
    end_ms: int
    devices: list[_Device]
    shops: tuple[str, ...]
    consumables: tuple[Product, ...]
    traits: dict[str, Any]
    channels: list[str]  # channels with consent granted
    identified: bool = False
    events: list[tuple[int, int, dict]] = field(default_factory=list)
    seq: int = 0


def iso_ms(ms: int) -> str:
    """Epoch milliseconds → ISO-8601 UTC with milliseconds, Segment's timestamp form."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{ms % 1000:03d}Z"


def _message_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _emit(shopper: _Shopper, at_ms: int, call: dict, device: _Device | None = None) -> None:
    """Add one call at ``at_ms`` with the identity known at that moment (server-side calls: the userId)."""
    rng = shopper.rng
    payload: dict[str, Any] = {"type": call.pop("type"), "messageId": _message_id(rng)}
    if device is None or device.linked:
        payload["userId"] = shopper.user_id
    if device is not None:
        payload["anonymousId"] = device.anonymous_id
    payload["timestamp"] = at_ms
    payload.update(call)
    shopper.seq += 1
    shopper.events.append((at_ms, shopper.seq, payload))


def _track(name: str, properties: dict, **extra: Any) -> dict:
    return {"type": "track", "event": name, "properties": properties, **extra}


def _device_context(device: _Device) -> dict[str, str]:
    """Segment's ``context.device``; an app device carries its push token (derived from the device id, so
    adding it draws nothing from the customer's random stream)."""
    if device.kind != "app":
        return {"type": "desktop"}
    token = hashlib.sha256(f"push-token:{device.anonymous_id}".encode()).hexdigest()
    return {"type": "mobile", "token": token}


def _link_device(shopper: _Shopper, device: _Device, at_ms: int) -> None:
    # Never before the window: a cut-off link would leave the device's later userId events unexplained.
    at_ms = max(at_ms, shopper.start_ms)
    if shopper.rng.random() < 0.05:
        _emit(shopper, at_ms, {"type": "alias", "previousId": device.anonymous_id})
        device.linked = True
        return
    device.linked = True
    _emit(
        shopper,
        at_ms,
        {
            "type": "identify",
            "traits": dict(shopper.traits),
            "context": {"device": _device_context(device)},
        },
        device,
    )
    if not shopper.identified:
        shopper.identified = True
        for channel in ("email", "sms", "whatsapp", "webpush", "apppush"):
            granted = channel in shopper.channels
            if granted or shopper.rng.random() < 0.3:
                at_ms += shopper.rng.randint(1000, 5000)
                _emit(shopper, at_ms, _track("Consent Updated", {"channel": channel, "granted": granted}), device)


def _order_items(shopper: _Shopper, products: list[tuple[Product, str | None, int]]) -> tuple[list[dict], int]:
    items = []
    subtotal = 0
    for product, size, quantity in products:
        item = {
            "product_id": product.product_id,
            "name": product.name,
            "category": product.category,
            "price": product.price / 100,
            "quantity": quantity,
        }
        if size is not None:
            item["size"] = size
        items.append(item)
        subtotal += product.price * quantity
    return items, subtotal


def _order(
    shopper: _Shopper,
    at_ms: int,
    cart: list[tuple[Product, str | None, int]],
    device: _Device | None,
    *,
    currency: str,
    refund_rate: float,
) -> int:
    """Order Completed (web if ``device``, else in-store POS); maybe a refund later. Returns the time after it."""
    rng = shopper.rng
    items, subtotal = _order_items(shopper, cart)
    order_id = f"ord-{shopper.index}-{shopper.seq + 1}"
    properties: dict[str, Any] = {"order_id": order_id, "products": items}
    discount = 0
    if rng.random() < 0.15:
        properties["coupon"] = rng.choice(COUPONS)
        discount = subtotal // 10
        properties["discount"] = discount / 100
    total = subtotal - discount
    properties["total"] = total / 100
    if device is None:
        properties.update(store_id=rng.choice(STORES), payment_method=rng.choice(POS_PAYMENTS))
        properties["currency"] = currency.lower() if rng.random() < 0.2 else currency  # POS tills send lower case
        call = _track("Order Completed", properties, context={"channel": "pos"})
        if rng.random() < 0.5:
            call["timestamp_as_ms"] = True
        _emit(shopper, at_ms, call)
    else:
        properties.update(payment_method=rng.choice(WEB_PAYMENTS), currency=currency)
        _emit(shopper, at_ms, _track("Order Completed", properties), device)
    if rng.random() < refund_rate:
        refund_at = at_ms + rng.randint(2, 10) * MS_PER_DAY + rng.randint(0, MS_PER_DAY)
        _emit(
            shopper,
            refund_at,
            _track("Order Refunded", {"order_id": order_id, "total": total / 100, "currency": currency}),
        )
    return at_ms + rng.randint(2000, 20000)


def _pick(shopper: _Shopper) -> tuple[Product, str | None]:
    rng = shopper.rng
    product = rng.choice(PRODUCTS_BY_SHOP[rng.choice(shopper.shops)])
    return product, (rng.choice(product.sizes) if product.sizes else None)


def _product_properties(product: Product, size: str | None, currency: str, quantity: int | None = None) -> dict:
    properties: dict[str, Any] = {
        "product_id": product.product_id,
        "name": product.name,
        "category": product.category,
        "price": product.price / 100,
        "currency": currency,
    }
    if size is not None:
        properties["size"] = size
    if quantity is not None:
        properties["quantity"] = quantity
    return properties


def _browse(shopper: _Shopper, at_ms: int, device: _Device) -> int:
    """Page or screen views, maybe a search and a product list; returns the time after them."""
    rng = shopper.rng
    view_type = "screen" if device.kind == "app" else "page"
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(PAGES)
        properties = {"name": name} if view_type == "screen" else {"path": f"/{name.lower()}", "title": name}
        _emit(shopper, at_ms, {"type": view_type, "name": name, "properties": properties}, device)
        at_ms += rng.randint(3000, 60000)
    if rng.random() < 0.3:
        _emit(
            shopper,
            at_ms,
            _track("Products Searched", {"query": rng.choice(SEARCHES[rng.choice(shopper.shops)])}),
            device,
        )
        at_ms += rng.randint(3000, 30000)
    if rng.random() < 0.5:
        category = rng.choice(PRODUCTS_BY_SHOP[rng.choice(shopper.shops)]).category
        _emit(
            shopper, at_ms, _track("Product List Viewed", {"list_id": f"list-{category}", "category": category}), device
        )
        at_ms += rng.randint(3000, 30000)
    return at_ms


def _session(shopper: _Shopper, at_ms: int, config: WorkloadConfig) -> None:
    """One browsing session on one device: views, searches, cart changes, then abandon or buy."""
    rng = shopper.rng
    device = rng.choice(shopper.devices)
    currency = config.currency
    if shopper.identified and not device.linked and rng.random() < 0.4 or not shopper.identified and rng.random() < 0.3:
        _link_device(shopper, device, at_ms)
        at_ms += rng.randint(2000, 10000)
    at_ms = _browse(shopper, at_ms, device)
    cart: list[tuple[Product, str | None, int]] = []
    for _ in range(rng.randint(1, 4)):
        product, size = _pick(shopper)
        _emit(shopper, at_ms, _track("Product Viewed", _product_properties(product, size, currency)), device)
        at_ms += rng.randint(5000, 90000)
        if rng.random() < 0.35 and all(item[0] is not product for item in cart):
            quantity = rng.randint(1, 3) if product.cycle_days else 1
            _emit(
                shopper, at_ms, _track("Product Added", _product_properties(product, size, currency, quantity)), device
            )
            cart.append((product, size, quantity))
            at_ms += rng.randint(3000, 30000)
    if len(cart) > 1 and rng.random() < 0.2:
        product, size, quantity = cart.pop(rng.randrange(len(cart)))
        _emit(shopper, at_ms, _track("Product Removed", _product_properties(product, size, currency, quantity)), device)
        at_ms += rng.randint(3000, 30000)
    if not cart:
        return
    if rng.random() < 0.6:
        _emit(
            shopper,
            at_ms,
            _track(
                "Cart Viewed",
                {"products": [{"product_id": p.product_id, "price": p.price / 100, "quantity": q} for p, _, q in cart]},
            ),
            device,
        )
        at_ms += rng.randint(3000, 30000)
    if rng.random() < 0.45:
        if not device.linked:
            _link_device(shopper, device, at_ms)  # checkout asks for the login
            at_ms += rng.randint(5000, 30000)
        _emit(shopper, at_ms, _track("Checkout Started", {"currency": currency}), device)
        at_ms += rng.randint(30000, 300000)
        if rng.random() < 0.75:
            _order(shopper, at_ms, cart, device, currency=currency, refund_rate=config.refund_rate)
            return
    if shopper.identified and shopper.channels and rng.random() < 0.5:
        # The cart-abandonment reminder of an older trigger system: a message with a trigger id.
        _messages(shopper, at_ms + rng.randint(1800, 7200) * 1000, f"trg-cart-{shopper.index}-{shopper.seq}")


def _messages(shopper: _Shopper, at_ms: int, trigger_id: str | None) -> None:
    """A message on a consented channel and what happened to it."""
    rng = shopper.rng
    channel = rng.choice(shopper.channels)
    segment_names = channel == "email" and rng.random() < 0.3
    campaign_id = trigger_id or f"cmp-{at_ms // MS_PER_DAY}"

    def send(name: str, when: int, **extra: Any) -> None:
        properties: dict[str, Any] = {"channel": channel, "campaign_id": campaign_id}
        if trigger_id:
            properties["trigger_id"] = trigger_id
        properties.update(extra)
        event_name = EMAIL_SPEC_NAMES.get(name, name) if segment_names else name
        if event_name != name:
            properties.pop("channel")  # Segment's email events carry no channel
        _emit(shopper, when, _track(event_name, properties))

    send("Message Sent", at_ms)
    at_ms += rng.randint(1000, 60000)
    if rng.random() < 0.04:
        send("Message Bounced", at_ms, reason="mailbox full" if channel == "email" else "unreachable")
        return
    send("Message Delivered", at_ms)
    # The customer's own habit on the channel: the sender simulator (offline.responses) answers triggers
    # with the same habit, so the history the channel choice learns from and the live answers agree.
    habit = engagement_habit(shopper.user_id)[channel]
    if rng.random() < habit.opened:
        at_ms += rng.randint(60, 36000) * 1000
        send("Message Opened", at_ms)
        if rng.random() < habit.clicked:
            at_ms += rng.randint(5, 600) * 1000
            send("Message Clicked", at_ms, url="https://shop.example/offer")
        if channel in ("sms", "whatsapp") and rng.random() < 0.05:
            send("Message Replied", at_ms + rng.randint(60, 3600) * 1000)
        if rng.random() < 0.02:
            _emit(shopper, at_ms + rng.randint(10, 600) * 1000, _track("Unsubscribed", {"channel": channel}))
            shopper.channels.remove(channel)


def _new_shopper(index: int, config: WorkloadConfig) -> _Shopper:
    rng = random.Random(f"streamcdp-workload:{config.seed}:{index}")
    start_ms = round(config.start * 1000)
    devices = [
        _Device(anonymous_id=_message_id(rng), kind=rng.choice(("web", "web", "app")))
        for _ in range(rng.choice((1, 1, 2, 2, 3)))
    ]
    shops = rng.choice((("pet",), ("pet",), ("outdoor",), ("pet", "outdoor")))
    consumables: tuple[Product, ...] = ()
    if "pet" in shops and rng.random() < 0.7:
        consumables = rng.choice(
            (
                (PRODUCT_BY_ID["pet-dogfood-adult-12kg"],),
                (PRODUCT_BY_ID["pet-dogfood-puppy-4kg"],),
                (PRODUCT_BY_ID["pet-catlitter-clump-10l"], PRODUCT_BY_ID["pet-catfood-dry-6kg"]),
            )
        )
    elif "outdoor" in shops and rng.random() < 0.2:
        consumables = (PRODUCT_BY_ID["out-gas-230g"],)
    city, country, tz = rng.choice(CITIES)
    user_id = f"user-{index:06d}"
    channels = [
        channel
        for channel, chance in (("email", 0.9), ("sms", 0.4), ("whatsapp", 0.25), ("webpush", 0.2), ("apppush", 0.3))
        if rng.random() < chance
    ]
    traits: dict[str, Any] = {
        "email": f"{user_id}@example.com",
        "phone": f"+49151{index:07d}",
        "gender": rng.choice(("female", "male", "diverse")),
        "city": city,
        "country": country,
        "timezone": tz,
        "loyalty_tier": rng.choice(("bronze", "bronze", "silver", "gold")),
        "preferred_channel": channels[0] if channels else "email",
    }
    if rng.random() < 0.5:
        traits["age"] = rng.randint(18, 80)
    else:
        traits["birthday"] = f"{rng.randint(1945, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return _Shopper(
        index=index,
        user_id=user_id,
        rng=rng,
        start_ms=start_ms,
        end_ms=start_ms + round(config.days * MS_PER_DAY),
        devices=devices,
        shops=shops,
        consumables=consumables,
        traits=traits,
        channels=channels,
    )


def _simulate(index: int, config: WorkloadConfig) -> list[tuple[int, int, dict]]:
    """All events of one customer, in time order, cut at the end of the window and at a deletion."""
    shopper = _new_shopper(index, config)
    rng = shopper.rng
    activity = rng.uniform(0.1, 0.6)  # sessions per day
    day_ms = shopper.start_ms
    next_refill = {
        p.product_id: shopper.start_ms + rng.randint(0, p.cycle_days) * MS_PER_DAY for p in shopper.consumables
    }
    deletion_at = (
        shopper.start_ms + round(rng.uniform(0.5, 1.0) * (shopper.end_ms - shopper.start_ms))
        if rng.random() < config.deletion_rate
        else None
    )
    campaign_every = rng.randint(4, 10)
    day = 0
    while day_ms < shopper.end_ms:
        if rng.random() < activity:
            _session(shopper, day_ms + rng.randint(7, 22) * 3_600_000 + rng.randint(0, 3_599_999), config)
        for product in shopper.consumables:
            due = next_refill[product.product_id]
            if day_ms <= due < day_ms + MS_PER_DAY:
                _refill(shopper, due, product, config)
                next_refill[product.product_id] = due + (product.cycle_days + rng.randint(-4, 4)) * MS_PER_DAY
        if shopper.identified and shopper.channels and day % campaign_every == campaign_every - 1:
            _messages(shopper, day_ms + rng.randint(9, 18) * 3_600_000, None)
        if shopper.identified and day % 11 == 10 and rng.random() < 0.1:
            shopper.traits["loyalty_tier"] = rng.choice(("silver", "gold", "platinum"))
            _emit(
                shopper,
                day_ms + rng.randint(0, MS_PER_DAY - 1),
                {"type": "identify", "traits": {"loyalty_tier": shopper.traits["loyalty_tier"]}},
            )
        if shopper.identified and rng.random() < 0.005:
            channel = rng.choice(("email", "sms", "whatsapp", "webpush", "apppush"))
            granted = channel not in shopper.channels
            _emit(
                shopper,
                day_ms + rng.randint(0, MS_PER_DAY - 1),
                _track("Consent Updated", {"channel": channel, "granted": granted}),
            )
            if granted:
                shopper.channels.append(channel)
            else:
                shopper.channels.remove(channel)
        day += 1
        day_ms += MS_PER_DAY
    if deletion_at is not None:
        if not shopper.identified:
            _link_device(shopper, shopper.devices[0], deletion_at - 60_000)
        _emit(shopper, deletion_at, _track("Deletion Requested", {"source": "privacy-center"}))
    cutoff = min(shopper.end_ms, deletion_at if deletion_at is not None else shopper.end_ms)
    return sorted(event for event in shopper.events if shopper.start_ms <= event[0] <= cutoff)


def _refill(shopper: _Shopper, at_ms: int, product: Product, config: WorkloadConfig) -> None:
    """A replenishment purchase: in store (POS) or a quick web reorder."""
    rng = shopper.rng
    quantity = rng.choice((1, 1, 2))
    if rng.random() < 0.35:
        if not shopper.identified:
            _link_device(shopper, shopper.devices[0], at_ms - 60_000)
        _order(
            shopper, at_ms, [(product, None, quantity)], None, currency=config.currency, refund_rate=config.refund_rate
        )
        return
    device = shopper.devices[0]
    if not device.linked:
        _link_device(shopper, device, at_ms - 60_000)
    _emit(
        shopper, at_ms, _track("Product Added", _product_properties(product, None, config.currency, quantity)), device
    )
    _emit(shopper, at_ms + 20_000, _track("Checkout Started", {"currency": config.currency}), device)
    _order(
        shopper,
        at_ms + 90_000,
        [(product, None, quantity)],
        device,
        currency=config.currency,
        refund_rate=config.refund_rate,
    )


def _finish(payload: dict) -> dict:
    """The wire form: ISO timestamps, except POS tills that send epoch milliseconds."""
    if payload.pop("timestamp_as_ms", False):
        return payload
    payload["timestamp"] = iso_ms(payload["timestamp"])
    return payload


def customer_truth(user_id: str, timed_events: list[tuple[int, dict]]) -> dict[str, Any]:
    """The truth of one customer from its final (epoch ms, wire event) pairs (see the module docstring)."""
    events = [event for _, event in timed_events]
    linked = sorted(
        {e["anonymousId"] for e in events if e["type"] == "identify" and e.get("anonymousId")}
        | {e["previousId"] for e in events if e["type"] == "alias"}
    )
    order_totals: dict[str, int] = {}
    last_order_ms = None
    refunds = 0
    refunded_revenue = 0
    deleted = False
    for at, event in timed_events:
        name = event.get("event")
        if name == "Order Completed":
            order_totals[event["properties"]["order_id"]] = round(event["properties"]["total"] * 100)
            last_order_ms = at if last_order_ms is None else max(last_order_ms, at)
        elif name == "Order Refunded":
            refunds += 1
            refunded_revenue += order_totals[event["properties"]["order_id"]]
        elif name == "Deletion Requested":
            deleted = True
    linked_set = set(linked)
    owned = sum(1 for e in events if e.get("userId") == user_id or e.get("anonymousId") in linked_set)
    return {
        "user_id": user_id,
        "anonymous_ids": linked,
        "events": owned,
        "orders": len(order_totals) - refunds,
        "revenue": sum(order_totals.values()) - refunded_revenue,
        "last_order_at": None if last_order_ms is None else last_order_ms / 1000,
        "refunds": refunds,
        "refunded_revenue": refunded_revenue,
        "deleted": deleted,
    }


def _corrupt(kind: str, source: dict, rng: random.Random) -> bytes:
    """One line built from a valid event so that it fails validation for the reason ``kind`` names."""
    event = dict(source, messageId=_message_id(rng))
    if kind == "bad_json":
        return orjson.dumps(event)[:-3]
    if kind == "not_utf8":
        return b"\xff\xfe" + orjson.dumps(event)[2:]
    if kind == "missing_ids":
        event.pop("userId", None)
        event.pop("anonymousId", None)
    elif kind == "bad_timestamp":
        event["timestamp"] = "the day after tomorrow"
    elif kind == "negative_price":
        event.update(
            type="track",
            event="Product Added",
            properties={"product_id": "pet-toy-rope", "price": -7.99, "quantity": 1},
        )
    elif kind == "unknown_type":
        event["type"] = "trakc"
    elif kind == "oversized":
        event["properties"] = {**event.get("properties", {}), "padding": "x" * 70_000}
    elif kind == "missing_message_id":
        event.pop("messageId")
    elif kind == "future_timestamp":
        event["timestamp"] = "2999-01-01T00:00:00.000Z"
    elif kind == "too_deep":
        nested: dict = {"level": 40}
        for level in range(39, 0, -1):
            nested = {"level": level, "child": nested}
        event["context"] = nested
    return orjson.dumps(event)


def generate_workload(config: WorkloadConfig) -> Workload:
    """Every line of the workload in timestamp order, and the ground truth per customer."""
    timed: list[tuple[int, int, int, dict]] = []
    profiles = []
    for index in range(config.customers):
        events = [(at, index, seq, _finish(payload)) for at, seq, payload in _simulate(index, config)]
        timed.extend(events)
        user_id = f"user-{index:06d}"
        if any(payload.get("userId") == user_id for *_, payload in events):
            profiles.append(customer_truth(user_id, [(at, payload) for at, _, _, payload in events]))
    timed.sort(key=lambda item: item[:3])
    lines = [orjson.dumps(payload) for *_, payload in timed]
    rng = random.Random(f"streamcdp-corruption:{config.seed}")
    corrupt_count = round(config.corrupt_fraction * len(lines))
    by_reason: dict[str, int] = {}
    if corrupt_count:
        positions = sorted(rng.sample(range(len(lines)), min(corrupt_count, len(lines))), reverse=True)
        for number, position in enumerate(positions):
            kind, reason = CORRUPTIONS[number % len(CORRUPTIONS)]
            by_reason[reason] = by_reason.get(reason, 0) + 1
            lines.insert(position + 1, _corrupt(kind, timed[position][3], rng))
    truth = {
        "rules": TRUTH_RULES,
        "seed": config.seed,
        "start": config.start,
        "days": config.days,
        "customers": config.customers,
        "identified_customers": len(profiles),
        "events": len(timed),
        "corrupted": sum(by_reason.values()),
        "corrupted_by_reason": dict(sorted(by_reason.items())),
        "currency": config.currency,
        "profiles": profiles,
    }
    return Workload(lines=lines, truth=truth)
