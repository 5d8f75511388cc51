"""Triggers when the worker reads events long after they happened (a backlog, a replay).

An entry whose due time plus ``expires`` is already past when it is read could only be dropped by the
guards (``expired_stale``, ``expired_anonymous``). The engine decides it on arrival (``ArrivedStale``):
counted as the guards decide it, never pending, no trigger id, no line in the profile's trigger history.
Everything else must be what the full pass gives, which the reference below still runs for such entries.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import msgspec
from core_event_factory import T0
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trigger_kinds import STAGE, D, H, M, add, order
from test_trigger_properties import OPS, _script
from trigger_journeys import Journey

from core.profile.policy import MAX_TRIGGER_HISTORY
from core.triggers.engine import ArrivedStale, DefinedTrigger
from core.triggers.guards import EXPIRED_ANONYMOUS, EXPIRED_STALE, SENT
from core.triggers.payload import trigger_id_for

DROPPED_ON_ARRIVAL = frozenset({EXPIRED_STALE.name, EXPIRED_ANONYMOUS.name, "cancelled_facts", "blocked_forgotten"})


class _FullPass(DefinedTrigger):
    """The same rule, with an entry that arrives stale made a pending trigger, as before ``ArrivedStale``."""

    def enter(self, profile, event, *, entry_at, at, existing):
        entered = super().enter(profile, event, entry_at=entry_at, at=at, existing=existing)
        if not isinstance(entered, ArrivedStale):
            return entered
        pending = entered.pending
        episode = str(pending.facts.get("episode", ""))
        trigger_id = trigger_id_for(profile.customer_id, pending.kind, pending.entered_at, episode)
        return msgspec.structs.replace(pending, trigger_id=trigger_id)


def _full_pass_stage():
    triggers = STAGE.triggers
    assert triggers is not None
    every = {
        d.name: _FullPass(d, triggers.consumables, triggers.profile, triggers.guardrails)
        for d in triggers.definitions.definitions
    }
    return dataclasses.replace(STAGE, triggers=dataclasses.replace(triggers, rules_by_kind=every))


FULL_PASS = _full_pass_stage()


def test_a_cart_read_days_late_is_counted_stale_and_never_pending():
    journey = Journey(STAGE, lag=10 * D).play(add(T0), add(T0 + M, "tent"))
    assert journey.sent == []
    assert journey.outcomes == [("cart_abandonment", EXPIRED_STALE.name)] * 2
    profile = journey.profile("u1")
    assert profile is not None and [item.product_id for item in profile.cart] == ["rope-9mm", "tent"]
    assert profile.pending_triggers == () and profile.trigger_history == ()


def test_an_anonymous_cart_read_days_late_is_counted_as_expired_anonymous():
    journey = Journey(STAGE, lag=10 * D).play(add(T0, user=None, anon="a1"))
    assert journey.outcomes == [("cart_abandonment", EXPIRED_ANONYMOUS.name)]
    profile = journey.profile("a1")
    assert profile is not None and profile.pending_triggers == ()


def test_a_cart_read_late_but_within_its_window_is_still_sent():
    # Read 2 hours late: due 30 minutes after the add, so at once, and 3 days from stale.
    journey = Journey(STAGE, lag=2 * H).play(add(T0))
    [trigger] = journey.sent
    assert trigger.kind == "cart_abandonment" and trigger.decided_at == T0 + 2 * H
    assert ("cart_abandonment", SENT.name) in journey.outcomes


def test_a_stale_entry_leaves_what_waits_as_it_was():
    # Read 4 days late: the dog food's reminder (due 3 days before the next bag, ~27 days on) still waits, the
    # cart added meanwhile arrives stale and is only counted.
    journey = Journey(STAGE, lag=4 * D).play(order(T0, "dogfood-12kg"))
    [waiting] = [p for p in journey.profile("u1").pending_triggers if p.kind == "replenishment"]
    journey.play(add(T0 + M))
    assert ("cart_abandonment", EXPIRED_STALE.name) in journey.outcomes
    pending = journey.profile("u1").pending_triggers
    assert waiting in pending and all(p.kind != "cart_abandonment" for p in pending)


OPS_WITH_VIEWS = (*OPS, "view", "view")


@settings(max_examples=80, deadline=None)
@given(
    raw=st.lists(
        st.tuples(
            st.sampled_from(OPS_WITH_VIEWS),
            st.sampled_from(("u1", "a1", "a2")),
            st.integers(1, 90),
            st.sampled_from(("p1", "p2")),
        ),
        min_size=1,
        max_size=25,
    ),
    lag=st.sampled_from((0.0, 40 * M, 2 * D, 4 * D, 30 * D)),
)
def test_a_backlog_decides_what_the_full_pass_decides(raw, lag):
    played, _ = _script(raw, None, settle_s=40 * D)  # with views: the browse and high-intent kinds enter too
    shortcut = Journey(STAGE, lag=lag).play(*played)
    full = Journey(FULL_PASS, lag=lag).play(*played)
    assert shortcut.sent == full.sent
    assert Counter(shortcut.outcomes) == Counter(full.outcomes)
    for device in ("u1", "a1", "a2"):
        ours, theirs = shortcut.profile(device), full.profile(device)
        if ours is None or theirs is None:
            assert ours is theirs
            continue
        history, full_history = ours.trigger_history, theirs.trigger_history
        assert msgspec.structs.replace(ours, trigger_history=()) == msgspec.structs.replace(theirs, trigger_history=())
        if len(full_history) < MAX_TRIGGER_HISTORY:  # nothing evicted: the same records but the stale arrivals
            assert list(history) == [r for r in full_history if r.outcome not in DROPPED_ON_ARRIVAL or r in history]
