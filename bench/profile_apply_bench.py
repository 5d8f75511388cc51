"""How long ``apply_event`` (and the whole ``step_key``) takes per event on a warmed-up profile.

Run: ``.venv/bin/python bench/profile_apply_bench.py [events]``. Prints microseconds per event for a
realistic mix (views, cart changes, orders with products, identifies with PII, messaging, pages), of one
customer whose profile is warmed up to its caps (256 applied message ids …), in thread CPU time: the sum
over chunks of 250 events of each chunk's best of 5 runs.
The target is well under 40 µs/event.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.profile.applied import AppliedIds
from core.profile.apply import apply_event
from core.profile.bounded import capped_append
from core.profile.policy import MAX_APPLIED_IDS, ProfilePolicy
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


REPEATS = 5
CHUNK = 250  # events timed together; each chunk's best run counts, so a pause of the machine skews one run only


def chained_us(step, start, events: list[Event]) -> float:
    """µs per event of ``state = step(state, event)`` over ``events`` from ``start``: chunk by chunk, each
    chunk run ``REPEATS`` times from the same state and its best thread CPU time counted (other processes'
    use of the cores does not count), the state carried on from its last run."""
    state, total = start, 0.0
    for begin in range(0, len(events), CHUNK):
        chunk = events[begin : begin + CHUNK]
        best = float("inf")
        for _ in range(REPEATS):
            current = state
            started = time.thread_time()
            for event in chunk:
                current = step(current, event)
            best = min(best, time.thread_time() - started)
        state, total = current, total + best
    return total / len(events) * 1e6


def measure(events: list[Event]) -> tuple[float, float]:
    policy = ProfilePolicy(pii_hash_key=b"bench-key")
    stage_policy = StagePolicy(profile=policy)
    profile = None
    for event in make_events(3000, seed=2):  # warm up to a steady-state (capped) profile
        profile = apply_event(profile, event, now=event.timestamp, policy=policy)
    apply_us = chained_us(lambda p, e: apply_event(p, e, now=e.timestamp, policy=policy), profile, events)
    step_us = chained_us(
        lambda s, e: step_key(s, ApplyEvent(event=e), now=e.timestamp, policy=stage_policy).state,
        KeyState(key="u1", profile=profile),
        events,
    )
    return apply_us, step_us


def replay_guard_us(count: int = 20_000) -> tuple[float, float]:
    """µs per event of the replay guard alone at the cap (256 UUID message ids): the check and the append,
    as a scan of the tuple and as ``core.profile.applied.AppliedIds``, in thread CPU, best of ``REPEATS``."""
    rng = random.Random(4)
    start = tuple(str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(MAX_APPLIED_IDS))
    new = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count)]

    def scan() -> None:
        ids = start
        for item in new:
            if item not in ids:
                ids = capped_append(ids, item, MAX_APPLIED_IDS)

    def memo() -> None:
        ids, applied = start, AppliedIds()
        for item in new:
            if not applied.contains(ids, item):
                ids = applied.appended(ids, item, MAX_APPLIED_IDS)

    results = []
    for run in (scan, memo):
        best = float("inf")
        for _ in range(REPEATS):
            started = time.thread_time()
            run()
            best = min(best, time.thread_time() - started)
        results.append(best / count * 1e6)
    return results[0], results[1]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    events = [e for e in make_events(count + 3000, seed=3)][3000:]
    apply_us, step_us = measure(events)
    print(
        f"apply_event: {apply_us:.1f} µs/event, step_key: {step_us:.1f} µs/event "
        f"({count} events, best of {REPEATS} per chunk of {CHUNK}, thread CPU)"
    )
    scan_us, memo_us = replay_guard_us()
    print(f"replay guard at the cap ({MAX_APPLIED_IDS} UUIDs): scan {scan_us:.2f} µs/event, set {memo_us:.2f} µs/event")


if __name__ == "__main__":
    main()
