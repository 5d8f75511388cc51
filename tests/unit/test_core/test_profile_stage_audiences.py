"""Segments and scores inside the profile stage: refreshed on change, woken by time alone, published once."""

from __future__ import annotations

import dataclasses

import orjson

from core.audiences import AudiencePolicy
from core.profile_stage import KeyState, StagePolicy, step_key
from core.rules.definitions import parse_definitions
from core.scoring import load_models
from schemas.commands import ApplyEvent, WakeUp
from schemas.segments import ScoreCrossed, SegmentChange
from schemas.validation import decode_event

DAY = 86400.0
T0 = 1_790_000_000.0
DEFINITIONS = """
version: 1
segments:
  - name: buyers
    when: orders >= 1
  - name: lapsed
    when: orders >= 1 and no_event("Order Completed", for=60d)
"""


def policy(thresholds=None) -> StagePolicy:
    audiences = AudiencePolicy.build(parse_definitions(DEFINITIONS), load_models(), thresholds or {}, b"v1")
    return StagePolicy(audiences=audiences)


def order(at: float, message_id: str = "m1"):
    payload = {
        "type": "track",
        "event": "Order Completed",
        "messageId": message_id,
        "userId": "c1",
        "timestamp": at,
        "properties": {"order_id": message_id, "total": 40.0},
    }
    return ApplyEvent(event=decode_event(orjson.dumps(payload), now=at))


def segment_moves(result) -> list[tuple[str, str]]:
    return [(c.change, c.segment) for c in result.audience_changes if isinstance(c, SegmentChange)]


def test_an_order_enters_buyers_and_schedules_the_lapse():
    result = step_key(KeyState(key="c1"), order(T0), now=T0, policy=policy())
    assert segment_moves(result) == [("entered", "buyers")]
    assert result.state.profile.segments == ("buyers",)
    assert result.due_at == T0 + 60 * DAY  # no cart: the only wake-up is the lapse
    assert set(result.state.profile.scores) >= {"purchase_7d", "churn_60d"}


def test_time_alone_moves_a_customer_into_lapsed_at_the_wake_up():
    stage = policy()
    first = step_key(KeyState(key="c1"), order(T0), now=T0, policy=stage)
    early = step_key(first.state, WakeUp(now=T0 + 59 * DAY), now=T0 + 59 * DAY, policy=stage)
    assert segment_moves(early) == []
    woken = step_key(early.state, WakeUp(now=T0 + 60 * DAY), now=T0 + 60 * DAY, policy=stage)
    assert segment_moves(woken) == [("entered", "lapsed")]
    assert woken.due_at is None  # nothing more that time alone can change
    again = step_key(woken.state, WakeUp(now=T0 + 61 * DAY), now=T0 + 61 * DAY, policy=stage)
    assert segment_moves(again) == []  # published once


def test_a_replayed_event_publishes_nothing_twice():
    stage = policy()
    first = step_key(KeyState(key="c1"), order(T0), now=T0, policy=stage)
    replay = step_key(first.state, order(T0), now=T0 + 1, policy=stage)
    assert replay.audience_changes == ()


def test_changed_definitions_re_evaluate_on_the_next_command():
    stage = policy()
    first = step_key(KeyState(key="c1"), order(T0), now=T0, policy=stage)
    narrower = AudiencePolicy.build(
        parse_definitions("version: 1\nsegments:\n  - name: big\n    when: orders >= 5\n"), load_models(), {}, b"v2"
    )
    result = step_key(first.state, WakeUp(now=T0 + 1), now=T0 + 1, policy=StagePolicy(audiences=narrower))
    assert segment_moves(result) == [("exited", "buyers")]
    assert result.state.profile.audience_version == narrower.version


def test_score_thresholds_emit_crossings():
    result = step_key(KeyState(key="c1"), order(T0), now=T0, policy=policy({"purchase_7d": (0.0001,)}))
    crossings = [c for c in result.audience_changes if isinstance(c, ScoreCrossed)]
    assert [(c.score, c.direction) for c in crossings] == [("purchase_7d", "up")]
    assert 0.0 <= crossings[0].value <= 1.0


def test_a_burst_is_evaluated_once_at_the_end_of_the_interval():
    stage = dataclasses.replace(policy(), audience_min_interval_s=1.0)
    first = step_key(KeyState(key="c1"), order(T0, "m1"), now=T0, policy=stage)
    assert segment_moves(first) == [("entered", "buyers")]  # the first change is evaluated at once
    burst = step_key(first.state, order(T0 + 0.2, "m2"), now=T0 + 0.2, policy=stage)
    assert burst.audience_changes == ()
    assert burst.due_at == T0 + 1.0  # deferred to the end of the interval
    assert burst.state.profile.orders == 2
    woken = step_key(burst.state, WakeUp(now=T0 + 1.0), now=T0 + 1.0, policy=stage)
    assert woken.state.profile.audience_refreshed_at == T0 + 1.0
    assert woken.due_at == T0 + 0.2 + 60 * DAY  # the lapse, counted from the last order


def test_a_forgotten_customer_leaves_every_segment():
    stage = policy()
    first = step_key(KeyState(key="c1"), order(T0), now=T0, policy=stage)
    deletion = {
        "type": "track",
        "event": "Deletion Requested",
        "messageId": "d1",
        "userId": "c1",
        "timestamp": T0 + 10,
        "properties": {},
    }
    forgotten = step_key(
        first.state, ApplyEvent(event=decode_event(orjson.dumps(deletion), now=T0 + 10)), now=T0 + 10, policy=stage
    )
    assert forgotten.state.profile is None
    assert [(c.change, c.segment, c.reason) for c in forgotten.audience_changes] == [
        ("exited", "buyers", "customer forgotten")
    ]


def test_behind_live_traffic_a_burst_waits_longer_but_live_keeps_the_short_interval():
    stage = dataclasses.replace(
        policy(), audience_min_interval_s=1.0, audience_backlog_fraction=0.1, audience_max_interval_s=60.0
    )
    now = T0 + 3600.0
    first = step_key(KeyState(key="c1"), order(now, "m1"), now=now, policy=stage, backlog_s=3600.0)
    assert segment_moves(first) == [("entered", "buyers")]  # a first change is still evaluated at once
    # The worker is an hour behind its input: the longest interval, not one second.
    behind = step_key(first.state, order(now + 1, "m2"), now=now + 2.0, policy=stage, backlog_s=3600.0)
    assert behind.audience_changes == ()
    assert behind.due_at == now + 60.0
    # 100 s behind: a tenth of that.
    catching_up = step_key(first.state, order(now + 1, "m2"), now=now + 2.0, policy=stage, backlog_s=100.0)
    assert catching_up.audience_changes == ()
    assert catching_up.due_at == now + 10.0
    live = step_key(first.state, order(now + 2.0, "m2"), now=now + 2.0, policy=stage, backlog_s=0.0)
    assert live.state.profile.audience_refreshed_at == now + 2.0  # a live event: one second was enough


def test_an_old_event_reaching_a_worker_that_keeps_up_is_refreshed_without_stretch():
    """An SDK's offline queue delivers events stamped an hour back; the worker is not behind (backlog 0):
    the event's age is no backlog, so the customer's segments refresh after the short interval."""
    stage = dataclasses.replace(
        policy(), audience_min_interval_s=1.0, audience_backlog_fraction=0.1, audience_max_interval_s=60.0
    )
    now = T0 + 3600.0
    first = step_key(KeyState(key="c1"), order(T0, "m1"), now=now, policy=stage)
    queued = step_key(first.state, order(T0 + 1, "m2"), now=now + 0.5, policy=stage, backlog_s=0.0)
    assert queued.due_at == now + 1.0  # one second after the last refresh, not sixty
    refreshed = step_key(first.state, order(T0 + 1, "m2"), now=now + 2.0, policy=stage, backlog_s=0.0)
    assert refreshed.state.profile.audience_refreshed_at == now + 2.0


def test_an_overdue_refresh_survives_a_step_that_does_not_refresh():
    """Regression (issue 10, lost wake-ups): a replayed duplicate reaching the key after its refresh time
    but before the clock tick must keep the wake-up, so the lapse is still decided at the next tick."""
    stage = policy()
    first = step_key(KeyState(key="c1"), order(T0), now=T0, policy=stage)
    lapse_at = T0 + 60 * DAY
    assert first.due_at == lapse_at
    late = T0 + 61 * DAY
    replayed = step_key(first.state, order(T0), now=late, policy=stage)
    assert replayed.audience_changes == ()
    assert replayed.due_at == lapse_at  # overdue, kept: the clock fires it at its next tick
    woken = step_key(replayed.state, WakeUp(now=late), now=late, policy=stage)
    assert segment_moves(woken) == [("entered", "lapsed")]
    assert woken.due_at is None or woken.due_at > late  # refreshed: never due in the past again
