"""Invariants of the trigger engine over random journeys of one customer with two extra devices.

A journey mixes cart changes, checkouts, web and in-store (POS, on an anonymous device) orders, logins
that link a device to the customer, a deletion, and clock ticks. Whatever the order:

- a trigger is never decided for a forgotten customer (nothing for ``u1`` after its deletion, as no
  later event names ``u1`` in these journeys);
- no two published triggers share a ``trigger_id``;
- a cart reminder is never sent for a cart that an order (web or POS, on any device linked by then)
  emptied before the due time: at the decision, the latest add known to the customer is newer than the
  latest order known to it.
"""

from __future__ import annotations

from core_event_factory import T0, identify
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trigger_kinds import STAGE, M, add, checkout, order, remove, view
from trigger_journeys import Forget, Journey, Tick

DEVICES = ("u1", "a1", "a2")
OPS = ("add", "add", "remove", "checkout", "order", "identify", "tick", "tick")

steps = st.lists(
    st.tuples(st.sampled_from(OPS), st.sampled_from(DEVICES), st.integers(1, 90), st.sampled_from(("p1", "p2"))),
    min_size=1,
    max_size=25,
)


def _script(
    raw: list, forget_at: int | None, settle_s: float = 5 * 86400.0
) -> tuple[list, list[tuple[str, str, float]]]:
    """The journey's steps and ``(op, device, at)`` of the adds and orders it plays; a last tick ``settle_s``
    after the last step. A ``view`` op (not in ``OPS``; ``test_trigger_backlog`` plays it) views the product."""
    played: list = []
    facts: list[tuple[str, str, float]] = []
    at = T0
    for index, (op, device, gap_minutes, product) in enumerate(raw):
        at += gap_minutes * M
        if forget_at is not None and index == forget_at:
            played.append(Forget("u1", at))
            facts.append(("forget", "u1", at))
            return played, facts  # nothing names u1 after its deletion
        user, anon = ("u1", None) if device == "u1" else (None, device)
        if op == "add":
            played.append(add(at, product, user=user, anon=anon))
            facts.append(("add", device, at))
        elif op == "view":
            played.append(view(at, product, user=user, anon=anon))
        elif op == "remove" and device == "u1":
            played.append(remove(at, product))
        elif op == "checkout" and device == "u1":
            played.append(checkout(at))
        elif op == "order":
            played.append(order(at, "p1", "p2", user=user, anon=anon, order_id=f"o-{index}"))
            facts.append(("order", device, at))
        elif op == "identify" and device != "u1":
            played.append(identify(at, user="u1", anon=device))
        else:
            played.append(Tick(at))
    played.append(Tick(at + settle_s))
    return played, facts


@settings(max_examples=150, deadline=None)
@given(steps, st.one_of(st.none(), st.integers(0, 24)))
def test_trigger_invariants(raw: list, forget_at: int | None):
    played, facts = _script(raw, forget_at)
    journey = Journey(STAGE).play(*played)
    ids = [trigger.trigger_id for trigger in journey.sent]
    assert len(ids) == len(set(ids))
    forgotten = [at for op, _, at in facts if op == "forget"]
    if forgotten:
        assert all(t.decided_at <= forgotten[0] for t in journey.sent if t.customer_id == "u1")  # sent before it
    for trigger in journey.sent:
        assert trigger.customer_id == "u1"  # anonymous devices are never messaged
        if trigger.kind != "cart_abandonment":
            continue
        decided = trigger.decided_at

        def known(device: str, at: float, decided: float = decided) -> bool:
            linked_at = journey.link_times.get(device)
            return at < decided and (device == "u1" or (linked_at is not None and linked_at <= decided))

        adds = [at for op, device, at in facts if op == "add" and known(device, at)]
        orders = [at for op, device, at in facts if op == "order" and known(device, at)]
        assert adds and (not orders or max(adds) > max(orders))
