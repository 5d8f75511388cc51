"""How long ``apply_event`` (and the whole ``step_key``) takes per event on a warmed-up profile.

Run: ``.venv/bin/python bench/profile_apply_bench.py [events]``. Prints microseconds per event for a
realistic mix (views, cart changes, orders with products, identifies with PII, messaging, pages).
The target is well under 40 µs/event.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.profile.apply import apply_event
from core.profile.policy import ProfilePolicy
from core.profile_stage import KeyState, StagePolicy, step_key
from schemas.commands import ApplyEvent
from schemas.events import CLICKSTREAM, CUSTOMER, MESSAGING, PURCHASE, Event

T0 = 1_700_000_000.0


def make_events(count: int, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        at = T0 + i * 30
        roll = rng.random()
        common = {
            "message_id": f"m{i}",
            "timestamp": at,
            "user_id": "u1",
            "anonymous_id": f"a{rng.randrange(3)}",
            "context": {"device": {"id": f"d{rng.randrange(3)}"}},
        }
        product = {"product_id": f"p{rng.randrange(300)}", "category": f"c{rng.randrange(25)}", "price": 1999}
        if roll < 0.45:
            event = Event(type="track", event="Product Viewed", family=CLICKSTREAM, properties=product, **common)
        elif roll < 0.60:
            event = Event(type="page", event="Home", family=CLICKSTREAM, **common)
        elif roll < 0.72:
            event = Event(
                type="track", event="Product Added", family=CLICKSTREAM, properties={**product, "quantity": 1}, **common
            )
        elif roll < 0.76:
            event = Event(
                type="track",
                event="Order Completed",
                family=PURCHASE,
                properties={
                    "order_id": f"o{i}",
                    "total": 4999,
                    "payment_method": "card",
                    "products": [{**product, "size": "M"}, {"product_id": "p1", "category": "c1", "size": "L"}],
                },
                **common,
            )
        elif roll < 0.90:
            event = Event(
                type="track",
                event=rng.choice(["Message Sent", "Message Opened", "Message Clicked"]),
                family=MESSAGING,
                properties={"channel": "email"},
                **common,
            )
        elif roll < 0.95:
            event = Event(
                type="identify",
                family=CUSTOMER,
                traits={"email": "ann@example.com", "phone": "+4930123456", "city": "Berlin", "age": 33, "plan": "pro"},
                **common,
            )
        else:
            event = Event(type="track", event="Wishlist Shared", family="other", **common)
        events.append(event)
    return events


def measure(events: list[Event]) -> tuple[float, float]:
    policy = ProfilePolicy(pii_hash_key=b"bench-key")
    stage_policy = StagePolicy(profile=policy)
    profile = None
    for event in make_events(3000, seed=2):  # warm up to a steady-state (capped) profile
        profile = apply_event(profile, event, now=event.timestamp, policy=policy)
    warmed = profile
    started = time.perf_counter()
    for event in events:
        profile = apply_event(profile, event, now=event.timestamp, policy=policy)
    apply_us = (time.perf_counter() - started) / len(events) * 1e6
    state = KeyState(key="u1", profile=warmed)
    started = time.perf_counter()
    for event in events:
        state = step_key(state, ApplyEvent(event=event), now=event.timestamp, policy=stage_policy).state
    step_us = (time.perf_counter() - started) / len(events) * 1e6
    return apply_us, step_us


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    events = [e for e in make_events(count + 3000, seed=3)][3000:]
    best = min(measure(events) for _ in range(3))
    print(f"apply_event: {best[0]:.1f} µs/event, step_key: {best[1]:.1f} µs/event ({count} events, best of 3)")


if __name__ == "__main__":
    main()
